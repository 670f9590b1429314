// The simulated network: delays, drops, duplicates and reordering (slow messages),
// partitions, and what a transport tells the sender (a snapshot's outcome, a peer it
// cannot reach). Everything random comes from the simulation's seeded generator.
import { type Message, MessageType } from "../../gen/raft/v1/raft.js";
import type { Rng } from "../core/rand.js";
import type { SimOptions } from "./options.js";
import type { SimNode, SimStats } from "./sim-node.js";

export interface NetworkHost {
  readonly now: number;
  readonly rng: Rng;
  readonly opts: SimOptions;
  readonly stats: SimStats;
  /** No faults once healed: no drops, duplicates or slow messages. */
  readonly healed: boolean;
  node(id: number): SimNode | undefined;
  at(at: number, run: () => void): void;
}

export class SimNetwork {
  /** Partition side of each node while partitioned. */
  private sides: Map<number, number> | undefined;

  constructor(private readonly host: NetworkHost) {}

  get partitioned(): boolean {
    return this.sides !== undefined;
  }

  /** Cuts every link between nodes on different sides; undefined heals. */
  partition(sides: Map<number, number> | undefined): void {
    this.sides = sides;
  }

  send(m: Message): void {
    const { host } = this;
    host.stats.messages++;
    if (m.type === MessageType.MESSAGE_TYPE_SNAPSHOT) host.stats.snapshotsSent++;
    if (!host.healed && host.rng.next() < host.opts.dropRate) {
      if (m.type === MessageType.MESSAGE_TYPE_SNAPSHOT) this.reportSnapshot(m, false);
      return;
    }
    const sentAt = host.now;
    host.at(host.now + this.delay(), () => this.deliver(m, sentAt));
    if (!host.healed && host.rng.next() < host.opts.duplicateRate) {
      host.at(host.now + this.delay(), () => this.deliver(m, sentAt));
    }
  }

  private delay(): number {
    const { host } = this;
    const { minDelayMs, maxDelayMs, slowRate } = host.opts;
    const d = minDelayMs + host.rng.intn(maxDelayMs - minDelayMs + 1);
    return !host.healed && host.rng.next() < slowRate ? d * 5 : d;
  }

  private deliver(m: Message, sentAt: number): void {
    const { host } = this;
    const from = host.node(m.from);
    const unflushed =
      from !== undefined && from.lastCrashAt >= sentAt && from.lastCrashAt - sentAt <= host.opts.unflushedMs;
    if (unflushed && host.rng.next() < 0.5) return; // some of it had left the process
    const to = host.node(m.to);
    const cut = this.sides !== undefined && this.sides.get(m.from) !== this.sides.get(m.to);
    if (!to?.up || cut) {
      this.undeliverable(m);
      return;
    }
    to.input((r) => r.step(m));
    // Like the real transport: the snapshot stream finished, so the sender resumes probing.
    if (m.type === MessageType.MESSAGE_TYPE_SNAPSHOT) this.reportSnapshot(m, true);
  }

  /** The transport notices a peer it cannot reach, and says so (snapshots always). */
  private undeliverable(m: Message): void {
    if (m.type === MessageType.MESSAGE_TYPE_SNAPSHOT) {
      this.reportSnapshot(m, false);
    } else if (m.type === MessageType.MESSAGE_TYPE_APPEND && this.host.rng.next() < 0.3) {
      this.host.stats.unreachableReports++;
      this.host.node(m.from)?.input((r) => r.reportUnreachable(m.to));
    }
  }

  private reportSnapshot(m: Message, ok: boolean): void {
    this.host.node(m.from)?.input((r) => r.reportSnapshot(m.to, ok));
  }
}
