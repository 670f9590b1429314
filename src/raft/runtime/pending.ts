// The promises of requests in flight (proposals, reads), keyed by request id. Each
// settles exactly once: by its outcome, by its timeout, or when the member stops,
// so no caller is left waiting across a leader change, a crash of the leader or a stop.
import type { RuntimeClock, Timer } from "./clock.js";
import { ProposalTimeoutError } from "./errors.js";

interface Waiter<T> {
  resolve(value: T): void;
  reject(err: Error): void;
  timer: Timer;
}

export class PendingRequests<T> {
  private readonly waiters = new Map<string, Waiter<T>>();

  constructor(
    private readonly clock: RuntimeClock,
    private readonly timeoutMs: number,
  ) {}

  get size(): number {
    return this.waiters.size;
  }

  /** A promise for request `key`; `submit` hands the request on once it is tracked. */
  track(key: string, submit: () => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = this.clock.after(this.timeoutMs, () => {
        this.waiters.delete(key);
        reject(new ProposalTimeoutError(this.timeoutMs));
      });
      this.waiters.set(key, { resolve, reject, timer });
      submit();
    });
  }

  keys(): string[] {
    return [...this.waiters.keys()];
  }

  has(key: string): boolean {
    return this.waiters.has(key);
  }

  resolve(key: string, value: T): void {
    const w = this.take(key);
    w?.resolve(value);
  }

  reject(key: string, err: Error): void {
    const w = this.take(key);
    w?.reject(err);
  }

  /** Rejects every request in flight (the member stops, the leader changed). */
  rejectAll(err: () => Error): void {
    const all = [...this.waiters.values()];
    this.waiters.clear();
    for (const w of all) {
      w.timer.cancel();
      w.reject(err());
    }
  }

  /** Forgets a request without settling it: only the runtime simulator's planted bug does this. */
  forgetForTesting(key: string): void {
    this.take(key);
  }

  private take(key: string): Waiter<T> | undefined {
    const w = this.waiters.get(key);
    if (!w) return undefined;
    this.waiters.delete(key);
    w.timer.cancel();
    return w;
  }
}
