// One simulated member, driven the way RaftNode drives the core (runtime/node.ts):
// inputs are stepped as they come while no write is in flight; a round takes one
// Ready, sends its messages, and writes its durable part, which takes virtual time.
// Inputs that arrive during the write wait and are stepped after advance(), before
// the next Ready: so a read or a tick can land in the round right after an election,
// as in the runtime. A crash during the write keeps a random prefix of it.
import { type Entry, EntryType, type Message } from "../../gen/raft/v1/raft.js";
import { Raft } from "../core/raft.js";
import { type Rng, SeededRng } from "../core/rand.js";
import type { Ready } from "../core/types.js";
import type { MemoryStorage } from "../memory-storage.js";
import { chainHash, type SafetyChecker } from "./checker.js";
import type { SimOptions } from "./options.js";

export interface SimStats {
  elections: number;
  appliedEntries: number;
  ackedWrites: number;
  readsServed: number;
  snapshotsSent: number;
  crashes: number;
  messages: number;
  confChanges: number;
  batches: number;
  unreachableReports: number;
  /** Ms from the start of the liveness phase until every live member served a read (-1: not reached). */
  readLivenessMs: number;
}

/** What a node needs from the simulation around it. */
export interface SimHost {
  readonly now: number;
  readonly rng: Rng;
  readonly opts: SimOptions;
  readonly checker: SafetyChecker;
  readonly stats: SimStats;
  readonly healed: boolean;
  /** Runs `fn` for this incarnation of the node at virtual time `at`. */
  schedule(node: SimNode, at: number, fn: () => void): void;
  send(m: Message): void;
  onLeader(node: SimNode, r: Raft): void;
  /** A Ready was persisted, applied and advanced. */
  onAdvanced(node: SimNode, r: Raft, rd: Ready): void;
  /** A normal entry was applied; `proposedHere` when this node's client proposed it (an acknowledgement). */
  onApplied(node: SimNode, e: Entry, key: string, proposedHere: boolean): void;
  onReadServed(node: SimNode, key: string): void;
  /** The node died in the middle of a write. */
  onCrashMidWrite(node: SimNode): void;
}

const enc = new TextEncoder();

export class SimNode {
  raft: Raft | undefined;
  incarnation = 0;
  lastCrashAt = -1;
  /** Term of the last leadership whose first commit was seen (for the commit nemesis). */
  firstCommitTerm = 0;
  applied = 0;
  hash = 0;
  /** Client proposals waiting for this node to apply them. */
  readonly proposals = new Set<string>();
  /** Read contexts waiting for a ReadState: the acknowledged index when each began. */
  readonly reads = new Map<string, number>();
  /** Reads that have their index, waiting for the state machine to reach it. */
  private awaitingApply: { key: string; index: number }[] = [];
  /** Stopped for good (removed, or never admitted). */
  stopped = false;
  private inbox: ((r: Raft) => void)[] = [];
  private writing: Ready | undefined;
  private roundScheduled = false;

  constructor(
    readonly id: number,
    readonly storage: MemoryStorage,
    private readonly host: SimHost,
  ) {}

  get up(): boolean {
    return this.raft !== undefined && !this.stopped;
  }

  start(): void {
    const { host } = this;
    this.incarnation++;
    const state = this.storage.load();
    this.raft = new Raft(
      {
        id: this.id,
        rng: new SeededRng(host.opts.seed * 7919 + this.id * 104729 + this.incarnation),
        electionTimeoutTicks: host.opts.electionTimeoutTicks,
        heartbeatTicks: 1,
        maxInflightMsgs: host.opts.maxInflightMsgs,
        maxMsgBytes: host.opts.maxMsgBytes,
        lazyCommit: host.opts.lazyCommit,
        knobs: host.opts.knobs,
      },
      state,
    );
    this.restoreStateMachine(this.storage.snapshot.data, this.storage.snapshot.metadata!.index);
    this.proposals.clear();
    this.reads.clear();
    this.awaitingApply = [];
    this.inbox = [];
    this.writing = undefined;
    this.roundScheduled = false;
    const tick = () => {
      this.input((r) => r.tick());
      host.schedule(this, host.now + host.opts.tickMs, tick);
    };
    host.schedule(this, host.now + 1 + host.rng.intn(host.opts.tickMs), tick);
    this.scheduleRound();
  }

  /** The process dies: a write in flight keeps a random prefix, nothing else survives. */
  crash(): void {
    if (!this.raft) return;
    if (this.writing) {
      const parts = this.storage.partCount(this.writing);
      this.storage.persistPrefix(this.writing, this.host.rng.intn(parts + 1));
    }
    this.storage.crash();
    this.raft = undefined;
    this.writing = undefined;
    this.inbox = [];
    this.lastCrashAt = this.host.now;
  }

  /** Steps an input now, or after the write in flight (a round's inputs are batched). */
  input(fn: (r: Raft) => void): void {
    const r = this.raft;
    if (!r || this.stopped) return;
    if (this.writing) {
      this.inbox.push(fn);
      return;
    }
    fn(r);
    this.scheduleRound();
  }

  private scheduleRound(): void {
    if (this.roundScheduled || !this.raft || this.writing) return;
    this.roundScheduled = true;
    this.host.schedule(this, this.host.now, () => this.round());
  }

  private round(): void {
    this.roundScheduled = false;
    const r = this.raft;
    const { host } = this;
    if (!r || this.writing || this.stopped || !r.hasReady()) return;
    const rd = r.ready();
    if (rd.softState?.role === "leader") host.onLeader(this, r);
    for (const m of rd.messages) host.send(m);
    this.writing = rd;
    if (!host.healed && host.rng.next() < host.opts.crashMidReadyRate) {
      host.onCrashMidWrite(this); // sent, and only part of this Ready persisted
      return;
    }
    const latency = this.storage.partCount(rd) === 0 ? 0 : host.rng.intn(host.opts.maxWriteMs + 1);
    if (latency === 0) this.persisted(r, rd);
    else host.schedule(this, host.now + latency, () => this.persisted(r, rd));
  }

  private persisted(r: Raft, rd: Ready): void {
    const { host } = this;
    this.storage.persist(rd);
    this.writing = undefined;
    for (const m of rd.messagesAfterPersist) host.send(m);
    if (rd.snapshot) this.restoreStateMachine(rd.snapshot.data, rd.snapshot.metadata!.index);
    for (const e of rd.committedEntries) this.apply(e);
    for (const rs of rd.readStates) {
      const key = Buffer.from(rs.context).toString();
      const ackedAtStart = this.reads.get(key);
      if (ackedAtStart === undefined) continue;
      this.reads.delete(key);
      host.checker.onReadIndex(this.id, rs.index, ackedAtStart);
      this.awaitingApply.push({ key, index: rs.index });
    }
    r.advance();
    host.onAdvanced(this, r, rd);
    if (this.applied - r.log.snapshotIndex() >= host.opts.compactEveryEntries) {
      const data = enc.encode(JSON.stringify({ hash: this.hash }));
      const keep = host.opts.keepEntriesAfterSnapshot;
      this.storage.compact(r.compact(data, keep), keep);
    }
    this.serveReads();
    const inbox = this.inbox;
    this.inbox = [];
    for (const fn of inbox) fn(r);
    this.scheduleRound();
  }

  private serveReads(): void {
    if (this.awaitingApply.length === 0) return;
    const served = this.awaitingApply.filter((rd) => rd.index <= this.applied);
    this.awaitingApply = this.awaitingApply.filter((rd) => rd.index > this.applied);
    for (const rd of served) this.host.onReadServed(this, rd.key);
  }

  private restoreStateMachine(data: Uint8Array, index: number): void {
    this.applied = index;
    this.hash = data.byteLength === 0 ? 0 : JSON.parse(Buffer.from(data).toString()).hash;
    if (index > 0) this.host.checker.checkHash(this.id, index, this.hash);
  }

  private apply(e: Entry): void {
    const { checker, stats } = this.host;
    if (e.index !== this.applied + 1) {
      checker.fail(`node ${this.id} applied index ${e.index} after ${this.applied}`);
      return;
    }
    this.applied = e.index;
    this.hash = chainHash(this.hash, e);
    checker.onApply(this.id, e, this.hash);
    stats.appliedEntries++;
    if (e.type !== EntryType.ENTRY_TYPE_NORMAL || e.data.byteLength === 0) return;
    const key = Buffer.from(e.data).toString();
    this.host.onApplied(this, e, key, this.proposals.delete(key));
  }
}
