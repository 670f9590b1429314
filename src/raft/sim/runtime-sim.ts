// The runtime simulator: 3-5 real RaftNodes (group commit, the early answer, lazy
// commit, snapshots, the settling of every promise) on simulated storage, clock and
// network, in virtual time, seeded so a run replays exactly. Faults: message drop,
// delay, duplication and reordering, partitions, crashes that lose unsynced writes
// (in the middle of one too), pauses, graceful restarts, leader changes, membership
// changes. The core's safety checks run on the members' cores, and client-level
// checks (runtime-checker.ts) on what propose() and read() answered.
import { bootstrapState, joiningState } from "../core/bootstrap.js";
import { SeededRng } from "../core/rand.js";
import { ProposalDroppedError } from "../runtime/errors.js";
import type { RuntimeTestingKnobs } from "../runtime/node-options.js";
import { SafetyChecker } from "./checker.js";
import { AppliedEntries, ClientChecker, type ClientStats } from "./runtime-checker.js";
import {
  defaultRuntimeSimOptions,
  type RuntimeFaultProfile,
  type RuntimeSimOptions,
} from "./runtime-options.js";
import { SimScheduler } from "./sim-clock.js";
import { type ClusterCounts, SimCluster } from "./sim-cluster.js";
import type { SimMember } from "./sim-member.js";
import { type NetworkStats, SimNetwork } from "./sim-network.js";
import { SimDisk } from "./sim-storage.js";

export interface RuntimeSimStats extends ClientStats, NetworkStats, ClusterCounts {
  pauses: number;
  gracefulRestarts: number;
  confChanges: number;
}

export interface RuntimeSimResult {
  seed: number;
  violations: string[];
  stats: RuntimeSimStats;
  endMs: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * Waits for one turn of the real event loop. RaftNode's rounds are async: an event
 * (a timer, a delivery, a sync finishing) starts promise continuations, and all of
 * them are microtasks, which Node runs before any setImmediate callback and in a
 * fixed order. Nothing simulated uses a real timer, so the run stays deterministic.
 */
const settled = () => new Promise<void>((resolve) => setImmediate(resolve));

export class RuntimeSimulator {
  private readonly sched: SimScheduler;
  private readonly faults = { healed: false };
  private readonly network: SimNetwork;
  private readonly safety = new SafetyChecker();
  private readonly clients: ClientChecker;
  private readonly cluster: SimCluster;
  private nextNodeId: number;
  private nextCommand = 1;
  private readonly markers = new Set<string>();
  /** Index of the first marker applied after healing. */
  private markerIndex: number | undefined;
  private readonly counts = { pauses: 0, gracefulRestarts: 0, confChanges: 0 };

  constructor(private readonly opts: RuntimeSimOptions) {
    this.sched = new SimScheduler(new SeededRng(opts.seed * 2654435761 + 29));
    this.network = new SimNetwork(this.sched, opts.network, this.faults);
    // A promise waits at most the proposal timeout, late by at most one pause.
    const settleBoundMs = opts.proposalTimeoutMs + opts.maxPauseMs + opts.tickMs;
    this.clients = new ClientChecker(this.safety, this.sched, settleBoundMs);
    const voters = Array.from({ length: opts.nodes }, (_, i) => i + 1);
    this.nextNodeId = opts.nodes + 1;
    const observer = {
      safety: this.safety,
      entries: new AppliedEntries(this.safety),
      commandApplied: (nodeId: number, index: number, command: Uint8Array) => {
        const text = dec.decode(command);
        this.clients.onApplied(nodeId, index, text);
        if (this.faults.healed && this.markerIndex === undefined && this.markers.has(text))
          this.markerIndex = index;
      },
    };
    this.cluster = new SimCluster(this.sched, this.network, this.faults, opts, observer, voters);
    for (const id of voters) this.cluster.add(id, new SimDisk(bootstrapState(voters)));
  }

  async run(): Promise<RuntimeSimResult> {
    const o = this.opts;
    this.sched.after(this.exp(o.proposeRatePerMs), () => this.clientLoop());
    this.sched.after(this.exp(o.faultRatePerMs), () => this.faultLoop());
    this.sched.at(o.chaosMs, () => this.heal());
    this.sched.after(50, () => this.checkLogsLoop());
    try {
      await this.drive(o.chaosMs + o.livenessBoundMs, () => this.finished());
      if (this.safety.violations.length === 0) await this.end();
    } catch (err) {
      const e = err as Error;
      this.safety.fail(`exception at ${this.sched.now} ms: ${e.stack ?? e.message}`);
    }
    const stats = { ...this.cluster.counts, ...this.counts, ...this.clients.stats, ...this.network.stats };
    return { seed: o.seed, violations: this.safety.violations, stats, endMs: this.sched.now };
  }

  /** Runs events in time order until `done`, a violation, or `deadline`; false at the deadline. */
  private async drive(deadline: number, done: () => boolean): Promise<boolean> {
    let idle = 0;
    while (this.safety.violations.length === 0 && !done()) {
      const ev = this.sched.pop();
      if (!ev || ev.at > deadline) return false;
      this.sched.now = ev.at;
      if (ev.value() !== false || ++idle % 256 === 0) await settled();
    }
    return true;
  }

  private finished(): boolean {
    return this.faults.healed && this.appliedEverywhere() && this.clients.unsettled() === 0;
  }

  /** Liveness after healing, then every member stops (settling what is left), then the client checks. */
  private async end(): Promise<void> {
    if (!this.appliedEverywhere()) {
      this.safety.fail(
        `liveness: the marker and every acknowledged write not applied on every member within ` +
          `${this.opts.livenessBoundMs} ms after faults healed; ${this.describe()}`,
      );
    }
    // Every member of the final configuration (a member removed late may never hear of it).
    const config = this.cluster.configuration();
    const applied = this.cluster
      .live()
      .filter((m) => config.has(m.id))
      .map((m) => ({ id: m.id, appliedIndex: m.running!.sm.lastIndex }));
    this.cluster.ending = true;
    const live = this.cluster.live();
    let stopped = 0;
    for (const m of live) this.cluster.stopGracefully(m, () => stopped++);
    if (!(await this.drive(this.sched.now + 2000, () => stopped === live.length))) {
      this.safety.fail(`stop: ${live.length - stopped} member(s) did not finish stop() within 2000 ms`);
    }
    this.clients.finish(applied);
  }

  /** The marker and every acknowledged write are applied on every member. */
  private appliedEverywhere(): boolean {
    if (this.markerIndex === undefined) return false;
    const index = Math.max(this.markerIndex, this.clients.maxAckedIndex);
    for (const id of this.cluster.configuration()) {
      const m = this.cluster.members.get(id);
      if (!m || m.retired) continue;
      if (!m.running || m.running.sm.lastIndex < index) return false;
    }
    return true;
  }

  // ---- clients --------------------------------------------------------------

  private clientLoop(): boolean {
    if (this.faults.healed) return false;
    const o = this.opts;
    const m = this.pick(this.cluster.live().filter((x) => !x.running!.proc.paused));
    if (m) {
      const total = o.proposeRatePerMs + o.readRatePerMs + o.confChangeRatePerMs + o.transferRatePerMs;
      const x = this.sched.rng.next() * total;
      if (x < o.proposeRatePerMs) this.propose(m, `c${this.nextCommand++}`);
      else if (x < o.proposeRatePerMs + o.readRatePerMs) this.read(m);
      else if (x < total - o.transferRatePerMs) this.changeMembership(this.leaderAmong() ?? m);
      else this.transfer(m);
    }
    this.sched.after(this.exp(o.proposeRatePerMs + o.readRatePerMs), () => this.clientLoop());
    return true;
  }

  private propose(m: SimMember, command: string): void {
    const run = m.running!;
    this.clients.propose(m.id, run.proc, command, run.node.propose(enc.encode(command)));
  }

  private read(m: SimMember): void {
    const { node, sm, proc } = m.running!;
    this.clients.read(
      m.id,
      proc,
      node.read(() => sm.lastIndex),
    );
  }

  private transfer(m: SimMember): void {
    const target = this.pick(m.running!.node.status().voters);
    if (target !== undefined) m.running!.node.transferLeadership(target);
  }

  /** Membership changes go to the leader (followers refuse them), as an operator's would. */
  private leaderAmong(): SimMember | undefined {
    return this.cluster
      .live()
      .find((x) => !x.running!.proc.paused && x.running!.node.status().role === "leader");
  }

  private changeMembership(m: SimMember): void {
    const run = m.running!;
    const { voters, learners } = run.node.status();
    const roll = this.sched.rng.intn(3);
    if (roll === 0 && voters.length + learners.length < this.opts.maxMembers) {
      const id = this.nextNodeId++;
      const joining = this.cluster.add(id, new SimDisk(joiningState())); // the operator starts it first
      const added = run.node.addLearner(id, { nodeId: `sim-${id}`, address: `sim-${id}` });
      this.clients.membership(m.id, run.proc, added);
      // Refused (nothing entered the log): the operator stops the new member again.
      added.catch((err: unknown) => {
        if (err instanceof ProposalDroppedError) this.cluster.retire(joining);
      });
    } else if (roll === 1 && learners.length > 0) {
      this.clients.membership(m.id, run.proc, run.node.promote(this.pick(learners)!));
    } else if (roll === 2 && (voters.length > 2 || learners.length > 0)) {
      const target = this.pick(voters.length > 2 ? [...voters, ...learners] : learners)!;
      this.clients.membership(m.id, run.proc, run.node.remove(target));
    } else {
      return;
    }
    this.counts.confChanges++;
  }

  // ---- faults ----------------------------------------------------------------

  private faultLoop(): boolean {
    if (this.faults.healed) return false;
    this.injectFault();
    this.sched.after(this.exp(this.opts.faultRatePerMs), () => this.faultLoop());
    return true;
  }

  private injectFault(): void {
    const rng = this.sched.rng;
    const alive = this.cluster.live();
    const leader = this.cluster.leader();
    const victim = this.pick(alive);
    switch (rng.intn(6)) {
      case 0:
      case 1: {
        // Half the crashes hit the leader: the hard cases live there.
        const target = rng.intn(2) === 0 ? (leader ?? victim) : victim;
        if (target) this.cluster.crash(target, target.running!.proc);
        return;
      }
      case 2:
      case 3:
        this.partition(rng.intn(2) === 0 ? leader : undefined);
        return;
      case 4: {
        // One pause at a time per process, so a timer is never late by more than maxPauseMs.
        const sleeper = this.pick(alive.filter((m) => !m.running!.proc.paused));
        if (sleeper) {
          sleeper.running!.proc.pausedUntil = this.sched.now + 100 + rng.intn(this.opts.maxPauseMs - 100);
          this.counts.pauses++;
        }
        return;
      }
      default:
        if (!victim) return;
        this.counts.gracefulRestarts++;
        this.cluster.stopGracefully(victim, () =>
          this.sched.after(50 + rng.intn(250), () => this.cluster.restart(victim)),
        );
    }
  }

  /** Splits the members in two at random, or cuts `isolated` (the leader) off alone. */
  private partition(isolated: SimMember | undefined): void {
    if (this.network.partition !== undefined) return;
    const rng = this.sched.rng;
    const groups = new Map<number, number>();
    for (const id of this.cluster.members.keys()) {
      groups.set(id, isolated ? Number(id === isolated.id) : rng.intn(2));
    }
    this.network.partition = groups;
    this.sched.after(100 + rng.intn(1500), () => {
      this.network.partition = undefined;
      return true;
    });
  }

  private heal(): boolean {
    this.faults.healed = true;
    this.network.partition = undefined;
    const config = this.cluster.configuration();
    for (const m of this.cluster.members.values()) {
      if (!config.has(m.id)) this.cluster.retire(m);
      else if (!m.running) this.cluster.start(m);
    }
    this.sched.after(this.opts.tickMs, () => this.markerLoop());
    return true;
  }

  private markerLoop(): boolean {
    if (this.markerIndex !== undefined) return false;
    const leader = this.cluster.leader();
    if (leader) {
      const command = `m${this.nextCommand++}`;
      this.markers.add(command);
      this.propose(leader, command);
    }
    this.sched.after(20 * this.opts.tickMs, () => this.markerLoop());
    return true;
  }

  private checkLogsLoop(): boolean {
    this.cluster.configuration();
    const cores = this.cluster.live().map((m) => m.running!.core);
    for (let i = 0; i < cores.length; i++) {
      for (let j = i + 1; j < cores.length; j++) this.safety.checkLogMatching(cores[i], cores[j]);
    }
    this.sched.after(50, () => this.checkLogsLoop());
    return true;
  }

  // ---- helpers ---------------------------------------------------------------

  private exp(ratePerMs: number): number {
    return Math.max(1, Math.round(-Math.log(1 - this.sched.rng.next()) / ratePerMs));
  }

  private pick<T>(items: readonly T[]): T | undefined {
    return items.length === 0 ? undefined : items[this.sched.rng.intn(items.length)];
  }

  describe(): string {
    return `marker=${this.markerIndex} unsettled=${this.clients.unsettled()}\n    ${this.cluster.describe()}`;
  }
}

export function runRuntimeSeed(opts: RuntimeSimOptions): Promise<RuntimeSimResult> {
  return new RuntimeSimulator(opts).run();
}

/** Runs seeds until one violates a check: how tests prove a planted runtime bug is caught. */
export async function huntRuntimeViolation(
  knobs: RuntimeTestingKnobs,
  maxSeeds: number,
  profile?: RuntimeFaultProfile,
): Promise<{ found: RuntimeSimResult | undefined; seedsTried: number }> {
  for (let seed = 1; seed <= maxSeeds; seed++) {
    const result = await runRuntimeSeed(defaultRuntimeSimOptions(seed, { knobs }, profile));
    if (result.violations.length > 0) return { found: result, seedsTried: seed };
  }
  return { found: undefined, seedsTried: maxSeeds };
}
