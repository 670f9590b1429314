// Why the control API refused a request. Each refusal has a stable code (sent to the
// client in the x-nodectl-reason trailer, like the authorization interceptor's) and
// a message that says what to do; nothing changed when one is returned.
import * as grpc from "@grpc/grpc-js";
import { FsmRefusal } from "../fsm/index.js";
import { RaftRuntimeError } from "../raft/runtime/errors.js";

export const CONTROL_ERROR_CODES = [
  /** The cluster record is not in the replicated state yet (the first manager is still creating it). */
  "CLUSTER_NOT_READY",
  "NODE_NOT_FOUND",
  /** An id prefix that names more than one node. */
  "AMBIGUOUS_NODE_ID",
  /** A promote of a node that serves nothing (joined without --listen): a manager must serve. */
  "NODE_HAS_NO_ADDRESS",
  /**
   * The replicated state's rules refuse the change (the reason is the fsm's code:
   * NODE_IS_MANAGER, NODE_UP, NODE_REMOVED, LAST_MANAGER, QUORUM_AT_RISK, ...), whether
   * the control API saw it on its read or apply refused the command.
   */
  "REFUSED",
  "INVALID_ARGUMENT",
  /** The Raft runtime did not replicate the command (no quorum, timeout, stopping); the reason is its code. */
  "REPLICATION_FAILED",
  /** Something that is not a socket sits where control.sock goes. */
  "CONTROL_SOCKET_BLOCKED",
  /** The socket's path is longer than a unix socket address holds (107 bytes on Linux). */
  "CONTROL_SOCKET_PATH_TOO_LONG",
] as const;

export type ControlErrorCode = (typeof CONTROL_ERROR_CODES)[number];

const STATUS: Record<ControlErrorCode, grpc.status> = {
  CLUSTER_NOT_READY: grpc.status.FAILED_PRECONDITION,
  NODE_NOT_FOUND: grpc.status.NOT_FOUND,
  AMBIGUOUS_NODE_ID: grpc.status.INVALID_ARGUMENT,
  NODE_HAS_NO_ADDRESS: grpc.status.FAILED_PRECONDITION,
  REFUSED: grpc.status.FAILED_PRECONDITION,
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  REPLICATION_FAILED: grpc.status.UNAVAILABLE,
  CONTROL_SOCKET_BLOCKED: grpc.status.FAILED_PRECONDITION,
  CONTROL_SOCKET_PATH_TOO_LONG: grpc.status.FAILED_PRECONDITION,
};

export class ControlError extends Error {
  constructor(
    readonly code: ControlErrorCode,
    message: string,
    /** The lower layer's own code (a RaftRuntimeError's or FsmRefusal's), when there is one. */
    readonly reason: string = code,
  ) {
    super(message);
    this.name = "ControlError";
  }

  toStatus(): Partial<grpc.StatusObject> {
    const metadata = new grpc.Metadata();
    metadata.set(CONTROL_REASON_METADATA_KEY, this.reason);
    return { code: STATUS[this.code], details: this.message, metadata };
  }
}

export const CONTROL_REASON_METADATA_KEY = "x-nodectl-reason";

export class ClusterNotReadyError extends ControlError {
  constructor() {
    super(
      "CLUSTER_NOT_READY",
      "the cluster is being created (its first manager has not committed it yet); retry in a moment",
    );
  }
}

/** Maps what a service call threw to a ControlError (lower layers' codes kept as the reason). */
export function asControlError(error: unknown): ControlError {
  if (error instanceof ControlError) return error;
  if (error instanceof RaftRuntimeError)
    return new ControlError("REPLICATION_FAILED", error.message, error.code);
  // A refusal by the state's rules is an answer, not a replication failure: retrying will not help.
  if (error instanceof FsmRefusal) return new ControlError("REFUSED", error.message, error.code);
  const message = error instanceof Error ? error.message : String(error);
  return new ControlError("REPLICATION_FAILED", `unexpected failure: ${message}`, "INTERNAL");
}
