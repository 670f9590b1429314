// Low-level building blocks for certificates: names, extensions, serials, key
// identifiers, and signing a TBSCertificate with node:crypto. DER comes only from
// @peculiar/asn1-schema serializers; nothing here hand-encodes ASN.1.
import { createHash, type KeyObject, randomBytes, sign } from "node:crypto";
import { AsnConvert, AsnSerializer, type IAsnConvertible, OctetString } from "@peculiar/asn1-schema";
import {
  AlgorithmIdentifier,
  AttributeTypeAndValue,
  AttributeValue,
  AuthorityKeyIdentifier,
  BasicConstraints,
  Certificate,
  Extension,
  id_ce_basicConstraints,
  id_ce_subjectKeyIdentifier,
  KeyIdentifier,
  Name,
  RelativeDistinguishedName,
  SubjectKeyIdentifier,
  SubjectPublicKeyInfo,
  type TBSCertificate,
} from "@peculiar/asn1-x509";
import { OID } from "./profile.js";

export interface NameParts {
  organization?: string;
  organizationalUnit?: string;
  commonName?: string;
}

export function buildName(parts: NameParts): Name {
  const rdns: RelativeDistinguishedName[] = [];
  const add = (type: string, value: string | undefined): void => {
    if (value === undefined) return;
    rdns.push(
      new RelativeDistinguishedName([
        new AttributeTypeAndValue({ type, value: new AttributeValue({ utf8String: value }) }),
      ]),
    );
  };
  add(OID.organization, parts.organization);
  add(OID.organizationalUnit, parts.organizationalUnit);
  add(OID.commonName, parts.commonName);
  return new Name(rdns);
}

export function readName(name: Name): NameParts {
  const parts: NameParts = {};
  for (const rdn of name) {
    for (const atv of rdn) {
      const value = atv.value.toString();
      if (atv.type === OID.organization) parts.organization = value;
      else if (atv.type === OID.organizationalUnit) parts.organizationalUnit = value;
      else if (atv.type === OID.commonName) parts.commonName = value;
    }
  }
  return parts;
}

export function ecdsaWithSha256(): AlgorithmIdentifier {
  // RFC 5758: the parameters field MUST be absent for ECDSA signature algorithms.
  return new AlgorithmIdentifier({ algorithm: OID.ecdsaWithSha256 });
}

export function extension(extnID: string, critical: boolean, value: unknown): Extension {
  return new Extension({ extnID, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

export function authorityKeyIdentifier(issuerKeyId: ArrayBuffer): AuthorityKeyIdentifier {
  return new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(issuerKeyId) });
}

/**
 * A positive serial with 128 random bits, minimally encoded as DER requires
 * (a leading zero octet only when the top bit is set).
 */
export function randomSerialNumber(): ArrayBuffer {
  const random = randomBytes(16);
  let first = 0;
  while (first < random.length && random[first] === 0) first++;
  if (first === random.length) return new Uint8Array([1]).buffer; // zero is not a valid serial
  const significant = random.subarray(first);
  const pad = (significant[0] ?? 0) >= 0x80 ? 1 : 0;
  const out = new Uint8Array(significant.length + pad);
  out.set(significant, pad);
  return out.buffer;
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
export function keyIdentifierOf(spki: SubjectPublicKeyInfo): ArrayBuffer {
  const digest = createHash("sha1").update(new Uint8Array(spki.subjectPublicKey)).digest();
  return digest.buffer.slice(digest.byteOffset, digest.byteOffset + digest.byteLength);
}

/**
 * The key id a CA certificate names itself by: its own subjectKeyIdentifier when it
 * has one (an imported root may not use method 1), else method 1. Certificates it
 * issues must name this id as their authority key id or verifiers will not match them.
 */
export function caKeyIdentifierOf(tbs: TBSCertificate): ArrayBuffer {
  const ski = tbs.extensions?.find((e) => e.extnID === id_ce_subjectKeyIdentifier);
  if (!ski) return keyIdentifierOf(tbs.subjectPublicKeyInfo);
  return AsnConvert.parse(ski.extnValue, SubjectKeyIdentifier).buffer;
}

/**
 * A CA certificate's basicConstraints pathLenConstraint: a number, null when the CA
 * allows any depth, undefined when it has no basicConstraints (not a CA).
 */
export function pathLengthOf(tbs: TBSCertificate): number | null | undefined {
  const constraints = tbs.extensions?.find((e) => e.extnID === id_ce_basicConstraints);
  if (!constraints) return undefined;
  return AsnConvert.parse(constraints.extnValue, BasicConstraints).pathLenConstraint ?? null;
}

export function spkiOf(key: KeyObject): SubjectPublicKeyInfo {
  const der = key.export({ type: "spki", format: "der" });
  return AsnConvert.parse(der, SubjectPublicKeyInfo);
}

type AsnTree = ReturnType<typeof AsnSerializer.toASN>;

/**
 * Stands in for the TBSCertificate inside the Certificate being encoded: asn1-schema
 * asks convertible values for their ASN.1 tree, so the tree built once for the
 * signature is reused instead of rebuilt from the schema (a third of issuance time).
 */
class PrebuiltTbs implements IAsnConvertible {
  constructor(private readonly tree: AsnTree) {}
  toASN(): AsnTree {
    return this.tree;
  }
  toSchema(): AsnTree {
    return this.tree;
  }
  fromASN(): this {
    throw new Error("PrebuiltTbs is for encoding only");
  }
}

export function signCertificate(tbs: TBSCertificate, issuerKey: KeyObject): Buffer {
  const tbsTree = AsnSerializer.toASN(tbs);
  const tbsDer = new Uint8Array(tbsTree.toBER(false));
  const signature = sign("sha256", tbsDer, { key: issuerKey, dsaEncoding: "der" });
  const cert = new Certificate({
    tbsCertificate: new PrebuiltTbs(tbsTree) as unknown as TBSCertificate,
    signatureAlgorithm: ecdsaWithSha256(),
    signatureValue: signature.buffer.slice(signature.byteOffset, signature.byteOffset + signature.byteLength),
  });
  return Buffer.from(AsnConvert.serialize(cert));
}

export function toPem(label: "CERTIFICATE" | "CERTIFICATE REQUEST", der: Uint8Array): string {
  const b64 = Buffer.from(der).toString("base64");
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

export function hex(buffer: ArrayBuffer): string {
  return Buffer.from(buffer).toString("hex");
}
