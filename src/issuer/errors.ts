// Why the CA service refused a call. One class with a code from a closed list: the
// code travels back to the refused node in the trailing metadata the authorizer also
// uses (REASON_CODE_METADATA_KEY), so a client reads every refusal the same way.
import * as grpc from "@grpc/grpc-js";
import { CaError, REASON_CODE_METADATA_KEY } from "../ca/index.js";
import { FsmRefusal } from "../fsm/index.js";
import { RAFT_RUNTIME_ERROR_CODES } from "../raft/runtime/errors.js";

/** Trailing metadata of a RESOURCE_EXHAUSTED answer: how long to wait before trying again. */
export const RETRY_AFTER_MS_METADATA_KEY = "retry-after-ms";

/**
 * Trailing metadata of an UNAVAILABLE join whose entry may still be applied (its answer
 * was lost or timed out): the node id drawn for it, so the node can wait for it on the
 * status stream instead of leaving an orphan record behind.
 */
export const PENDING_NODE_ID_METADATA_KEY = "x-nodectl-pending-node-id";

export type IssuerRefusalCode =
  | "TOKEN_INVALID"
  | "TOKEN_ROTATED"
  | "ROOT_DIGEST_MISMATCH"
  | "CSR_INVALID"
  | "NODE_REMOVED"
  | "NODE_NOT_FOUND"
  | "NODE_ID_INVALID"
  | "CERT_MISSING"
  /** The cluster is not initialized on this manager yet. */
  | "NO_CLUSTER"
  /** Too many CSRs in flight on this manager: retry after the hinted delay. */
  | "OVERLOADED"
  /** The log could not take the issuance now (no leader, timeout, stopping): retry. */
  | "UNAVAILABLE"
  /** A node id the cluster drew was taken (practically never): retry. */
  | "ID_COLLISION"
  /** A demoted manager asked for its worker certificate before the leader removed it from Raft: retry. */
  | "RAFT_MEMBER"
  /** A manager token without the address the new manager will serve on: nothing recorded. */
  | "ADDRESS_INVALID";

const GRPC_STATUS: Record<IssuerRefusalCode, grpc.status> = {
  TOKEN_INVALID: grpc.status.UNAUTHENTICATED,
  TOKEN_ROTATED: grpc.status.UNAUTHENTICATED,
  ROOT_DIGEST_MISMATCH: grpc.status.FAILED_PRECONDITION,
  CSR_INVALID: grpc.status.INVALID_ARGUMENT,
  NODE_REMOVED: grpc.status.PERMISSION_DENIED,
  NODE_NOT_FOUND: grpc.status.NOT_FOUND,
  NODE_ID_INVALID: grpc.status.INVALID_ARGUMENT,
  CERT_MISSING: grpc.status.UNAUTHENTICATED,
  NO_CLUSTER: grpc.status.UNAVAILABLE,
  OVERLOADED: grpc.status.RESOURCE_EXHAUSTED,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  ID_COLLISION: grpc.status.ABORTED,
  RAFT_MEMBER: grpc.status.UNAVAILABLE,
  ADDRESS_INVALID: grpc.status.INVALID_ARGUMENT,
};

export class IssuerRefusal extends Error {
  constructor(
    readonly code: IssuerRefusalCode,
    message: string,
    /** OVERLOADED: the delay hinted to the caller. */
    readonly retryAfterMs?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "IssuerRefusal";
  }

  /** The node id of a join whose entry may still be applied, told to the caller with this refusal. */
  pendingNodeId?: string;

  get grpcStatus(): grpc.status {
    return GRPC_STATUS[this.code];
  }

  /** The status to answer with: the code in the details and in the trailing metadata. */
  toServiceError(): grpc.ServerErrorResponse {
    const metadata = new grpc.Metadata();
    metadata.set(REASON_CODE_METADATA_KEY, this.code);
    if (this.retryAfterMs !== undefined) metadata.set(RETRY_AFTER_MS_METADATA_KEY, String(this.retryAfterMs));
    if (this.pendingNodeId !== undefined) metadata.set(PENDING_NODE_ID_METADATA_KEY, this.pendingNodeId);
    return Object.assign(new Error(this.message), {
      code: this.grpcStatus,
      details: `${this.code}: ${this.message}`,
      metadata,
    });
  }
}

const CA_CODES: ReadonlySet<string> = new Set<IssuerRefusalCode>([
  "TOKEN_INVALID",
  "TOKEN_ROTATED",
  "ROOT_DIGEST_MISMATCH",
  "CSR_INVALID",
  "NODE_REMOVED",
  "NODE_ID_INVALID",
  "CERT_MISSING",
]);

/** Any failure of a CA call as the refusal to answer with; undefined for a bug (answered INTERNAL). */
export function asIssuerRefusal(error: unknown): IssuerRefusal | undefined {
  if (error instanceof IssuerRefusal) return error;
  if (error instanceof CaError && CA_CODES.has(error.code))
    return new IssuerRefusal(error.code as IssuerRefusalCode, error.message, undefined, { cause: error });
  if (error instanceof FsmRefusal) {
    switch (error.code) {
      case "TOKEN_INVALID":
      case "TOKEN_ROTATED":
      case "NODE_REMOVED":
      case "NODE_NOT_FOUND":
        return new IssuerRefusal(error.code, error.message, undefined, { cause: error });
      case "NO_CLUSTER":
        return new IssuerRefusal("NO_CLUSTER", `${error.message}: retry once the cluster is initialized`);
      case "NODE_EXISTS":
        return new IssuerRefusal("ID_COLLISION", `${error.message}: the drawn node id was taken; retry`);
      default:
        return undefined;
    }
  }
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code === "string" && RAFT_RUNTIME_ERROR_CODES.has(code)) {
    const reason = error instanceof Error ? error.message : code;
    return new IssuerRefusal(
      "UNAVAILABLE",
      `the issuance was not recorded (${code}: ${reason}); retry, possibly on another manager`,
      undefined,
      { cause: error },
    );
  }
  return undefined;
}
