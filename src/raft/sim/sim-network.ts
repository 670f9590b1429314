// The Transport for the runtime simulator: messages between the members' current
// processes with seeded delay, drop, duplication, reordering (a share of messages
// is much slower) and partitions, until faults heal. Like GrpcTransport it tells
// the sender how a snapshot went and when a peer could not be reached; messages
// sent just before their sender crashed may die with it (user-space buffers).
import { type Message, MessageType } from "../../gen/raft/v1/raft.js";
import type { Membership } from "../runtime/members.js";
import type { Transport, TransportEvents } from "../runtime/types.js";
import type { SimProcess, SimScheduler } from "./sim-clock.js";

export interface SimNetworkOptions {
  minDelayMs: number;
  maxDelayMs: number;
  /** Share of messages that take up to 5x the max delay (reordering). */
  slowRate: number;
  dropRate: number;
  duplicateRate: number;
  /** Messages sent this recently before their sender crashed may be lost with it. */
  unflushedMs: number;
}

export interface NetworkStats {
  messages: number;
  snapshotsSent: number;
}

class Endpoint implements Transport {
  readonly peers = new Set<number>();
  crashedAt = -1;

  constructor(
    private readonly net: SimNetwork,
    readonly proc: SimProcess,
    readonly events: TransportEvents,
  ) {}

  send(messages: Message[]): void {
    if (this.proc.dead) return;
    for (const m of messages) this.net.send(this, m);
  }

  addPeer(id: number): void {
    this.peers.add(id);
  }

  removePeer(id: number): void {
    this.peers.delete(id);
  }

  /** The applied membership: its members are this endpoint's peers (delivery ignores bindings here). */
  setMembers(membership: Membership): void {
    for (const id of membership.members.keys()) if (id !== this.proc.nodeId) this.peers.add(id);
    for (const id of membership.removed) this.peers.delete(id);
  }

  async close(): Promise<void> {}
}

export class SimNetwork {
  /** Group of each node while partitioned; messages cross no group boundary. */
  partition: Map<number, number> | undefined;
  readonly stats: NetworkStats = { messages: 0, snapshotsSent: 0 };
  private readonly endpoints = new Map<number, Endpoint>();

  constructor(
    private readonly sched: SimScheduler,
    private readonly opts: SimNetworkOptions,
    private readonly faults: { healed: boolean },
  ) {}

  /** The transport of a member's new process; deliveries to its id go there from now on. */
  attach(proc: SimProcess, events: TransportEvents, peers: Iterable<number>): Transport {
    const endpoint = new Endpoint(this, proc, events);
    for (const id of peers) if (id !== proc.nodeId) endpoint.addPeer(id);
    this.endpoints.set(proc.nodeId, endpoint);
    return endpoint;
  }

  /** The member's process died at this moment. */
  crashed(nodeId: number): void {
    const endpoint = this.endpoints.get(nodeId);
    if (endpoint) endpoint.crashedAt = this.sched.now;
  }

  send(from: Endpoint, m: Message): void {
    this.stats.messages++;
    if (m.type === MessageType.MESSAGE_TYPE_SNAPSHOT) this.stats.snapshotsSent++;
    const { rng } = this.sched;
    if (!this.faults.healed && rng.next() < this.opts.dropRate) {
      this.undeliverable(from, m);
      return;
    }
    const sentAt = this.sched.now;
    this.sched.after(this.delay(), () => this.deliver(from, m, sentAt));
    if (!this.faults.healed && rng.next() < this.opts.duplicateRate) {
      this.sched.after(this.delay(), () => this.deliver(from, m, sentAt));
    }
  }

  private delay(): number {
    const { minDelayMs, maxDelayMs, slowRate } = this.opts;
    const { rng } = this.sched;
    const d = minDelayMs + rng.intn(maxDelayMs - minDelayMs + 1);
    return !this.faults.healed && rng.next() < slowRate ? d * 5 : d;
  }

  private deliver(from: Endpoint, m: Message, sentAt: number): boolean {
    const unflushed = from.crashedAt >= sentAt && from.crashedAt - sentAt <= this.opts.unflushedMs;
    if (unflushed && this.sched.rng.next() < 0.5) return false; // it had not left the process
    const to = this.endpoints.get(m.to);
    const cut = this.partition !== undefined && this.partition.get(m.from) !== this.partition.get(m.to);
    if (!to || to.proc.dead || cut) {
      this.undeliverable(from, m);
      return true;
    }
    to.proc.run(() => to.events.onMessage(m));
    // Like GrpcTransport: the snapshot stream finished, so the sender resumes probing.
    if (m.type === MessageType.MESSAGE_TYPE_SNAPSHOT)
      from.proc.run(() => from.events.onSnapshotStatus(m.to, true));
    return true;
  }

  /** GrpcTransport reports a failed snapshot stream, and a broken stream as unreachable. */
  private undeliverable(from: Endpoint, m: Message): void {
    if (m.type === MessageType.MESSAGE_TYPE_SNAPSHOT) {
      from.proc.run(() => from.events.onSnapshotStatus(m.to, false));
    } else if (this.sched.rng.intn(4) === 0) {
      from.proc.run(() => from.events.onUnreachable(m.to));
    }
  }
}
