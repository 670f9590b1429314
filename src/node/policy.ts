// Who may call what on a manager's TLS port (the NodeAuthorizer's policy): Raft is
// for managers only; the standard health service is public (probes hold no node
// certificate); the CA service and worker sessions bring their own entries.
import { service as healthService } from "grpc-health-check";
import type { AuthorizationPolicy } from "../ca/index.js";
import { DISPATCHER_POLICY } from "../dispatcher/index.js";
import { RaftTransportServiceService } from "../gen/raft/v1/transport.js";
import { caServicePolicy } from "../issuer/index.js";

export function managerPolicy(): AuthorizationPolicy {
  return {
    ...Object.fromEntries([
      ...Object.values(RaftTransportServiceService).map((m) => [m.path, { roles: ["manager"] }] as const),
      ...Object.values(healthService).map((m) => [m.path, { public: true }] as const),
    ]),
    ...caServicePolicy(),
    ...DISPATCHER_POLICY,
  };
}
