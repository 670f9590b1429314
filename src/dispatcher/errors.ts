// Why the dispatcher refused or ended a session. Each refusal has a stable code (sent
// to the node in the `x-nodectl-reason` trailer, as the CA's interceptor does) and a
// message that tells the node, or its operator, what to do.
import * as grpc from "@grpc/grpc-js";

export const DISPATCHER_ERROR_CODES = [
  "SESSION_LIMIT",
  "UNKNOWN_NODE",
  "NODE_REMOVED",
  "NO_SESSION",
  "HEARTBEAT_MISSED",
  "SESSION_SUPERSEDED",
  "DISPATCHER_STOPPED",
  "CERT_MISSING",
  "CERT_EXPIRED",
  /** A manager asked to leave: it must be demoted first. */
  "NODE_IS_MANAGER",
  /** The log did not take the removal (no leader, timeout): retry. */
  "UNAVAILABLE",
] as const;

export type DispatcherErrorCode = (typeof DISPATCHER_ERROR_CODES)[number];

/** Trailing metadata: how long a refused node should wait before it tries this manager again. */
export const RETRY_AFTER_METADATA_KEY = "x-nodectl-retry-after-ms";
const REASON_METADATA_KEY = "x-nodectl-reason";

export class DispatcherRefusal extends Error {
  constructor(
    readonly code: DispatcherErrorCode,
    readonly grpcStatus: grpc.status,
    message: string,
    /** For RESOURCE_EXHAUSTED: the least wait before this manager is worth trying again. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = "DispatcherRefusal";
  }

  /** The status a server call ends with. */
  toStatus(): Partial<grpc.StatusObject> & { code: grpc.status } {
    const metadata = new grpc.Metadata();
    metadata.set(REASON_METADATA_KEY, this.code);
    if (this.retryAfterMs !== undefined) metadata.set(RETRY_AFTER_METADATA_KEY, String(this.retryAfterMs));
    return { code: this.grpcStatus, details: `${this.code}: ${this.message}`, metadata };
  }
}

export const refusals = {
  isManager: (nodeId: string) =>
    new DispatcherRefusal(
      "NODE_IS_MANAGER",
      grpc.status.FAILED_PRECONDITION,
      `node ${nodeId} is a manager: demote it first (nodectl demote ${nodeId} on a manager), then leave`,
    ),
  unavailable: (why: string) =>
    new DispatcherRefusal(
      "UNAVAILABLE",
      grpc.status.UNAVAILABLE,
      `the cluster did not take the change (${why}); retry`,
    ),
  sessionLimit: (max: number, retryAfterMs: number) =>
    new DispatcherRefusal(
      "SESSION_LIMIT",
      grpc.status.RESOURCE_EXHAUSTED,
      `this manager holds its maximum of ${max} sessions: retry after ${retryAfterMs} ms, or another manager`,
      retryAfterMs,
    ),
  unknownNode: (nodeId: string) =>
    new DispatcherRefusal(
      "UNKNOWN_NODE",
      grpc.status.FAILED_PRECONDITION,
      `node ${nodeId} is not in this manager's view of the cluster yet: retry shortly`,
    ),
  nodeRemoved: (nodeId: string) =>
    new DispatcherRefusal(
      "NODE_REMOVED",
      grpc.status.PERMISSION_DENIED,
      `node ${nodeId} was removed from the cluster: join again with a fresh join token and a new state dir`,
    ),
  noSession: (nodeId: string) =>
    new DispatcherRefusal(
      "NO_SESSION",
      grpc.status.NOT_FOUND,
      `node ${nodeId} has no such session on this manager: open a new session`,
    ),
  heartbeatMissed: (nodeId: string, silentMs: number) =>
    new DispatcherRefusal(
      "HEARTBEAT_MISSED",
      grpc.status.UNAVAILABLE,
      `no heartbeat from node ${nodeId} for ${silentMs} ms: it is marked down; open a new session`,
    ),
  superseded: (nodeId: string) =>
    new DispatcherRefusal(
      "SESSION_SUPERSEDED",
      grpc.status.CANCELLED,
      `node ${nodeId} opened a newer session on this manager; this one is closed`,
    ),
  stopped: () =>
    new DispatcherRefusal(
      "DISPATCHER_STOPPED",
      grpc.status.UNAVAILABLE,
      "this manager's dispatcher is stopping: connect to another manager",
    ),
  certExpired: (nodeId: string, notAfterMs: number) =>
    new DispatcherRefusal(
      "CERT_EXPIRED",
      grpc.status.UNAUTHENTICATED,
      `node ${nodeId}'s latest certificate on record expired at ${new Date(notAfterMs).toISOString()}: renew it, then open a new session`,
    ),
  certMissing: () =>
    new DispatcherRefusal(
      "CERT_MISSING",
      grpc.status.UNAUTHENTICATED,
      "a session needs this cluster's node certificate: join the cluster first",
    ),
};

/** The retry hint of a refused call, if the manager sent one. */
export function retryAfterMsOf(error: grpc.ServiceError): number | undefined {
  const value = error.metadata?.get(RETRY_AFTER_METADATA_KEY)[0];
  const ms = typeof value === "string" ? Number(value) : Number.NaN;
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
}

/** A refused call's reason code, if the manager sent one. */
export function reasonOf(error: grpc.ServiceError): string | undefined {
  const value = error.metadata?.get(REASON_METADATA_KEY)[0];
  return typeof value === "string" ? value : undefined;
}
