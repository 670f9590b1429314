// CA certificates built field by field, for the tests of what may be cross-signed:
// roots our checks must refuse (not a CA, not self-signed, another cluster, expired,
// no path length limit), a legacy root made before roots had a path length limit,
// and the attacker's sub-CA made with a new root's key.
import { createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
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
  SubjectAlternativeName,
  SubjectKeyIdentifier,
  TBSCertificate,
  Validity,
  Version,
} from "@peculiar/asn1-x509";
import { generateP256Key, privateKeyFromPem, privateKeyToPem } from "../../src/ca/keys.js";
import type { RootCA } from "../../src/ca/root-ca.js";
import {
  authorityKeyIdentifier,
  buildName,
  ecdsaWithSha256,
  extension,
  keyIdentifierOf,
  type NameParts,
  randomSerialNumber,
  readName,
  signCertificate,
  spkiOf,
  toPem,
} from "../../src/ca/x509-build.js";

const HOUR_MS = 60 * 60 * 1000;
export const DAY_MS = 24 * HOUR_MS;

export interface BuiltCertificate {
  certificatePem: string;
  privateKeyPem: string;
  key: KeyObject;
  subject: NameParts;
}

export interface CaCertificateOptions {
  subject: NameParts;
  /** The subject's key; a fresh P-256 key if absent. */
  key?: KeyObject;
  /** Who signs: itself if absent. */
  issuer?: { subject: NameParts; key: KeyObject };
  notBefore?: Date;
  notAfter?: Date;
  /** undefined: CA:true, pathlen 1, critical (our profile); null: no basicConstraints at all. */
  basicConstraints?: { cA: boolean; pathLength?: number; critical?: boolean } | null;
  /** undefined: keyCertSign | cRLSign; null: no keyUsage. */
  keyUsage?: number | null;
  /** Leaves: EKU and DNS SANs; absent on CAs. */
  leaf?: { dnsNames: string[] };
}

/** A certificate with exactly these fields, signed (ecdsa-with-SHA256) by the issuer's key or its own. */
export function buildCertificate(options: CaCertificateOptions): BuiltCertificate {
  const key = options.key ?? generateP256Key();
  const spki = spkiOf(createPublicKey(key));
  const issuer = options.issuer ?? { subject: options.subject, key };
  const now = Date.now();
  const extensions: Extension[] = [];
  const constraints =
    options.basicConstraints === undefined ? { cA: true, pathLength: 1 } : options.basicConstraints;
  if (constraints) {
    const value = new BasicConstraints({ cA: constraints.cA, pathLenConstraint: constraints.pathLength });
    extensions.push(extension(id_ce_basicConstraints, constraints.critical ?? true, value));
  }
  const usage =
    options.keyUsage === undefined ? KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign : options.keyUsage;
  if (usage !== null) extensions.push(extension(id_ce_keyUsage, true, new KeyUsage(usage)));
  if (options.leaf) {
    extensions.push(
      extension(id_ce_extKeyUsage, false, new ExtendedKeyUsage([id_kp_serverAuth, id_kp_clientAuth])),
      extension(
        id_ce_subjectAltName,
        false,
        new SubjectAlternativeName(options.leaf.dnsNames.map((dNSName) => new GeneralName({ dNSName }))),
      ),
    );
  }
  extensions.push(
    extension(id_ce_subjectKeyIdentifier, false, new SubjectKeyIdentifier(keyIdentifierOf(spki))),
    extension(
      id_ce_authorityKeyIdentifier,
      false,
      authorityKeyIdentifier(keyIdentifierOf(spkiOf(createPublicKey(issuer.key)))),
    ),
  );
  const tbs = new TBSCertificate({
    version: Version.v3,
    serialNumber: randomSerialNumber(),
    signature: ecdsaWithSha256(),
    issuer: buildName(issuer.subject),
    validity: new Validity({
      notBefore: options.notBefore ?? new Date(now - HOUR_MS),
      notAfter: options.notAfter ?? new Date(now + 365 * DAY_MS),
    }),
    subject: buildName(options.subject),
    subjectPublicKeyInfo: spki,
    extensions: new Extensions(extensions),
  });
  return {
    certificatePem: toPem("CERTIFICATE", signCertificate(tbs, issuer.key)),
    privateKeyPem: privateKeyToPem(key),
    key,
    subject: options.subject,
  };
}

export function p384Key(): KeyObject {
  return generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey;
}

/**
 * The attack of issue 11: with the new root's key, a CA of its own (no path length
 * limit) and a manager leaf under it. Chain: leaf, sub-CA (the intermediates to send).
 */
export function subCaAttack(
  newRoot: { subject: NameParts; key: KeyObject },
  clusterId: string,
): { leaf: BuiltCertificate; subCa: BuiltCertificate } {
  const subCa = buildCertificate({
    subject: { organization: clusterId, commonName: "rogue-sub-ca" },
    issuer: newRoot,
    basicConstraints: { cA: true },
  });
  const leaf = buildCertificate({
    subject: { organization: clusterId, organizationalUnit: "manager", commonName: "m-rogue" },
    issuer: { subject: subCa.subject, key: subCa.key },
    basicConstraints: { cA: false },
    keyUsage: KeyUsageFlags.digitalSignature,
    leaf: { dnsNames: ["m-rogue", "manager"] },
    notAfter: new Date(Date.now() + DAY_MS),
  });
  return { leaf, subCa };
}

/** A RootCA's subject and key, to sign with outside its API (as whoever holds the key could). */
export function heldCa(root: RootCA): { subject: NameParts; key: KeyObject } {
  const subject = readName(AsnConvert.parse(root.certificateDer, Certificate).tbsCertificate.subject);
  return { subject, key: privateKeyFromPem(root.privateKeyPem()) };
}
