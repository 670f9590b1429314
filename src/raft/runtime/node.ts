// Drives the pure Raft core through three seams: storage (RaftStorage), a clock
// (RuntimeClock) and a transport, so the simulator runs this very code in virtual
// time (src/raft/sim/runtime-sim.ts). Every input (tick, message, proposal, read)
// is queued; one drain round steps them all (inputs.ts), then persists the resulting
// Ready with a single synced write, so inputs that arrive while a write is in
// progress are batched into the next one (group commit). Each round ends by
// returning to the event loop, so the replies and messages it queued go out before
// the next round's work (traced at concurrency 1: 0.25 ms less per write than
// running rounds back to back).
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import {
  ConfChange,
  ConfChangeType,
  type Entry,
  EntryType,
  type Message,
  MessageType,
} from "../../gen/raft/v1/raft.js";
import type { Logger } from "../../log/logger.js";
import { assert } from "../core/assert.js";
import { Raft } from "../core/raft.js";
import { SeededRng } from "../core/rand.js";
import type { DropReason, RaftStatus, Ready } from "../core/types.js";
import { type RuntimeClock, systemClock, type Timer } from "./clock.js";
import { RequestIds, unwrap, wrap } from "./envelope.js";
import { NodeStoppedError, ProposalDroppedError } from "./errors.js";
import { type Input, type Refusals, stepInputs } from "./inputs.js";
import { decodeMemberContext, encodeMemberContext, type MemberBinding, MemberRegistry } from "./members.js";
import { type RaftNodeOptions, type Tunables, tunables } from "./node-options.js";
import { PendingRequests } from "./pending.js";
import { PendingReads } from "./reads.js";
import type { Applied, Leadership, RaftService } from "./seam.js";
import type { Transport, TransportEvents } from "./types.js";

export type { RaftNodeOptions, RuntimeTestingKnobs } from "./node-options.js";

export interface MemberChange {
  type: ConfChangeType;
  /** The member's Raft id. */
  raftId: number;
  /** Who it is, when the change names it (adding a member). */
  binding?: MemberBinding;
}

export class RaftNode extends EventEmitter implements TransportEvents, RaftService {
  readonly id: number;
  private readonly raft: Raft;
  private readonly log: Logger;
  private readonly clock: RuntimeClock;
  /** Ticks since start, and the tick each member was last heard at (heardFrom). */
  private ticks = 0;
  private readonly heardAtTick = new Map<number, number>();
  private readonly ids: RequestIds;
  private readonly opts: Tunables;
  private transport: Transport | undefined;
  private inputs: Input[] = [];
  private draining = false;
  /** The round in progress, if any (stop() waits for it). */
  private round: Promise<void> | undefined;
  private stopped = false;
  private tickTimer: Timer | undefined;
  /** Waits between promotion attempts; stop() ends them so no promise outlives the member. */
  private readonly retryWaits = new Set<() => void>();
  private readonly pending: PendingRequests<Applied>;
  private readonly reads: PendingReads;
  private applied: number;
  /** The highest commit index the core has reported (applied never passes it). */
  private committed: number;
  private lastSnapshotIndex: number;
  private leader = 0;
  private leaderTerm = 0;
  /** Only the answerBeforeLocalSync knob writes in the background; this is its last write. */
  private backgroundWrites: Promise<void> = Promise.resolve();
  /** Raft id -> node identity, as the applied configuration binds them (saved in snapshots). */
  private readonly members = new MemberRegistry();
  /** Configuration changes up to here were replayed into the registry at construction (applying them skips it). */
  private replayedConfThrough: number;

  constructor(private readonly options: RaftNodeOptions) {
    super();
    this.id = options.id;
    this.log = options.logger.child({ component: "raft", node: options.id });
    this.clock = options.clock ?? systemClock;
    const entropy = options.randomBytes ?? randomBytes;
    this.ids = new RequestIds(options.id, entropy(4));
    this.opts = tunables(options);
    this.pending = new PendingRequests(this.clock, this.opts.proposalTimeoutMs);
    this.reads = new PendingReads(this.clock, this.opts.proposalTimeoutMs);
    const state = options.storage.load();
    const seed = Buffer.from(entropy(4)).readUInt32BE(0);
    this.raft = new Raft(
      {
        id: options.id,
        rng: new SeededRng(seed),
        electionTimeoutTicks: this.opts.electionTimeoutTicks,
        heartbeatTicks: this.opts.heartbeatTicks,
        lazyCommit: this.opts.lazyCommit,
      },
      state,
    );
    options.stateMachine.restore(
      this.members.restoreSnapshot(state.snapshot.data, state.snapshot.metadata?.confState),
    );
    this.applied = state.snapshot.metadata!.index;
    this.committed = Math.max(state.hardState.commit, this.applied);
    this.leaderTerm = state.hardState.term;
    this.lastSnapshotIndex = this.applied;
    this.replayedConfThrough = this.replayMemberChanges(state.entries, state.hardState.commit);
    options.observer?.core?.(this.raft);
  }

  /**
   * Gives the registry every configuration change of the durable log that is known
   * committed, before start() hands the transport its first view: otherwise a member
   * removed after the last snapshot would be accepted until the first round applied
   * its removal (messages queued before it are stepped first). Returns the last
   * index replayed; applying these entries later leaves the registry alone.
   */
  private replayMemberChanges(entries: readonly Entry[], commit: number): number {
    let through = this.applied;
    for (const e of entries) {
      if (e.index <= this.applied || e.index > commit) continue;
      through = e.index;
      if (e.type !== EntryType.ENTRY_TYPE_CONF_CHANGE) continue;
      const cc = ConfChange.decode(e.data);
      const complaint = this.members.apply(cc.type, cc.nodeId, decodeMemberContext(cc.context));
      if (complaint) this.log.error({ member: cc.nodeId, index: e.index }, complaint);
    }
    return through;
  }

  start(transport: Transport): void {
    this.transport = transport;
    transport.setMembers(this.members.view());
    this.tickTimer = this.clock.every(this.opts.tickMs, () => {
      this.ticks++;
      this.enqueue({ kind: "tick" });
    });
    this.kick();
    this.log.info({ applied: this.applied }, "raft member started");
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.tickTimer?.cancel();
    for (const wake of [...this.retryWaits]) wake();
    this.pending.rejectAll(() => new NodeStoppedError());
    this.reads.rejectAll(() => new NodeStoppedError());
    while (this.round) await this.round;
    await this.backgroundWrites;
    await this.transport?.close();
    await this.options.storage.close();
    this.log.info("raft member stopped");
  }

  status(): RaftStatus {
    return this.raft.status();
  }

  leaderId(): number {
    return this.leader;
  }

  leadership(): Leadership {
    return { leader: this.leader, term: this.leaderTerm, isSelf: this.leader === this.id };
  }

  onLeadershipChange(listener: (now: Leadership) => void): () => void {
    const wrapped = () => listener(this.leadership());
    this.on("leadership", wrapped);
    return () => this.off("leadership", wrapped);
  }

  // ---- API ---------------------------------------------------------------

  /** Replicates a command; resolves with its index and the state machine's result once applied here. */
  propose(command: Uint8Array): Promise<Applied> {
    const id = this.ids.next();
    return this.track(this.pending, id.toString("hex"), () => {
      this.enqueue({ kind: "propose", id, data: wrap(id, command) });
    });
  }

  /** A linearizable read (ReadIndex): runs `fn` once the state machine reflects every write acknowledged before. */
  async read<T>(fn: () => T): Promise<T> {
    const ctx = this.ids.next();
    await this.track(this.reads, ctx.toString("hex"), () => this.enqueue({ kind: "read", ctx }));
    return fn();
  }

  /** Adds a learner; `binding` names the certificate (CN) it must present and where it listens. */
  addLearner(raftId: number, binding: MemberBinding): Promise<Applied> {
    // An unbound member could never be heard from (the transport fails closed): refuse it here.
    if (!binding.nodeId || !binding.address)
      return Promise.reject(
        new ProposalDroppedError(
          "INVALID_CONF_CHANGE",
          "a new member needs its node id (certificate CN) and address",
        ),
      );
    return this.changeMembership(ConfChangeType.CONF_CHANGE_TYPE_ADD_LEARNER, raftId, binding);
  }

  /**
   * Makes a learner a voter. The leader refuses a learner that does not hold every
   * committed entry yet (LEARNER_NOT_READY); under writes it catches up within a round
   * or two, so the promotion is retried every tick until the proposal timeout, and only
   * then does the refusal reach the caller.
   */
  async promote(raftId: number): Promise<Applied> {
    const attempts = Math.max(1, Math.ceil(this.opts.proposalTimeoutMs / this.opts.tickMs));
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.changeMembership(ConfChangeType.CONF_CHANGE_TYPE_PROMOTE_VOTER, raftId);
      } catch (err) {
        const notReady = err instanceof ProposalDroppedError && err.code === "LEARNER_NOT_READY";
        if (!notReady || this.stopped || attempt >= attempts) throw err;
        await this.waitOneTick();
        if (this.stopped) throw new NodeStoppedError();
      }
    }
  }

  /** One tick of waiting that stop() cuts short (it owns every such wait). */
  private waitOneTick(): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = () => {
        timer.cancel();
        this.retryWaits.delete(wake);
        resolve();
      };
      const timer = this.clock.after(this.opts.tickMs, wake);
      this.retryWaits.add(wake);
    });
  }

  remove(raftId: number): Promise<Applied> {
    return this.changeMembership(ConfChangeType.CONF_CHANGE_TYPE_REMOVE_NODE, raftId);
  }

  transferLeadership(target: number): void {
    this.enqueue({ kind: "transfer", target });
  }

  // ---- transport events ------------------------------------------------------

  onMessage(message: Message): void {
    // The transport delivers only what a bound member's certificate sent. Only answers to
    // this member's appends and heartbeats count as heard: they prove the sender receives
    // from here and follows the log; a member that can send but not receive only
    // campaigns (pre-votes, votes), and that must not keep it looking alive.
    if (
      message.type === MessageType.MESSAGE_TYPE_APPEND_RESPONSE ||
      message.type === MessageType.MESSAGE_TYPE_HEARTBEAT_RESPONSE
    )
      this.heardAtTick.set(message.from, this.ticks);
    this.enqueue({ kind: "message", message });
  }

  /**
   * Whether that member answered an append or heartbeat of this one within the last
   * `withinMs`, counted in this member's ticks (a delayed tick timer makes a stall count
   * short, so the answer errs towards "heard": a caller deciding a member is gone waits
   * longer, never less). A leader hears every follower at least once per heartbeat, so a
   * member it heard from lately is alive, whatever else says.
   */
  heardFrom(raftId: number, withinMs: number): boolean {
    const at = this.heardAtTick.get(raftId);
    return at !== undefined && (this.ticks - at) * this.opts.tickMs <= withinMs;
  }

  onSnapshotStatus(to: number, ok: boolean): void {
    this.enqueue({ kind: "snapshotStatus", to, ok });
  }

  onUnreachable(to: number): void {
    this.enqueue({ kind: "unreachable", to });
  }

  // ---- the loop ----------------------------------------------------------------

  private changeMembership(type: ConfChangeType, raftId: number, binding?: MemberBinding): Promise<Applied> {
    const id = this.ids.next();
    const context = encodeMemberContext({ requestId: id, ...binding });
    const conf: ConfChange = { type, nodeId: raftId, context };
    return this.track(this.pending, id.toString("hex"), () => {
      this.enqueue({ kind: "confChange", id, conf });
    });
  }

  private track<T>(
    table: { track(key: string, submit: () => void): Promise<T> },
    key: string,
    submit: () => void,
  ): Promise<T> {
    if (this.stopped) return Promise.reject(new NodeStoppedError());
    if (this.inputs.length >= this.opts.maxQueuedInputs) {
      return Promise.reject(
        new ProposalDroppedError("OVERLOADED", "too many requests queued; retry with backoff"),
      );
    }
    return table.track(key, submit);
  }

  private enqueue(input: Input): void {
    if (this.stopped) return;
    this.inputs.push(input);
    this.kick();
  }

  private kick(): void {
    if (this.draining || this.stopped) return;
    this.draining = true;
    this.clock.nextTurn(() => {
      this.round = this.drain()
        .catch((err: unknown) => this.fatal(err))
        .finally(() => {
          this.round = undefined;
          this.draining = false;
          if (!this.stopped && (this.inputs.length > 0 || this.raft.hasReady())) this.kick();
        });
    });
  }

  /** One round: step the queued inputs, then handle one Ready (kick() runs the next round). */
  private async drain(): Promise<void> {
    if (this.stopped) return;
    const inputs = this.inputs;
    this.inputs = [];
    stepInputs(this.raft, inputs, this.refusals);
    if (!this.raft.hasReady()) return;
    await this.handleReady(this.raft.ready());
    await this.maybeSnapshot();
  }

  /** The core refused a request: nothing entered the log, so its caller may simply retry. */
  private readonly refusals: Refusals = {
    refuseProposal: (key: string, reason: DropReason, message: string) => {
      const leaderChanging = reason === "NO_LEADER" || reason === "TRANSFER_IN_PROGRESS";
      if (leaderChanging && this.opts.knobs.forgetProposalsDuringLeaderChange) {
        this.pending.forgetForTesting(key);
        return;
      }
      this.pending.reject(key, new ProposalDroppedError(reason, message));
    },
    refuseRead: (key: string, reason: DropReason, message: string) => {
      this.reads.reject(key, new ProposalDroppedError(reason, message));
    },
  };

  private async handleReady(rd: Ready): Promise<void> {
    const transport = this.transport!;
    const leadershipChanged = this.noteStates(rd);
    transport.send(rd.messages);
    // Committed entries already in our durable log are durable on a quorum and here:
    // apply and answer them while this Ready's own write is in flight (etcd overlaps
    // apply with its WAL write the same way). The rest wait for the write.
    const durable = this.raft.durableIndex();
    let early = 0;
    // A configuration change waits for the write: its commit must be durable before anyone
    // is told it is done (mustPersistCommit; a remover may stop the removed member at once).
    while (
      early < rd.committedEntries.length &&
      rd.committedEntries[early].index <= durable &&
      rd.committedEntries[early].type !== EntryType.ENTRY_TYPE_CONF_CHANGE
    ) {
      this.apply(rd.committedEntries[early++]);
    }
    if (this.opts.knobs.answerBeforeLocalSync) {
      this.persistInBackground(rd);
    } else {
      await this.options.storage.persist(rd);
      transport.send(rd.messagesAfterPersist);
      if (this.opts.knobs.answerBeforeQuorum) this.answerDurableHere(rd.entries);
    }
    if (rd.snapshot) {
      assert(
        rd.snapshot.metadata!.index > this.applied,
        "a snapshot from the leader is ahead of the applied index",
      );
      this.options.stateMachine.restore(
        this.members.restoreSnapshot(rd.snapshot.data, rd.snapshot.metadata?.confState),
      );
      transport.setMembers(this.members.view());
      this.applied = rd.snapshot.metadata!.index;
      this.lastSnapshotIndex = this.applied;
      // The snapshot replaced the registry: changes after it must be applied to it again.
      this.replayedConfThrough = Math.min(this.replayedConfThrough, this.applied);
      this.log.info({ index: this.applied }, "installed snapshot from the leader");
    }
    for (let i = early; i < rd.committedEntries.length; i++) this.apply(rd.committedEntries[i]);
    this.reads.confirm(rd.readStates);
    this.raft.advance();
    this.reads.serve(this.applied);
    if (leadershipChanged) this.reads.leaderChanged();
  }

  /** Follows the commit index, the leader and the term; returns whether the known leader or term changed. */
  private noteStates(rd: Ready): boolean {
    if (rd.hardState) this.committed = Math.max(this.committed, rd.hardState.commit);
    if (rd.snapshot) this.committed = Math.max(this.committed, rd.snapshot.metadata!.index);
    const lead = rd.softState?.lead ?? this.leader;
    const term = rd.hardState?.term ?? this.leaderTerm;
    if (lead === this.leader && term === this.leaderTerm) return false;
    const hadLeader = this.leader !== 0;
    if (lead !== this.leader) {
      this.log.info({ term, leader: lead, role: rd.softState?.role }, "leader changed");
      this.emit("leader", lead, term);
    }
    this.leader = lead;
    this.leaderTerm = term;
    this.emit("leadership");
    // Reads could only be pending if a leader was known: they went to it.
    return hadLeader;
  }

  private apply(e: Entry): void {
    // Applying out of order (or twice), or past the commit index, would corrupt the
    // state machine: stop loudly instead. (The message is built only on failure: this runs per entry.)
    if (e.index !== this.applied + 1 || e.index > this.committed) {
      assert(
        false,
        `apply in order, committed only: entry ${e.index} after ${this.applied}, commit ${this.committed}`,
      );
    }
    this.applied = e.index;
    this.options.observer?.applied?.(e);
    if (e.type === EntryType.ENTRY_TYPE_CONF_CHANGE) {
      const cc = ConfChange.decode(e.data);
      const context = decodeMemberContext(cc.context);
      this.applyMemberChange(e.index, cc, context);
      if (context?.requestId.byteLength)
        this.pending.resolve(Buffer.from(context.requestId).toString("hex"), {
          index: e.index,
          result: new Uint8Array(),
        });
      return;
    }
    const req = unwrap(e.data);
    if (!req) return;
    const result = this.options.stateMachine.apply(e.index, req.payload);
    this.pending.resolve(req.id, { index: e.index, result });
    this.emit("applied", e.index);
  }

  private applyMemberChange(
    index: number,
    cc: ConfChange,
    context: ReturnType<typeof decodeMemberContext>,
  ): void {
    // Replayed at construction already (replayMemberChanges): applying it again here
    // could briefly undo a later change (an add before a removal) between two Readies.
    const complaint =
      index <= this.replayedConfThrough ? undefined : this.members.apply(cc.type, cc.nodeId, context);
    // Fail closed: a member the log does not bind to a certificate gets no messages through.
    if (complaint) this.log.error({ member: cc.nodeId }, complaint);
    this.transport?.setMembers(this.members.view());
    const binding = context?.nodeId ? { nodeId: context.nodeId, address: context.address } : undefined;
    this.log.info(
      {
        change: ConfChangeType[cc.type],
        member: cc.nodeId,
        nodeId: binding?.nodeId,
        address: binding?.address,
      },
      "membership changed",
    );
    const change: MemberChange = { type: cc.type, raftId: cc.nodeId, binding };
    this.emit("membership", change);
  }

  // ---- planted bugs (RuntimeTestingKnobs) ---------------------------------------

  /** answerBeforeQuorum: answers the proposals among `entries` as soon as they are durable here. */
  private answerDurableHere(entries: Entry[]): void {
    for (const e of entries) {
      const req = e.type === EntryType.ENTRY_TYPE_NORMAL ? unwrap(e.data) : undefined;
      if (req) this.pending.resolve(req.id, { index: e.index, result: new Uint8Array() });
    }
  }

  /** answerBeforeLocalSync: the round goes on (and the core hears the write is done) while it is in flight. */
  private persistInBackground(rd: Ready): void {
    const write = this.backgroundWrites.then(async () => {
      await this.options.storage.persist(rd);
      this.transport!.send(rd.messagesAfterPersist);
    });
    this.backgroundWrites = write.catch((err: unknown) => this.fatal(err));
  }

  private async maybeSnapshot(): Promise<void> {
    if (this.applied - this.lastSnapshotIndex < this.opts.snapshotEveryEntries) return;
    // The registry is ahead of the applied index until the replayed changes are applied again.
    if (this.applied < this.replayedConfThrough) return;
    await this.backgroundWrites; // storage runs one operation at a time
    const keep = this.opts.keepEntriesAfterSnapshot;
    // The bindings go with the state: the entries that made them are compacted away.
    const snapshot = this.raft.compact(this.members.wrapSnapshot(this.options.stateMachine.snapshot()), keep);
    await this.options.storage.compact(snapshot, keep);
    this.lastSnapshotIndex = snapshot.metadata!.index;
    this.log.info({ index: this.lastSnapshotIndex }, "snapshot taken, log compacted");
  }

  private fatal(err: unknown): void {
    this.log.fatal({ err }, "raft member failed; stopping");
    this.emit("fatal", err);
    void this.stop().catch(() => undefined);
  }
}
