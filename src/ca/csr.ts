// Certificate signing requests. The node side makes a key and a CSR proving it
// holds that key; the manager side checks a CSR from an untrusted peer. The
// requester's subject and attributes are ignored: the manager sets the subject.
import { createPublicKey, type KeyObject, sign, verify } from "node:crypto";
import { CertificationRequest, CertificationRequestInfo } from "@peculiar/asn1-csr";
import { ECParameters } from "@peculiar/asn1-ecc";
import { AsnConvert } from "@peculiar/asn1-schema";
import type { SubjectPublicKeyInfo } from "@peculiar/asn1-x509";
import { CsrInvalidError } from "./errors.js";
import { generateP256Key, privateKeyToPem } from "./keys.js";
import { MAX_CSR_BYTES, OID } from "./profile.js";
import { buildName, ecdsaWithSha256, spkiOf, toPem } from "./x509-build.js";

export interface NodeKeyAndCsr {
  privateKey: KeyObject;
  privateKeyPem: string;
  csrPem: string;
  /** The same request, DER (what the CA service takes). */
  csrDer: Uint8Array;
}

/** A CSR that passed checkNodeCsr: a proven-possession P-256 public key, nothing else. */
export interface CheckedCsr {
  readonly subjectPublicKeyInfo: SubjectPublicKeyInfo;
  readonly publicKey: KeyObject;
}

/** Node side: a CSR for an existing key (renewal keeps the key) or a fresh one. */
export function createNodeCsr(privateKey: KeyObject = generateP256Key()): NodeKeyAndCsr {
  const der = csrDerFor(privateKey);
  return {
    privateKey,
    privateKeyPem: privateKeyToPem(privateKey),
    csrPem: toPem("CERTIFICATE REQUEST", der),
    csrDer: der,
  };
}

/** Node side, renewal: the request alone (DER) for the key the node already holds. */
export function csrDerFor(privateKey: KeyObject): Uint8Array {
  const info = new CertificationRequestInfo({
    version: 0,
    // Informational only; the manager replaces the whole subject.
    subject: buildName({ commonName: "nodectl-node" }),
    subjectPKInfo: spkiOf(createPublicKey(privateKey)),
  });
  const infoDer = Buffer.from(AsnConvert.serialize(info));
  const signature = sign("sha256", infoDer, { key: privateKey, dsaEncoding: "der" });
  const csr = new CertificationRequest({
    certificationRequestInfo: info,
    signatureAlgorithm: ecdsaWithSha256(),
    signature: new Uint8Array(signature).buffer,
  });
  return new Uint8Array(AsnConvert.serialize(csr));
}

const CSR_PEM =
  /^\s*-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----([A-Za-z0-9+/=\s]+)-----END (?:NEW )?CERTIFICATE REQUEST-----\s*$/;

/** Manager side: parse and check a CSR (PEM string or DER bytes) from an untrusted requester. */
export function checkNodeCsr(input: string | Uint8Array): CheckedCsr {
  const der = csrDer(input);
  // The parser stops at the end of the outer SEQUENCE and ignores what follows; bytes nobody
  // signed or checked have no place in a request.
  const encoded = outerDerLength(der);
  if (encoded !== undefined && encoded < der.length)
    throw new CsrInvalidError(`${der.length - encoded} trailing bytes after the request's DER`);
  let csr: CertificationRequest;
  try {
    csr = AsnConvert.parse(der, CertificationRequest);
  } catch (cause) {
    throw new CsrInvalidError("not a DER-encoded PKCS#10 request", { cause });
  }
  const info = csr.certificationRequestInfo;
  if (info.version !== 0) throw new CsrInvalidError(`unsupported CSR version ${info.version}`);
  const spki = info.subjectPKInfo;
  if (spki.algorithm.algorithm !== OID.ecPublicKey) {
    throw new CsrInvalidError(`key algorithm ${spki.algorithm.algorithm} is not ECDSA`);
  }
  if (namedCurveOf(spki) !== OID.prime256v1) throw new CsrInvalidError("key is not on curve P-256");
  if (csr.signatureAlgorithm.algorithm !== OID.ecdsaWithSha256) {
    throw new CsrInvalidError(
      `signature algorithm ${csr.signatureAlgorithm.algorithm} is not ecdsa-with-SHA256`,
    );
  }
  let publicKey: KeyObject;
  try {
    // createPublicKey rejects points that are not on the curve.
    publicKey = createPublicKey({
      key: Buffer.from(AsnConvert.serialize(spki)),
      format: "der",
      type: "spki",
    });
  } catch (cause) {
    throw new CsrInvalidError("public key is not a valid P-256 point", { cause });
  }
  const signedBytes = csr.certificationRequestInfoRaw;
  if (!signedBytes) throw new CsrInvalidError("request info could not be located");
  let signatureOk = false;
  try {
    signatureOk = verify(
      "sha256",
      new Uint8Array(signedBytes),
      { key: publicKey, dsaEncoding: "der" },
      new Uint8Array(csr.signature),
    );
  } catch {
    signatureOk = false;
  }
  if (!signatureOk)
    throw new CsrInvalidError("self-signature does not verify (the requester does not prove key possession)");
  return { subjectPublicKeyInfo: spki, publicKey };
}

function csrDer(input: string | Uint8Array): Uint8Array {
  // Check size before any parsing: the input comes from an unauthenticated peer.
  if (typeof input === "string") {
    if (input.length > MAX_CSR_BYTES * 2)
      throw new CsrInvalidError(`PEM of ${input.length} characters is too large`);
    const match = CSR_PEM.exec(input);
    if (!match) throw new CsrInvalidError('not a PEM "CERTIFICATE REQUEST" block');
    input = Buffer.from(match[1] ?? "", "base64");
  }
  if (input.length === 0) throw new CsrInvalidError("empty request");
  if (input.length > MAX_CSR_BYTES)
    throw new CsrInvalidError(`request of ${input.length} bytes exceeds ${MAX_CSR_BYTES}`);
  return input;
}

/** Total length of the outer DER element (header included), or undefined if the header is not DER. */
function outerDerLength(der: Uint8Array): number | undefined {
  if (der.length < 2) return undefined;
  const first = der[1] ?? 0;
  if (first < 0x80) return 2 + first;
  const lengthBytes = first & 0x7f;
  // 0x80 is BER's indefinite length (not DER); more than 4 length bytes exceeds any CSR we accept.
  if (lengthBytes === 0 || lengthBytes > 4 || der.length < 2 + lengthBytes) return undefined;
  let length = 0;
  for (let i = 0; i < lengthBytes; i++) length = length * 256 + (der[2 + i] ?? 0);
  return 2 + lengthBytes + length;
}

function namedCurveOf(spki: SubjectPublicKeyInfo): string | undefined {
  const params = spki.algorithm.parameters;
  if (!params) return undefined;
  try {
    return AsnConvert.parse(params, ECParameters).namedCurve;
  } catch {
    return undefined;
  }
}
