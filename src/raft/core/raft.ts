// The Raft protocol as a pure state machine (after etcd-io/raft): tick() and
// step() change memory only; ready() hands out what to persist, send and apply;
// advance() says it was done. No I/O, clock or ambient randomness in here.
import {
  ConfChange,
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type Message,
  MessageType,
  type Snapshot,
} from "../../gen/raft/v1/raft.js";
import { assert } from "./assert.js";
import { Configuration } from "./config.js";
import { hup, tickElection, tickHeartbeat } from "./election.js";
import { releaseHeldProposals } from "./forwarding.js";
import { RaftLog } from "./log.js";
import { applyConfEntry } from "./membership.js";
import { Progress } from "./progress.js";
import { ReadOnlyQueue } from "./readonly.js";
import { stepCandidate, stepFollower } from "./step-follower.js";
import { appendProposal, bcastAppend, handleReadIndex, maybeCommit, stepLeader } from "./step-leader.js";
import type {
  PersistentState,
  ProposeResult,
  RaftConfig,
  RaftStatus,
  ReadState,
  Ready,
  Role,
  SoftState,
  TestingKnobs,
} from "./types.js";
import { dropped, makeMessage, NONE } from "./util.js";
import { handleVoteRequest } from "./vote.js";

type StepFn = (r: Raft, m: Message) => void;

/** Responses that acknowledge durable state: sent only after the Ready is persisted. */
const AFTER_PERSIST = new Set([
  MessageType.MESSAGE_TYPE_APPEND_RESPONSE,
  MessageType.MESSAGE_TYPE_VOTE_RESPONSE,
  MessageType.MESSAGE_TYPE_VOTE,
]);

/** Requests forwarded with term 0: they are answered by whoever leads now. */
const FORWARDED = new Set([
  MessageType.MESSAGE_TYPE_PROPOSE,
  MessageType.MESSAGE_TYPE_READ_INDEX,
  MessageType.MESSAGE_TYPE_TRANSFER_LEADER,
]);

export class Raft {
  readonly id: number;
  readonly cfg: Required<Omit<RaftConfig, "knobs">>;
  readonly knobs: TestingKnobs;
  term = 0;
  vote = NONE;
  lead = NONE;
  role: Role = "follower";
  readonly log: RaftLog;
  config: Configuration;
  progress = new Map<number, Progress>();
  votes = new Map<number, boolean>();
  electionElapsed = 0;
  heartbeatElapsed = 0;
  randomizedElectionTimeout = 0;
  leadTransferee = NONE;
  /** A new configuration change waits until the log is applied past this. */
  pendingConfIndex = 0;
  /**
   * Leader: members whose progress was dropped (removed) during this term. Their
   * replies to this term's appends may still be in flight, and nothing tells them
   * apart from a new member's, so they are not re-added until the term changes
   * (hard case 29).
   */
  removedThisTerm = new Set<number>();
  uncommittedBytes = 0;
  /**
   * Follower: the last index the current leader's messages proved to match its
   * log. Commit never passes it (hard case 27), whatever a message claims.
   */
  verifiedIndex = 0;
  readonly readOnly: ReadOnlyQueue;
  /** Reads that arrived before this leader committed an entry of its term. */
  pendingReadRequests: Message[] = [];
  /** Forwarded proposals held while a transfer is in progress (forwarding.ts). */
  heldProposals: Message[] = [];
  heldSinceTicks = 0;
  readStates: ReadState[] = [];
  private msgs: Message[] = [];
  private msgsAfterPersist: Message[] = [];
  /** Messages to ourselves (our own vote), stepped by advance() once the Ready is durable. */
  private msgsToSelf: Message[] = [];
  private stepRole: StepFn = stepFollower;
  private prevHardState: HardState;
  private prevSoftState: SoftState;
  private inReady = false;
  private readyCommitted = { snapshot: false, lastEntry: 0, lastApplied: 0, toSelf: [] as Message[] };

  constructor(config: RaftConfig, state: PersistentState) {
    this.id = config.id;
    assert(this.id !== NONE, "node id must not be 0");
    this.knobs = config.knobs ?? {};
    this.cfg = {
      id: config.id,
      rng: config.rng,
      electionTimeoutTicks: config.electionTimeoutTicks ?? 10,
      heartbeatTicks: config.heartbeatTicks ?? 1,
      preVote: config.preVote ?? true,
      checkQuorum: config.checkQuorum ?? true,
      maxMsgBytes: config.maxMsgBytes ?? 1024 * 1024,
      maxInflightMsgs: config.maxInflightMsgs ?? 256,
      maxUncommittedBytes: config.maxUncommittedBytes ?? 64 * 1024 * 1024,
      maxPendingReads: config.maxPendingReads ?? 4096,
      maxApplyBytesPerReady: config.maxApplyBytesPerReady ?? 8 * 1024 * 1024,
      lazyCommit: config.lazyCommit ?? false,
    };
    assert(
      this.cfg.heartbeatTicks < this.cfg.electionTimeoutTicks,
      "heartbeat shorter than election timeout",
    );
    const hs = state.hardState;
    this.log = new RaftLog(state.snapshot, state.entries, hs.commit, state.applied ?? 0);
    this.term = hs.term;
    this.vote = hs.vote;
    this.config = Configuration.fromConfState(state.snapshot.metadata?.confState);
    // Configuration changes the state machine already applied (apply-time activation).
    for (let i = this.log.snapshotIndex() + 1; i <= this.log.applied; i++)
      applyConfEntry(this, this.log.entryAt(i)!);
    this.readOnly = new ReadOnlyQueue(this.cfg.maxPendingReads);
    this.prevHardState = this.hardState();
    this.becomeFollower(this.term, NONE);
    this.prevSoftState = this.softState();
  }

  // ---- public API -------------------------------------------------------

  tick(): void {
    this.assertNotInReady();
    if (this.role === "leader") tickHeartbeat(this);
    else tickElection(this);
    releaseHeldProposals(this);
  }

  step(m: Message): void {
    this.assertNotInReady();
    if (m.term === 0) {
      if (!FORWARDED.has(m.type)) return;
    } else if (m.term > this.term) {
      if (!this.stepHigherTerm(m)) return;
    } else if (m.term < this.term) {
      this.stepLowerTerm(m);
      return;
    }
    if (m.type === MessageType.MESSAGE_TYPE_VOTE || m.type === MessageType.MESSAGE_TYPE_PRE_VOTE) {
      handleVoteRequest(this, m);
      return;
    }
    this.stepRole(this, m);
  }

  propose(data: Uint8Array): ProposeResult {
    return this.proposeEntries([{ term: 0, index: 0, type: EntryType.ENTRY_TYPE_NORMAL, data }]);
  }

  /**
   * Proposes several commands as one append: the leader then sends one message per
   * follower for all of them instead of one each (and a follower forwards them in
   * one message). All are accepted or all are dropped.
   */
  proposeBatch(commands: readonly Uint8Array[]): ProposeResult {
    return this.proposeEntries(
      commands.map((data) => ({ term: 0, index: 0, type: EntryType.ENTRY_TYPE_NORMAL, data })),
    );
  }

  proposeConfChange(cc: ConfChange): ProposeResult {
    return this.proposeEntries([
      { term: 0, index: 0, type: EntryType.ENTRY_TYPE_CONF_CHANGE, data: ConfChange.encode(cc).finish() },
    ]);
  }

  transferLeader(target: number): ProposeResult {
    this.assertNotInReady();
    const m = makeMessage({ type: MessageType.MESSAGE_TYPE_TRANSFER_LEADER, from: this.id, target });
    if (this.role === "leader") {
      // Learners and strangers cannot lead (hard case 14): say so instead of ignoring it.
      if (!this.config.isVoter(target))
        return dropped("NOT_A_VOTER", `node ${target} is not a voter; promote it first`);
      stepLeader(this, m);
      return { ok: true, index: this.log.lastIndex(), term: this.term };
    }
    return this.forwardToLeader(m);
  }

  /** Asks for a linearizable read; the answer is a ReadState in a later Ready. */
  readIndex(context: Uint8Array): ProposeResult {
    this.assertNotInReady();
    const m = makeMessage({ type: MessageType.MESSAGE_TYPE_READ_INDEX, from: this.id, context });
    if (this.role === "leader") {
      if (this.readOnly.full()) return dropped("TOO_MANY_READS", "too many pending reads; retry later");
      handleReadIndex(this, m);
      return { ok: true, index: this.log.committed, term: this.term };
    }
    return this.forwardToLeader(m);
  }

  /** Starts an election now (tests and `--force-new-cluster`); PreVote applies. */
  campaign(): void {
    this.assertNotInReady();
    hup(this, this.cfg.preVote ? "preElection" : "election");
  }

  /** The transport reports the outcome of sending a snapshot (hard case 18). */
  reportSnapshot(to: number, ok: boolean): void {
    const pr = this.progress.get(to);
    if (this.role !== "leader" || !pr || pr.state !== "snapshot") return;
    if (!ok) pr.pendingSnapshot = 0;
    pr.becomeProbe();
    pr.probeSent = true; // wait for a heartbeat response before probing again
  }

  reportUnreachable(to: number): void {
    const pr = this.progress.get(to);
    if (this.role === "leader" && pr?.state === "replicate") pr.becomeProbe();
  }

  /**
   * The state machine took a snapshot at the applied index: compact the log,
   * keeping the last `keepEntries` entries behind it for followers that are
   * only a little behind (they get entries, not the whole snapshot).
   */
  compact(data: Uint8Array, keepEntries = 0): Snapshot {
    this.assertNotInReady();
    const index = this.log.applied;
    if (index <= this.log.snapshotIndex()) return this.log.snapshot;
    const snapshot: Snapshot = {
      metadata: { index, term: this.log.term(index)!, confState: this.config.toConfState() },
      data,
    };
    this.log.compact(snapshot, keepEntries);
    return snapshot;
  }

  hasReady(): boolean {
    return (
      this.msgs.length > 0 ||
      this.msgsAfterPersist.length > 0 ||
      this.msgsToSelf.length > 0 ||
      this.readStates.length > 0 ||
      this.log.unstableSnapshot !== undefined ||
      this.log.stableIndex < this.log.lastIndex() ||
      (this.log.committed > this.log.applied && this.log.unstableSnapshot === undefined) ||
      !sameHardState(this.hardState(), this.prevHardState) ||
      !sameSoftState(this.softState(), this.prevSoftState)
    );
  }

  ready(): Ready {
    this.assertNotInReady();
    const hs = this.hardState();
    const ss = this.softState();
    const committedEntries = this.log.nextCommittedEntries(this.cfg.maxApplyBytesPerReady);
    const entries = this.log.unstableEntries();
    const rd: Ready = {
      softState: sameSoftState(ss, this.prevSoftState) ? undefined : ss,
      hardState: sameHardState(hs, this.prevHardState) ? undefined : this.persistableHardState(hs),
      snapshot: this.log.unstableSnapshot,
      entries,
      committedEntries,
      messages: this.msgs,
      messagesAfterPersist: this.msgsAfterPersist,
      readStates: this.readStates,
    };
    this.msgs = [];
    this.msgsAfterPersist = [];
    this.readStates = [];
    this.prevHardState = hs;
    this.prevSoftState = ss;
    this.readyCommitted = {
      snapshot: rd.snapshot !== undefined,
      lastEntry: entries.length > 0 ? entries[entries.length - 1].index : 0,
      lastApplied: committedEntries.length > 0 ? committedEntries[committedEntries.length - 1].index : 0,
      toSelf: this.msgsToSelf,
    };
    this.msgsToSelf = [];
    this.inReady = true;
    return rd;
  }

  advance(): void {
    assert(this.inReady, "advance() without ready()");
    this.inReady = false;
    const done = this.readyCommitted;
    if (done.snapshot) this.log.snapshotApplied();
    if (done.lastEntry > 0) this.log.stableTo(done.lastEntry);
    if (done.lastApplied > 0) {
      for (let i = this.log.applied + 1; i <= done.lastApplied; i++)
        applyConfEntry(this, this.log.entryAt(i)!);
      this.log.appliedTo(done.lastApplied);
    }
    if (this.role === "leader") {
      // A leader counts itself toward commit only once its own write is durable (hard case 22).
      this.progress.get(this.id)?.maybeUpdate(this.log.stableIndex);
      if (maybeCommit(this)) bcastAppend(this);
    }
    this.log.checkInvariants();
    // Our own vote counts only now that the term and vote it is for are durable, so
    // nothing at a new term leaves a single voter before that term is (etcd: the
    // self-vote rides in msgsAfterAppend).
    for (const m of done.toSelf) this.step(m);
  }

  status(): RaftStatus {
    return {
      id: this.id,
      term: this.term,
      vote: this.vote,
      lead: this.lead,
      role: this.role,
      commit: this.log.committed,
      applied: this.log.applied,
      lastIndex: this.log.lastIndex(),
      voters: [...this.config.voters].sort((a, b) => a - b),
      learners: [...this.config.learners].sort((a, b) => a - b),
      leadTransferee: this.leadTransferee,
    };
  }

  /**
   * The last log index storage has made durable (advance() moves it). A runtime may
   * answer committed entries at or below it while its next write is still in flight.
   */
  durableIndex(): number {
    return this.log.stableIndex;
  }

  // ---- internals shared with the step functions -------------------------

  send(m: Message): void {
    if (m.term === 0 && !FORWARDED.has(m.type)) m.term = this.term;
    m.from = this.id;
    if (m.to === this.id) {
      this.msgsToSelf.push(m);
      return;
    }
    const afterPersist =
      AFTER_PERSIST.has(m.type) && !(this.knobs.ackBeforePersist && m.type !== MessageType.MESSAGE_TYPE_VOTE);
    if (afterPersist) this.msgsAfterPersist.push(m);
    else this.msgs.push(m);
  }

  promotable(): boolean {
    return this.config.isVoter(this.id);
  }

  becomeFollower(term: number, lead: number): void {
    this.reset(term);
    this.role = "follower";
    this.lead = lead;
    this.stepRole = stepFollower;
  }

  becomePreCandidate(): void {
    assert(this.role !== "leader", "a leader does not become pre-candidate");
    // A pre-candidate forgets the leader, so others' pre-votes can succeed (hard case 4).
    this.role = "preCandidate";
    this.lead = NONE;
    this.votes = new Map();
    this.stepRole = stepCandidate;
  }

  becomeCandidate(): void {
    assert(this.role !== "leader", "a leader does not become candidate");
    this.reset(this.term + 1);
    this.role = "candidate";
    this.vote = this.id;
    this.stepRole = stepCandidate;
  }

  becomeLeader(): void {
    assert(this.role === "candidate", "only a candidate becomes leader");
    this.reset(this.term);
    this.role = "leader";
    this.lead = this.id;
    this.stepRole = stepLeader;
    this.progress = new Map();
    this.removedThisTerm = new Set();
    for (const id of this.config.members()) {
      const pr = new Progress(this.log.lastIndex() + 1, this.cfg.maxInflightMsgs);
      if (id === this.id) {
        pr.match = this.log.stableIndex;
        pr.becomeReplicate();
        pr.recentActive = true;
      }
      this.progress.set(id, pr);
    }
    this.uncommittedBytes = 0;
    const noop: Entry = {
      term: this.term,
      index: this.log.lastIndex() + 1,
      type: EntryType.ENTRY_TYPE_NORMAL,
      data: new Uint8Array(),
    };
    this.log.append([noop]);
    // No configuration change until an entry of this term commits (hard case 8).
    this.pendingConfIndex = noop.index;
    bcastAppend(this);
  }

  restoreConfig(cs: ConfState | undefined): void {
    this.config = Configuration.fromConfState(cs);
  }

  abortLeaderTransfer(): void {
    this.leadTransferee = NONE;
  }

  resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout =
      this.cfg.electionTimeoutTicks + this.cfg.rng.intn(this.cfg.electionTimeoutTicks);
  }

  // ---- private ------------------------------------------------------------

  private proposeEntries(entries: Entry[]): ProposeResult {
    this.assertNotInReady();
    if (this.role === "leader") return appendProposal(this, entries);
    // Only the leader takes a membership change (a forwarded one is refused there): say so now.
    if (entries.some((e) => e.type === EntryType.ENTRY_TYPE_CONF_CHANGE)) {
      const where = this.lead === NONE ? "" : ` (member ${this.lead})`;
      return dropped("INVALID_CONF_CHANGE", `propose membership changes on the leader${where}`);
    }
    return this.forwardToLeader(
      makeMessage({ type: MessageType.MESSAGE_TYPE_PROPOSE, from: this.id, entries }),
    );
  }

  private forwardToLeader(m: Message): ProposeResult {
    if (this.role !== "follower" || this.lead === NONE) {
      return dropped("NO_LEADER", "no leader is known; retry when one is elected");
    }
    m.to = this.lead;
    this.send(m);
    return { ok: true, forwardedTo: this.lead };
  }

  /** Returns whether the message should be processed further. */
  private stepHigherTerm(m: Message): boolean {
    const isVote = m.type === MessageType.MESSAGE_TYPE_VOTE || m.type === MessageType.MESSAGE_TYPE_PRE_VOTE;
    if (isVote) {
      // Leader lease: ignore disruptive (pre)votes while a leader is heard from (hard case 1).
      const inLease =
        this.cfg.checkQuorum && this.lead !== NONE && this.electionElapsed < this.cfg.electionTimeoutTicks;
      if (inLease && !m.transfer) return false;
    }
    if (m.type === MessageType.MESSAGE_TYPE_PRE_VOTE) return true; // PreVote never changes our term
    if (m.type === MessageType.MESSAGE_TYPE_PRE_VOTE_RESPONSE && !m.reject) return true; // granted for a future term
    const fromLeader =
      m.type === MessageType.MESSAGE_TYPE_APPEND ||
      m.type === MessageType.MESSAGE_TYPE_HEARTBEAT ||
      m.type === MessageType.MESSAGE_TYPE_SNAPSHOT;
    this.becomeFollower(m.term, fromLeader ? m.from : NONE);
    return true;
  }

  private stepLowerTerm(m: Message): void {
    const fromStaleLeader =
      m.type === MessageType.MESSAGE_TYPE_APPEND || m.type === MessageType.MESSAGE_TYPE_HEARTBEAT;
    if ((this.cfg.checkQuorum || this.cfg.preVote) && fromStaleLeader) {
      // Tell the stale leader our term, so a node stuck at a higher term can rejoin (hard case 2).
      this.send(makeMessage({ type: MessageType.MESSAGE_TYPE_APPEND_RESPONSE, to: m.from }));
    } else if (m.type === MessageType.MESSAGE_TYPE_PRE_VOTE) {
      // Reject at our term so the pre-candidate catches up (hard case 3).
      this.send(makeMessage({ type: MessageType.MESSAGE_TYPE_PRE_VOTE_RESPONSE, to: m.from, reject: true }));
    }
  }

  /** Resets per-term state; `term` becomes current (the vote is kept within a term). */
  reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.verifiedIndex = 0;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.abortLeaderTransfer();
    this.votes = new Map();
    // A leader change discards pending reads: clients retry with a fresh index (hard case 11).
    this.readOnly?.reset();
    this.pendingReadRequests = [];
  }

  private hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  private persistableHardState(hs: HardState): HardState {
    return this.knobs.forgetVoteOnRestart ? { ...hs, vote: NONE } : hs;
  }

  private softState(): SoftState {
    return { lead: this.lead, role: this.role };
  }

  private assertNotInReady(): void {
    assert(!this.inReady, "no step, tick or proposal between ready() and advance()");
  }
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

function sameSoftState(a: SoftState, b: SoftState): boolean {
  return a.lead === b.lead && a.role === b.role;
}
