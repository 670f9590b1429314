// Liveness of the nodes whose sessions this manager holds, in memory: a heartbeat
// only moves a timestamp. What reaches the log are transitions (session opened here
// = ready, silent for `missedPeriods` periods = down), coalesced per node and
// proposed in batches, so steady heartbeats cost the log nothing.

import { type CommandLog, FsmRefusal, proposeCommand } from "../fsm/index.js";
import type { SessionTransition } from "../gen/fsm/v1/commands.js";
import { NodeStatus } from "../gen/fsm/v1/state.js";
import type { Logger } from "../log/logger.js";

export interface TransitionBatcherOptions {
  log: CommandLog;
  logger: Logger;
  /** Transitions that arrive within this window go in one proposal. */
  batchMs: number;
  /** Wait before proposing again after the log did not take a batch (no leader, timeout). */
  retryMs: number;
}

interface Batch {
  transitions: SessionTransition[];
  ids: Set<string>;
  /** Left at a leader change: sent again since; its late outcome only settles `unsettled`. */
  abandoned: boolean;
}

/** Proposes `RecordSessions` batches, one in flight at a time; the latest transition per node wins. */
export class TransitionBatcher {
  private readonly pending = new Map<string, SessionTransition>();
  private timer: NodeJS.Timeout | undefined;
  /** The batch in flight (not abandoned). */
  private current: Batch | undefined;
  /**
   * Transitions of abandoned batches whose proposals have not settled, by node, with how many
   * such proposals carry each. An abandoned proposal may still commit, and late: one a
   * follower forwarded can be held by the old leader through a leadership transfer and
   * appended after whatever was sent since. So only the same transition is sent again at
   * once (twice in the log, in any order, it records the same fact); a different one of that
   * node waits until those proposals settle.
   */
  private readonly unsettled = new Map<string, { transition: SessionTransition; proposals: number }>();
  private stopped = false;
  /** Proposals that reached the log, and the transitions in them (for tests and metrics). */
  proposals = 0;
  committedTransitions = 0;

  constructor(private readonly options: TransitionBatcherOptions) {}

  record(transition: SessionTransition): void {
    if (this.stopped) return;
    this.pending.delete(transition.nodeId); // re-inserted last: the map stays in arrival order
    this.pending.set(transition.nodeId, transition);
    this.schedule(this.options.batchMs);
  }

  /** Drops a node's pending transition (it was removed: nothing about it needs recording). */
  forget(nodeId: string): void {
    this.pending.delete(nodeId);
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  /** Whether a transition of this node waits or is on its way to the log. */
  holds(nodeId: string): boolean {
    return this.pending.has(nodeId) || this.current?.ids.has(nodeId) === true || this.unsettled.has(nodeId);
  }

  /** Stops proposing. A batch in flight settles on its own (the Raft runtime bounds it); the rest is
   * dropped: the managers that take over these nodes' sessions record them again. */
  close(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.size > 0)
      this.options.logger.info(
        { dropped: this.pending.size },
        "dispatcher stopping: unrecorded session transitions dropped",
      );
    this.pending.clear();
  }

  /**
   * A new leader is known. The batch in flight may have gone to a leader that died with it
   * and would be waited on for the whole proposal timeout: its transitions are sent again at
   * once (see `unsettled` for why only those), and a retry waiting out its delay goes at once.
   */
  leaderChanged(): void {
    if (this.stopped) return;
    const left = this.current;
    if (left) {
      left.abandoned = true;
      this.current = undefined;
      for (const t of left.transitions) {
        const entry = this.unsettled.get(t.nodeId);
        if (entry) entry.proposals++;
        else this.unsettled.set(t.nodeId, { transition: t, proposals: 1 });
        if (!this.pending.has(t.nodeId)) this.pending.set(t.nodeId, t);
      }
    }
    if (this.pending.size === 0) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.schedule(0);
  }

  private schedule(delayMs: number): void {
    if (this.timer || this.current || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, delayMs);
  }

  private flush(): void {
    if (this.stopped || this.current || this.pending.size === 0) return;
    const transitions = [...this.pending.values()].filter((t) => {
      const unsettled = this.unsettled.get(t.nodeId);
      return unsettled === undefined || unsettled.transition === t;
    });
    if (transitions.length === 0) return; // each waits for an abandoned proposal to settle
    for (const t of transitions) this.pending.delete(t.nodeId);
    const batch: Batch = { transitions, ids: new Set(transitions.map((t) => t.nodeId)), abandoned: false };
    this.current = batch;
    let nextDelayMs = this.options.batchMs;
    proposeCommand(this.options.log, { $case: "recordSessions", value: { transitions } })
      .then(() => {
        this.proposals++;
        this.committedTransitions += transitions.length;
      })
      .catch((error: unknown) => {
        if (batch.abandoned) return; // sent again since
        if (error instanceof FsmRefusal) {
          // Nothing changed and retrying cannot help (no cluster yet, a malformed batch).
          this.options.logger.warn({ code: error.code, transitions: transitions.length }, error.message);
          return;
        }
        // Not in the log (yet): keep each transition unless a newer one for its node arrived meanwhile.
        for (const t of transitions) if (!this.pending.has(t.nodeId)) this.pending.set(t.nodeId, t);
        nextDelayMs = this.options.retryMs;
        this.options.logger.warn(
          { err: String(error), transitions: transitions.length, retryMs: nextDelayMs },
          "session transitions not recorded; retrying",
        );
      })
      .finally(() => {
        if (batch.abandoned) {
          for (const t of transitions) {
            const entry = this.unsettled.get(t.nodeId);
            if (entry && --entry.proposals === 0) this.unsettled.delete(t.nodeId);
          }
        } else this.current = undefined;
        if (this.pending.size > 0) this.schedule(batch.abandoned ? 0 : nextDelayMs);
      });
  }
}

export interface LivenessTrackerOptions {
  selfId: string;
  batcher: TransitionBatcher;
  silentAfterMs: number;
  /** Most nodes tracked, lingering ones (session closed, not yet down) included. */
  maxTracked: number;
  now: () => number;
}

interface Tracked {
  seenMs: number;
  /** The manager its session is (or was last recorded) on: this one, or a dead one for an orphan. */
  managerId: string;
}

/** Last heartbeat per node, least recently heard first (Map order: a heartbeat moves its node last). */
export class LivenessTracker {
  private readonly entries = new Map<string, Tracked>();

  constructor(private readonly options: LivenessTrackerOptions) {}

  get tracked(): number {
    return this.entries.size;
  }

  isTracked(nodeId: string): boolean {
    return this.entries.has(nodeId);
  }

  /** A session opened here at `now`: the node is ready, on this manager. */
  opened(nodeId: string, now: number, isOpen: (nodeId: string) => boolean): void {
    this.touch(nodeId, now, this.options.selfId);
    if (this.entries.size > this.options.maxTracked) this.evictLingering(isOpen);
    this.options.batcher.record({
      nodeId,
      status: NodeStatus.NODE_STATUS_READY,
      managerId: this.options.selfId,
      atMs: now,
    });
  }

  /**
   * A heartbeat on a session open here. If the state does not show the node ready on this
   * manager (another manager, or the leader adopting what it took for an orphan, recorded it
   * down while its session lived on here) and nothing about it is on its way to the log, ready
   * is recorded again, dated from when the session opened: the manager holding the session is
   * the one that knows.
   */
  heard(nodeId: string, recordedReadyHere: boolean, openedAtMs: number): void {
    this.touch(nodeId, this.options.now(), this.options.selfId);
    if (recordedReadyHere || this.options.batcher.holds(nodeId)) return;
    this.options.batcher.record({
      nodeId,
      status: NodeStatus.NODE_STATUS_READY,
      managerId: this.options.selfId,
      atMs: openedAtMs,
    });
  }

  /**
   * A node the state says is ready on `managerId` while no manager watches it (this
   * manager's previous run, or a manager that is down): it gets the down period from
   * now to show up somewhere, then it is recorded down on `managerId`'s behalf.
   */
  adopt(nodeId: string, managerId: string): void {
    if (this.entries.has(nodeId) || this.entries.size >= this.options.maxTracked) return;
    this.entries.set(nodeId, { seenMs: this.options.now(), managerId });
  }

  /** Removed from the cluster: no transition to record. */
  forget(nodeId: string): void {
    this.entries.delete(nodeId);
    this.options.batcher.forget(nodeId);
  }

  /**
   * Nodes silent too long: recorded down and no longer tracked. Each is asked about once more
   * (`stillDue`): a node adopted on behalf of a manager that is watched again by now, or one
   * whose session here ended and that the state shows ready on another manager, is only let
   * go (a down report naming a manager that no longer holds its session changes nothing).
   */
  sweep(stillDue: (nodeId: string, managerId: string) => boolean = () => true): string[] {
    const now = this.options.now();
    const silent: [string, Tracked][] = [];
    for (const entry of this.entries) {
      if (now - entry[1].seenMs <= this.options.silentAfterMs) break; // the rest were heard later
      silent.push(entry);
    }
    const down: string[] = [];
    for (const [nodeId, tracked] of silent) {
      if (!stillDue(nodeId, tracked.managerId)) {
        this.entries.delete(nodeId);
        continue;
      }
      this.markDown(nodeId, tracked.managerId, now);
      down.push(nodeId);
    }
    return down;
  }

  private touch(nodeId: string, now: number, managerId: string): void {
    this.entries.delete(nodeId);
    this.entries.set(nodeId, { seenMs: now, managerId });
  }

  /** Over the bound: the least recently heard node without an open session is recorded down early. */
  private evictLingering(isOpen: (nodeId: string) => boolean): void {
    for (const [nodeId, tracked] of this.entries) {
      if (isOpen(nodeId)) continue;
      this.markDown(nodeId, tracked.managerId, this.options.now());
      return;
    }
  }

  private markDown(nodeId: string, managerId: string, now: number): void {
    this.entries.delete(nodeId);
    // Naming the session's manager: if the node's session moved to another manager meanwhile,
    // the state machine skips this (apply.ts recordSessions), so a stale report cannot mark it down.
    this.options.batcher.record({ nodeId, status: NodeStatus.NODE_STATUS_DOWN, managerId, atMs: now });
  }
}
