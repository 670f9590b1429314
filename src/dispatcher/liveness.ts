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

/** Proposes `RecordSessions` batches, one in flight at a time; the latest transition per node wins. */
export class TransitionBatcher {
  private readonly pending = new Map<string, SessionTransition>();
  private timer: NodeJS.Timeout | undefined;
  private inFlight = false;
  /** The nodes of the batch in flight. */
  private inFlightIds = new Set<string>();
  /** Counts batches sent; the outcome of one abandoned at a leader change is not waited for. */
  private generation = 0;
  private inFlightBatch: SessionTransition[] = [];
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
    return this.pending.has(nodeId) || this.inFlightIds.has(nodeId);
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
   * The known leader changed. A batch in flight may have gone to a leader that died with
   * it, and would be waited on for the whole proposal timeout: its transitions are sent
   * again now (unless a newer one of the node waits), and a retry waiting out its delay
   * goes at once. Sending a transition twice is harmless (apply records the same fact),
   * and order holds: the old batch can only commit at an earlier index than anything
   * proposed in the new term, or not at all.
   */
  leaderChanged(): void {
    if (this.stopped) return;
    if (this.inFlight) {
      this.generation++;
      for (const t of this.inFlightBatch) if (!this.pending.has(t.nodeId)) this.pending.set(t.nodeId, t);
      this.inFlight = false;
      this.inFlightIds = new Set();
      this.inFlightBatch = [];
    }
    if (this.pending.size === 0) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.schedule(0);
  }

  private schedule(delayMs: number): void {
    if (this.timer || this.inFlight || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, delayMs);
  }

  private flush(): void {
    if (this.stopped || this.inFlight || this.pending.size === 0) return;
    const batch = [...this.pending.values()];
    this.pending.clear();
    this.inFlight = true;
    this.inFlightIds = new Set(batch.map((t) => t.nodeId));
    this.inFlightBatch = batch;
    const generation = ++this.generation;
    let nextDelayMs = this.options.batchMs;
    proposeCommand(this.options.log, { $case: "recordSessions", value: { transitions: batch } })
      .then(() => {
        this.proposals++;
        this.committedTransitions += batch.length;
      })
      .catch((error: unknown) => {
        if (generation !== this.generation) return; // abandoned at a leader change: sent again since
        if (error instanceof FsmRefusal) {
          // Nothing changed and retrying cannot help (no cluster yet, a malformed batch).
          this.options.logger.warn({ code: error.code, transitions: batch.length }, error.message);
          return;
        }
        // Not in the log (yet): keep each transition unless a newer one for its node arrived meanwhile.
        for (const t of batch) if (!this.pending.has(t.nodeId)) this.pending.set(t.nodeId, t);
        nextDelayMs = this.options.retryMs;
        this.options.logger.warn(
          { err: String(error), transitions: batch.length, retryMs: nextDelayMs },
          "session transitions not recorded; retrying",
        );
      })
      .finally(() => {
        if (generation !== this.generation) return;
        this.inFlight = false;
        this.inFlightIds = new Set();
        this.inFlightBatch = [];
        if (this.pending.size > 0) this.schedule(nextDelayMs);
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
   * Nodes silent too long: recorded down and no longer tracked. A node adopted on behalf of
   * another manager is asked about once more (`stillOrphaned`): if that manager is watched
   * again by now (heard from, recorded up), the node is only let go, not recorded down.
   */
  sweep(stillOrphaned: (nodeId: string, managerId: string) => boolean = () => true): string[] {
    const now = this.options.now();
    const silent: [string, Tracked][] = [];
    for (const entry of this.entries) {
      if (now - entry[1].seenMs <= this.options.silentAfterMs) break; // the rest were heard later
      silent.push(entry);
    }
    const down: string[] = [];
    for (const [nodeId, tracked] of silent) {
      if (tracked.managerId !== this.options.selfId && !stillOrphaned(nodeId, tracked.managerId)) {
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
