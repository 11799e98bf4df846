/**
 * The read path: a Provider that asks the bridge what the fleet learned about
 * the incoming message and puts it into the composed state.
 *
 * The bridge answers from its instance's local replica (`POST
 * /v1/elizaos/search`), so this works while the hub is down. A bridge that
 * is down, slow or refusing never breaks the reply: the provider then gives
 * empty text and reports the problem.
 */
import type { IAgentRuntime, Memory, Provider, ProviderResult } from "@elizaos/core";

/** Name of the provider in the runtime (and in `state.data.providers`). */
export const RECALL_PROVIDER_NAME = "EXPERIENCE_SYNC_RECALL";
/** The state value holding the rendered block, for templates: `{{experienceSyncRecall}}`. */
export const RECALL_VALUE_KEY = "experienceSyncRecall";
/** Longest query sent (the bridge refuses longer ones). */
export const MAX_QUERY_CHARS = 2000;

/** One hit as the bridge answers it. */
export interface RecallHit {
  kind: "memory" | "knowledge" | "skill";
  id: string;
  score: number;
  /** The item's own words. */
  text: string;
  /** What a prompt shows: the text, or for a skill its fleet-wide reliability. */
  line?: string;
  provenance: {
    source_instances: string[];
    verifications: number;
    status: string | null;
    local: boolean;
  };
  rankers: string[];
}

export interface RecallConfig {
  bridgeUrl: string;
  secret: string;
  /** Hits asked for (1-100). */
  k: number;
  /** Kinds searched: memory, knowledge, skill. */
  kinds: string[];
  /** Per-request timeout in milliseconds. */
  timeoutMs: number;
  /** First line of the rendered block. */
  header: string;
  /** Longest rendered block. */
  maxChars: number;
  fetch?: typeof fetch;
}

/** What the bridge answered for `query`; throws on any failure (network, timeout, non-2xx, bad body). */
export async function searchBridge(config: RecallConfig, query: string): Promise<RecallHit[]> {
  const doFetch = config.fetch ?? globalThis.fetch;
  const url = `${config.bridgeUrl.replace(/\/+$/, "")}/v1/elizaos/search`;
  const res = await doFetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${config.secret}` },
    body: JSON.stringify({ q: query, k: config.k, kinds: config.kinds }),
    signal: AbortSignal.timeout(config.timeoutMs),
  });
  const body = await res.text();
  if (!res.ok) throw new Error(`bridge answered ${res.status}: ${body.slice(0, 300)}`);
  const parsed = JSON.parse(body) as { hits?: unknown };
  if (!Array.isArray(parsed.hits)) throw new Error("bridge answer has no hits");
  return parsed.hits.filter(
    (h): h is RecallHit => typeof h === "object" && h !== null && typeof (h as RecallHit).text === "string",
  );
}

/** Hits as a bulleted block (the prompt lines only: no ids, scores or sources); "" when none. */
export function renderRecall(hits: RecallHit[], header: string, maxChars: number): string {
  const lines: string[] = [];
  const seen = new Set<string>();
  let size = header.length;
  for (const hit of hits) {
    const text = (hit.line ?? hit.text).split(/\s+/).filter(Boolean).join(" ");
    const key = text.toLowerCase();
    if (!text || seen.has(key)) continue;
    const line = `- ${text}`;
    if (lines.length && size + line.length + 1 > maxChars) break;
    seen.add(key);
    lines.push(line);
    size += line.length + 1;
  }
  if (!lines.length) return "";
  return [header, ...lines].filter(Boolean).join("\n");
}

/** The query for a message: its text, trimmed and clipped; undefined when there is none. */
export function queryOf(message: Memory): string | undefined {
  const text = typeof message?.content?.text === "string" ? message.content.text.trim() : "";
  return text ? text.slice(0, MAX_QUERY_CHARS) : undefined;
}

const EMPTY = (): ProviderResult => ({ text: "", values: { [RECALL_VALUE_KEY]: "" }, data: { hits: [] } });
/** composeState runs every provider on each call, several times per reply: answers are kept briefly. */
const CACHE_TTL_MS = 30_000;
const CACHE_SIZE = 100;
/** The same failure is reported at most this often. */
const REPORT_EVERY_MS = 60_000;

/**
 * The provider. `configFor(runtime)` gives the agent's recall settings, or
 * undefined when recall is off or the plugin is not configured there.
 */
export function createRecallProvider(
  configFor: (runtime: IAgentRuntime) => RecallConfig | undefined,
  report: (message: string) => void,
): Provider & { stats: { requests: number; failures: number; cached: number } } {
  const cache = new Map<string, { at: number; result: Promise<RecallHit[]> }>();
  const reported = new Map<string, number>();
  const stats = { requests: 0, failures: 0, cached: 0 };

  function lookup(config: RecallConfig, key: string, query: string): Promise<RecallHit[]> {
    const now = Date.now();
    const hit = cache.get(key);
    if (hit && now - hit.at < CACHE_TTL_MS) {
      stats.cached += 1;
      return hit.result;
    }
    stats.requests += 1;
    const result = searchBridge(config, query);
    cache.set(key, { at: now, result });
    // A failure is not kept: the next composeState asks again.
    result.catch(() => cache.delete(key));
    while (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value as string);
    return result;
  }

  function fail(err: unknown): void {
    stats.failures += 1;
    const message = `recall failed (the reply goes on without it): ${err instanceof Error ? err.message : String(err)}`;
    const now = Date.now();
    if (now - (reported.get(message) ?? 0) < REPORT_EVERY_MS) return;
    reported.set(message, now);
    if (reported.size > CACHE_SIZE) reported.delete(reported.keys().next().value as string);
    report(message);
  }

  return {
    name: RECALL_PROVIDER_NAME,
    description:
      "What the agent's fleet learned (merged memories, integrated knowledge, tool reliability) that is relevant to the message",
    stats,
    get: async (runtime: IAgentRuntime, message: Memory): Promise<ProviderResult> => {
      // composeState has no error handling of its own: this must never throw.
      try {
        const config = configFor(runtime);
        const query = config && queryOf(message);
        if (!config || !query) return EMPTY();
        const key = `${runtime.agentId}:${message.id ?? ""}:${config.k}:${config.kinds.join(",")}:${query}`;
        const hits = await lookup(config, key, query);
        const text = renderRecall(hits, config.header, config.maxChars);
        return { text, values: { [RECALL_VALUE_KEY]: text }, data: { hits, query } };
      } catch (err) {
        fail(err);
        return EMPTY();
      }
    },
  };
}
