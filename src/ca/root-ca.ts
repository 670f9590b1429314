// RootCA owns a root signing key and exposes the operations the cluster needs:
// issue a node certificate from a checked CSR and cross-sign a successor root.
// Callers handle PEM strings and typed results; they never touch DER.
import { createPublicKey, type KeyObject, X509Certificate } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import {
  BasicConstraints,
  Certificate,
  ExtendedKeyUsage,
  type Extension,
  Extensions,
  GeneralName,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_subjectAltName,
  id_ce_subjectKeyIdentifier,
  id_kp_clientAuth,
  id_kp_serverAuth,
  KeyUsage,
  KeyUsageFlags,
  type Name,
  SubjectAlternativeName,
  SubjectKeyIdentifier,
  TBSCertificate,
  Validity,
  Version,
} from "@peculiar/asn1-x509";
import type { CheckedCsr } from "./csr.js";
import {
  CertExpiredError,
  CertInvalidError,
  NodeIdInvalidError,
  RoleInvalidError,
  RootExpiredError,
  RootNotNewError,
  RootPathLengthError,
  RootWrongClusterError,
  RotationWindowInvalidError,
} from "./errors.js";
import { generateP256Key, privateKeyFromPem, privateKeyToPem } from "./keys.js";
import { certificatesFromPem } from "./pem.js";
import {
  CROSS_SIGNED_PATH_LENGTH,
  DEFAULT_NODE_CERT_LIFETIME_MS,
  DEFAULT_ROTATION_WINDOW_MS,
  isNodeRole,
  MAX_ROTATION_WINDOW_MS,
  MIN_NODE_CERT_LIFETIME_MS,
  MIN_ROTATION_WINDOW_MS,
  NOT_BEFORE_BACKDATE_MS,
  type NodeRole,
  nodeIdProblem,
  ROOT_CA_LIFETIME_MS,
  ROOT_PATH_LENGTH,
} from "./profile.js";
import { buildRevocationList, type RevokedSerial } from "./revocation-list.js";
import type { CheckedNewRoot } from "./root-import.js";
import {
  authorityKeyIdentifier,
  buildName,
  caKeyIdentifierOf,
  ecdsaWithSha256,
  extension,
  hex,
  keyIdentifierOf,
  pathLengthOf,
  randomSerialNumber,
  signCertificate,
  spkiOf,
  toPem,
} from "./x509-build.js";

export interface IssuedNodeCertificate {
  /** The leaf alone. */
  certificatePem: string;
  /** The leaf alone, DER (what the replicated state records). */
  certificateDer: Uint8Array;
  /** The leaf followed by the intermediates peers need (the cross-signed root during a rotation). */
  chainPem: string;
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  issuerKeyId: string;
}

export interface IssueNodeCertificateRequest {
  csr: CheckedCsr;
  role: NodeRole;
  nodeId: string;
  lifetimeMs?: number;
  now?: Date;
}

export class RootCA {
  readonly certificatePem: string;
  readonly certificate: X509Certificate;
  /** Hex SHA-1 key identifier: what node certificates name as their issuer. */
  readonly keyId: string;
  private readonly parsed: Certificate;
  private readonly keyIdBytes: ArrayBuffer;
  // Extensions shared by every node certificate, built once: issuance is the hot path.
  private readonly leafConstantExtensions: Extension[];

  private constructor(
    readonly clusterId: string,
    private readonly signingKey: KeyObject,
    certificateDer: Buffer,
    readonly intermediatesPem: string,
  ) {
    this.certificate = new X509Certificate(certificateDer);
    this.certificatePem = toPem("CERTIFICATE", certificateDer);
    this.parsed = AsnConvert.parse(certificateDer, Certificate);
    this.keyIdBytes = caKeyIdentifierOf(this.parsed.tbsCertificate);
    this.keyId = hex(this.keyIdBytes);
    this.leafConstantExtensions = [
      extension(id_ce_basicConstraints, true, new BasicConstraints({ cA: false })),
      extension(id_ce_keyUsage, true, new KeyUsage(KeyUsageFlags.digitalSignature)),
      extension(id_ce_extKeyUsage, false, new ExtendedKeyUsage([id_kp_serverAuth, id_kp_clientAuth])),
      extension(id_ce_authorityKeyIdentifier, false, authorityKeyIdentifier(this.keyIdBytes)),
    ];
  }

  /** A new self-signed root with a fresh P-256 key. */
  static create(options: { clusterId: string; now?: Date; lifetimeMs?: number }): RootCA {
    const key = generateP256Key();
    const now = options.now ?? new Date();
    const spki = spkiOf(createPublicKey(key));
    const keyId = keyIdentifierOf(spki);
    const subject = buildName({
      organization: options.clusterId,
      // Distinct per key so a new root and its cross-signed twin never collide with the old root by name.
      commonName: `nodectl-root-ca-${hex(keyId).slice(0, 16)}`,
    });
    const tbs = caTbs({
      pathLength: ROOT_PATH_LENGTH,
      subject,
      issuer: subject,
      spki,
      subjectKeyId: keyId,
      issuerKeyId: keyId,
      notBefore: new Date(now.getTime() - NOT_BEFORE_BACKDATE_MS),
      notAfter: new Date(now.getTime() + (options.lifetimeMs ?? ROOT_CA_LIFETIME_MS)),
    });
    return new RootCA(options.clusterId, key, signCertificate(tbs, key), "");
  }

  /**
   * Loads a root from the replicated state, where only RootCA.create's roots and
   * CheckedNewRoot's enter; refuses a key that does not match the certificate or a
   * non-CA certificate. Not an import: a root from outside goes through checkNewRoot
   * (root-import.ts), and only that result can be cross-signed.
   */
  static fromPem(options: {
    clusterId: string;
    certificatePem: string;
    privateKeyPem: string;
    intermediatesPem?: string;
  }): RootCA {
    const [cert] = certificatesFromPem(options.certificatePem, 1);
    const key = privateKeyFromPem(options.privateKeyPem);
    if (!cert?.ca) throw new CertInvalidError("root certificate is not a CA certificate");
    if (!cert.checkPrivateKey(key))
      throw new CertInvalidError("root key does not match the root certificate");
    if (options.intermediatesPem) certificatesFromPem(options.intermediatesPem);
    return new RootCA(options.clusterId, key, cert.raw, options.intermediatesPem ?? "");
  }

  /** The same root, serving the given intermediates (the cross-signed root) with each issued certificate. */
  withIntermediates(intermediatesPem: string): RootCA {
    certificatesFromPem(intermediatesPem);
    return new RootCA(this.clusterId, this.signingKey, this.certificate.raw, intermediatesPem);
  }

  get certificateDer(): Buffer {
    return this.certificate.raw;
  }

  /** For the replicated state only: the root key must never be written anywhere else. */
  privateKeyPem(): string {
    return privateKeyToPem(this.signingKey);
  }

  issueNodeCertificate(request: IssueNodeCertificateRequest): IssuedNodeCertificate {
    // Checked at run time: the request may come from JSON or a flag, past the type checker.
    if (!isNodeRole(request.role)) throw new RoleInvalidError(String(request.role));
    const idProblem = nodeIdProblem(request.nodeId);
    if (idProblem) throw new NodeIdInvalidError(idProblem);
    const lifetimeMs = request.lifetimeMs ?? DEFAULT_NODE_CERT_LIFETIME_MS;
    if (!(lifetimeMs >= MIN_NODE_CERT_LIFETIME_MS)) {
      throw new RangeError(`certificate lifetime ${lifetimeMs} ms is below the minimum of 1 minute`);
    }
    const now = request.now ?? new Date();
    const notBefore = new Date(now.getTime() - NOT_BEFORE_BACKDATE_MS);
    const rootNotAfter = new Date(this.certificate.validTo);
    // A leaf outliving its issuer would fail verification everywhere; cap it.
    const notAfter = new Date(Math.min(now.getTime() + lifetimeMs, rootNotAfter.getTime()));
    // Past the root's expiry the cap would put notAfter before notBefore: a certificate nobody accepts.
    if (notAfter <= now) {
      throw new CertExpiredError("of the root CA", new Date(this.certificate.validFrom), rootNotAfter, now);
    }
    const spki = request.csr.subjectPublicKeyInfo;
    const serial = randomSerialNumber();
    const tbs = new TBSCertificate({
      version: Version.v3,
      serialNumber: serial,
      signature: ecdsaWithSha256(),
      issuer: this.parsed.tbsCertificate.subject,
      validity: new Validity({ notBefore, notAfter }),
      // The manager decides the subject; whatever the requester put in its CSR is ignored.
      subject: buildName({
        organization: this.clusterId,
        organizationalUnit: request.role,
        commonName: request.nodeId,
      }),
      subjectPublicKeyInfo: spki,
      extensions: new Extensions([
        ...this.leafConstantExtensions,
        extension(
          id_ce_subjectAltName,
          false,
          new SubjectAlternativeName([
            new GeneralName({ dNSName: request.nodeId }),
            new GeneralName({ dNSName: request.role }),
          ]),
        ),
        extension(id_ce_subjectKeyIdentifier, false, new SubjectKeyIdentifier(keyIdentifierOf(spki))),
      ]),
    });
    const certificateDer = new Uint8Array(signCertificate(tbs, this.signingKey));
    const certificatePem = toPem("CERTIFICATE", certificateDer);
    return {
      certificatePem,
      certificateDer,
      chainPem: certificatePem + this.intermediatesPem,
      serialNumber: hex(serial),
      notBefore: new Date(Math.floor(notBefore.getTime() / 1000) * 1000),
      notAfter: new Date(Math.floor(notAfter.getTime() / 1000) * 1000),
      issuerKeyId: this.keyId,
    };
  }

  /**
   * A CRL signed by this root listing the given serials (PEM), for this manager's own TLS
   * server: see revocation-list.ts for its validity period. With the CRL loaded, OpenSSL
   * checks every certificate of a chain (CRL_CHECK_ALL), so a server needs one list per
   * root its clients' chains pass through (during a rotation: the old and the new root).
   */
  createRevocationList(revoked: readonly RevokedSerial[], now = new Date()): string {
    return buildRevocationList({
      issuer: this.parsed.tbsCertificate.subject,
      issuerKeyId: this.keyIdBytes,
      issuerNotAfter: new Date(this.certificate.validTo),
      signingKey: this.signingKey,
      revoked,
      now,
    });
  }

  /**
   * The cross-signed intermediate for a root rotation: the new root's subject and
   * key, issued by this (old) root, so peers trusting only this root accept leaves
   * signed by the new key. Only a CheckedNewRoot (key held, this cluster's own
   * self-signed root, valid) is signed. The intermediate may sign leaves only
   * (pathLenConstraint 0) and lives for the rotation window, capped by both roots.
   * This root must allow that one CA below it (not pathLenConstraint 0).
   */
  crossSignRoot(newRoot: CheckedNewRoot, options: { rotationWindowMs?: number; now?: Date } = {}): string {
    const now = options.now ?? new Date();
    const windowMs = options.rotationWindowMs ?? DEFAULT_ROTATION_WINDOW_MS;
    if (!(windowMs >= MIN_ROTATION_WINDOW_MS && windowMs <= MAX_ROTATION_WINDOW_MS)) {
      throw new RotationWindowInvalidError(windowMs, MIN_ROTATION_WINDOW_MS, MAX_ROTATION_WINDOW_MS);
    }
    const next = newRoot.root;
    if (next.clusterId !== this.clusterId) throw new RootWrongClusterError(this.clusterId, [next.clusterId]);
    const parsed = next.parsed.tbsCertificate;
    if (next.certificate.publicKey.equals(this.certificate.publicKey)) {
      throw new RootNotNewError("it has the current root's key");
    }
    const sameName = Buffer.from(AsnConvert.serialize(parsed.subject)).equals(
      Buffer.from(AsnConvert.serialize(this.parsed.tbsCertificate.subject)),
    );
    // Two CAs of one name and different keys make chain building pick by key id alone.
    if (sameName) throw new RootNotNewError("it has the current root's subject name");
    // A root that forbids any CA below it would make OpenSSL refuse every chain through the intermediate.
    if (pathLengthOf(this.parsed.tbsCertificate) === 0) throw new RootPathLengthError(0, "the current root");
    const thisNotAfter = new Date(this.certificate.validTo);
    if (thisNotAfter <= now) throw new RootExpiredError(thisNotAfter, now);
    const notAfter = Math.min(now.getTime() + windowMs, newRoot.notAfter.getTime(), thisNotAfter.getTime());
    if (notAfter <= now.getTime()) throw new RootExpiredError(newRoot.notAfter, now);
    const tbs = caTbs({
      pathLength: CROSS_SIGNED_PATH_LENGTH,
      subject: parsed.subject,
      issuer: this.parsed.tbsCertificate.subject,
      spki: parsed.subjectPublicKeyInfo,
      subjectKeyId: next.keyIdBytes,
      issuerKeyId: this.keyIdBytes,
      notBefore: new Date(Math.max(now.getTime() - NOT_BEFORE_BACKDATE_MS, newRoot.notBefore.getTime())),
      notAfter: new Date(notAfter),
    });
    return toPem("CERTIFICATE", signCertificate(tbs, this.signingKey));
  }
}

/** A root (pathLength ROOT_PATH_LENGTH) or a cross-signed root (CROSS_SIGNED_PATH_LENGTH). */
function caTbs(fields: {
  pathLength: number;
  subject: Name;
  issuer: Name;
  spki: TBSCertificate["subjectPublicKeyInfo"];
  subjectKeyId: ArrayBuffer;
  issuerKeyId: ArrayBuffer;
  notBefore: Date;
  notAfter: Date;
}): TBSCertificate {
  return new TBSCertificate({
    version: Version.v3,
    serialNumber: randomSerialNumber(),
    signature: ecdsaWithSha256(),
    issuer: fields.issuer,
    validity: new Validity({ notBefore: fields.notBefore, notAfter: fields.notAfter }),
    subject: fields.subject,
    subjectPublicKeyInfo: fields.spki,
    extensions: new Extensions([
      extension(
        id_ce_basicConstraints,
        true,
        new BasicConstraints({ cA: true, pathLenConstraint: fields.pathLength }),
      ),
      extension(id_ce_keyUsage, true, new KeyUsage(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign)),
      extension(id_ce_subjectKeyIdentifier, false, new SubjectKeyIdentifier(fields.subjectKeyId)),
      extension(id_ce_authorityKeyIdentifier, false, authorityKeyIdentifier(fields.issuerKeyId)),
    ]),
  });
}
