// The open streaming calls a NodeAuthorizer admitted, kept so they can be authorized
// again when the state they were admitted on changes (DESIGN.md "Authorization"): a
// check at call start alone lets a Raft stream or a session outlive its node's removal,
// demotion or certificate. Unary calls are short and are not tracked.
//
// One timer serves every stream's deadline: a manager holds 10,000 sessions, and a
// timer each would cost memory and churn for what is usually one expiry at a time.
import type { NodeRole } from "../profile.js";

export interface OpenStream {
  readonly nodeId: string;
  readonly method: string;
  /** Roles the method allows (from the policy at admission). */
  readonly allowedRoles: readonly NodeRole[];
  /** What the presented certificate said at admission. */
  readonly certificateRole: NodeRole;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /**
   * Epoch ms after which the stream is closed as expired: the presented notAfter, or
   * a later expiry on record for the node (it renewed). Recomputed at each check.
   */
  deadlineMs: number;
}

/** Open streams by node id; a node's entry goes when its last stream does. */
export class OpenStreamRegistry<S extends OpenStream> {
  private readonly byNode = new Map<string, Set<S>>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  get nodeCount(): number {
    return this.byNode.size;
  }

  add(stream: S): void {
    let streams = this.byNode.get(stream.nodeId);
    if (!streams) {
      streams = new Set();
      this.byNode.set(stream.nodeId, streams);
    }
    if (!streams.has(stream)) {
      streams.add(stream);
      this.count++;
    }
  }

  /** Whether the stream was still registered (so each stream is closed or counted once). */
  delete(stream: S): boolean {
    const streams = this.byNode.get(stream.nodeId);
    if (!streams?.delete(stream)) return false;
    this.count--;
    if (streams.size === 0) this.byNode.delete(stream.nodeId);
    return true;
  }

  /** A snapshot (closing a stream changes the registry) of the streams of these nodes, or all. */
  snapshot(nodeIds?: Iterable<string>): S[] {
    if (nodeIds === undefined) return [...this.byNode.values()].flatMap((streams) => [...streams]);
    const result: S[] = [];
    for (const nodeId of new Set(nodeIds)) {
      const streams = this.byNode.get(nodeId);
      if (streams) result.push(...streams);
    }
    return result;
  }

  clear(): void {
    this.byNode.clear();
    this.count = 0;
  }
}

// setTimeout runs on the monotonic clock while expiry is judged on the wall clock (the
// `now` seam): waking at least this often notices a wall clock moved forward. Also
// below setTimeout's 2^31-1 ms ceiling, beyond which Node fires at once.
const MAX_TIMER_DELAY_MS = 60_000;

/**
 * One unref'd timer armed for the earliest deadline it was told about. It may fire
 * early (the stream with that deadline ended, or renewed): the owner then checks and
 * arms it again, so a stale wake-up costs one scan, never a wrong close.
 */
export class DeadlineTimer {
  private timer: NodeJS.Timeout | undefined;
  private armedMs: number | undefined;

  constructor(private readonly onFire: () => void) {}

  /** The deadline it is armed for, if any. */
  get armedFor(): number | undefined {
    return this.armedMs;
  }

  /** Arms for `deadlineMs` unless already armed for an earlier one. */
  armBy(deadlineMs: number, nowMs: number): void {
    if (!Number.isFinite(deadlineMs)) return;
    if (this.armedMs !== undefined && this.armedMs <= deadlineMs) return;
    this.arm(deadlineMs, nowMs);
  }

  /** Arms for exactly `deadlineMs` (the owner knows the earliest of all), or disarms. */
  rearm(deadlineMs: number, nowMs: number): void {
    if (Number.isFinite(deadlineMs)) this.arm(deadlineMs, nowMs);
    else this.clear();
  }

  clear(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.armedMs = undefined;
  }

  private arm(deadlineMs: number, nowMs: number): void {
    this.clear();
    // +1: a certificate is valid through its notAfter; expired means strictly after it.
    const delayMs = Math.min(Math.max(deadlineMs - nowMs + 1, 1), MAX_TIMER_DELAY_MS);
    this.armedMs = deadlineMs;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.armedMs = undefined;
      this.onFire();
    }, delayMs);
    // A stopping process does not wait for a certificate to expire.
    this.timer.unref();
  }
}
