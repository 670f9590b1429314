// src/issuer — the CA service every manager serves (DESIGN.md "Certificates", "Join
// tokens"): the root for a joining node to check against its token, the token-bearing
// first issuance (the token decides the role, the cluster draws the node id), the status
// stream a joining node waits on, and renewal over mutual TLS for the node's desired
// role. Certificates are recorded in the Raft log before they are handed out; CSRs in
// flight are bounded per manager. The client side (joinCluster, renewCertificate) is
// here too, for the node daemon.
export {
  checkNodeOnRecord,
  IssuerCallError,
  type JoinClusterOptions,
  type JoinedNode,
  joinCluster,
  type RenewedCertificate,
  renewCertificate,
} from "./client.js";
export {
  asIssuerRefusal,
  IssuerRefusal,
  type IssuerRefusalCode,
  RETRY_AFTER_MS_METADATA_KEY,
} from "./errors.js";
export { DEFAULT_ISSUANCE_LIMITS, IssuanceLimiter, type IssuanceLimits } from "./limiter.js";
export { NODE_ID_CHARS, newNodeId } from "./node-id.js";
export { caServicePolicy } from "./policy.js";
export { RootRotationReconciler } from "./rotation-reconciler.js";
export { NodeCAIssuer, type NodeCAIssuerOptions } from "./service.js";
export { trustBundleOf } from "./trust.js";
