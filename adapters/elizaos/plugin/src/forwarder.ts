/**
 * Batching and delivery to the bridge. Event handlers only enqueue; a timer
 * (and a full batch) sends, so the agent never waits on the network.
 *
 * Policy: failures that may pass (network errors, 408, 429, 5xx) keep the
 * batch at the head of the queue and retry with exponential backoff; a
 * refusal (401, 403, 413, 422 and other 4xx) drops the batch and counts it.
 * A full queue drops the oldest events and counts them. Delivery is
 * at-least-once; the bridge ignores events it already recorded.
 */
import type { ForwardedEvent } from "./events.js";

/** Wire schema name the bridge expects. */
export const WIRE_SCHEMA = "experience-sync-elizaos/1";

export interface ForwarderOptions {
  /** Bridge base URL, e.g. `http://127.0.0.1:7422`. */
  bridgeUrl: string;
  /** Bearer secret of the bridge. */
  secret: string;
  /** Events per POST (and the queue length that triggers an early send). */
  batchSize: number;
  /** Send at least this often while events wait, in milliseconds. */
  flushIntervalMs: number;
  /** Most events held while the bridge is unreachable; the oldest are dropped past it. */
  maxQueue: number;
  /** Longest backoff between retries, in milliseconds. */
  maxBackoffMs: number;
  /** Per-request timeout, in milliseconds. */
  requestTimeoutMs: number;
  /** The ElizaOS agent the events come from. */
  agent: { id?: string; name?: string };
  /** Called on delivery problems (defaults to console.warn). */
  onError?: (message: string) => void;
  /** fetch to use (tests, proxies); defaults to the global one. */
  fetch?: typeof fetch;
}

export interface ForwarderStats {
  queued: number;
  sent: number;
  batches: number;
  retries: number;
  dropped: { queueFull: number; refused: number };
  lastError?: string;
}

export class Forwarder {
  private readonly opts: ForwarderOptions;
  private queue: ForwardedEvent[] = [];
  private timer: ReturnType<typeof setInterval> | undefined;
  private chain: Promise<void> = Promise.resolve();
  private backoffMs = 0;
  private retryAt = 0;
  private stopped = false;
  readonly stats: ForwarderStats = {
    queued: 0,
    sent: 0,
    batches: 0,
    retries: 0,
    dropped: { queueFull: 0, refused: 0 },
  };

  constructor(opts: ForwarderOptions) {
    this.opts = opts;
    this.timer = setInterval(() => {
      void this.flush(false);
    }, Math.max(opts.flushIntervalMs, 10));
    // The forwarder must never keep a process alive on its own.
    this.timer.unref?.();
  }

  /** Queue one event; sends early when a batch is full. Never throws, never waits. */
  push(event: ForwardedEvent): void {
    if (this.stopped) return;
    this.queue.push(event);
    const over = this.queue.length - this.opts.maxQueue;
    if (over > 0) {
      this.queue.splice(0, over);
      this.stats.dropped.queueFull += over;
    }
    this.stats.queued = this.queue.length;
    if (this.queue.length >= this.opts.batchSize) void this.flush(false);
  }

  /**
   * Send what is queued. With `force`, ignores the retry backoff and keeps
   * going until the queue is empty or a send fails.
   * @returns whether the queue is empty afterwards.
   */
  async flush(force = true): Promise<boolean> {
    // Drains run one after another on a chain, so two never send the same head batch.
    const run = this.chain.then(async () => {
      if (!this.queue.length) return;
      if (!force && Date.now() < this.retryAt) return;
      await this.drain(force);
    });
    this.chain = run.catch(() => undefined);
    await run;
    return this.queue.length === 0;
  }

  /** Stop the timer and try to deliver what is left within `timeoutMs`. */
  async stop(timeoutMs = 5000): Promise<boolean> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const done = this.flush(true);
    this.stopped = true;
    let timeout: ReturnType<typeof setTimeout> | undefined;
    const timer = new Promise<boolean>((resolve) => {
      timeout = setTimeout(() => resolve(false), timeoutMs);
      timeout.unref?.();
    });
    try {
      return await Promise.race([done, timer]);
    } finally {
      if (timeout) clearTimeout(timeout);
    }
  }

  private async drain(force: boolean): Promise<void> {
    while (this.queue.length) {
      const batch = this.queue.slice(0, this.opts.batchSize);
      const outcome = await this.send(batch);
      if (outcome === "retry") {
        this.stats.retries += 1;
        this.backoffMs = Math.min(
          this.backoffMs ? this.backoffMs * 2 : 250,
          this.opts.maxBackoffMs,
        );
        this.retryAt = Date.now() + this.backoffMs;
        return;
      }
      // Sent or refused: either way this batch leaves the queue. Events pushed
      // meanwhile were appended, so the head is still this batch.
      this.queue.splice(0, batch.length);
      this.stats.queued = this.queue.length;
      if (outcome === "sent") {
        this.stats.sent += batch.length;
        this.stats.batches += 1;
        this.backoffMs = 0;
        this.retryAt = 0;
      } else {
        this.stats.dropped.refused += batch.length;
      }
      if (!force && this.queue.length < this.opts.batchSize) return;
    }
  }

  private async send(events: ForwardedEvent[]): Promise<"sent" | "retry" | "refused"> {
    const doFetch = this.opts.fetch ?? globalThis.fetch;
    const url = `${this.opts.bridgeUrl.replace(/\/+$/, "")}/v1/elizaos/events`;
    try {
      const res = await doFetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          authorization: `Bearer ${this.opts.secret}`,
        },
        body: JSON.stringify({ schema: WIRE_SCHEMA, agent: this.opts.agent, events }),
        signal: AbortSignal.timeout(this.opts.requestTimeoutMs),
      });
      const body = await res.text();
      if (res.ok) return "sent";
      const message = `bridge answered ${res.status}: ${body.slice(0, 300)}`;
      this.report(message);
      if (res.status === 408 || res.status === 429 || res.status >= 500) return "retry";
      return "refused";
    } catch (err) {
      this.report(`bridge unreachable: ${err instanceof Error ? err.message : String(err)}`);
      return "retry";
    }
  }

  private report(message: string): void {
    this.stats.lastError = message;
    (this.opts.onError ?? ((m: string) => console.warn(`[experience-sync] ${m}`)))(message);
  }
}
