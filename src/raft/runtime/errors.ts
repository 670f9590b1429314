// Failures of the Raft runtime, each with a stable code and what to do about it.

export class RaftRuntimeError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
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

export class ProposalDroppedError extends RaftRuntimeError {}

export class ProposalTimeoutError extends RaftRuntimeError {
  constructor(ms: number) {
    super(
      "PROPOSAL_TIMEOUT",
      `no answer within ${ms} ms; the change may still be applied. Check the cluster's leader and retry idempotently.`,
    );
  }
}

export class NodeStoppedError extends RaftRuntimeError {
  constructor() {
    super("NODE_STOPPED", "the raft member is stopping; retry against another manager");
  }
}
