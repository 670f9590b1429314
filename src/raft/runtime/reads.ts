// Linearizable reads in flight (ReadIndex): each waits for the leader to confirm its
// index, then for the state machine to apply up to that index.
import type { ReadState } from "../core/types.js";
import type { RuntimeClock } from "./clock.js";
import { LeaderChangedError } from "./errors.js";
import { PendingRequests } from "./pending.js";

export class PendingReads {
  private readonly waiting: PendingRequests<void>;
  /** Reads whose index is known, waiting for the state machine to reach it. */
  private confirmed: { index: number; ctx: string }[] = [];

  constructor(clock: RuntimeClock, timeoutMs: number) {
    this.waiting = new PendingRequests(clock, timeoutMs);
  }

  track(ctx: string, submit: () => void): Promise<void> {
    return this.waiting.track(ctx, submit);
  }

  reject(ctx: string, err: Error): void {
    this.waiting.reject(ctx, err);
  }

  rejectAll(err: () => Error): void {
    this.waiting.rejectAll(err);
    this.confirmed = [];
  }

  /** The leader confirmed these reads' indexes (a Ready's readStates). */
  confirm(states: readonly ReadState[]): void {
    for (const rs of states)
      this.confirmed.push({ index: rs.index, ctx: Buffer.from(rs.context).toString("hex") });
  }

  /** Serves every confirmed read whose index the state machine has reached. */
  serve(applied: number): void {
    if (this.confirmed.length === 0) return;
    const ready = this.confirmed.filter((r) => r.index <= applied);
    this.confirmed = this.confirmed.filter((r) => r.index > applied);
    for (const r of ready) this.waiting.resolve(r.ctx, undefined);
  }

  /**
   * The known leader or term changed. The core drops the reads it has not confirmed
   * then (hard case 11): tell their callers now rather than at their timeout. Reads
   * already confirmed stay valid and wait for apply.
   */
  leaderChanged(): void {
    const keep = new Set(this.confirmed.map((r) => r.ctx));
    for (const ctx of this.waiting.keys()) {
      if (!keep.has(ctx)) this.waiting.reject(ctx, new LeaderChangedError());
    }
  }
}
