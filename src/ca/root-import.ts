// The gate in front of cross-signing: a root offered for a rotation (imported with
// `ca rotate --ca-cert F --ca-key F`, or made here) becomes a CheckedNewRoot only
// after every check below passes, and RootCA.crossSignRoot takes nothing else.
// Whatever the cross-signed intermediate covers is trusted by every peer that still
// trusts the old root, so the key must be held here (proven, not assumed), the
// certificate must be this cluster's own self-signed root that allows no CA below it
// but the cross-signed intermediate of a later rotation,
// and it must be valid now and long enough to outlive the rotation.
import {
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  randomBytes,
  sign,
  verify,
  type X509Certificate,
} from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import {
  BasicConstraints,
  Certificate,
  id_ce_basicConstraints,
  id_ce_keyUsage,
  KeyUsage,
  KeyUsageFlags,
  type Name,
  type TBSCertificate,
} from "@peculiar/asn1-x509";
import {
  RootExpiredError,
  RootExpiresTooSoonError,
  RootKeyMismatchError,
  RootKeyUnsupportedError,
  RootNotCaError,
  RootNotSelfSignedError,
  RootNotYetValidError,
  RootPathLengthError,
  RootWrongClusterError,
} from "./errors.js";
import { certificatesFromPem } from "./pem.js";
import {
  DEFAULT_NODE_CERT_LIFETIME_MS,
  DEFAULT_ROTATION_WINDOW_MS,
  MIN_NEW_ROOT_REMAINING_MS,
  OID,
  ROOT_CLOCK_SKEW_MS,
  ROOT_PATH_LENGTH,
} from "./profile.js";
import { RootCA } from "./root-ca.js";

export interface NewRootInput {
  certificatePem: string;
  privateKeyPem: string;
  /** The cluster rotating: the root's subject must carry exactly this O. */
  clusterId: string;
  now?: Date;
  /** How long the rotation may take (the cross-signed intermediate's life). */
  rotationWindowMs?: number;
  /** The lifetime of node certificates the new key will sign (`--cert-expiry`). */
  nodeCertLifetimeMs?: number;
}

/** A root that passed every check of this file, with its key: the only thing RootCA.crossSignRoot signs. */
export class CheckedNewRoot {
  // A private field makes the type nominal: an object literal of the same shape is not a CheckedNewRoot.
  readonly #root: RootCA;

  private constructor(
    root: RootCA,
    readonly notBefore: Date,
    readonly notAfter: Date,
  ) {
    this.#root = root;
  }

  /** The new root with its key, to store in the rotation and to sign with. */
  get root(): RootCA {
    return this.#root;
  }

  get clusterId(): string {
    return this.root.clusterId;
  }

  /** Runs every check; throws the CaError of the first that fails and makes nothing. */
  static check(input: NewRootInput): CheckedNewRoot {
    const [certificate] = certificatesFromPem(input.certificatePem, 1);
    if (!certificate) throw new RootNotCaError("no certificate");
    const parsed = AsnConvert.parse(certificate.raw, Certificate);
    const key = readPrivateKey(input.privateKeyPem);
    checkAlgorithms(certificate, parsed, key);
    checkCaExtensions(parsed.tbsCertificate);
    checkKeyMatches(certificate, key);
    checkSelfSigned(certificate, parsed.tbsCertificate);
    checkOrganization(parsed.tbsCertificate.subject, input.clusterId);
    const notBefore = new Date(certificate.validFrom);
    const notAfter = new Date(certificate.validTo);
    checkValidity(notBefore, notAfter, input);
    const root = RootCA.fromPem({
      clusterId: input.clusterId,
      certificatePem: certificate.toString(),
      privateKeyPem: input.privateKeyPem,
    });
    return new CheckedNewRoot(root, notBefore, notAfter);
  }

  /** A fresh root (20 years, see RootCA.create) for a rotation of `clusterId`, through the same checks as an import. */
  static generate(options: { clusterId: string; now?: Date }): CheckedNewRoot {
    const now = options.now ?? new Date();
    const root = RootCA.create({ clusterId: options.clusterId, now });
    return CheckedNewRoot.check({
      certificatePem: root.certificatePem,
      privateKeyPem: root.privateKeyPem(),
      clusterId: options.clusterId,
      now,
    });
  }
}

export function checkNewRoot(input: NewRootInput): CheckedNewRoot {
  return CheckedNewRoot.check(input);
}

function readPrivateKey(pem: string): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (cause) {
    throw new RootKeyUnsupportedError(
      `the key is not an unencrypted PEM private key: ${cause instanceof Error ? cause.message : String(cause)}`,
    );
  }
}

function isP256(key: KeyObject): boolean {
  return key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1";
}

/**
 * P-256 only: our signer writes ecdsa-with-SHA256 into every certificate and CRL it
 * makes (x509-build.ts, revocation-list.ts) and loads only P-256 keys (keys.ts), so an
 * RSA root would be accepted here and then sign certificates with a wrong algorithm.
 */
function checkAlgorithms(certificate: X509Certificate, parsed: Certificate, key: KeyObject): void {
  if (!isP256(certificate.publicKey)) {
    throw new RootKeyUnsupportedError(`certificate key is ${describeKey(certificate.publicKey)}`);
  }
  if (!isP256(key)) throw new RootKeyUnsupportedError(`private key is ${describeKey(key)}`);
  const algorithm = parsed.signatureAlgorithm.algorithm;
  if (algorithm !== OID.ecdsaWithSha256 || parsed.tbsCertificate.signature.algorithm !== algorithm) {
    throw new RootKeyUnsupportedError(`certificate signature algorithm ${algorithm}, not ecdsa-with-SHA256`);
  }
}

function describeKey(key: KeyObject): string {
  const details = key.asymmetricKeyDetails;
  const size = details?.namedCurve ?? (details?.modulusLength ? `${details.modulusLength} bits` : "");
  return `${key.asymmetricKeyType ?? "unknown"}${size ? ` ${size}` : ""}`;
}

function checkCaExtensions(tbs: TBSCertificate): void {
  const constraints = tbs.extensions?.find((e) => e.extnID === id_ce_basicConstraints);
  if (!constraints) throw new RootNotCaError("no basicConstraints");
  const basic = AsnConvert.parse(constraints.extnValue, BasicConstraints);
  if (!basic.cA) throw new RootNotCaError("basicConstraints CA:false");
  // RFC 5280 4.2.1.9, and openssl verify -x509_strict refuses a CA whose constraints are not critical.
  if (!constraints.critical) throw new RootNotCaError("basicConstraints not critical");
  const usage = tbs.extensions?.find((e) => e.extnID === id_ce_keyUsage);
  if (!usage) throw new RootNotCaError("no keyUsage");
  const flags = AsnConvert.parse(usage.extnValue, KeyUsage).toNumber();
  // cRLSign too: the root signs the revocation lists managers load into their TLS servers.
  const required = KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign;
  if ((flags & required) !== required) throw new RootNotCaError("keyUsage lacks keyCertSign or cRLSign");
  // Exactly one level: the cross-signed intermediate of the next rotation, never a sub-CA of its own (profile.ts).
  const pathLength = basic.pathLenConstraint ?? null;
  if (pathLength !== ROOT_PATH_LENGTH) throw new RootPathLengthError(pathLength);
}

/** Same public key, and a signature made with the private key verifies under the certificate's key. */
function checkKeyMatches(certificate: X509Certificate, key: KeyObject): void {
  const held = createPublicKey(key).export({ type: "spki", format: "der" });
  const certified = certificate.publicKey.export({ type: "spki", format: "der" });
  if (!held.equals(certified)) throw new RootKeyMismatchError("public keys differ");
  const challenge = randomBytes(32);
  const signature = sign("sha256", challenge, key);
  if (!verify("sha256", challenge, certificate.publicKey, signature)) {
    throw new RootKeyMismatchError("a signature made with the key does not verify under the certificate");
  }
}

function checkSelfSigned(certificate: X509Certificate, tbs: TBSCertificate): void {
  const subject = Buffer.from(AsnConvert.serialize(tbs.subject));
  const issuer = Buffer.from(AsnConvert.serialize(tbs.issuer));
  if (!subject.equals(issuer)) throw new RootNotSelfSignedError("issuer differs from subject");
  // checkIssued also compares the authority key id (if any) with the subject key id.
  if (!certificate.checkIssued(certificate)) {
    throw new RootNotSelfSignedError("its authority key identifier names another key");
  }
  if (!certificate.verify(certificate.publicKey)) {
    throw new RootNotSelfSignedError("its signature does not verify with its own key");
  }
}

function checkOrganization(subject: Name, clusterId: string): void {
  const organizations: string[] = [];
  for (const rdn of subject)
    for (const atv of rdn) if (atv.type === OID.organization) organizations.push(atv.value.toString());
  if (organizations.length !== 1 || organizations[0] !== clusterId) {
    throw new RootWrongClusterError(clusterId, organizations);
  }
}

/**
 * Valid now (a notBefore up to ROOT_CLOCK_SKEW_MS ahead is a clock difference, not a
 * post-dated root), and not expiring before the rotation can finish and the
 * certificates signed during it expire: at least max(30 days, window + node lifetime).
 */
function checkValidity(notBefore: Date, notAfter: Date, input: NewRootInput): void {
  const now = input.now ?? new Date();
  if (notAfter.getTime() <= now.getTime()) throw new RootExpiredError(notAfter, now);
  if (notBefore.getTime() > now.getTime() + ROOT_CLOCK_SKEW_MS)
    throw new RootNotYetValidError(notBefore, now);
  const needed = Math.max(
    MIN_NEW_ROOT_REMAINING_MS,
    (input.rotationWindowMs ?? DEFAULT_ROTATION_WINDOW_MS) +
      (input.nodeCertLifetimeMs ?? DEFAULT_NODE_CERT_LIFETIME_MS),
  );
  const requiredUntil = new Date(now.getTime() + needed);
  if (notAfter < requiredUntil) throw new RootExpiresTooSoonError(notAfter, requiredUntil);
}
