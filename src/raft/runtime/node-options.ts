// RaftNode's options: its collaborators (the seams), its tunables with their
// defaults, and the testing hooks production never sets.
import type { Entry } from "../../gen/raft/v1/raft.js";
import type { Logger } from "../../log/logger.js";
import type { Raft } from "../core/raft.js";
import type { RuntimeClock } from "./clock.js";
import type { RaftStorage, StateMachine } from "./types.js";

export interface RaftNodeOptions {
  id: number;
  storage: RaftStorage;
  stateMachine: StateMachine;
  logger: Logger;
  /** Timers and the turn of the event loop; the simulator's runs in virtual time. Default: the process's. */
  clock?: RuntimeClock;
  /** Entropy for the election-timeout seed and the request-id nonce; the simulator's is seeded. Default: node:crypto. */
  randomBytes?: (n: number) => Uint8Array;
  tickMs?: number;
  electionTimeoutTicks?: number;
  heartbeatTicks?: number;
  /** Take a state-machine snapshot and compact the log every this many applied entries. */
  snapshotEveryEntries?: number;
  /** Entries kept behind each snapshot, so a follower a little behind gets entries, not the snapshot. */
  keepEntriesAfterSnapshot?: number;
  proposalTimeoutMs?: number;
  /** Most inputs queued before new proposals are refused (back-pressure). */
  maxQueuedInputs?: number;
  /**
   * Followers learn the commit index from the next append or heartbeat (one append and
   * one acknowledgement per follower per write instead of two; default). Off: the
   * leader sends it at once, so a write proposed on a follower is applied there up to a
   * heartbeat sooner (the product's managers: a follower serves joins and renewals).
   */
  lazyCommit?: boolean;
  /** Deliberate bugs for proving the runtime simulator catches them; production never sets them. */
  knobs?: RuntimeTestingKnobs;
  /** The simulator's window for its safety checks (read only); production never sets it. */
  observer?: RuntimeObserver;
}

export interface RuntimeObserver {
  /** The core, once, when RaftNode is built. */
  core?(core: Raft): void;
  /** Every entry applied, of any kind, in order (commands also reach the state machine). */
  applied?(entry: Entry): void;
}

/** Planted bugs at the runtime level (CockroachDB's TestingKnobs), one per guarantee RaftNode owns. */
export interface RuntimeTestingKnobs {
  /** Answer a proposal once its entry is durable here, before it is durable on a quorum. */
  answerBeforeQuorum?: boolean;
  /** Go on (tell the core the write is done, answer from the early path) before the local sync finished. */
  answerBeforeLocalSync?: boolean;
  /** Forget the proposals refused while the leader changes (NO_LEADER, TRANSFER_IN_PROGRESS) without rejecting them. */
  forgetProposalsDuringLeaderChange?: boolean;
}

export type Tunables = Required<
  Omit<RaftNodeOptions, "storage" | "stateMachine" | "logger" | "id" | "clock" | "randomBytes" | "observer">
>;

export function tunables(options: RaftNodeOptions): Tunables {
  return {
    tickMs: options.tickMs ?? 100,
    electionTimeoutTicks: options.electionTimeoutTicks ?? 10,
    heartbeatTicks: options.heartbeatTicks ?? 1,
    // etcd 3.4's default. Taking a snapshot stops this member's loop while the state
    // machine serializes itself; every 10,000 entries that doubled bench:raft's p99 at 64.
    snapshotEveryEntries: options.snapshotEveryEntries ?? 100_000,
    keepEntriesAfterSnapshot: options.keepEntriesAfterSnapshot ?? 5_000,
    proposalTimeoutMs: options.proposalTimeoutMs ?? 5_000,
    maxQueuedInputs: options.maxQueuedInputs ?? 100_000,
    lazyCommit: options.lazyCommit ?? true,
    knobs: options.knobs ?? {},
  };
}
