// Bounds the CSRs a manager works on (check, sign, record through the log): at most
// `maxInFlight` at once, then at most `maxQueued` waiting in arrival order, then
// refused at once with OVERLOADED and a retry hint. A burst of joins therefore costs
// bounded memory and CPU, never an unbounded backlog behind a slow log.
import { IssuerRefusal } from "./errors.js";

export interface IssuanceLimits {
  /** CSRs being checked, signed and recorded at once. */
  maxInFlight: number;
  /** CSRs waiting for a slot; one more is refused. */
  maxQueued: number;
  /** Bounds of the retry hint given with a refusal. */
  minRetryAfterMs: number;
  maxRetryAfterMs: number;
}

export const DEFAULT_ISSUANCE_LIMITS: IssuanceLimits = {
  // A slot mostly waits for the log (a commit is ~1-5 ms), signing is ~1 ms of CPU.
  maxInFlight: 32,
  maxQueued: 256,
  minRetryAfterMs: 100,
  maxRetryAfterMs: 10_000,
};

interface Waiter {
  start(): void;
  cancel(): void;
}

export interface LimiterStats {
  inFlight: number;
  queued: number;
  refused: number;
}

export class IssuanceLimiter {
  private inFlight = 0;
  private readonly queue: Waiter[] = [];
  private refused = 0;
  /** Moving average of one CSR's time in a slot: the basis of the retry hint. */
  private averageWorkMs = 5;

  constructor(private readonly limits: IssuanceLimits = DEFAULT_ISSUANCE_LIMITS) {
    if (limits.maxInFlight < 1 || limits.maxQueued < 0)
      throw new RangeError("issuance limits must be positive");
  }

  stats(): LimiterStats {
    return { inFlight: this.inFlight, queued: this.queue.length, refused: this.refused };
  }

  /**
   * Runs `work` in a slot, after waiting in the queue if all are taken. Throws
   * OVERLOADED at once if the queue is full; a waiter whose caller went away
   * (`signal` aborted) leaves the queue without running.
   */
  async run<T>(work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.inFlight >= this.limits.maxInFlight) await this.waitForSlot(signal);
    else this.inFlight++;
    const started = performance.now();
    try {
      return await work();
    } finally {
      this.averageWorkMs = 0.9 * this.averageWorkMs + 0.1 * (performance.now() - started);
      this.release();
    }
  }

  /** Fails every waiter (the service is closing). */
  close(): void {
    for (const waiter of this.queue.splice(0)) waiter.cancel();
  }

  private waitForSlot(signal: AbortSignal | undefined): Promise<void> {
    if (this.queue.length >= this.limits.maxQueued) {
      this.refused++;
      const retryAfterMs = this.retryAfterMs();
      throw new IssuerRefusal(
        "OVERLOADED",
        `this manager has ${this.inFlight} certificate requests in flight and ${this.queue.length} queued; ` +
          `retry in ${retryAfterMs} ms, or on another manager`,
        retryAfterMs,
      );
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const at = this.queue.indexOf(waiter);
        if (at >= 0) this.queue.splice(at, 1);
        reject(new IssuerRefusal("UNAVAILABLE", "the request was cancelled while queued"));
      };
      const waiter: Waiter = {
        // The slot is handed over by release(): inFlight stays counted for this waiter.
        start: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
        cancel: () => {
          signal?.removeEventListener("abort", onAbort);
          reject(
            new IssuerRefusal(
              "UNAVAILABLE",
              "this manager's CA service is stopping; retry on another manager",
            ),
          );
        },
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      this.queue.push(waiter);
    });
  }

  private release(): void {
    const next = this.queue.shift();
    if (next) next.start();
    else this.inFlight--;
  }

  /** The time the queue ahead would take to drain, with jitter so refused callers do not return in step. */
  private retryAfterMs(): number {
    const drainMs = ((this.queue.length + this.inFlight) / this.limits.maxInFlight) * this.averageWorkMs;
    const jittered = drainMs * (1 + Math.random());
    return Math.round(Math.min(this.limits.maxRetryAfterMs, Math.max(this.limits.minRetryAfterMs, jittered)));
  }
}
