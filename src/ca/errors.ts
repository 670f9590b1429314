// One error class per refusal kind. Each carries a stable `code` (DESIGN.md
// "Day-2 operations") that the CLI maps to an exit status and that travels back
// to a refused node; the message tells the operator what to do next.

export type CaErrorCode =
  | "NODE_REMOVED"
  | "WRONG_CLUSTER"
  | "WRONG_ROLE"
  | "WRONG_NODE"
  | "CERT_EXPIRED"
  | "CERT_INVALID"
  | "CERT_MISSING"
  | "UNTRUSTED_ROOT"
  | "TOKEN_INVALID"
  | "TOKEN_ROTATED"
  | "ROOT_DIGEST_MISMATCH"
  | "CSR_INVALID"
  | "NODE_ID_INVALID"
  | "ROLE_INVALID"
  | "CREDENTIALS_REJECTED"
  | "METHOD_NOT_ALLOWED"
  | "TLS_HOOK_UNAVAILABLE"
  | "ROOT_NOT_CA"
  | "ROOT_PATH_LENGTH"
  | "ROOT_KEY_MISMATCH"
  | "ROOT_NOT_SELF_SIGNED"
  | "ROOT_WRONG_CLUSTER"
  | "ROOT_EXPIRED"
  | "ROOT_NOT_YET_VALID"
  | "ROOT_EXPIRES_TOO_SOON"
  | "ROOT_KEY_UNSUPPORTED"
  | "ROOT_NOT_NEW"
  | "ROTATION_WINDOW_INVALID";

export abstract class CaError extends Error {
  abstract readonly code: CaErrorCode;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class NodeRemovedError extends CaError {
  readonly code = "NODE_REMOVED";
  constructor(nodeId: string) {
    super(
      `node ${nodeId} was removed from the cluster: join again with a fresh join token and a new state dir`,
    );
  }
}

export class WrongClusterError extends CaError {
  readonly code = "WRONG_CLUSTER";
  constructor(expected: string, actual: string) {
    super(
      `certificate belongs to cluster "${actual}", expected "${expected}": check the address points at this cluster's managers`,
    );
  }
}

export class WrongRoleError extends CaError {
  readonly code = "WRONG_ROLE";
  constructor(allowed: readonly string[], actual: string) {
    super(
      `role "${actual}" may not do this (allowed: ${allowed.join(", ") || "none"}): promote the node first`,
    );
  }
}

export class WrongNodeError extends CaError {
  readonly code = "WRONG_NODE";
  constructor(expected: string, actual: string) {
    super(
      `the server is node "${actual}", not "${expected}" as dialled: the address may now belong to another member; refusing to talk to it`,
    );
  }
}

export class CertExpiredError extends CaError {
  readonly code = "CERT_EXPIRED";
  constructor(subject: string, notBefore: Date, notAfter: Date, now: Date) {
    super(
      `certificate ${subject} is valid ${notBefore.toISOString()} to ${notAfter.toISOString()}, now is ${now.toISOString()}: renew it (within the grace window) or check the clock`,
    );
  }
}

export class CertInvalidError extends CaError {
  readonly code = "CERT_INVALID";
  constructor(what: string, options?: { cause?: unknown }) {
    super(`invalid certificate: ${what}`, options);
  }
}

export class CertMissingError extends CaError {
  readonly code = "CERT_MISSING";
  constructor() {
    super("no trusted client certificate was presented: join the cluster with a join token first");
  }
}

export class UntrustedRootError extends CaError {
  readonly code = "UNTRUSTED_ROOT";
  constructor(what: string) {
    super(`certificate does not chain to a trusted root (${what}): renew against the cluster's current root`);
  }
}

export class TokenInvalidError extends CaError {
  readonly code = "TOKEN_INVALID";
  constructor(what: string) {
    super(`join token is invalid: ${what}; get the current one with "nodectl join-token worker|manager"`);
  }
}

export class TokenRotatedError extends CaError {
  readonly code = "TOKEN_ROTATED";
  constructor() {
    super(
      `join token was rotated and no longer admits new nodes; get the current one with "nodectl join-token"`,
    );
  }
}

export class RootDigestMismatchError extends CaError {
  readonly code = "ROOT_DIGEST_MISMATCH";
  constructor(expected: string, actual: string) {
    super(
      `the manager's root certificate digest ${actual} does not match the join token's ${expected}: you may be talking to the wrong cluster or an impostor; refusing to join`,
    );
  }
}

export class CsrInvalidError extends CaError {
  readonly code = "CSR_INVALID";
  constructor(what: string, options?: { cause?: unknown }) {
    super(`certificate signing request rejected: ${what}; create a new ECDSA P-256 key and CSR`, options);
  }
}

export class NodeIdInvalidError extends CaError {
  readonly code = "NODE_ID_INVALID";
  constructor(reason: string) {
    super(
      `node id refused: ${reason}; a node id is 1-63 lowercase letters, digits and inner dashes, and not a role name`,
    );
  }
}

export class RoleInvalidError extends CaError {
  readonly code = "ROLE_INVALID";
  constructor(role: string) {
    super(`role ${JSON.stringify(role)} is not a node role: use "manager" or "worker"`);
  }
}

export class CredentialsRejectedError extends CaError {
  readonly code = "CREDENTIALS_REJECTED";
  constructor(what: string, options?: { cause?: unknown }) {
    super(`TLS credentials not applied, the previous ones stay in use: ${what}`, options);
  }
}

export class MethodNotAllowedError extends CaError {
  readonly code = "METHOD_NOT_ALLOWED";
  constructor(method: string) {
    super(`${method} is not in the authorization policy, so nobody may call it: add it to the policy`);
  }
}

export class TlsHookUnavailableError extends CaError {
  readonly code = "TLS_HOOK_UNAVAILABLE";
  constructor(what: string) {
    super(
      `cannot hook the gRPC server's TLS handshakes (${what}): the installed @grpc/grpc-js is not one this ` +
        "code supports; install the version package-lock.json names",
    );
  }
}

// Refusals of a root offered for a rotation (imported with --ca-cert/--ca-key, or made
// here): whatever the cross-signed intermediate covers becomes trusted by every peer
// that still trusts the old root, so each property is checked before it is signed.

const IMPORT_HINT = "a root for this cluster is a self-signed ECDSA P-256 certificate with O=<cluster id>";

export class RootNotCaError extends CaError {
  readonly code = "ROOT_NOT_CA";
  constructor(what: string) {
    super(
      `the new root is not a CA certificate (${what}): give a certificate with critical basicConstraints CA:true ` +
        `and keyUsage keyCertSign, cRLSign; ${IMPORT_HINT}`,
    );
  }
}

export class RootPathLengthError extends CaError {
  readonly code = "ROOT_PATH_LENGTH";
  constructor(pathLength: number | null, which = "the new root") {
    super(
      `${which} allows ${pathLength === null ? "any number of" : pathLength} CA certificates below it: ` +
        "a root of this cluster allows exactly one (the cross-signed intermediate of a later rotation), " +
        "so make it with basicConstraints pathlen:1",
    );
  }
}

export class RootKeyMismatchError extends CaError {
  readonly code = "ROOT_KEY_MISMATCH";
  constructor(what: string) {
    super(
      `the private key does not belong to the new root certificate (${what}): give the key the certificate was made for`,
    );
  }
}

export class RootNotSelfSignedError extends CaError {
  readonly code = "ROOT_NOT_SELF_SIGNED";
  constructor(what: string) {
    super(`the new root is not self-signed (${what}): ${IMPORT_HINT}, issued and signed by its own key`);
  }
}

export class RootWrongClusterError extends CaError {
  readonly code = "ROOT_WRONG_CLUSTER";
  constructor(expected: string, actual: readonly string[]) {
    super(
      `the new root names organization ${actual.length === 0 ? "none" : actual.map((o) => JSON.stringify(o)).join(", ")}, ` +
        `not this cluster ("${expected}"): make the root with subject O=${expected} and nothing else in O`,
    );
  }
}

export class RootExpiredError extends CaError {
  readonly code = "ROOT_EXPIRED";
  constructor(notAfter: Date, now: Date) {
    super(
      `the root expired at ${notAfter.toISOString()} (now ${now.toISOString()}): make a new root, or check the clock`,
    );
  }
}

export class RootNotYetValidError extends CaError {
  readonly code = "ROOT_NOT_YET_VALID";
  constructor(notBefore: Date, now: Date) {
    super(
      `the new root is valid only from ${notBefore.toISOString()} (now ${now.toISOString()}): ` +
        "make it with a notBefore in the past, or check the clock",
    );
  }
}

export class RootExpiresTooSoonError extends CaError {
  readonly code = "ROOT_EXPIRES_TOO_SOON";
  constructor(notAfter: Date, requiredUntil: Date) {
    super(
      `the new root expires at ${notAfter.toISOString()}, before ${requiredUntil.toISOString()} ` +
        "(the rotation window plus a node certificate's lifetime, at least 30 days): make a root that lives longer",
    );
  }
}

export class RootKeyUnsupportedError extends CaError {
  readonly code = "ROOT_KEY_UNSUPPORTED";
  constructor(what: string) {
    super(
      `the new root's key or signature is not supported (${what}): the cluster signs with ECDSA P-256 and ` +
        "SHA-256 only (RSA roots are not supported); make the root with an EC P-256 key",
    );
  }
}

export class RootNotNewError extends CaError {
  readonly code = "ROOT_NOT_NEW";
  constructor(what: string) {
    super(
      `the new root cannot replace the current one (${what}): give a root with its own key and its own subject name`,
    );
  }
}

export class RotationWindowInvalidError extends CaError {
  readonly code = "ROTATION_WINDOW_INVALID";
  constructor(windowMs: number, minMs: number, maxMs: number) {
    super(
      `a rotation window of ${windowMs} ms is outside ${minMs} ms to ${maxMs} ms: ` +
        "choose a window the cross-signed intermediate may live for",
    );
  }
}
