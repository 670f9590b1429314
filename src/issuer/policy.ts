// Who may call the CA service (the NodeAuthorizer's policy entries), exported so the
// node daemon merges them into its authorizer: fetching the root, the token-bearing first
// issuance and the joining node's status stream need no client certificate; renewal
// needs a certificate of this cluster, of either role.
import type { AuthorizationPolicy } from "../ca/index.js";
import { NodeCAServiceService } from "../gen/ca/v1/ca.js";

export function caServicePolicy(): AuthorizationPolicy {
  const s = NodeCAServiceService;
  return {
    [s.getRootCaCertificate.path]: { public: true },
    [s.issueNodeCertificate.path]: { public: true },
    [s.nodeCertificateStatus.path]: { public: true },
    [s.renewNodeCertificate.path]: { roles: ["manager", "worker"] },
  };
}
