/**
 * The recall provider inside a real @elizaos/core AgentRuntime: the runtime's
 * own composeState runs it, against a loopback HTTP server standing in for
 * the bridge's search route (the Python tests drive the real bridge).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";

import { AgentRuntime, type IDatabaseAdapter, type Memory, type UUID } from "@elizaos/core";

import {
  createExperienceSyncPlugin,
  RECALL_PROVIDER_NAME,
  RECALL_VALUE_KEY,
  type RecallHit,
  renderRecall,
} from "../src/index.js";

interface Asked {
  path: string | undefined;
  auth: string | undefined;
  body: { q: string; k: number; kinds: string[] };
}

let server: Server;
let url = "";
let asked: Asked[] = [];
let answer: (res: ServerResponse) => void;

const HITS: RecallHit[] = [
  {
    kind: "memory", id: "mem-1f2e", score: 0.91, text: "The payments API is down every Sunday night; retry on Monday",
    provenance: { source_instances: ["instance-a"], verifications: 0, status: null, local: false }, rankers: ["bm25"],
  },
  {
    kind: "knowledge", id: "kn-77ab", score: 0.52, text: "refund delay: Refunds take five business days",
    provenance: { source_instances: ["instance-a", "instance-b"], verifications: 2, status: "integrated", local: false },
    rankers: ["bm25"],
  },
  {
    kind: "skill", id: "sk-9", score: 0.3, text: "web_search", line: "web_search: succeeded in 92% of 25 uses across the fleet",
    provenance: { source_instances: ["instance-a"], verifications: 0, status: null, local: false }, rankers: ["bm25"],
  },
];

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

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
    asked.push({ path: req.url, auth: req.headers.authorization, body: JSON.parse(body || "{}") });
    answer(res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => {
  server.closeAllConnections();
  server.close();
});

beforeEach(() => {
  asked = [];
  answer = (res) => json(res, 200, { instance_id: "eliza", query: "x", hits: HITS });
});

function memoryAdapter(): IDatabaseAdapter {
  return new Proxy({} as Record<string, unknown>, {
    get: (target, prop) =>
      prop in target ? target[prop as string] : prop === "then" ? undefined : async () => undefined,
  }) as unknown as IDatabaseAdapter;
}

async function runtimeWith(settings: Record<string, string> = {}, options = {}) {
  const errors: string[] = [];
  const runtime = new AgentRuntime({
    character: { name: "Ada", bio: "test agent", settings: { EXPERIENCE_SYNC_BRIDGE_URL: url, ...settings },
                 secrets: { EXPERIENCE_SYNC_BRIDGE_SECRET: "s3cret" } },
    adapter: memoryAdapter(),
  });
  const plugin = createExperienceSyncPlugin({ onError: (m) => errors.push(m), flushIntervalMs: 60_000, ...options });
  await runtime.registerPlugin(plugin);
  return { runtime, plugin, errors };
}

function message(text: string): Memory {
  return {
    id: randomUUID() as UUID, entityId: randomUUID() as UUID, roomId: randomUUID() as UUID,
    createdAt: Date.now(), content: { text, source: "discord" },
  };
}

type ProviderResults = Record<string, { text?: string; values?: Record<string, unknown>; data?: { hits?: RecallHit[] } }>;
const recalled = (state: { data: Record<string, unknown> }) =>
  (state.data.providers as ProviderResults)[RECALL_PROVIDER_NAME];

describe("recall provider in a real AgentRuntime", () => {
  it("puts the bridge's hits into the composed state: prompt lines in text, hits in data", async () => {
    const { runtime, plugin } = await runtimeWith();
    assert.deepEqual(plugin.providers?.map((p) => p.name), [RECALL_PROVIDER_NAME]);
    const msg = message("  is the payments API up on Sunday?  ");
    const state = await runtime.composeState(msg);

    assert.equal(asked.length, 1);
    assert.equal(asked[0].path, "/v1/elizaos/search");
    assert.equal(asked[0].auth, "Bearer s3cret");
    assert.deepEqual(asked[0].body, { q: "is the payments API up on Sunday?", k: 5, kinds: ["memory", "knowledge", "skill"] });
    const expected = [
      "Relevant things learned across the fleet:",
      "- The payments API is down every Sunday night; retry on Monday",
      "- refund delay: Refunds take five business days",
      "- web_search: succeeded in 92% of 25 uses across the fleet",
    ].join("\n");
    assert.equal(state.text, expected, "the composed prompt text is the rendered block");
    assert.equal(state.values[RECALL_VALUE_KEY], expected);
    assert.deepEqual(recalled(state).data?.hits, HITS);
    for (const leak of ["mem-1f2e", "kn-77ab", "instance-a", "0.91", "bm25"]) {
      assert.ok(!state.text.includes(leak), `no ${leak} in the prompt text`);
    }
  });

  it("takes k, kinds and the off switch from the agent's settings", async () => {
    const { runtime } = await runtimeWith({ EXPERIENCE_SYNC_RECALL_K: "3", EXPERIENCE_SYNC_RECALL_KINDS: "memory, skill" });
    await runtime.composeState(message("payments"));
    assert.deepEqual([asked[0].body.k, asked[0].body.kinds], [3, ["memory", "skill"]]);

    asked = [];
    const off = await runtimeWith({ EXPERIENCE_SYNC_RECALL: "false" });
    const state = await off.runtime.composeState(message("payments"));
    assert.equal(asked.length, 0, "no request when recall is off");
    assert.equal(state.text, "");
    assert.deepEqual(recalled(state).data?.hits, []);
  });

  it("asks once per message although composeState runs several times, and not for an empty message", async () => {
    const { runtime, plugin } = await runtimeWith();
    const msg = message("payments");
    await runtime.composeState(msg);
    await runtime.composeState(msg, null, false, true);
    assert.equal(asked.length, 1);
    assert.equal(plugin.recallProvider.stats.cached, 1);
    const state = await runtime.composeState(message("   "));
    assert.equal(asked.length, 1);
    assert.equal(state.text, "");
  });

  for (const [name, setUp] of [
    ["answers 500", () => (answer = (res) => json(res, 500, { error: { status: 500 } }))],
    ["refuses the secret (401)", () => (answer = (res) => json(res, 401, { error: { status: 401 } }))],
    ["answers garbage", () => (answer = (res) => res.end("not json"))],
    ["is too slow", () => (answer = (res) => setTimeout(() => json(res, 200, { hits: HITS }), 1500).unref())],
  ] as const) {
    it(`gives empty text and reports it when the bridge ${name}`, async () => {
      setUp();
      const { runtime, errors } = await runtimeWith({ EXPERIENCE_SYNC_RECALL_TIMEOUT_MS: "300" });
      const state = await runtime.composeState(message("payments"));
      assert.equal(state.text, "");
      assert.equal(state.values[RECALL_VALUE_KEY], "");
      assert.equal(errors.length, 1);
      assert.match(errors[0], /recall failed/);
    });
  }

  it("gives empty text when the bridge is down, reports the same failure once, and retries", async () => {
    const { runtime, plugin, errors } = await runtimeWith({}, { bridgeUrl: "http://127.0.0.1:9" });
    const msg = message("payments");
    for (let i = 0; i < 3; i++) assert.equal((await runtime.composeState(msg, null, false, true)).text, "");
    assert.equal(plugin.recallProvider.stats.failures, 3, "a failure is not cached");
    assert.equal(errors.length, 1);
  });

  it("recalls nothing, without breaking the agent, when the plugin has no secret", async () => {
    const errors: string[] = [];
    const runtime = new AgentRuntime({ character: { name: "Bo", bio: "x" }, adapter: memoryAdapter() });
    await runtime.registerPlugin(createExperienceSyncPlugin({ bridgeUrl: url, onError: (m) => errors.push(m) }));
    const state = await runtime.composeState(message("payments"));
    assert.equal(state.text, "");
    assert.equal(asked.length, 0);
    assert.match(errors[0], /EXPERIENCE_SYNC_BRIDGE_SECRET/);
  });
});

describe("renderRecall", () => {
  it("drops repeats and stops at maxChars; nothing for no hits", () => {
    const twice = [HITS[0], { ...HITS[0], text: "the payments  API is down every Sunday night; retry on MONDAY" }, HITS[1]];
    assert.equal(renderRecall(twice, "H:", 4000).split("\n").length, 3);
    assert.equal(renderRecall(twice, "H:", 70), `H:\n- ${HITS[0].text}`);
    assert.equal(renderRecall([], "H:", 4000), "");
  });
});
