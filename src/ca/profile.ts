// The certificate profile from DESIGN.md ("Certificates") as named constants, so
// issuance, parsing and authorization agree on one definition.

export const NODE_ROLES = ["manager", "worker"] as const;
export type NodeRole = (typeof NODE_ROLES)[number];

export function isNodeRole(value: string): value is NodeRole {
  return (NODE_ROLES as readonly string[]).includes(value);
}

/**
 * A node id is the certificate's CN and its first DNS SAN, so it must be a DNS label
 * (RFC 1123: ASCII letters, digits, inner dashes, at most 63), lowercase so that one
 * node has one spelling. It is compared as a string everywhere, never read as a number.
 */
export const NODE_ID_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** Why `value` cannot be a node id, or undefined if it can. */
export function nodeIdProblem(value: string): string | undefined {
  if (!NODE_ID_PATTERN.test(value)) return "it is not a lowercase DNS label";
  // A node id that equals a role would put the role's SAN (e.g. DNS:manager) on any node.
  if (isNodeRole(value)) return "it is a role name";
  return undefined;
}

export const DEFAULT_NODE_CERT_LIFETIME_MS = 24 * 60 * 60 * 1000;
/** Shorter lifetimes would make nodes renew faster than a rotation can propagate. */
export const MIN_NODE_CERT_LIFETIME_MS = 60 * 1000;
/** Peers whose clocks run a little behind must still accept a fresh certificate. */
export const NOT_BEFORE_BACKDATE_MS = 5 * 60 * 1000;
export const ROOT_CA_LIFETIME_MS = 20 * 365.25 * 24 * 60 * 60 * 1000;

const DAY_MS = 24 * 60 * 60 * 1000;
/**
 * How long the cross-signed intermediate lives, so how long a rotation may take before
 * peers still trusting only the old root stop accepting certificates signed by the new
 * key (a rotation held past it must cross-sign again). A week covers a node down over a
 * weekend; the intermediate stays short because it extends the old root's trust.
 */
export const DEFAULT_ROTATION_WINDOW_MS = 7 * DAY_MS;
export const MIN_ROTATION_WINDOW_MS = 60 * 1000;
export const MAX_ROTATION_WINDOW_MS = 90 * DAY_MS;
/**
 * OpenSSL enforces a trust anchor's own pathLenConstraint, and during a rotation the old
 * root has one CA below it (the cross-signed intermediate): a root with 0 could never be
 * rotated away from. So roots allow exactly that one level and the intermediate allows
 * none, which is what stops a CA made with the new key from reaching the old root.
 */
export const ROOT_PATH_LENGTH = 1;
export const CROSS_SIGNED_PATH_LENGTH = 0;
/** A new root must outlive the rotation and what it signs during it, and never be a short-lived stopgap. */
export const MIN_NEW_ROOT_REMAINING_MS = 30 * DAY_MS;
/** A new root's notBefore may be this far ahead of our clock (the issuing machine's clock ran ahead). */
export const ROOT_CLOCK_SKEW_MS = NOT_BEFORE_BACKDATE_MS;

/** A P-256 CSR is ~250 bytes; anything far larger is not ours and is refused before parsing. */
export const MAX_CSR_BYTES = 4096;
/** Bounds certificate parsing of untrusted input (peer chains, pushed bundles). */
export const MAX_CERT_BYTES = 16 * 1024;
export const MAX_CHAIN_CERTS = 4;

export const OID = {
  organization: "2.5.4.10",
  organizationalUnit: "2.5.4.11",
  commonName: "2.5.4.3",
  ecPublicKey: "1.2.840.10045.2.1",
  prime256v1: "1.2.840.10045.3.1.7",
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
} as const;
