// A controllable in-process cluster for scenario tests (after etcd-io/raft's
// test `network`): every node's Ready is processed in full (persist, send,
// apply, advance), messages are delivered only when a test says so, and links
// can be cut, filtered or healed. Nothing here is random except the per-node
// seeded election timeouts.
import {
  type ConfChange,
  ConfChangeType,
  type Entry,
  EntryType,
  type Message,
  MessageType,
} from "../../src/gen/raft/v1/raft.js";
import { bootstrapState, joiningState } from "../../src/raft/core/bootstrap.js";
import { Raft } from "../../src/raft/core/raft.js";
import { SeededRng } from "../../src/raft/core/rand.js";
import type { ProposeResult, RaftConfig, ReadState, Ready } from "../../src/raft/core/types.js";
import { MemoryStorage } from "../../src/raft/memory-storage.js";

export const T = MessageType;

export interface TestNode {
  id: number;
  raft: Raft | undefined;
  storage: MemoryStorage;
  /** Every entry applied, in order, since the node was created (restarts re-apply). */
  applied: Entry[];
  readStates: ReadState[];
  readies: Ready[];
  incarnation: number;
}

export type NodeOptions = Omit<RaftConfig, "id" | "rng">;

export type MessageFilter = (m: Message) => boolean;

const enc = new TextEncoder();
const dec = new TextDecoder();

export function data(s: string): Uint8Array {
  return enc.encode(s);
}

export function text(e: Entry): string {
  return dec.decode(e.data);
}

export function confChange(type: ConfChangeType, nodeId: number): ConfChange {
  return { type, nodeId, context: new Uint8Array() };
}

export const CC = ConfChangeType;

export class TestCluster {
  readonly nodes = new Map<number, TestNode>();
  /** Messages sent and not yet delivered. */
  inflight: Message[] = [];
  /** Every message ever delivered or dropped, for assertions. */
  readonly delivered: Message[] = [];
  private readonly cuts = new Set<string>();
  private readonly filters: MessageFilter[] = [];
  private seed: number;

  constructor(
    ids: number[],
    readonly options: NodeOptions = {},
    seed = 1,
  ) {
    this.seed = seed;
    const boot = bootstrapState(ids);
    for (const id of ids) this.create(id, new MemoryStorage(boot));
  }

  node(id: number): TestNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  raft(id: number): Raft {
    const r = this.node(id).raft;
    if (!r) throw new Error(`node ${id} is down`);
    return r;
  }

  /** Adds a node with an empty state (to be added to the configuration by a change). */
  addJoiningNode(id: number, options: NodeOptions = this.options): TestNode {
    return this.create(id, new MemoryStorage(joiningState()), options);
  }

  private create(id: number, storage: MemoryStorage, options: NodeOptions = this.options): TestNode {
    const node: TestNode = {
      id,
      raft: undefined,
      storage,
      applied: [],
      readStates: [],
      readies: [],
      incarnation: 0,
    };
    this.nodes.set(id, node);
    this.start(node, options);
    return node;
  }

  private start(node: TestNode, options: NodeOptions = this.options): void {
    node.incarnation++;
    node.raft = new Raft(
      { ...options, id: node.id, rng: new SeededRng(this.seed * 1000 + node.id * 31 + node.incarnation) },
      node.storage.load(),
    );
    this.process(node.id);
  }

  /** The process dies: whatever was not durable is lost. */
  crash(id: number): void {
    const node = this.node(id);
    node.raft = undefined;
    node.storage.crash();
  }

  restart(id: number, options: NodeOptions = this.options): void {
    const node = this.node(id);
    if (!node.raft) this.start(node, options);
  }

  /** Drains one node's Ready fully. */
  process(id: number): void {
    while (this.processOnce(id)) {
      // until nothing is left
    }
  }

  /** Handles one Ready of a node (persist, send, apply, advance); false if it had none. */
  processOnce(id: number): boolean {
    const node = this.node(id);
    if (!node.raft?.hasReady()) return false;
    const rd = node.raft.ready();
    node.readies.push(rd);
    this.inflight.push(...rd.messages);
    node.storage.persist(rd);
    this.inflight.push(...rd.messagesAfterPersist);
    node.applied.push(...rd.committedEntries);
    node.readStates.push(...rd.readStates);
    node.raft.advance();
    return true;
  }

  processAll(): void {
    for (const id of this.nodes.keys()) this.process(id);
  }

  /** Delivers messages until none are left (or a round limit, against livelock). */
  deliverAll(maxMessages = 100_000): void {
    this.processAll();
    let n = 0;
    while (this.inflight.length > 0) {
      const batch = this.inflight;
      this.inflight = [];
      for (const m of batch) {
        if (++n > maxMessages) throw new Error("deliverAll: message storm (livelock?)");
        this.deliver(m);
      }
      this.processAll();
    }
  }

  /** Delivers one message now, if its link is up and no filter drops it. */
  deliver(m: Message): boolean {
    this.delivered.push(m);
    const to = this.nodes.get(m.to);
    if (!to?.raft || this.cuts.has(`${m.from}-${m.to}`) || this.filters.some((f) => f(m))) return false;
    to.raft.step(m);
    this.process(m.to);
    return true;
  }

  /** Takes the pending messages matching `pick` out of flight, undelivered. */
  take(pick: MessageFilter): Message[] {
    const taken = this.inflight.filter(pick);
    this.inflight = this.inflight.filter((m) => !pick(m));
    return taken;
  }

  cut(a: number, b: number): void {
    this.cuts.add(`${a}-${b}`);
    this.cuts.add(`${b}-${a}`);
  }

  isolate(id: number): void {
    for (const other of this.nodes.keys()) if (other !== id) this.cut(id, other);
  }

  /** Cuts every link between the two groups. */
  partition(a: number[], b: number[]): void {
    for (const x of a) for (const y of b) this.cut(x, y);
  }

  heal(): void {
    this.cuts.clear();
    this.filters.length = 0;
  }

  drop(filter: MessageFilter): void {
    this.filters.push(filter);
  }

  tick(id: number, times = 1): void {
    for (let i = 0; i < times; i++) {
      this.node(id).raft?.tick();
      this.process(id);
    }
  }

  /** Ticks every live node `times` times, delivering messages after each round. */
  tickAll(times = 1): void {
    for (let i = 0; i < times; i++) {
      for (const n of this.nodes.values()) n.raft?.tick();
      this.deliverAll();
    }
  }

  /** Makes `id` campaign now (PreVote applies if enabled) and delivers everything. */
  elect(id: number): void {
    this.raft(id).campaign();
    this.deliverAll();
  }

  propose(id: number, payload: string): ProposeResult {
    const r = this.raft(id).propose(data(payload));
    this.deliverAll();
    return r;
  }

  changeConf(id: number, type: ConfChangeType, nodeId: number): ProposeResult {
    const r = this.raft(id).proposeConfChange(confChange(type, nodeId));
    this.deliverAll();
    return r;
  }

  leaders(): number[] {
    return [...this.nodes.values()].filter((n) => n.raft?.role === "leader").map((n) => n.id);
  }

  /** The normal, non-empty entries a node applied, as strings. */
  appliedData(id: number): string[] {
    return this.node(id)
      .applied.filter((e) => e.type === EntryType.ENTRY_TYPE_NORMAL && e.data.byteLength > 0)
      .map(text);
  }

  /** Log entries (index, term) of a live node after its snapshot. */
  logTerms(id: number): { index: number; term: number }[] {
    const r = this.raft(id);
    const out: { index: number; term: number }[] = [];
    for (let i = r.log.firstIndex(); i <= r.log.lastIndex(); i++)
      out.push({ index: i, term: r.log.term(i)! });
    return out;
  }
}
