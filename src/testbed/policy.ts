// Who may call what on a test-bed member (the NodeAuthorizer's policy).
import type { AuthorizationPolicy } from "../ca/tls/authorization.js";
import { RaftTransportServiceService } from "../gen/raft/v1/transport.js";
import { KVServiceService } from "../gen/testbed/kv/v1/kv.js";

/**
 * Raft is for members (managers); the KV service is for the operator client only,
 * whose worker-role certificate (dev-pki.ts OPERATOR) can therefore never reach Raft.
 */
export function testbedPolicy(): AuthorizationPolicy {
  return Object.fromEntries([
    ...Object.values(RaftTransportServiceService).map((m) => [m.path, { roles: ["manager"] }] as const),
    ...Object.values(KVServiceService).map((m) => [m.path, { roles: ["worker"] }] as const),
  ]);
}
