// What the services above Raft (issuer, dispatcher, control; DESIGN.md "Layers") see
// of it: propose a command, read linearizably, follow leadership. RaftNode implements
// these; services take them as interfaces and never reach into RaftNode or the core.
// Every rejection is a RaftRuntimeError with a code from RaftRuntimeErrorCode.

/** A command that is in the log and applied on this member. */
export interface Applied {
  /** Its log index: the same on every member. */
  index: number;
  /** What the state machine's apply() returned for it on this member. */
  result: Uint8Array;
}

export interface Proposer {
  /**
   * Replicates a command through the log. Resolves once it is committed (durable on
   * a quorum) and applied here; rejects when it was refused (nothing happened), the
   * member stops, or no answer came in time (it may still be applied: retry
   * idempotently). Never settles twice, always settles.
   */
  propose(command: Uint8Array): Promise<Applied>;
}

export interface LinearizableReader {
  /**
   * Runs `fn` against the state machine once it reflects every write acknowledged
   * before this call (ReadIndex); on any member.
   */
  read<T>(fn: () => T): Promise<T>;
}

export interface Leadership {
  /** The leader this member knows of (0: none known) and its term. */
  leader: number;
  term: number;
  /** This member is the leader. */
  isSelf: boolean;
}

export interface LeadershipEvents {
  /** What this member knows now. */
  leadership(): Leadership;
  /** Calls `listener` on every change of the known leader; returns the unsubscribe. */
  onLeadershipChange(listener: (now: Leadership) => void): () => void;
}

/** Everything a service needs of the Raft runtime. */
export interface RaftService extends Proposer, LinearizableReader, LeadershipEvents {}
