// A whole Raft cluster in one process under virtual time: seeded, so any run
// replays exactly from its seed. Faults: message drop, delay, duplication and
// reordering, partitions, crashes (losing everything not persisted, including
// in the middle of a Ready), plus random proposals, reads, membership changes
// and leadership transfers. Invariants are checked as it goes (checker.ts).
import {
  type ConfChange,
  ConfChangeType,
  type Entry,
  EntryType,
  type Message,
  MessageType,
} from "../../gen/raft/v1/raft.js";
import { bootstrapState, joiningState } from "../core/bootstrap.js";
import { Raft } from "../core/raft.js";
import { type Rng, SeededRng } from "../core/rand.js";
import type { ProposeResult } from "../core/types.js";
import { MemoryStorage } from "../memory-storage.js";
import { chainHash, SafetyChecker } from "./checker.js";
import { EventQueue } from "./heap.js";
import type { SimOptions } from "./options.js";

type SimEvent =
  | { kind: "deliver"; msg: Message; sentAt: number }
  | { kind: "tick"; node: number; incarnation: number }
  | { kind: "restart"; node: number }
  | { kind: "crash"; node: number; incarnation: number }
  | { kind: "client" }
  | { kind: "fault" }
  | { kind: "healPartition" }
  | { kind: "heal" }
  | { kind: "marker" };

interface SimNode {
  id: number;
  raft: Raft | undefined;
  storage: MemoryStorage;
  incarnation: number;
  lastCrashAt: number;
  /** Term of the last leadership whose first commit was seen (for the commit nemesis). */
  firstCommitTerm: number;
  applied: number;
  hash: number;
  /** Client proposals waiting for this node to apply them. */
  proposals: Set<string>;
  /** Read contexts waiting for a ReadState: the acknowledged index when each began. */
  reads: Map<string, number>;
  /** Stopped for good (removed, or never admitted). */
  stopped: boolean;
}

export interface SimStats {
  elections: number;
  appliedEntries: number;
  ackedWrites: number;
  readsServed: number;
  snapshotsSent: number;
  crashes: number;
  messages: number;
  confChanges: number;
}

export interface SimResult {
  seed: number;
  violations: string[];
  stats: SimStats;
  endMs: number;
}

const enc = new TextEncoder();

export class Simulator {
  private readonly rng: Rng;
  private readonly queue = new EventQueue<SimEvent>();
  private readonly nodes = new Map<number, SimNode>();
  private readonly checker = new SafetyChecker();
  private now = 0;
  private nextNodeId: number;
  private nextClientId = 1;
  private partition: Map<number, number> | undefined;
  private healed = false;
  private markerApplied = false;
  private markers = new Set<string>();
  private lastConfIndex = 0;
  private memberIds: Set<number>;
  readonly stats: SimStats = {
    elections: 0,
    appliedEntries: 0,
    ackedWrites: 0,
    readsServed: 0,
    snapshotsSent: 0,
    crashes: 0,
    messages: 0,
    confChanges: 0,
  };

  constructor(private readonly opts: SimOptions) {
    this.rng = new SeededRng(opts.seed * 2654435761 + 17);
    const voters = Array.from({ length: opts.nodes }, (_, i) => i + 1);
    this.memberIds = new Set(voters);
    this.nextNodeId = opts.nodes + 1;
    for (const id of voters) this.addNode(id, new MemoryStorage(bootstrapState(voters)));
  }

  run(): SimResult {
    this.queue.push(this.exp(this.opts.proposeRatePerMs), { kind: "client" });
    this.queue.push(this.exp(this.opts.faultRatePerMs), { kind: "fault" });
    this.queue.push(this.opts.chaosMs, { kind: "heal" });
    const deadline = this.opts.chaosMs + this.opts.livenessBoundMs;
    let sinceLogCheck = 0;
    try {
      while (this.checker.violations.length === 0 && !this.markerApplied) {
        const ev = this.queue.pop();
        if (!ev || ev.at > deadline) break;
        this.now = ev.at;
        this.handle(ev.value);
        if (this.now - sinceLogCheck >= 50) {
          sinceLogCheck = this.now;
          this.checkLogs();
        }
      }
      this.checkLogs();
      if (this.checker.violations.length === 0 && !this.markerApplied) {
        this.checker.fail(
          `liveness: no proposal committed on every member within ${this.opts.livenessBoundMs} ms after faults healed; ${this.describe()}`,
        );
      }
    } catch (err) {
      const e = err as Error;
      this.checker.fail(`exception at ${this.now} ms: ${e.stack ?? e.message}`);
    }
    return { seed: this.opts.seed, violations: this.checker.violations, stats: this.stats, endMs: this.now };
  }

  // ---- nodes ----------------------------------------------------------------

  private addNode(id: number, storage: MemoryStorage): SimNode {
    const node: SimNode = {
      id,
      raft: undefined,
      storage,
      incarnation: 0,
      lastCrashAt: -1,
      firstCommitTerm: 0,
      applied: 0,
      hash: 0,
      proposals: new Set(),
      reads: new Map(),
      stopped: false,
    };
    this.nodes.set(id, node);
    this.start(node);
    return node;
  }

  private start(node: SimNode): void {
    node.incarnation++;
    const state = node.storage.load();
    node.raft = new Raft(
      {
        id: node.id,
        rng: new SeededRng(this.opts.seed * 7919 + node.id * 104729 + node.incarnation),
        electionTimeoutTicks: this.opts.electionTimeoutTicks,
        heartbeatTicks: 1,
        maxInflightMsgs: this.opts.maxInflightMsgs,
        maxMsgBytes: this.opts.maxMsgBytes,
        lazyCommit: this.opts.lazyCommit,
        knobs: this.opts.knobs,
      },
      state,
    );
    this.restoreStateMachine(node, node.storage.snapshot.data, node.storage.snapshot.metadata!.index);
    node.proposals.clear();
    node.reads.clear();
    this.queue.push(this.now + 1 + this.rng.intn(this.opts.tickMs), {
      kind: "tick",
      node: node.id,
      incarnation: node.incarnation,
    });
    this.processReady(node);
  }

  private crash(node: SimNode): void {
    if (!node.raft) return;
    node.raft = undefined;
    node.lastCrashAt = this.now;
    this.stats.crashes++;
  }

  private restoreStateMachine(node: SimNode, data: Uint8Array, index: number): void {
    node.applied = index;
    node.hash = data.byteLength === 0 ? 0 : JSON.parse(Buffer.from(data).toString()).hash;
    if (index > 0) this.checker.checkHash(node.id, index, node.hash);
  }

  private processReady(node: SimNode): void {
    while (node.raft?.hasReady()) {
      const r = node.raft;
      const rd = r.ready();
      if (rd.softState?.role === "leader") {
        this.stats.elections++;
        this.checker.onLeader(r);
        if (!this.healed && this.rng.next() < this.opts.leaderCrashRate) {
          const at = this.now + this.rng.intn(this.opts.leaderCrashWindowMs);
          this.queue.push(at, { kind: "crash", node: node.id, incarnation: node.incarnation });
        }
      }
      for (const m of rd.messages) this.send(m);
      if (!this.healed && this.rng.next() < this.opts.crashMidReadyRate) {
        this.crash(node); // sent, but nothing of this Ready was persisted
        return;
      }
      node.storage.persist(rd);
      for (const m of rd.messagesAfterPersist) this.send(m);
      if (rd.snapshot) this.restoreStateMachine(node, rd.snapshot.data, rd.snapshot.metadata!.index);
      for (const e of rd.committedEntries) this.apply(node, e);
      this.maybeCrashAfterFirstCommit(node, r, rd.committedEntries.length > 0);
      for (const rs of rd.readStates) {
        const key = Buffer.from(rs.context).toString();
        const ackedAtStart = node.reads.get(key);
        if (ackedAtStart === undefined) continue;
        node.reads.delete(key);
        this.checker.onReadIndex(node.id, rs.index, ackedAtStart);
        this.stats.readsServed++;
      }
      r.advance();
      if (rd.committedEntries.some((e) => e.type === EntryType.ENTRY_TYPE_CONF_CHANGE)) this.noteConfig(r);
      if (node.applied - r.log.snapshotIndex() >= this.opts.compactEveryEntries) {
        const data = enc.encode(JSON.stringify({ hash: node.hash }));
        const keep = this.opts.keepEntriesAfterSnapshot;
        node.storage.compact(r.compact(data, keep), keep);
      }
    }
  }

  /** Nemesis: a leader dies just after its first commit of a term (Figure 8's moment). */
  private maybeCrashAfterFirstCommit(node: SimNode, r: Raft, committed: boolean): void {
    if (this.healed || !committed || r.role !== "leader") return;
    const first = node.firstCommitTerm !== r.term;
    node.firstCommitTerm = r.term;
    const rate = first ? this.opts.firstCommitCrashRate : this.opts.leaderCommitCrashRate;
    if (this.rng.next() < rate) {
      this.queue.push(this.now + this.rng.intn(3), {
        kind: "crash",
        node: node.id,
        incarnation: node.incarnation,
      });
    }
  }

  private apply(node: SimNode, e: Entry): void {
    if (e.index !== node.applied + 1) {
      this.checker.fail(`node ${node.id} applied index ${e.index} after ${node.applied}`);
      return;
    }
    node.applied = e.index;
    node.hash = chainHash(node.hash, e);
    this.checker.onApply(node.id, e, node.hash);
    this.stats.appliedEntries++;
    if (e.type !== EntryType.ENTRY_TYPE_NORMAL || e.data.byteLength === 0) return;
    const key = Buffer.from(e.data).toString();
    if (node.proposals.delete(key)) {
      this.checker.onAck(e.index);
      this.stats.ackedWrites++;
    }
    if (this.healed && this.markers.has(key)) this.checkMarker(e.index);
  }

  private noteConfig(r: Raft): void {
    if (r.log.applied <= this.lastConfIndex) return;
    this.lastConfIndex = r.log.applied;
    this.memberIds = new Set(r.config.members());
  }

  private checkMarker(index: number): void {
    for (const id of this.memberIds) {
      const n = this.nodes.get(id);
      if (!n || n.stopped) continue;
      if (!n.raft || n.applied < index) return;
    }
    this.markerApplied = true;
  }

  // ---- network --------------------------------------------------------------

  private send(m: Message): void {
    this.stats.messages++;
    if (m.type === MessageType.MESSAGE_TYPE_SNAPSHOT) this.stats.snapshotsSent++;
    if (!this.healed && this.rng.next() < this.opts.dropRate) {
      this.undeliverable(m);
      return;
    }
    this.queue.push(this.now + this.delay(), { kind: "deliver", msg: m, sentAt: this.now });
    if (!this.healed && this.rng.next() < this.opts.duplicateRate) {
      this.queue.push(this.now + this.delay(), { kind: "deliver", msg: m, sentAt: this.now });
    }
  }

  private delay(): number {
    const { minDelayMs, maxDelayMs, slowRate } = this.opts;
    const d = minDelayMs + this.rng.intn(maxDelayMs - minDelayMs + 1);
    return !this.healed && this.rng.next() < slowRate ? d * 5 : d;
  }

  /** The transport tells the sender when a snapshot could not be delivered. */
  private undeliverable(m: Message): void {
    if (m.type !== MessageType.MESSAGE_TYPE_SNAPSHOT) return;
    const sender = this.nodes.get(m.from);
    if (sender?.raft) {
      sender.raft.reportSnapshot(m.to, false);
      this.processReady(sender);
    }
  }

  private deliver(m: Message, sentAt: number): void {
    const from = this.nodes.get(m.from);
    const unflushed =
      from !== undefined && from.lastCrashAt >= sentAt && from.lastCrashAt - sentAt <= this.opts.unflushedMs;
    if (unflushed && this.rng.next() < 0.5) return; // some of it had left the process
    const to = this.nodes.get(m.to);
    const cut = this.partition !== undefined && this.partition.get(m.from) !== this.partition.get(m.to);
    if (!to?.raft || to.stopped || cut) {
      this.undeliverable(m);
      return;
    }
    to.raft.step(m);
    this.processReady(to);
    if (m.type === MessageType.MESSAGE_TYPE_SNAPSHOT) {
      // Like the real transport: the stream finished, so the sender resumes probing.
      const sender = this.nodes.get(m.from);
      if (sender?.raft) {
        sender.raft.reportSnapshot(m.to, true);
        this.processReady(sender);
      }
    }
  }

  // ---- events -----------------------------------------------------------------

  private handle(ev: SimEvent): void {
    switch (ev.kind) {
      case "deliver":
        this.deliver(ev.msg, ev.sentAt);
        return;
      case "tick": {
        const node = this.nodes.get(ev.node)!;
        if (!node.raft || node.incarnation !== ev.incarnation || node.stopped) return;
        node.raft.tick();
        this.processReady(node);
        this.queue.push(this.now + this.opts.tickMs, ev);
        return;
      }
      case "crash": {
        const node = this.nodes.get(ev.node)!;
        if (this.healed || node.incarnation !== ev.incarnation || !node.raft) return;
        this.crash(node);
        this.queue.push(this.now + 50 + this.rng.intn(500), { kind: "restart", node: node.id });
        return;
      }
      case "restart": {
        const node = this.nodes.get(ev.node)!;
        if (!node.raft && !node.stopped) this.start(node);
        return;
      }
      case "client":
        this.clientOp();
        this.queue.push(this.now + this.exp(this.opts.proposeRatePerMs + this.opts.readRatePerMs), ev);
        return;
      case "fault":
        if (this.healed) return;
        this.injectFault();
        this.queue.push(this.now + this.exp(this.opts.faultRatePerMs), ev);
        return;
      case "healPartition":
        this.partition = undefined;
        return;
      case "heal":
        this.heal();
        return;
      case "marker":
        this.proposeMarker();
        return;
    }
  }

  private exp(ratePerMs: number): number {
    return Math.max(1, Math.round(-Math.log(1 - this.rng.next()) / ratePerMs));
  }

  private aliveNodes(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.raft && !n.stopped);
  }

  private pick<T>(items: T[]): T | undefined {
    return items.length === 0 ? undefined : items[this.rng.intn(items.length)];
  }

  private clientOp(): void {
    const node = this.pick(this.aliveNodes());
    if (!node?.raft) return;
    const o = this.opts;
    const total = o.proposeRatePerMs + o.readRatePerMs + o.confChangeRatePerMs + o.transferRatePerMs;
    const x = this.rng.next() * total;
    const readsFrom = o.proposeRatePerMs;
    const confFrom = readsFrom + o.readRatePerMs;
    const transferFrom = confFrom + o.confChangeRatePerMs;
    if (x < readsFrom) {
      const key = `p${this.nextClientId++}`;
      if (node.raft.propose(enc.encode(key)).ok) node.proposals.add(key);
    } else if (x < confFrom) {
      const key = `r${this.nextClientId++}`;
      if (node.raft.readIndex(enc.encode(key)).ok) node.reads.set(key, this.checker.ackedIndex);
    } else if (x < transferFrom) {
      if (!this.healed) this.changeMembership(node);
    } else if (!this.healed) {
      const target = this.pick([...node.raft.config.voters]);
      if (target !== undefined) node.raft.transferLeader(target);
    }
    this.processReady(node);
  }

  private changeMembership(node: SimNode): void {
    const r = node.raft!;
    const learners = [...r.config.learners];
    const voters = [...r.config.voters];
    const roll = this.rng.intn(3);
    let result: ProposeResult | undefined;
    if (roll === 0 && r.config.members().length < this.opts.maxMembers) {
      const id = this.nextNodeId++;
      result = r.proposeConfChange(cc(ConfChangeType.CONF_CHANGE_TYPE_ADD_LEARNER, id));
      if (result.ok) this.addNode(id, new MemoryStorage(joiningState()));
    } else if (roll === 1 && learners.length > 0) {
      result = r.proposeConfChange(cc(ConfChangeType.CONF_CHANGE_TYPE_PROMOTE_VOTER, this.pick(learners)!));
    } else if (roll === 2 && (voters.length > 3 || learners.length > 0)) {
      const target = this.pick(voters.length > 3 ? [...voters, ...learners] : learners)!;
      result = r.proposeConfChange(cc(ConfChangeType.CONF_CHANGE_TYPE_REMOVE_NODE, target));
    }
    if (result?.ok) this.stats.confChanges++;
  }

  private injectFault(): void {
    const alive = this.aliveNodes();
    const roll = this.rng.intn(5);
    if (roll <= 1) {
      // Half the crashes hit the leader (Jepsen's nemesis): the hard cases live there.
      const leader = alive.find((n) => n.raft?.role === "leader");
      const victim = roll === 0 && leader ? leader : this.pick(alive);
      if (!victim) return;
      this.crash(victim);
      this.queue.push(this.now + 50 + this.rng.intn(1000), { kind: "restart", node: victim.id });
    } else if (roll <= 3 && this.partition === undefined) {
      this.partition = new Map();
      const leader = alive.find((n) => n.raft?.role === "leader");
      for (const id of this.nodes.keys()) this.partition.set(id, this.rng.intn(2));
      // Sometimes cut the leader off alone, so a new leader rises beside the old one.
      if (roll === 3 && leader)
        for (const id of this.nodes.keys()) this.partition.set(id, id === leader.id ? 1 : 0);
      this.queue.push(this.now + 100 + this.rng.intn(1500), { kind: "healPartition" });
    } else {
      // a slow node: its messages are delayed by pausing its clock for a while
      const victim = this.pick(alive);
      if (victim) {
        this.crash(victim);
        this.stats.crashes--; // counted as a pause, not a crash
        this.queue.push(this.now + 200 + this.rng.intn(400), { kind: "restart", node: victim.id });
      }
    }
  }

  private heal(): void {
    this.healed = true;
    this.partition = undefined;
    for (const node of this.nodes.values()) {
      if (!this.memberIds.has(node.id)) {
        node.stopped = true;
        node.raft = undefined;
      } else if (!node.raft) {
        this.start(node);
      }
    }
    this.queue.push(this.now + this.opts.tickMs, { kind: "marker" });
  }

  private proposeMarker(): void {
    if (this.markerApplied) return;
    const leader = this.aliveNodes().find((n) => n.raft?.role === "leader");
    if (leader?.raft) {
      const key = `m${this.nextClientId++}`;
      this.markers.add(key);
      leader.raft.propose(enc.encode(key));
      this.processReady(leader);
    }
    this.queue.push(this.now + 20 * this.opts.tickMs, { kind: "marker" });
  }

  /** One line per node, for a failure report. */
  describe(): string {
    const lines = [...this.nodes.values()].map((n) => {
      if (n.stopped) return `${n.id}: stopped`;
      if (!n.raft) return `${n.id}: down`;
      const s = n.raft.status();
      return `${n.id}: ${s.role} term=${s.term} lead=${s.lead} commit=${s.commit} applied=${s.applied} last=${s.lastIndex} voters=${s.voters} learners=${s.learners}`;
    });
    return `members=${[...this.memberIds]}\n    ${lines.join("\n    ")}`;
  }

  private checkLogs(): void {
    const alive = this.aliveNodes();
    for (let i = 0; i < alive.length; i++) {
      for (let j = i + 1; j < alive.length; j++)
        this.checker.checkLogMatching(alive[i].raft!, alive[j].raft!);
    }
  }
}

function cc(type: ConfChangeType, nodeId: number): ConfChange {
  return { type, nodeId, context: new Uint8Array() };
}

export function runSeed(opts: SimOptions): SimResult {
  return new Simulator(opts).run();
}
