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
  "INVALID_ARGUMENT",
  /** The Raft runtime or the state machine refused; the reason is the runtime's or fsm's code. */
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
  if (error instanceof FsmRefusal) return new ControlError("REPLICATION_FAILED", error.message, error.code);
  const message = error instanceof Error ? error.message : String(error);
  return new ControlError("REPLICATION_FAILED", `unexpected failure: ${message}`, "INTERNAL");
}
