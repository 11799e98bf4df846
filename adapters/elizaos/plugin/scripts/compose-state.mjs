// Runs a real @elizaos/core AgentRuntime (no model, an in-memory database
// adapter) with the built plugin, configured through character secrets as a
// user configures it, and composes the prompt state for one incoming message:
// what the agent's reply would be built on. Used by the Python end-to-end
// recall test and handy to see the read path work:
//
//   npm run build
//   EXPERIENCE_SYNC_BRIDGE_URL=http://127.0.0.1:7422 \
//   EXPERIENCE_SYNC_BRIDGE_SECRET=... node scripts/compose-state.mjs "is the payments API up on Sunday?"
//
// Prints {text, values, recall: {text, hits}, stats} as JSON.
import { randomUUID } from "node:crypto";

import { AgentRuntime } from "@elizaos/core";

import { experienceSyncPlugin, RECALL_PROVIDER_NAME } from "../dist/index.js";

const secrets = {
  EXPERIENCE_SYNC_BRIDGE_URL: process.env.EXPERIENCE_SYNC_BRIDGE_URL ?? "http://127.0.0.1:7422",
  EXPERIENCE_SYNC_BRIDGE_SECRET: process.env.EXPERIENCE_SYNC_BRIDGE_SECRET ?? "",
};
for (const key of ["EXPERIENCE_SYNC_RECALL", "EXPERIENCE_SYNC_RECALL_K", "EXPERIENCE_SYNC_RECALL_KINDS"]) {
  if (process.env[key] !== undefined) secrets[key] = process.env[key];
}

const adapter = new Proxy(
  {},
  { get: (t, p) => (p in t ? t[p] : p === "then" ? undefined : async () => undefined) },
);
const runtime = new AgentRuntime({ character: { name: "Ada", bio: "support agent", secrets }, adapter });
await runtime.registerPlugin(experienceSyncPlugin);

const text = process.argv[2] ?? "";
const message = {
  id: randomUUID(), entityId: randomUUID(), roomId: randomUUID(), createdAt: Date.now(),
  content: { text, source: "discord" },
};
const state = await runtime.composeState(message);
const recall = state.data.providers[RECALL_PROVIDER_NAME] ?? {};
console.log(JSON.stringify({
  text: state.text,
  values: state.values,
  recall: { text: recall.text, hits: recall.data?.hits ?? [] },
  stats: experienceSyncPlugin.recallProvider.stats,
}));
await experienceSyncPlugin.forwarderFor(runtime)?.stop(1000);
process.exit(0);
