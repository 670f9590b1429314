// Failures of the Raft runtime: one class per kind, each with a stable code from
// the closed list below (like CaErrorCode in src/ca/errors.ts), which callers map
// to a status (gRPC, CLI exit) without parsing messages. Every message says what
// to do next.
import type { DropReason } from "../core/types.js";

/**
 * Every code a RaftRuntimeError can carry. The core's refusals (DropReason) keep
 * their names; the runtime adds its own.
 */
export type RaftRuntimeErrorCode =
  | DropReason
  /** Too many requests queued in this member; back off. */
  | "OVERLOADED"
  /** No answer within the proposal timeout; the change may still be applied. */
  | "PROPOSAL_TIMEOUT"
  /** The leader changed before a read got its index; nothing happened, retry. */
  | "LEADER_CHANGED"
  /** The member is stopping. */
  | "NODE_STOPPED"
  | "RAFT_STATE_CORRUPT"
  | "RAFT_STATE_FOREIGN"
  | "RAFT_STATE_LOCKED"
  /** No state where a member expected its own (lost, or never created). */
  | "RAFT_STATE_MISSING"
  /** State exists where a new member's was to be created. */
  | "RAFT_STATE_EXISTS";

/** The same list at run time (the simulator checks every rejection carries one); `satisfies` keeps it complete. */
const CODES = {
  NO_LEADER: true,
  TRANSFER_IN_PROGRESS: true,
  CONF_CHANGE_PENDING: true,
  INVALID_CONF_CHANGE: true,
  UNCOMMITTED_LIMIT: true,
  TOO_MANY_READS: true,
  NOT_A_VOTER: true,
  LEARNER_NOT_READY: true,
  OVERLOADED: true,
  PROPOSAL_TIMEOUT: true,
  LEADER_CHANGED: true,
  NODE_STOPPED: true,
  RAFT_STATE_CORRUPT: true,
  RAFT_STATE_FOREIGN: true,
  RAFT_STATE_LOCKED: true,
  RAFT_STATE_MISSING: true,
  RAFT_STATE_EXISTS: true,
} satisfies Record<RaftRuntimeErrorCode, true>;

export const RAFT_RUNTIME_ERROR_CODES: ReadonlySet<string> = new Set(Object.keys(CODES));

export class RaftRuntimeError extends Error {
  constructor(
    readonly code: RaftRuntimeErrorCode,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class RaftStateCorruptError extends RaftRuntimeError {
  constructor(dir: string, detail: string) {
    super(
      "RAFT_STATE_CORRUPT",
      `raft state in ${dir} is corrupt (${detail}); nothing was changed. Restore this manager from a backup ` +
        "(nodectl restore) or remove it from the cluster and join it again.",
    );
  }
}

export class RaftStateForeignError extends RaftRuntimeError {
  constructor(dir: string, detail: string) {
    super(
      "RAFT_STATE_FOREIGN",
      `raft state in ${dir} belongs to another member (${detail}); nothing was changed. Point --state-dir at this ` +
        "member's own directory.",
    );
  }
}

export class RaftStateLockedError extends RaftRuntimeError {
  constructor(dir: string) {
    super(
      "RAFT_STATE_LOCKED",
      `raft state in ${dir} is in use by another process; stop the other member first (one process per state dir).`,
    );
  }
}

export class RaftStateMissingError extends RaftRuntimeError {
  constructor(dir: string, detail: string) {
    super(
      "RAFT_STATE_MISSING",
      `no raft state in ${dir} (${detail}); nothing was created. If this member ran before, it has lost its log ` +
        "and votes: restore its directory from a backup (nodectl restore), or remove it from the cluster and add " +
        "it again as a new member. A new member's state is created only when asked for (bootstrap a new cluster, " +
        "or join one).",
    );
  }
}

export class RaftStateExistsError extends RaftRuntimeError {
  constructor(dir: string, detail: string) {
    super(
      "RAFT_STATE_EXISTS",
      `raft state already exists in ${dir} (${detail}); nothing was changed. Restart the member without asking ` +
        "to bootstrap or join, or give a new member an empty directory.",
    );
  }
}

/** The core or this member refused a request before it entered the log: nothing happened, retry. */
export class ProposalDroppedError extends RaftRuntimeError {
  constructor(reason: DropReason | "OVERLOADED", message: string) {
    super(reason, message);
  }
}

export class ProposalTimeoutError extends RaftRuntimeError {
  constructor(ms: number) {
    super(
      "PROPOSAL_TIMEOUT",
      `no answer within ${ms} ms; the change may still be applied. Check the cluster's leader and retry idempotently.`,
    );
  }
}

export class LeaderChangedError extends RaftRuntimeError {
  constructor() {
    super(
      "LEADER_CHANGED",
      "the leader changed before this read was confirmed; nothing was read. Retry the read (on any manager).",
    );
  }
}

export class NodeStoppedError extends RaftRuntimeError {
  constructor() {
    super("NODE_STOPPED", "the raft member is stopping; retry against another manager");
  }
}
