// The core's public vocabulary: configuration, results, and the Ready contract.
import {
  type Entry,
  EntryType,
  type HardState,
  type Message,
  type Snapshot,
} from "../../gen/raft/v1/raft.js";
import type { Rng } from "./rand.js";

export type Role = "follower" | "preCandidate" | "candidate" | "leader";

/**
 * Deliberate bugs for proving the simulator can catch them (CockroachDB's
 * TestingKnobs). Production code never sets these.
 */
export interface TestingKnobs {
  /** Drop proposals forwarded during a transfer, and those reaching a non-leader (writes stall until their timeout). */
  dropForwardedDuringTransfer?: boolean;
  /** Leave queued reads alone when the voters change (a read queued before a shrink to one voter hangs). */
  keepReadsAcrossConfChange?: boolean;
  /** Let a leader remove itself from two voters (strands the survivor, etcd#10563). */
  removeLeaderFromTwoVoters?: boolean;
  /** Figure 8: commit an old-term entry by counting its replicas. */
  commitOldTermEntries?: boolean;
  /** Grant votes without the §5.4.1 up-to-date check. */
  voteWithoutUpToDateCheck?: boolean;
  /** Send append acknowledgements before the entries are durable. */
  ackBeforePersist?: boolean;
  /** Leave the vote out of the persisted hard state. */
  forgetVoteOnRestart?: boolean;
  /** Follower commit = leader commit, not min(leader commit, last verified index). */
  followerCommitBeyondVerified?: boolean;
  /** Serve ReadIndex before the new leader commits an entry of its term. */
  readIndexBeforeTermCommit?: boolean;
  /** Refuse a (pre)vote to any candidate that is not a voter in our applied configuration. */
  voteOnlyForConfiguredVoters?: boolean;
  /** Accept the promotion of a learner that does not hold every committed entry yet. */
  promoteLaggingLearners?: boolean;
  /** A single voter answers ReadIndex at once, before it has committed an entry of its term. */
  singleVoterReadBeforeTermCommit?: boolean;
  /**
   * Heartbeats carry the leader's full commit index and the follower caps it at what
   * this leader's appends verified since the follower (re)started.
   */
  heartbeatCommitCappedByVerified?: boolean;
  /** Count the candidate's own vote at once, before its new term and vote are durable. */
  selfVoteBeforePersist?: boolean;
}

export interface RaftConfig {
  id: number;
  rng: Rng;
  electionTimeoutTicks?: number;
  heartbeatTicks?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
  /** Target size of one append message's entries (one large entry may exceed it). */
  maxMsgBytes?: number;
  maxInflightMsgs?: number;
  /** Bytes of uncommitted entries a leader accepts before dropping proposals. */
  maxUncommittedBytes?: number;
  maxPendingReads?: number;
  /** Bytes of committed entries handed out per Ready. */
  maxApplyBytesPerReady?: number;
  /**
   * Tell followers of a new commit index with the next append or heartbeat, not with
   * an append of its own at once: half the messages per write under light load, and
   * followers apply up to one heartbeat later (etcd sends at once: false).
   */
  lazyCommit?: boolean;
  knobs?: TestingKnobs;
}

/** What storage hands back on restart. */
export interface PersistentState {
  hardState: HardState;
  snapshot: Snapshot;
  entries: Entry[];
  /** The state machine's applied index if it persists one; else the snapshot's. */
  applied?: number;
}

export type DropReason =
  | "NO_LEADER"
  | "TRANSFER_IN_PROGRESS"
  | "CONF_CHANGE_PENDING"
  | "INVALID_CONF_CHANGE"
  | "UNCOMMITTED_LIMIT"
  | "TOO_MANY_READS"
  | "NOT_A_VOTER"
  | "LEARNER_NOT_READY";

export type ProposeResult =
  | { ok: true; index: number; term: number }
  | { ok: true; forwardedTo: number }
  | { ok: false; reason: DropReason; message: string };

export interface ReadState {
  /** Serve the read once the state machine has applied this index. */
  index: number;
  context: Uint8Array;
}

export interface SoftState {
  lead: number;
  role: Role;
}

/**
 * One batch of work for the runtime, in this order: send `messages` (may go
 * before persisting); persist `snapshot`, `entries` (overwriting the stored log
 * from entries[0].index) and `hardState` atomically; send `messagesAfterPersist`;
 * apply the snapshot and `committedEntries`; serve `readStates` once applied;
 * then call `advance()`. No step/tick/propose may happen between `ready()` and
 * `advance()`.
 */
export interface Ready {
  softState?: SoftState;
  hardState?: HardState;
  snapshot?: Snapshot;
  entries: Entry[];
  committedEntries: Entry[];
  messages: Message[];
  messagesAfterPersist: Message[];
  readStates: ReadState[];
}

export interface RaftStatus {
  id: number;
  term: number;
  vote: number;
  lead: number;
  role: Role;
  commit: number;
  applied: number;
  lastIndex: number;
  voters: number[];
  learners: number[];
  leadTransferee: number;
}

/**
 * Whether a Ready's hard state must be made durable now even if only its commit index
 * moved (storage may otherwise defer a commit-only hard state to the next write): when
 * it commits a configuration change. A member rebuilds its configuration only up to its
 * durable commit index; had it lost that commit, a lone survivor of a shrink could be
 * left waiting for the vote of a member that is gone (second reading, F1).
 */
export function mustPersistCommit(rd: Pick<Ready, "hardState" | "committedEntries">): boolean {
  return (
    rd.hardState !== undefined && rd.committedEntries.some((e) => e.type === EntryType.ENTRY_TYPE_CONF_CHANGE)
  );
}
