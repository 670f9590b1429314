// What must happen once faults heal, checked without helping it along: nodes that
// were down come back, and no write is proposed until every live member has served
// a read.
//
// 1. Once a leader is stable (it committed in its term and its log holds no
//    configuration change not yet applied), one last fault, picked per seed:
//    - none;
//    - a voter, usually the leader, is killed and kept down: the rest are a quorum of
//      the one possible configuration and must elect again (leader-loss stalls);
//    - a member other than the leader is killed and restarted at once (kill -9): its
//      durable commit index may lag what it holds, and no write follows;
//    - the cluster grows: a learner is added and promoted as soon as the leader
//      accepts it, and the leader is lost as soon as it can be: when it was the only
//      other voter, it restarts the moment it applies the promotion; else it is kept
//      down the moment another member applied it, before the rest did (issue 9).
//    A voter is kept down only where the rest can elect under apply-time
//    configurations: a quorum of the leader's configuration survives, and a survivor
//    applied that configuration with a log as up to date as any survivor's (if no
//    survivor knows the change committed, they still use the older one, which may
//    need the dead voter: etcd's design has that gap too).
// 2. Every live member must serve a linearizable read, with no new write.
// 3. Then one new write must apply on every live member.
//
// Each step must finish within the bound, which is extended while the logs still
// grow or the state machines still apply (a long catch-up after the chaos is
// progress, not a stall), up to ten times the bound.
import { EntryType } from "../../gen/raft/v1/raft.js";
import type { Raft } from "../core/raft.js";
import type { SimNode } from "./sim-node.js";

/** What the check needs from the simulator. */
export interface LivenessHost {
  readonly now: number;
  liveMembers(): SimNode[];
  /** Kills a node and keeps it down for the rest of the run. */
  killForGood(node: SimNode): void;
  /** Kills a node and starts it again at once from its durable state. */
  restartNow(node: SimNode): void;
  /** Starts a new, empty node that waits to be added; its id. */
  newNode(): number;
  /** Proposes adding `id` as a learner through `leader` (refused while another change is pending). */
  addLearner(leader: SimNode, id: number): void;
  /** Proposes promoting `learner` through `leader` (refused while it lags). */
  promote(leader: SimNode, learner: number): void;
  /** Starts a read on a node; `onReadServed` reports it served. */
  read(node: SimNode, key: string): void;
  /** Proposes `key` through the current leader, if there is one. */
  proposeOnLeader(key: string): boolean;
  /** Runs `fn` at the current virtual time, after the event being handled. */
  soon(fn: () => void): void;
  random(): number;
  pick<T>(items: T[]): T | undefined;
  fail(what: string): void;
}

export type LastFault = "none" | "keepDown" | "restart" | "grow";

type Phase = "fault" | "reads" | "write" | "done";

const READ_RETRY_MS = 100;
const WRITE_RETRY_MS = 200;
const MAX_EXTENSIONS = 10;

export class LivenessCheck {
  private phase: Phase = "fault";
  private since: number;
  private lastProgressAt: number;
  private progress = -1;
  private readonly served = new Set<number>();
  private readonly pendingReads = new Map<number, number>();
  private marker: string | undefined;
  private markerProposedAt = -Infinity;
  private markerIndex = 0;
  private nextKey = 1;
  /** The learner the "grow" fault adds, once proposed. */
  private growing: number | undefined;
  /** Ms from the start of the reads step until every live member served one (-1: never). */
  readLivenessMs = -1;

  constructor(
    private readonly host: LivenessHost,
    private readonly boundMs: number,
    private readonly lastFault: LastFault,
  ) {
    this.since = host.now;
    this.lastProgressAt = host.now;
  }

  get done(): boolean {
    return this.phase === "done";
  }

  /** Called every tick once faults healed; false once a violation was reported. */
  poll(): boolean {
    this.noteProgress();
    if (this.phase === "fault") return this.pollFault();
    if (this.phase === "reads") return this.pollReads();
    if (this.phase === "write") return this.pollWrite();
    return true;
  }

  onReadServed(node: SimNode, key: string): void {
    if (this.phase !== "reads" || !key.startsWith("live-")) return;
    this.served.add(node.id);
    this.pendingReads.delete(node.id);
  }

  onApplied(key: string, index: number): void {
    if (key === this.marker) this.markerIndex = index;
  }

  /**
   * A node applied entries: the "grow" fault loses the leader at the first moment it
   * may, before the rest of the cluster applies the promotion too.
   */
  onAdvanced(node: SimNode, r: Raft): void {
    const id = this.growing;
    if (this.phase !== "fault" || id === undefined || !r.config.isVoter(id)) return;
    const leader = this.host.liveMembers().find((n) => n.raft?.role === "leader");
    const lr = leader?.raft;
    if (!leader || !lr?.config.isVoter(id)) return;
    const mayLose = lr.config.voters.size < 3 ? node === leader : this.survivable(leader, lr);
    // Soon: before the messages this round queued (they may tell the others the commit index).
    if (mayLose) this.host.soon(() => this.phase === "fault" && leader.up && this.loseLeader(leader, lr));
  }

  private loseLeader(leader: SimNode, r: Raft): boolean {
    if (r.config.voters.size >= 3) this.host.killForGood(leader);
    else this.host.restartNow(leader);
    this.startStep("reads");
    return true;
  }

  /**
   * Whether the live members but `victim` can elect under apply-time configurations:
   * a quorum of the leader's configuration survives, and a survivor applied that
   * configuration with a log every other survivor would vote for.
   */
  private survivable(victim: SimNode, leader: Raft): boolean {
    const voters = leader.config.voters;
    const survivors = this.host.liveMembers().filter((n) => n !== victim && n.raft);
    const alive = survivors.filter((n) => voters.has(n.id)).length;
    if (alive < Math.floor(voters.size / 2) + 1) return false;
    return survivors.some((s) => {
      const sr = s.raft!;
      if (!voters.has(s.id) || !sameVoters(sr, leader)) return false;
      const last = sr.log.lastIndex();
      const term = sr.log.lastTerm();
      return survivors.every((t) => t === s || t.raft!.log.isUpToDate(last, term));
    });
  }

  private pollFault(): boolean {
    const leader = this.host.liveMembers().find((n) => n.raft?.role === "leader");
    if (!leader?.raft || !isStable(leader.raft)) {
      return this.withinBound("no leader became stable (committed in its term, no change pending)");
    }
    if (this.lastFault === "grow") return this.grow(leader, leader.raft);
    if (this.lastFault === "keepDown" && leader.raft.config.voters.size >= 3) {
      const followers = [...leader.raft.config.voters].filter((id) => id !== leader.id);
      const victim = this.member(this.host.random() < 0.7 ? leader.id : this.host.pick(followers)!);
      // Wait for the survivors to apply the leader's configuration (see survivable).
      if (!victim || !this.survivable(victim, leader.raft)) return this.withinBound("no voter could be lost");
      this.host.killForGood(victim);
    } else if (this.lastFault === "restart") {
      const victim = this.host.pick(this.host.liveMembers().filter((n) => n !== leader));
      if (victim) this.host.restartNow(victim);
    }
    this.startStep("reads");
    return true;
  }

  /** Adds a learner, promotes it once the leader accepts, loses the leader when it applies that. */
  private grow(leader: SimNode, r: Raft): boolean {
    if (this.growing === undefined) this.growing = this.host.newNode();
    const id = this.growing;
    if (r.config.isVoter(id)) {
      // Applied by the leader: lose it once it may (see onAdvanced).
      if (r.config.voters.size < 3 || this.survivable(leader, r)) return this.loseLeader(leader, r);
      return this.withinBound(`the leader could not be lost after promoting node ${id}`);
    }
    // The leader is stable: no change of ours is pending, so propose (again) the next one.
    if (r.config.learners.has(id)) this.host.promote(leader, id);
    else this.host.addLearner(leader, id);
    return this.withinBound(`the cluster did not grow by node ${id}`);
  }

  private pollReads(): boolean {
    const { host } = this;
    const waiting = host.liveMembers().filter((n) => !this.served.has(n.id));
    if (waiting.length === 0) {
      this.readLivenessMs = host.now - this.since;
      this.startStep("write");
      return this.pollWrite();
    }
    for (const n of waiting) {
      const issued = this.pendingReads.get(n.id);
      if (issued !== undefined && host.now - issued < READ_RETRY_MS) continue;
      this.pendingReads.set(n.id, host.now);
      host.read(n, `live-${n.id}-${this.nextKey++}`);
    }
    const ids = waiting.map((n) => n.id).join(",");
    return this.withinBound(`members ${ids} served no linearizable read (no write was proposed)`);
  }

  private pollWrite(): boolean {
    const { host } = this;
    if (this.markerIndex > 0) {
      if (host.liveMembers().every((n) => n.applied >= this.markerIndex)) {
        this.phase = "done";
        return true;
      }
    } else if (host.now - this.markerProposedAt >= WRITE_RETRY_MS) {
      const key = `m${this.nextKey++}`;
      if (host.proposeOnLeader(key)) {
        this.marker = key;
        this.markerProposedAt = host.now;
      }
    }
    return this.withinBound("a new write was not applied on every live member");
  }

  private member(id: number): SimNode | undefined {
    return this.host.liveMembers().find((n) => n.id === id);
  }

  private startStep(phase: Phase): void {
    this.phase = phase;
    this.since = this.host.now;
    this.lastProgressAt = this.host.now;
  }

  /** Log growth and applied entries on live members (not term changes: elections alone are no progress). */
  private noteProgress(): void {
    let sum = this.served.size;
    for (const n of this.host.liveMembers()) sum += n.applied + (n.raft?.log.lastIndex() ?? 0);
    if (sum !== this.progress) {
      this.progress = sum;
      this.lastProgressAt = this.host.now;
    }
  }

  private withinBound(what: string): boolean {
    const { now } = this.host;
    const stalled = now - this.lastProgressAt > this.boundMs && now - this.since > this.boundMs;
    if (!stalled && now - this.since <= MAX_EXTENSIONS * this.boundMs) return true;
    const why = stalled
      ? `nothing progressed for ${this.boundMs} ms`
      : `not within ${MAX_EXTENSIONS * this.boundMs} ms`;
    this.host.fail(`liveness (${this.phase} step after faults healed): ${what}; ${why}`);
    return false;
  }
}

/** The leader committed in its term and its log holds no configuration change not yet applied. */
function isStable(r: Raft): boolean {
  if (r.log.term(r.log.committed) !== r.term) return false;
  for (let i = r.log.applied + 1; i <= r.log.lastIndex(); i++) {
    if (r.log.entryAt(i)?.type === EntryType.ENTRY_TYPE_CONF_CHANGE) return false;
  }
  return true;
}

function sameVoters(a: Raft, b: Raft): boolean {
  return (
    a.config.voters.size === b.config.voters.size && [...a.config.voters].every((id) => b.config.isVoter(id))
  );
}
