/**
 * The plugin inside a real @elizaos/core AgentRuntime (no model, no database:
 * a small in-memory adapter), posting to a real HTTP server on loopback that
 * stands in for the bridge and records what it receives.
 *
 * Actions run through the runtime's own processActions (which emits
 * ACTION_STARTED/ACTION_COMPLETED and creates action memories); memories go
 * through runtime.createMemory. MESSAGE_*, EVALUATOR_COMPLETED and RUN_ENDED
 * are emitted with runtime.emitEvent, as ElizaOS's message service and
 * platform clients do: core 1.7 emits them only from code that needs a model.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";

import { AgentRuntime, EventType, type Action, type IDatabaseAdapter, type Memory, type UUID } from "@elizaos/core";

import { createExperienceSyncPlugin, type ForwardedEvent } from "../src/index.js";

interface Received {
  auth: string | undefined;
  body: { schema: string; agent: { id?: string; name?: string }; events: ForwardedEvent[] };
}

let server: Server;
let url = "";
let received: Received[] = [];
let answers: number[] = []; // status codes to answer with, in order; then 200

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let data = "";
    req.on("data", (c) => (data += c));
    req.on("end", () => resolve(data));
  });
}

before(async () => {
  server = createServer(async (req, res) => {
    const body = await readBody(req);
    if (req.url === "/v1/elizaos/search") {
      // The recall provider asks here whenever the runtime composes state (processActions does).
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ hits: [] }));
      return;
    }
    const status = answers.shift() ?? 200;
    if (status === 200) received.push({ auth: req.headers.authorization, body: JSON.parse(body) });
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(status === 200 ? { received: 1 } : { error: { status } }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => {
  server.closeAllConnections();
  server.close();
});

beforeEach(() => {
  received = [];
  answers = [];
});

function memoryAdapter(store: Array<[string, Memory]>): IDatabaseAdapter {
  const known: Record<string, unknown> = {
    async createMemory(memory: Memory, table: string) {
      store.push([table, memory]);
      return (memory.id ?? randomUUID()) as UUID;
    },
  };
  // Everything else the runtime may call answers "nothing here".
  return new Proxy(known, {
    get: (target, prop) =>
      prop in target ? target[prop as string] : prop === "then" ? undefined : async () => undefined,
  }) as unknown as IDatabaseAdapter;
}

const noop = async () => true;

function action(name: string, handler: Action["handler"]): Action {
  return { name, description: name, similes: [], examples: [], validate: noop, handler };
}

async function runtimeWith(options: Parameters<typeof createExperienceSyncPlugin>[0] = {}) {
  const stored: Array<[string, Memory]> = [];
  const runtime = new AgentRuntime({
    character: { name: "Ada", bio: "test agent" },
    adapter: memoryAdapter(stored),
  });
  const plugin = createExperienceSyncPlugin({
    bridgeUrl: url,
    secret: "s3cret",
    batchSize: 100,
    flushIntervalMs: 60_000, // tests flush explicitly
    onError: () => {},
    ...options,
  });
  await runtime.registerPlugin(plugin);
  await runtime.registerPlugin({
    name: "tools",
    description: "test actions",
    actions: [
      action("LOOKUP_ORDER", async () => ({ success: true, text: "order 42 shipped" })),
      action("REFUND", async () => ({ success: false, text: "refund refused", error: "over limit" })),
      action("LEGACY_FAIL", async () => ({ success: false, error: "no route" }) as never),
      action("EXPLODE", async () => {
        throw new Error("kaboom");
      }),
    ],
  });
  const forwarder = plugin.forwarderFor(runtime);
  assert.ok(forwarder, "the plugin initialised a forwarder for the runtime");
  return { runtime, plugin, forwarder, stored };
}

function message(text: string, extra: Partial<Memory> = {}): Memory {
  return {
    id: randomUUID() as UUID,
    entityId: randomUUID() as UUID,
    roomId: randomUUID() as UUID,
    createdAt: Date.now(),
    content: { text, source: "discord" },
    ...extra,
  };
}

async function runActions(runtime: AgentRuntime, names: string[]) {
  const msg = message("please check my order");
  const response = message("", { content: { text: "", actions: names } });
  await runtime.processActions(msg, [response], { values: {}, data: {}, text: "" });
}

const events = () => received.flatMap((r) => r.body.events);

describe("ElizaOS plugin in a real AgentRuntime", () => {
  it("forwards action outcomes from processActions, success and failure", async () => {
    const { runtime, forwarder } = await runtimeWith();
    await runActions(runtime, ["LOOKUP_ORDER", "REFUND", "LEGACY_FAIL"]);
    await assert.rejects(runActions(runtime, ["EXPLODE"]), /kaboom/);
    assert.equal(await forwarder.stop(), true);

    const actions = events().filter((e) => e.type === "ACTION_COMPLETED");
    assert.deepEqual(
      actions.map((e) => [e.action, e.success]),
      [
        ["LOOKUP_ORDER", true],
        ["REFUND", false],
        ["LEGACY_FAIL", false],
        ["EXPLODE", false],
      ],
    );
    assert.equal(actions[1].error, "over limit");
    assert.equal(actions[2].error, "no route");
    assert.match(String(actions[3].error), /kaboom/);
    // action_result memories go to the "messages" table, which is not forwarded
    assert.equal(events().filter((e) => e.type === "MEMORY_CREATED").length, 0);
    const first = received[0];
    assert.equal(first.auth, "Bearer s3cret");
    assert.equal(first.body.schema, "experience-sync-elizaos/1");
    assert.equal(first.body.agent.name, "Ada");
    assert.equal(first.body.agent.id, runtime.agentId);
  });

  it("forwards messages without their text, runs, evaluator findings and new memories", async () => {
    const { runtime, forwarder } = await runtimeWith();
    const inbound = message("my password is hunter2, api_key=abcdef123456");
    await runtime.emitEvent(EventType.MESSAGE_RECEIVED, { message: inbound, source: "discord" });
    await runtime.emitEvent(EventType.MESSAGE_SENT, {
      message: message("Your order shipped.", { content: { text: "Your order shipped.", actions: ["REPLY"] } }),
      source: "discord",
    });
    await runtime.emitEvent(EventType.EVALUATOR_COMPLETED, {
      evaluatorId: randomUUID(),
      evaluatorName: "REFLECTION",
      completed: true,
      facts: ["Order 42 ships from the Lyon warehouse"],
    });
    const runId = randomUUID();
    await runtime.emitEvent(EventType.RUN_ENDED, {
      runId, messageId: inbound.id, roomId: inbound.roomId, entityId: inbound.entityId,
      startTime: Date.now() - 1500, endTime: Date.now(), duration: 1500, status: "completed",
    });
    await runtime.createMemory(message("Customers in Lyon prefer morning delivery"), "memories");
    await runtime.createMemory(message("Ada likes tea"), "facts");
    await runtime.createMemory(message("raw chat line"), "messages");
    assert.equal(await forwarder.stop(), true);

    const byType = (t: string) => events().filter((e) => e.type === t);
    const [rec] = byType("MESSAGE_RECEIVED");
    assert.equal(rec.id, `MESSAGE_RECEIVED:${inbound.id}`);
    assert.equal(rec.textLength, inbound.content.text!.length);
    assert.equal(rec.source, "discord");
    assert.equal("text" in rec, false, "message text is not forwarded by default");
    assert.ok(!JSON.stringify(received).includes("hunter2"));
    assert.deepEqual(byType("MESSAGE_SENT")[0].actions, ["REPLY"]);
    assert.deepEqual(byType("EVALUATOR_COMPLETED")[0].facts, ["Order 42 ships from the Lyon warehouse"]);
    const [run] = byType("RUN_ENDED");
    assert.equal(run.runId, runId);
    assert.equal(run.durationMs, 1500);
    assert.deepEqual(
      byType("MEMORY_CREATED").map((e) => [e.table, e.text]),
      [
        ["memories", "Customers in Lyon prefer morning delivery"],
        ["facts", "Ada likes tea"],
      ],
    );
  });

  it("forwards message text only when asked, and lets a redact hook change or drop events", async () => {
    const { runtime, forwarder } = await runtimeWith({
      includeMessageText: true,
      redact: (e) => (e.type === "MESSAGE_SENT" ? null : { ...e, source: "redacted" }),
    });
    await runtime.emitEvent(EventType.MESSAGE_RECEIVED, { message: message("hello there"), source: "x" });
    await runtime.emitEvent(EventType.MESSAGE_SENT, { message: message("hi"), source: "x" });
    assert.equal(await forwarder.stop(), true);
    assert.deepEqual(events().map((e) => [e.type, e.text, e.source]), [["MESSAGE_RECEIVED", "hello there", "redacted"]]);
  });

  it("sends in batches of batchSize, early when a batch fills", async () => {
    const { runtime, forwarder } = await runtimeWith({ batchSize: 3 });
    for (let i = 0; i < 7; i++) {
      await runtime.emitEvent(EventType.MESSAGE_RECEIVED, { message: message(`m${i}`), source: "x" });
    }
    assert.equal(await forwarder.stop(), true);
    assert.deepEqual(received.map((r) => r.body.events.length), [3, 3, 1]);
    assert.equal(forwarder.stats.sent, 7);
  });

  it("keeps a batch the bridge could not take and retries it; drops one it refuses", async () => {
    const { runtime, forwarder } = await runtimeWith();
    answers = [503];
    await runtime.emitEvent(EventType.MESSAGE_RECEIVED, { message: message("a"), source: "x" });
    assert.equal(await forwarder.flush(), false, "first attempt is answered 503");
    assert.equal(forwarder.stats.queued, 1);
    assert.equal(await forwarder.flush(), true, "forced flush retries at once");
    assert.equal(events().length, 1);
    assert.equal(forwarder.stats.retries, 1);

    answers = [401];
    await runtime.emitEvent(EventType.MESSAGE_RECEIVED, { message: message("b"), source: "x" });
    assert.equal(await forwarder.stop(), true);
    assert.equal(forwarder.stats.dropped.refused, 1);
    assert.equal(events().length, 1);
  });

  it("holds events while the bridge is down, dropping the oldest past maxQueue", async () => {
    const { runtime, forwarder } = await runtimeWith({ bridgeUrl: "http://127.0.0.1:9", maxQueue: 5 });
    for (let i = 0; i < 8; i++) {
      await runtime.emitEvent(EventType.MESSAGE_RECEIVED, { message: message(`m${i}`), source: "x" });
    }
    assert.equal(await forwarder.flush(), false);
    assert.equal(forwarder.stats.queued, 5);
    assert.equal(forwarder.stats.dropped.queueFull, 3);
    await forwarder.stop(100);
  });

  it("reads its configuration from the character's settings", async () => {
    const runtime = new AgentRuntime({
      character: {
        name: "Cy",
        bio: "x",
        secrets: { EXPERIENCE_SYNC_BRIDGE_SECRET: "from-settings" },
        settings: { EXPERIENCE_SYNC_BRIDGE_URL: url, EXPERIENCE_SYNC_BATCH_SIZE: "2", EXPERIENCE_SYNC_MEMORY_TABLES: "notes" },
      },
      adapter: memoryAdapter([]),
    });
    const plugin = createExperienceSyncPlugin();
    await runtime.registerPlugin(plugin);
    await runtime.createMemory(message("kept"), "notes");
    await runtime.createMemory(message("not kept"), "facts");
    await runtime.emitEvent(EventType.MESSAGE_RECEIVED, { message: message("x"), source: "x" });
    assert.equal(await plugin.forwarderFor(runtime)!.stop(), true);
    assert.deepEqual(received.map((r) => [r.auth, r.body.events.length]), [["Bearer from-settings", 2]]);
    assert.deepEqual(events().map((e) => e.text ?? e.type), ["kept", "MESSAGE_RECEIVED"]);
  });

  it("delivers what is queued when the runtime stops", async () => {
    const { runtime, forwarder } = await runtimeWith();
    await runtime.emitEvent(EventType.MESSAGE_RECEIVED, { message: message("x"), source: "x" });
    assert.equal(events().length, 0, "nothing sent before the interval or a full batch");
    await runtime.stop();
    assert.equal(events().length, 1);
    assert.equal(forwarder.stats.queued, 0);
  });

  it("forwards nothing, and does not break the agent, without a secret", async () => {
    const warnings: string[] = [];
    const runtime = new AgentRuntime({ character: { name: "Bo", bio: "x" }, adapter: memoryAdapter([]) });
    const plugin = createExperienceSyncPlugin({ bridgeUrl: url, onError: (m) => warnings.push(m) });
    await runtime.registerPlugin(plugin);
    await runtime.emitEvent(EventType.MESSAGE_RECEIVED, { message: message("x"), source: "x" });
    assert.equal(plugin.forwarderFor(runtime), undefined);
    assert.match(warnings[0], /EXPERIENCE_SYNC_BRIDGE_SECRET/);
  });
});
