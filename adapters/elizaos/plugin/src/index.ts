/**
 * @experience-sync/elizaos-plugin: forwards an ElizaOS agent's experiences
 * (messages, action outcomes, evaluator findings, runs, new memories) to the
 * experience-sync ElizaOS bridge, which syncs them to the source agent, and
 * reads back what the fleet learned: the EXPERIENCE_SYNC_RECALL provider puts
 * the merged memories, integrated knowledge and tool reliability relevant to
 * each incoming message into the composed state.
 *
 * ```ts
 * import { experienceSyncPlugin } from "@experience-sync/elizaos-plugin";
 * // in code (a ProjectAgent, or new AgentRuntime({ character, plugins })):
 * export const agent = { character, plugins: [experienceSyncPlugin] };
 * // or in a character, by package name: plugins: ["@experience-sync/elizaos-plugin"]
 * // settings: EXPERIENCE_SYNC_BRIDGE_URL, EXPERIENCE_SYNC_BRIDGE_SECRET
 * // recall: EXPERIENCE_SYNC_RECALL (default true), EXPERIENCE_SYNC_RECALL_K (5)
 * ```
 */
import {
  EventType,
  type ActionEventPayload,
  type EvaluatorEventPayload,
  type IAgentRuntime,
  type Memory,
  type MessagePayload,
  type Action,
  type Plugin,
  type PluginEvents,
  type RunEventPayload,
  type UUID,
} from "@elizaos/core";

import {
  actionEvent,
  actionThrewEvent,
  evaluatorEvent,
  type ExtractOptions,
  type ForwardedEvent,
  memoryEvent,
  messageEvent,
  runEvent,
} from "./events.js";
import { Forwarder, type ForwarderOptions } from "./forwarder.js";
import { createRecallProvider, type RecallConfig } from "./recall.js";

export { type ForwardedEvent } from "./events.js";
export { Forwarder, type ForwarderOptions, type ForwarderStats, WIRE_SCHEMA } from "./forwarder.js";
export {
  RECALL_PROVIDER_NAME,
  RECALL_VALUE_KEY,
  type RecallConfig,
  type RecallHit,
  renderRecall,
  searchBridge,
} from "./recall.js";

/** First line of the block the recall provider puts into the prompt state. */
export const DEFAULT_RECALL_HEADER = "Relevant things learned across the fleet:";
/**
 * What the provider recalls by default: merged memories, integrated knowledge
 * and skills (a skill is one line on its fleet-wide success rate, so a tool
 * that fails across the fleet is a lesson in the prompt, as with the CrewAI
 * and LangGraph read paths).
 */
export const DEFAULT_RECALL_KINDS: readonly string[] = ["memory", "knowledge", "skill"];

export interface ExperienceSyncPluginOptions {
  /** Bridge base URL. Setting: EXPERIENCE_SYNC_BRIDGE_URL (default http://127.0.0.1:7422). */
  bridgeUrl?: string;
  /** Bearer secret of the bridge. Setting: EXPERIENCE_SYNC_BRIDGE_SECRET (required). */
  secret?: string;
  /** Events per POST. Setting: EXPERIENCE_SYNC_BATCH_SIZE (default 50). */
  batchSize?: number;
  /** Send interval in ms. Setting: EXPERIENCE_SYNC_FLUSH_INTERVAL_MS (default 2000). */
  flushIntervalMs?: number;
  /** Events held while the bridge is down (default 10000). */
  maxQueue?: number;
  /** Memory tables whose new memories are forwarded. Setting: EXPERIENCE_SYNC_MEMORY_TABLES (default "facts,memories"). */
  memoryTables?: string[];
  /** Forward message text. Setting: EXPERIENCE_SYNC_INCLUDE_MESSAGE_TEXT (default false). */
  includeMessageText?: boolean;
  /** Longest text forwarded from any field (default 2000). */
  maxTextLength?: number;
  /** Read back what the fleet learned into the composed state. Setting: EXPERIENCE_SYNC_RECALL (default true). */
  recall?: boolean;
  /** Hits the recall provider asks for (1-100). Setting: EXPERIENCE_SYNC_RECALL_K (default 5). */
  recallK?: number;
  /** Kinds recalled. Setting: EXPERIENCE_SYNC_RECALL_KINDS (default "memory,knowledge,skill": skills are tool reliability lines). */
  recallKinds?: string[];
  /** Recall request timeout in ms. Setting: EXPERIENCE_SYNC_RECALL_TIMEOUT_MS (default 2000). */
  recallTimeoutMs?: number;
  /** First line of the recalled block (default DEFAULT_RECALL_HEADER). */
  recallHeader?: string;
  /** Longest recalled block in characters (default 4000). */
  recallMaxChars?: number;
  /** Redact or drop (return null) an event before it is queued. */
  redact?: (event: ForwardedEvent) => ForwardedEvent | null;
  /** Passed to the forwarder: error reporting and fetch override. */
  onError?: (message: string) => void;
  fetch?: typeof fetch;
}

interface AgentState {
  forwarder: Forwarder;
  extract: ExtractOptions;
  tables: Set<string>;
  redact?: (event: ForwardedEvent) => ForwardedEvent | null;
  /** Undefined when recall is off. */
  recall?: RecallConfig;
}

function setting(runtime: IAgentRuntime, key: string): string | undefined {
  const value = runtime.getSetting?.(key);
  if (value === null || value === undefined || value === "") return undefined;
  return String(value);
}

function numberSetting(runtime: IAgentRuntime, key: string): number | undefined {
  const raw = setting(runtime, key);
  const n = raw === undefined ? NaN : Number(raw);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

function flagSetting(runtime: IAgentRuntime, key: string): boolean | undefined {
  const raw = setting(runtime, key)?.trim().toLowerCase();
  if (raw === undefined) return undefined;
  return !["false", "0", "off", "no"].includes(raw);
}

function listSetting(runtime: IAgentRuntime, key: string): string[] | undefined {
  const list = setting(runtime, key)
    ?.split(",")
    .map((t) => t.trim())
    .filter(Boolean);
  return list?.length ? list : undefined;
}

const WRAPPED = Symbol.for("experience-sync.createMemory");
const WRAPPED_ACTIONS = Symbol.for("experience-sync.actions");
const pendingAtExit = new Set<Forwarder>();
let exitHooked = false;

/** A plugin instance with its own options; `experienceSyncPlugin` reads everything from settings. */
export function createExperienceSyncPlugin(options: ExperienceSyncPluginOptions = {}): Plugin & {
  /** The forwarder serving `runtime`, once the plugin is initialised there. */
  forwarderFor(runtime: IAgentRuntime): Forwarder | undefined;
  /** The recall provider (also in `providers`); `stats` counts its requests, failures and cache hits. */
  recallProvider: ReturnType<typeof createRecallProvider>;
} {
  const agents = new WeakMap<IAgentRuntime, AgentState>();

  function setup(runtime: IAgentRuntime): AgentState | undefined {
    const existing = agents.get(runtime);
    if (existing) return existing;
    const secret = options.secret ?? setting(runtime, "EXPERIENCE_SYNC_BRIDGE_SECRET");
    if (!secret) {
      (options.onError ?? console.warn)(
        "[experience-sync] EXPERIENCE_SYNC_BRIDGE_SECRET is not set: nothing is forwarded",
      );
      return undefined;
    }
    const forwarderOptions: ForwarderOptions = {
      bridgeUrl:
        options.bridgeUrl ?? setting(runtime, "EXPERIENCE_SYNC_BRIDGE_URL") ?? "http://127.0.0.1:7422",
      secret,
      batchSize: options.batchSize ?? numberSetting(runtime, "EXPERIENCE_SYNC_BATCH_SIZE") ?? 50,
      flushIntervalMs:
        options.flushIntervalMs ?? numberSetting(runtime, "EXPERIENCE_SYNC_FLUSH_INTERVAL_MS") ?? 2000,
      maxQueue: options.maxQueue ?? 10_000,
      maxBackoffMs: 30_000,
      requestTimeoutMs: 10_000,
      agent: { id: runtime.agentId, name: runtime.character?.name },
      onError: options.onError,
      fetch: options.fetch,
    };
    const tables = options.memoryTables ?? listSetting(runtime, "EXPERIENCE_SYNC_MEMORY_TABLES") ?? ["facts", "memories"];
    const recallOn = options.recall ?? flagSetting(runtime, "EXPERIENCE_SYNC_RECALL") ?? true;
    const recall: RecallConfig | undefined = recallOn
      ? {
          bridgeUrl: forwarderOptions.bridgeUrl,
          secret,
          k: Math.min(Math.floor(options.recallK ?? numberSetting(runtime, "EXPERIENCE_SYNC_RECALL_K") ?? 5), 100),
          kinds: options.recallKinds ?? listSetting(runtime, "EXPERIENCE_SYNC_RECALL_KINDS") ?? [...DEFAULT_RECALL_KINDS],
          timeoutMs: options.recallTimeoutMs ?? numberSetting(runtime, "EXPERIENCE_SYNC_RECALL_TIMEOUT_MS") ?? 2000,
          header: options.recallHeader ?? DEFAULT_RECALL_HEADER,
          maxChars: options.recallMaxChars ?? 4000,
          fetch: options.fetch,
        }
      : undefined;
    const state: AgentState = {
      forwarder: new Forwarder(forwarderOptions),
      extract: {
        includeMessageText:
          options.includeMessageText ??
          setting(runtime, "EXPERIENCE_SYNC_INCLUDE_MESSAGE_TEXT")?.toLowerCase() === "true",
        maxTextLength: options.maxTextLength ?? 2000,
      },
      tables: new Set(tables),
      redact: options.redact,
      recall,
    };
    agents.set(runtime, state);
    wrapCreateMemory(runtime, state);
    wrapActions(runtime);
    deliverOnStop(runtime, state.forwarder);
    return state;
  }

  function forward(runtime: IAgentRuntime | undefined, make: (s: AgentState) => ForwardedEvent | null): void {
    if (!runtime) return;
    try {
      const state = setup(runtime);
      if (!state) return;
      let event = make(state);
      if (event && state.redact) event = state.redact(event);
      if (event) state.forwarder.push(event);
    } catch (err) {
      // A bug here must never break the agent's own event handling.
      (options.onError ?? console.warn)(`[experience-sync] could not forward an event: ${String(err)}`);
    }
  }

  // ElizaOS 1.7 emits no event for memory creation, so createMemory is wrapped.
  function wrapCreateMemory(runtime: IAgentRuntime, state: AgentState): void {
    const rt = runtime as IAgentRuntime & { [WRAPPED]?: boolean };
    if (rt[WRAPPED] || typeof runtime.createMemory !== "function") return;
    const original = runtime.createMemory.bind(runtime);
    rt.createMemory = async (memory: Memory, tableName: string, unique?: boolean): Promise<UUID> => {
      const id = await original(memory, tableName, unique);
      if (state.tables.has(tableName)) {
        forward(runtime, (s) => memoryEvent({ ...memory, id: memory.id ?? id }, tableName, s.extract));
      }
      return id;
    };
    rt[WRAPPED] = true;
  }

  // An action handler that throws ends processActions before ACTION_COMPLETED
  // is emitted; wrapping the handler is the only way to see that failure. The
  // runtime gets wrapped copies: the user's action objects are not changed.
  function wrapActions(runtime: IAgentRuntime): void {
    const rt = runtime as IAgentRuntime & { [WRAPPED_ACTIONS]?: boolean; actions: Action[] };
    if (rt[WRAPPED_ACTIONS] || !Array.isArray(rt.actions)) return;
    const wrap = (action: Action): Action => {
      const handler = action.handler;
      if (typeof handler !== "function") return action;
      const wrapped: Action["handler"] = async (rtArg, message, ...rest) => {
        try {
          return await handler(rtArg, message, ...rest);
        } catch (err) {
          forward(rtArg, () => actionThrewEvent(action.name, message?.roomId, err));
          throw err;
        }
      };
      return { ...action, handler: wrapped };
    };
    rt.actions.splice(0, rt.actions.length, ...rt.actions.map(wrap));
    if (typeof rt.registerAction === "function") {
      const register = rt.registerAction.bind(rt);
      rt.registerAction = (action: Action) => register(wrap(action));
    }
    rt[WRAPPED_ACTIONS] = true;
  }

  // What is still queued when the agent stops (runtime.stop) or the process
  // runs out of work (beforeExit) is sent then, not lost.
  function deliverOnStop(runtime: IAgentRuntime, forwarder: Forwarder): void {
    const stop = typeof runtime.stop === "function" ? runtime.stop.bind(runtime) : undefined;
    if (stop) {
      runtime.stop = async () => {
        await forwarder.stop(10_000);
        pendingAtExit.delete(forwarder);
        return stop();
      };
    }
    pendingAtExit.add(forwarder);
    if (!exitHooked && typeof process !== "undefined" && typeof process.once === "function") {
      exitHooked = true;
      process.once("beforeExit", () => {
        // One last attempt each; a bridge that is down must not keep the process alive.
        for (const f of pendingAtExit) void f.stop(5_000);
        pendingAtExit.clear();
      });
    }
  }

  const events: PluginEvents = {
    [EventType.MESSAGE_RECEIVED]: [
      async (p: MessagePayload) => forward(p.runtime, (s) => messageEvent("MESSAGE_RECEIVED", p, s.extract)),
    ],
    [EventType.MESSAGE_SENT]: [
      async (p: MessagePayload) => forward(p.runtime, (s) => messageEvent("MESSAGE_SENT", p, s.extract)),
    ],
    [EventType.ACTION_COMPLETED]: [
      async (p: ActionEventPayload) => forward(p.runtime, (s) => actionEvent(p, s.extract)),
    ],
    [EventType.EVALUATOR_COMPLETED]: [
      async (p: EvaluatorEventPayload) => forward(p.runtime, (s) => evaluatorEvent(p, s.extract)),
    ],
    [EventType.RUN_ENDED]: [async (p: RunEventPayload) => forward(p.runtime, () => runEvent(p))],
  };

  const recallProvider = createRecallProvider(
    (runtime) => setup(runtime)?.recall,
    (message) => (options.onError ?? console.warn)(`[experience-sync] ${message}`),
  );

  return {
    name: "experience-sync",
    description:
      "Forwards messages, action outcomes, evaluator findings, runs and new memories to the experience-sync bridge, " +
      "and recalls what the fleet learned into the composed state",
    init: async (_config: Record<string, string>, runtime: IAgentRuntime) => {
      setup(runtime);
    },
    events,
    providers: [recallProvider],
    recallProvider,
    forwarderFor: (runtime: IAgentRuntime) => agents.get(runtime)?.forwarder,
  };
}

/** The plugin configured from the agent's settings (EXPERIENCE_SYNC_BRIDGE_URL, EXPERIENCE_SYNC_BRIDGE_SECRET, ...). */
export const experienceSyncPlugin = createExperienceSyncPlugin();

export default experienceSyncPlugin;
