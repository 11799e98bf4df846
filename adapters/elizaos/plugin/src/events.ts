/**
 * Turning ElizaOS event payloads into the small forwarded events the bridge
 * maps (see the adapter README for the field list). No prompt, no state, no
 * model output and no message text (unless `includeMessageText`) leaves here.
 */
import type {
  ActionEventPayload,
  EvaluatorEventPayload,
  Memory,
  MessagePayload,
  RunEventPayload,
} from "@elizaos/core";

/** One event as posted to the bridge. */
export interface ForwardedEvent {
  /** Unique per event; the bridge de-duplicates retried batches on it. */
  id: string;
  type:
    | "MESSAGE_RECEIVED"
    | "MESSAGE_SENT"
    | "ACTION_COMPLETED"
    | "EVALUATOR_COMPLETED"
    | "RUN_ENDED"
    | "MEMORY_CREATED";
  /** Epoch milliseconds. */
  timestamp: number;
  roomId?: string;
  runId?: string;
  source?: string;
  [field: string]: unknown;
}

/** What the extractors keep. */
export interface ExtractOptions {
  /** Forward message text (off by default: messages may carry anything). */
  includeMessageText: boolean;
  /** Longest text kept from any field. */
  maxTextLength: number;
}

function newId(): string {
  return globalThis.crypto.randomUUID();
}

function clip(text: unknown, max: number): string | undefined {
  if (typeof text !== "string") return undefined;
  const t = text.trim();
  if (!t) return undefined;
  return t.length > max ? `${t.slice(0, Math.max(max - 1, 0))}\u2026` : t;
}

function errorText(error: unknown, max: number): string | undefined {
  if (error === undefined || error === null || error === false) return undefined;
  if (error instanceof Error) return clip(`${error.name}: ${error.message}`, max);
  if (typeof error === "string") return clip(error, max);
  if (typeof error === "object" && "message" in error) {
    return clip(String((error as { message: unknown }).message), max);
  }
  return clip(String(error), max);
}

function str(value: unknown): string | undefined {
  return typeof value === "string" && value ? value : undefined;
}

/** MESSAGE_RECEIVED / MESSAGE_SENT: who, where and how long; not what. */
export function messageEvent(
  type: "MESSAGE_RECEIVED" | "MESSAGE_SENT",
  payload: MessagePayload,
  opts: ExtractOptions,
): ForwardedEvent {
  const message = payload.message ?? ({} as Memory);
  const content = message.content ?? {};
  const text = typeof content.text === "string" ? content.text : "";
  const event: ForwardedEvent = {
    id: message.id ? `${type}:${message.id}` : `${type}:${newId()}`,
    type,
    timestamp: typeof message.createdAt === "number" ? message.createdAt : Date.now(),
    roomId: str(message.roomId),
    source: str(content.source) ?? str(payload.source),
    textLength: text.length,
  };
  if (Array.isArray(content.actions) && content.actions.length) {
    event.actions = content.actions.filter((a) => typeof a === "string").slice(0, 20);
  }
  if (str(content.channelType)) event.channelType = content.channelType;
  if (opts.includeMessageText && text) event.text = clip(text, opts.maxTextLength);
  return event;
}

/** ACTION_COMPLETED: the action's name and whether it worked. */
export function actionEvent(payload: ActionEventPayload, opts: ExtractOptions): ForwardedEvent | null {
  const content = (payload.content ?? {}) as Record<string, unknown>;
  const actions = Array.isArray(content.actions) ? content.actions : [];
  const action = str(actions[0]);
  if (!action) return null;
  const result = (content.actionResult ?? undefined) as
    | { success?: unknown; error?: unknown; data?: { legacyResult?: { success?: unknown; error?: unknown } } }
    | undefined;
  const status = str(content.actionStatus);
  // ElizaOS 1.7 treats a returned object without text/values/data as a legacy
  // result and reports it as a success: look inside for the handler's verdict.
  const legacy = result?.data?.legacyResult;
  const verdict = legacy && typeof legacy === "object" ? legacy : result;
  const success =
    typeof verdict?.success === "boolean" ? verdict.success : status !== "failed";
  const actionId = str(content.actionId) ?? str(payload.messageId);
  const event: ForwardedEvent = {
    id: `ACTION_COMPLETED:${actionId ?? newId()}`,
    type: "ACTION_COMPLETED",
    timestamp: Date.now(),
    roomId: str(payload.roomId),
    runId: str(content.runId),
    source: str(content.source) ?? str(payload.source),
    action,
    success,
    status: status ?? (success ? "completed" : "failed"),
  };
  const error = errorText(verdict?.error, 500);
  if (!success && error) event.error = error;
  return event;
}

/** An action whose handler threw: ElizaOS emits no ACTION_COMPLETED for it. */
export function actionThrewEvent(action: string, roomId: unknown, error: unknown): ForwardedEvent {
  return {
    id: `ACTION_COMPLETED:${newId()}`,
    type: "ACTION_COMPLETED",
    timestamp: Date.now(),
    roomId: str(roomId),
    action,
    success: false,
    status: "failed",
    error: errorText(error, 500),
  };
}

/**
 * EVALUATOR_COMPLETED: name and outcome; `facts` (string[]) and `summary`
 * (string) when the emitter adds them to the payload (ElizaOS passes extra
 * payload fields through).
 */
export function evaluatorEvent(
  payload: EvaluatorEventPayload & { facts?: unknown; summary?: unknown; roomId?: unknown },
  opts: ExtractOptions,
): ForwardedEvent {
  const event: ForwardedEvent = {
    id: `EVALUATOR_COMPLETED:${str(payload.evaluatorId) ?? "x"}:${payload.startTime ?? ""}:${newId()}`,
    type: "EVALUATOR_COMPLETED",
    timestamp: Date.now(),
    roomId: str(payload.roomId),
    source: str(payload.source),
    evaluator: str(payload.evaluatorName) ?? "evaluator",
    completed: payload.completed !== false && !payload.error,
  };
  const error = errorText(payload.error, 500);
  if (error) event.error = error;
  if (Array.isArray(payload.facts)) {
    const facts = payload.facts
      .map((f) => clip(f, opts.maxTextLength))
      .filter((f): f is string => Boolean(f))
      .slice(0, 50);
    if (facts.length) event.facts = facts;
  }
  const summary = clip(payload.summary, opts.maxTextLength);
  if (summary) event.summary = summary;
  return event;
}

/** RUN_ENDED: status, duration and error of a message-handling run. */
export function runEvent(payload: RunEventPayload): ForwardedEvent {
  const event: ForwardedEvent = {
    id: `RUN_ENDED:${str(payload.runId) ?? newId()}`,
    type: "RUN_ENDED",
    timestamp: typeof payload.endTime === "number" ? payload.endTime : Date.now(),
    roomId: str(payload.roomId),
    runId: str(payload.runId),
    source: str(payload.source),
    status: str(payload.status) ?? "completed",
  };
  if (typeof payload.duration === "number") event.durationMs = payload.duration;
  const error = errorText(payload.error, 500);
  if (error) event.error = error;
  return event;
}

/** A memory created in one of the forwarded tables (`facts`, `memories` by default). */
export function memoryEvent(memory: Memory, table: string, opts: ExtractOptions): ForwardedEvent | null {
  const text = clip(memory?.content?.text, opts.maxTextLength);
  if (!text) return null;
  const event: ForwardedEvent = {
    id: `MEMORY_CREATED:${str(memory.id) ?? newId()}`,
    type: "MEMORY_CREATED",
    timestamp: typeof memory.createdAt === "number" ? memory.createdAt : Date.now(),
    roomId: str(memory.roomId),
    table,
    text,
  };
  const tags = (memory.metadata as { tags?: unknown } | undefined)?.tags;
  if (Array.isArray(tags)) {
    event.tags = tags.filter((t): t is string => typeof t === "string").slice(0, 10);
  }
  return event;
}
