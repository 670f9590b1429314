// The members of a runtime-simulator run and their lives: each runs the real
// RaftNode on SimStorage, SimClock and SimNetwork; it may crash (kill -9: every
// unfinished write is lost), stop gracefully (SIGTERM: stop() settles every
// promise and flushes storage), restart from what its disk kept, or retire.
import { silentLogger } from "../../log/logger.js";
import type { Raft } from "../core/raft.js";
import { RaftNode } from "../runtime/node.js";
import type { SafetyChecker } from "./checker.js";
import type { AppliedEntries } from "./runtime-checker.js";
import type { RuntimeSimOptions } from "./runtime-options.js";
import { SimClock, SimProcess, type SimScheduler } from "./sim-clock.js";
import { type Running, type SimMember, SimStateMachine } from "./sim-member.js";
import type { SimNetwork } from "./sim-network.js";
import { type SimDisk, SimStorage } from "./sim-storage.js";

/** What the cluster reports to the simulator's checks. */
export interface ClusterObserver {
  safety: SafetyChecker;
  entries: AppliedEntries;
  /** A member's state machine applied `command` at `index`. */
  commandApplied(nodeId: number, index: number, command: Uint8Array): void;
}

export interface ClusterCounts {
  elections: number;
  crashes: number;
}

export class SimCluster {
  readonly members = new Map<number, SimMember>();
  readonly counts: ClusterCounts = { elections: 0, crashes: 0 };
  /** The run is over: members stop for good. */
  ending = false;
  /** The latest configuration seen, and the applied index it was seen at. */
  private config: { applied: number; members: number[] };

  constructor(
    private readonly sched: SimScheduler,
    private readonly network: SimNetwork,
    private readonly faults: { healed: boolean },
    private readonly opts: RuntimeSimOptions,
    private readonly observer: ClusterObserver,
    founders: number[],
  ) {
    this.config = { applied: 0, members: founders };
  }

  add(id: number, disk: SimDisk): SimMember {
    const member: SimMember = { id, disk, retired: false };
    this.members.set(id, member);
    this.start(member);
    return member;
  }

  start(m: SimMember): void {
    const proc = new SimProcess(this.sched, m.id);
    const storage = new SimStorage(m.disk, proc, this.opts.storage, this.faults, (ms) =>
      this.maybeCrashMidWrite(m, ms),
    );
    const seen: { core?: Raft } = {};
    const sm = new SimStateMachine({
      entryTerm: (index) => seen.core?.log.term(index) ?? 0,
      onApply: (index, command, hash) => {
        this.observer.safety.checkHash(m.id, index, hash);
        this.observer.commandApplied(m.id, index, command);
      },
      onRestore: (index, hash) => this.observer.safety.checkHash(m.id, index, hash),
    });
    const node = new RaftNode({
      id: m.id,
      storage,
      stateMachine: sm,
      logger: silentLogger(),
      clock: new SimClock(proc),
      randomBytes: (n) => this.sched.randomBytes(n),
      tickMs: this.opts.tickMs,
      electionTimeoutTicks: this.opts.electionTimeoutTicks,
      heartbeatTicks: 1,
      snapshotEveryEntries: this.opts.snapshotEveryEntries,
      keepEntriesAfterSnapshot: this.opts.keepEntriesAfterSnapshot,
      proposalTimeoutMs: this.opts.proposalTimeoutMs,
      knobs: this.opts.knobs,
      observer: {
        core: (core) => {
          seen.core = core;
        },
        applied: (entry) => {
          this.observer.entries.onApply(m.id, entry, seen.core!.term);
          // RaftNode applies (and answers) only what its own storage holds (the early answer included).
          if (!m.disk.holds(entry)) {
            this.observer.safety.fail(
              `durability: node ${m.id} applied entry ${entry.index} before its own storage held it`,
            );
          }
        },
      },
    });
    const run: Running = { proc, node, storage, sm, core: seen.core!, stopping: false };
    m.running = run;
    node.on("fatal", (err: Error) =>
      this.observer.safety.fail(`runtime: node ${m.id} failed: ${err.message}`),
    );
    node.on("leader", (lead: number) => this.onLeader(m, run, lead));
    node.start(this.network.attach(proc, node, this.members.keys()));
  }

  private onLeader(m: SimMember, run: Running, lead: number): void {
    if (lead !== m.id) return;
    this.counts.elections++;
    // Election safety there (its leader-completeness half sees no entries: AppliedEntries checks that).
    this.observer.safety.onLeader(run.core);
    this.observer.entries.onLeader(run.core);
    // Leader flapping: some leaders die young.
    if (!this.faults.healed && this.sched.rng.next() < this.opts.leaderCrashRate) {
      this.sched.after(this.sched.rng.intn(40), () => this.crash(m, run.proc));
    }
  }

  /** kill -9: the process and every unfinished write die; a restart follows. */
  crash(m: SimMember, proc: SimProcess): boolean {
    const run = m.running;
    if (this.faults.healed || !run || run.proc !== proc) return false;
    proc.dead = true;
    proc.crashed = true;
    run.storage.crash();
    this.network.crashed(m.id);
    m.running = undefined;
    this.counts.crashes++;
    this.sched.after(50 + this.sched.rng.intn(950), () => this.restart(m));
    return true;
  }

  restart(m: SimMember): boolean {
    if (m.running || m.retired || this.ending) return false;
    this.start(m);
    return true;
  }

  /** The crashy nemesis: the process dies before the storage operation it just began finishes. */
  private maybeCrashMidWrite(m: SimMember, ms: number): void {
    if (this.faults.healed || this.sched.rng.next() >= this.opts.crashMidWriteRate) return;
    const proc = m.running?.proc;
    if (proc) this.sched.after(this.sched.rng.intn(ms + 1), () => this.crash(m, proc));
  }

  /** SIGTERM: stop() settles every promise and flushes storage; then the process exits. */
  stopGracefully(m: SimMember, then: () => void): void {
    const run = m.running;
    if (!run || run.stopping) return;
    run.stopping = true;
    void run.node.stop().then(() => {
      if (m.running !== run) return; // it crashed while stopping
      run.proc.dead = true;
      m.running = undefined;
      then();
    });
  }

  /** Out of the cluster for good: stopped, never restarted. */
  retire(m: SimMember): void {
    m.retired = true;
    this.stopGracefully(m, () => undefined);
  }

  live(): SimMember[] {
    return [...this.members.values()].filter((m) => m.running && !m.running.stopping);
  }

  leader(): SimMember | undefined {
    return this.live().find((m) => m.running!.node.leadership().isSelf);
  }

  /** Members of the latest configuration seen applied on any member (all may be down now). */
  configuration(): Set<number> {
    for (const m of this.live()) {
      const s = m.running!.node.status();
      if (s.applied > this.config.applied)
        this.config = { applied: s.applied, members: [...s.voters, ...s.learners] };
    }
    return new Set(this.config.members);
  }

  /** One line per member, for a failure report. */
  describe(): string {
    const lines = [...this.members.values()].map((m) => {
      if (m.retired) return `${m.id}: retired`;
      if (!m.running) return `${m.id}: down`;
      const s = m.running.node.status();
      return `${m.id}: ${s.role} term=${s.term} lead=${s.lead} commit=${s.commit} applied=${s.applied} last=${s.lastIndex} voters=${s.voters} learners=${s.learners}`;
    });
    return lines.join("\n    ");
  }
}
