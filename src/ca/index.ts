// src/ca — the cluster's certificate authority and the TLS credentials built on it.
//
// RootCA owns a root signing key (ECDSA P-256) and issues node certificates from
// checked CSRs under the profile in DESIGN.md ("Certificates"), and cross-signs a
// successor root for hitless root rotation: only a CheckedNewRoot (root-import.ts: key
// held, this cluster's self-signed P-256 root, valid) into an intermediate that signs
// leaves only and lives for the rotation window. The node side makes its own key and
// CSR; the key never leaves the node. Join tokens (SWMTKN-1-<digest>-<secret>)
// bind a joining node to the root it fetched and admit it with a role. Key and
// certificate files are replaced atomically. `tls/` turns a node's key, chain and
// trust bundle into grpc-js credentials that rotate without dropping connections,
// and authorizes every RPC in one server interceptor. Revocation lists signed by the
// root (RootCA.createRevocationList) make a manager's TLS server refuse a removed
// node's certificates in the handshake itself (tls/handshake-refusal.ts).
//
// Every refusal is a CaError with a stable `code`. This folder imports nothing
// from src/raft, src/fsm or anything above it.
export { writeCertificateFile, writeFileAtomic, writePrivateKeyFile } from "./atomic-file.js";
export { trustBundleFromPem, type VerifiedChain, verifyChain } from "./chain.js";
export { type CheckedCsr, checkNodeCsr, createNodeCsr, csrDerFor, type NodeKeyAndCsr } from "./csr.js";
export * from "./errors.js";
export {
  checkRootDigest,
  formatJoinToken,
  generateJoinSecret,
  type JoinSecrets,
  type JoinToken,
  parseJoinToken,
  roleForJoinToken,
  rootCertificateDigest,
} from "./join-token.js";
export { generateP256Key, privateKeyFromPem, privateKeyToPem } from "./keys.js";
export { type NodeIdentity, parseNodeCertificate } from "./node-identity.js";
export * from "./profile.js";
export {
  type CheckedRevocationList,
  checkRevocationLists,
  MAX_REVOCATION_LISTS,
  MAX_REVOKED_SERIALS,
  type RevokedSerial,
} from "./revocation-list.js";
export { type IssuedNodeCertificate, type IssueNodeCertificateRequest, RootCA } from "./root-ca.js";
export { CheckedNewRoot, checkNewRoot, type NewRootInput } from "./root-import.js";
export {
  type AuthorizationOptions,
  type AuthorizationPolicy,
  callErrorMessage,
  type MethodAccess,
  NodeAuthorizer,
  REASON_CODE_METADATA_KEY,
  refusalReasonOf,
} from "./tls/authorization.js";
export {
  type ChannelCredentialOptions,
  type NodeTlsIdentity,
  TlsCredentialHolder,
  type TlsCredentialHolderOptions,
} from "./tls/credential-holder.js";
export { refuseUnverifiedClientCertificates } from "./tls/handshake-refusal.js";
export { type SecureContextSource, SourcedServerCredentials } from "./tls/server-credentials.js";
export { verifyServerNode } from "./tls/server-identity.js";
export { rootKeyIdsOf } from "./trust-bundle.js";
