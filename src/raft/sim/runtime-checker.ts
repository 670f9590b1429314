// Checks of the runtime simulator on top of the core's SafetyChecker. AppliedEntries:
// every entry RaftNode applies (commands, the leader's empty entries, membership
// changes) is the same on every member and in every later leader's log.
// ClientChecker: what a caller of RaftNode's propose() and read() relies on.
// - An acknowledged proposal is applied at the index it reported, with its bytes, on
//   every member by the end (so no promise resolved for an entry later lost).
// - Every promise settles (resolves, or rejects with a RaftRuntimeError of a known
//   code) within a bound, unless its process died (the client then sees the
//   connection drop): none hangs across a leader change or a stop.
// - A read sees every write acknowledged before it began.

import type { Entry } from "../../gen/raft/v1/raft.js";
import type { Raft } from "../core/raft.js";
import { RAFT_RUNTIME_ERROR_CODES, RaftRuntimeError } from "../runtime/errors.js";
import type { Applied } from "../runtime/seam.js";
import { entryKey, type SafetyChecker } from "./checker.js";
import type { SimProcess, SimScheduler } from "./sim-clock.js";

export class AppliedEntries {
  /** Per index: the entry, and the lowest term a member was in when it applied it. */
  private readonly applied = new Map<number, { key: string; term: number }>();

  constructor(private readonly safety: SafetyChecker) {}

  /** `term`: the member's term when it applied `e`; the entry was committed in that term or before. */
  onApply(nodeId: number, e: Entry, term: number): void {
    const key = entryKey(e);
    const known = this.applied.get(e.index);
    if (known === undefined) this.applied.set(e.index, { key, term });
    else if (known.key !== key) {
      this.safety.fail(`state-machine safety: node ${nodeId} applied a different entry at index ${e.index}`);
    } else if (term < known.term) known.term = term;
  }

  /**
   * Leader completeness (Raft §5.4): a leader holds every entry committed in a lower
   * term. Only entries known committed before its term are checked: a candidate
   * paused with its votes in flight may still win its old term after later terms
   * committed more (found by seed 2736), and that leader need not hold those.
   */
  onLeader(core: Raft): void {
    for (const [index, { key, term }] of this.applied) {
      if (term >= core.term || index < core.log.firstIndex()) continue;
      const e = core.log.entryAt(index);
      if (!e || entryKey(e) !== key) {
        this.safety.fail(
          `leader completeness: leader ${core.id} of term ${core.term} lacks applied entry ${index}`,
        );
        return;
      }
    }
  }
}

type OpKind = "propose" | "read" | "membership";

interface ClientOp {
  seq: number;
  kind: OpKind;
  node: number;
  /** The process that took the request: if it crashes, the caller sees a broken connection. */
  proc: SimProcess;
  startedAt: number;
  settledAt?: number;
  outcome?: "resolved" | "rejected" | "lost";
}

export interface ClientStats {
  requests: number;
  acked: number;
  rejected: number;
  lostWithProcess: number;
  readsServed: number;
}

export class ClientChecker {
  readonly stats: ClientStats = { requests: 0, acked: 0, rejected: 0, lostWithProcess: 0, readsServed: 0 };
  /** Highest index of a proposal whose caller was told it succeeded. */
  maxAckedIndex = 0;
  private readonly ops: ClientOp[] = [];
  private readonly acked = new Map<number, string>();
  /** The command first applied at each index, on any member. */
  private readonly applied = new Map<number, string>();

  constructor(
    private readonly safety: SafetyChecker,
    private readonly sched: SimScheduler,
    /** Longest a promise may take to settle (the proposal timeout, plus a pause). */
    private readonly settleBoundMs: number,
  ) {}

  propose(node: number, proc: SimProcess, command: string, answer: Promise<Applied>): void {
    const op = this.begin("propose", node, proc);
    this.follow(op, answer, ({ index }) => {
      const other = this.acked.get(index);
      if (other !== undefined && other !== command) {
        this.safety.fail(
          `acknowledged writes: "${other}" and "${command}" were both acknowledged at index ${index}`,
        );
      }
      this.acked.set(index, command);
      this.maxAckedIndex = Math.max(this.maxAckedIndex, index);
      this.stats.acked++;
    });
  }

  /** `answer` resolves with the last index the member's state machine had applied when the read ran. */
  read(node: number, proc: SimProcess, answer: Promise<number>): void {
    const op = this.begin("read", node, proc);
    const ackedAtStart = this.maxAckedIndex;
    this.follow(op, answer, (seen) => {
      this.stats.readsServed++;
      if (seen < ackedAtStart) {
        this.safety.fail(
          `linearizable read: a read on node ${node} that began after the write at index ${ackedAtStart} was ` +
            `acknowledged saw the state only up to index ${seen}`,
        );
      }
    });
  }

  membership(node: number, proc: SimProcess, answer: Promise<Applied>): void {
    this.follow(this.begin("membership", node, proc), answer, () => undefined);
  }

  /** A member's state machine applied `command` at `index`. */
  onApplied(nodeId: number, index: number, command: string): void {
    const first = this.applied.get(index);
    if (first === undefined) this.applied.set(index, command);
    else if (first !== command) {
      this.safety.fail(
        `state-machine safety: node ${nodeId} applied "${command}" at index ${index}, others "${first}"`,
      );
    }
  }

  /** Requests not settled yet whose process has not crashed. */
  unsettled(): number {
    return this.ops.filter((op) => op.outcome === undefined && !op.proc.crashed).length;
  }

  /** The end of the run: `members` are the live members and what their state machines applied. */
  finish(members: { id: number; appliedIndex: number }[]): void {
    for (const op of this.ops) {
      if (op.outcome !== undefined) continue;
      if (op.proc.crashed) {
        this.lost(op);
        continue;
      }
      this.safety.fail(
        `promise settle: ${op.kind} #${op.seq} on node ${op.node}, begun at ${op.startedAt} ms, never settled ` +
          `(run ended at ${this.sched.now} ms; its process never crashed)`,
      );
    }
    for (const [index, command] of this.acked) {
      const got = this.applied.get(index);
      if (got === command) continue;
      const there = got === undefined ? "nothing was applied there" : `"${got}" was applied there`;
      this.safety.fail(
        `acknowledged write lost: "${command}" was acknowledged at index ${index}, but ${there}`,
      );
    }
    for (const m of members) {
      if (m.appliedIndex < this.maxAckedIndex) {
        this.safety.fail(
          `acknowledged write missing: member ${m.id} applied up to ${m.appliedIndex}, ` +
            `below the acknowledged write at ${this.maxAckedIndex}`,
        );
      }
    }
  }

  private begin(kind: OpKind, node: number, proc: SimProcess): ClientOp {
    const op: ClientOp = { seq: this.ops.length + 1, kind, node, proc, startedAt: this.sched.now };
    this.ops.push(op);
    this.stats.requests++;
    return op;
  }

  private follow<T>(op: ClientOp, answer: Promise<T>, onValue: (value: T) => void): void {
    answer.then(
      (value) => {
        if (this.settle(op, "resolved")) onValue(value);
      },
      (err: unknown) => {
        if (!this.settle(op, "rejected")) return;
        this.stats.rejected++;
        const typed = err instanceof RaftRuntimeError && RAFT_RUNTIME_ERROR_CODES.has(err.code);
        if (!typed) {
          this.safety.fail(
            `typed errors: ${op.kind} #${op.seq} on node ${op.node} rejected with ${String(err)}`,
          );
        }
      },
    );
  }

  /** Records the outcome; false when the answer came from a dead process (no client could see it). */
  private settle(op: ClientOp, outcome: "resolved" | "rejected"): boolean {
    if (op.outcome !== undefined || op.proc.crashed) {
      this.lost(op);
      return false;
    }
    op.outcome = outcome;
    op.settledAt = this.sched.now;
    const took = op.settledAt - op.startedAt;
    if (took > this.settleBoundMs) {
      this.safety.fail(
        `promise settle: ${op.kind} #${op.seq} on node ${op.node} took ${took} ms (bound ${this.settleBoundMs} ms)`,
      );
    }
    return true;
  }

  private lost(op: ClientOp): void {
    op.outcome = "lost";
    this.stats.lostWithProcess++;
  }
}
