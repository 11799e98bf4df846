// Runs a real @elizaos/core AgentRuntime (no model, an in-memory database
// adapter) with the built plugin, configured the way a user configures it:
// through character secrets. Used by the Python end-to-end test and handy to
// see the bridge work:
//
//   npm run build
//   EXPERIENCE_SYNC_BRIDGE_URL=http://127.0.0.1:7422 \
//   EXPERIENCE_SYNC_BRIDGE_SECRET=... node scripts/drive-runtime.mjs
//
// Prints the forwarder's stats as JSON; exits 1 if anything was left undelivered.
import { randomUUID } from "node:crypto";

import { AgentRuntime, EventType } from "@elizaos/core";

import { experienceSyncPlugin } from "../dist/index.js";

const secrets = {
  EXPERIENCE_SYNC_BRIDGE_URL: process.env.EXPERIENCE_SYNC_BRIDGE_URL ?? "http://127.0.0.1:7422",
  EXPERIENCE_SYNC_BRIDGE_SECRET: process.env.EXPERIENCE_SYNC_BRIDGE_SECRET ?? "",
  EXPERIENCE_SYNC_FLUSH_INTERVAL_MS: "200",
};

const stored = [];
const adapter = new Proxy(
  {
    async createMemory(memory, table) {
      stored.push([table, memory]);
      return memory.id ?? randomUUID();
    },
  },
  { get: (t, p) => (p in t ? t[p] : p === "then" ? undefined : async () => undefined) },
);

const runtime = new AgentRuntime({ character: { name: "Ada", bio: "support agent", secrets }, adapter });
await runtime.registerPlugin(experienceSyncPlugin);
const ok = async () => true;
await runtime.registerPlugin({
  name: "shop-tools",
  description: "order tools",
  actions: [
    { name: "LOOKUP_ORDER", description: "look up an order", validate: ok, handler: async () => ({ success: true, text: "order 42 shipped" }) },
    { name: "REFUND", description: "refund an order", validate: ok, handler: async () => ({ success: false, text: "refused", error: "over limit" }) },
  ],
});

const room = randomUUID();
const msg = (text, extra = {}) => ({ id: randomUUID(), entityId: randomUUID(), roomId: room, createdAt: Date.now(), content: { text, source: "discord" }, ...extra });
const inbound = msg("where is my order 42? my api_key=abcdef0123456789");
await runtime.emitEvent(EventType.MESSAGE_RECEIVED, { message: inbound, source: "discord" });
for (const names of [["LOOKUP_ORDER"], ["LOOKUP_ORDER"], ["REFUND"]]) {
  await runtime.processActions(inbound, [msg("", { content: { text: "", actions: names } })], { values: {}, data: {}, text: "" });
}
await runtime.emitEvent(EventType.MESSAGE_SENT, { message: msg("Your order shipped."), source: "discord" });
await runtime.emitEvent(EventType.EVALUATOR_COMPLETED, {
  evaluatorId: randomUUID(), evaluatorName: "REFLECTION", completed: true,
  facts: ["Order 42 ships from the Lyon warehouse"],
});
await runtime.createMemory(msg("Customers in Lyon prefer morning delivery"), "memories");
await runtime.emitEvent(EventType.RUN_ENDED, {
  runId: randomUUID(), messageId: inbound.id, roomId: room, entityId: inbound.entityId,
  startTime: Date.now() - 900, endTime: Date.now(), duration: 900, status: "completed",
});

const forwarder = experienceSyncPlugin.forwarderFor(runtime);
const delivered = await forwarder.stop(10_000);
console.log(JSON.stringify({ delivered, ...forwarder.stats }));
process.exit(delivered ? 0 : 1);
