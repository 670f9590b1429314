// Chain building and verification with Node's native X.509 (OpenSSL underneath).
// During a root rotation a leaf signed by the new key arrives with the
// cross-signed intermediate, so two paths exist: leaf → intermediate → old root,
// and leaf → new root. Either one ending at a trusted root is enough.
import type { X509Certificate } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate } from "@peculiar/asn1-x509";
import { CertExpiredError, CertInvalidError, UntrustedRootError } from "./errors.js";
import { memoizeBy, memoizeByString } from "./memo.js";
import { certificatesFromPem } from "./pem.js";
import { MAX_CHAIN_CERTS } from "./profile.js";
import { pathLengthOf } from "./x509-build.js";

export interface VerifiedChain {
  /** Leaf first, trusted root last. */
  path: X509Certificate[];
  root: X509Certificate;
}

const MAX_TRUST_BUNDLE_CERTS = 16;

/** The roots of a PEM bundle, each checked to be a self-signed CA certificate. */
export function trustBundleFromPem(pem: string): X509Certificate[] {
  return [...checkedBundle(pem)];
}

// Parsed once per distinct bundle: every renewal and push checks a chain against it.
const checkedBundle = memoizeByString((pem: string): readonly X509Certificate[] => {
  const roots = certificatesFromPem(pem, MAX_TRUST_BUNDLE_CERTS);
  for (const root of roots) {
    if (!root.ca) throw new CertInvalidError(`trust bundle entry ${root.subject} is not a CA certificate`);
    if (!root.verify(root.publicKey))
      throw new CertInvalidError(`trust bundle entry ${root.subject} is not self-signed`);
  }
  return roots;
});

/** Verifies a PEM chain (leaf first, then intermediates in any order) against trusted roots. */
export function verifyChain(chainPem: string, trustBundlePem: string, now: Date = new Date()): VerifiedChain {
  const [leaf, ...intermediates] = certificatesFromPem(chainPem, MAX_CHAIN_CERTS);
  if (!leaf) throw new CertInvalidError("empty chain");
  return verifyCertificates(leaf, intermediates, trustBundleFromPem(trustBundlePem), now);
}

export function verifyCertificates(
  leaf: X509Certificate,
  intermediates: readonly X509Certificate[],
  roots: readonly X509Certificate[],
  now: Date = new Date(),
): VerifiedChain {
  assertValidAt(leaf, now);
  if (leaf.ca) throw new CertInvalidError("leaf is a CA certificate");
  const path = findPath([leaf], intermediates, roots, now);
  if (!path) throw new UntrustedRootError(`issuer ${leaf.issuer.replaceAll("\n", ", ")} is not trusted`);
  return { path, root: path[path.length - 1] as X509Certificate };
}

function findPath(
  path: X509Certificate[],
  intermediates: readonly X509Certificate[],
  roots: readonly X509Certificate[],
  now: Date,
): X509Certificate[] | undefined {
  const current = path[path.length - 1] as X509Certificate;
  for (const root of roots) {
    if (issued(root, current) && isValidAt(root, now) && allowsPath(root, path)) return [...path, root];
  }
  if (path.length > MAX_CHAIN_CERTS) return undefined;
  for (const candidate of intermediates) {
    if (
      path.includes(candidate) ||
      !candidate.ca ||
      !isValidAt(candidate, now) ||
      !issued(candidate, current) ||
      !allowsPath(candidate, path)
    )
      continue;
    const found = findPath([...path, candidate], intermediates, roots, now);
    if (found) return found;
  }
  return undefined;
}

/**
 * RFC 5280 6.1.4 (l, m), as OpenSSL applies it (to the trust anchor too): a CA's
 * pathLenConstraint bounds the CA certificates between it and the leaf, not counting
 * self-issued ones. So a CA made under a cross-signed intermediate (pathlen 0) is
 * refused here as by every peer.
 */
function allowsPath(ca: X509Certificate, below: readonly X509Certificate[]): boolean {
  const limit = pathLengthLimitOf(ca);
  if (typeof limit !== "number") return true;
  const intermediates = below.slice(1).filter((cert) => cert.subject !== cert.issuer).length;
  return intermediates <= limit;
}

// Read once per CA certificate (by fingerprint): the same roots and cross-signed
// intermediate come with every chain a node or manager checks.
const pathLengthLimitOf = memoizeBy(
  (ca: X509Certificate) => ca.fingerprint256,
  (ca: X509Certificate) => pathLengthOf(AsnConvert.parse(ca.raw, Certificate).tbsCertificate),
  16,
);

function issued(issuer: X509Certificate, subject: X509Certificate): boolean {
  // checkIssued compares names, key identifiers and key usage; verify checks the signature.
  return subject.checkIssued(issuer) && subject.verify(issuer.publicKey);
}

function isValidAt(cert: X509Certificate, now: Date): boolean {
  return new Date(cert.validFrom) <= now && now <= new Date(cert.validTo);
}

function assertValidAt(cert: X509Certificate, now: Date): void {
  if (!isValidAt(cert, now)) {
    throw new CertExpiredError(
      cert.subject.replaceAll("\n", ", "),
      new Date(cert.validFrom),
      new Date(cert.validTo),
      now,
    );
  }
}
