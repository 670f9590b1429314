// Certificate revocation lists: how every manager refuses a removed node's certificates
// in the TLS handshake itself, before any RPC reaches the authorization interceptor.
//
// Each manager signs its own CRL with the cluster root's key (held in the replicated
// state) and loads it only into its own TLS server; it is never published or fetched.
// So nextUpdate does not tell relying parties when to fetch a fresher list: it is only
// the instant OpenSSL starts refusing *every* client certificate of that root as
// "CRL has expired". We set it to the root's own notAfter (no certificate of the root
// verifies past it anyway) and regenerate the list at every change of the removed
// nodes instead of on a timer: a long-lived manager with no removals must never turn
// stale. thisUpdate is backdated by a day: OpenSSL refuses every client of a list that
// is "not yet valid", so a clock stepped back (NTP) must not turn a fresh list into one.
import { type KeyObject, sign, verify, type X509Certificate } from "node:crypto";
import { AsnConvert, AsnSerializer, OctetString } from "@peculiar/asn1-schema";
import {
  AuthorityKeyIdentifier,
  Certificate,
  CertificateList,
  CRLNumber,
  Extension,
  id_ce_authorityKeyIdentifier,
  id_ce_cRLNumber,
  KeyIdentifier,
  type Name,
  RevokedCertificate,
  TBSCertList,
  Time,
  Version,
} from "@peculiar/asn1-x509";
import { CertInvalidError } from "./errors.js";
import { ecdsaWithSha256 } from "./x509-build.js";

/** A certificate to refuse: its serial (hex, as recorded) and since when. */
export interface RevokedSerial {
  serial: string;
  revokedAt: Date;
}

/** Far more than any cluster removes within one certificate lifetime; bounds the list OpenSSL loads. */
export const MAX_REVOKED_SERIALS = 100_000;
/** How far before its making a list claims validity: see the header (clock steps). */
export const THIS_UPDATE_BACKDATE_MS = 24 * 60 * 60 * 1000;

/** One list per root a chain can pass through: the current root, and a new one during a rotation. */
export const MAX_REVOCATION_LISTS = 4;
const MAX_CRL_PEM_CHARS = MAX_REVOCATION_LISTS * (MAX_REVOKED_SERIALS * 64 + 4096);

export interface RevocationListRequest {
  issuer: Name;
  issuerKeyId: ArrayBuffer;
  issuerNotAfter: Date;
  signingKey: KeyObject;
  revoked: readonly RevokedSerial[];
  now: Date;
}

/** A DER-encoded, signed X.509 v2 CRL (RFC 5280 §5) as PEM. */
export function buildRevocationList(request: RevocationListRequest): string {
  if (request.revoked.length > MAX_REVOKED_SERIALS)
    throw new RangeError(
      `${request.revoked.length} revoked serials exceed the limit of ${MAX_REVOKED_SERIALS}`,
    );
  const thisUpdate = new Date(request.now.getTime() - THIS_UPDATE_BACKDATE_MS);
  // Sorted and deduplicated: the same removed nodes give the same list whatever the input order.
  const bySerial = new Map<string, RevokedSerial>();
  for (const entry of request.revoked) bySerial.set(serialHex(entry.serial), entry);
  const revokedCertificates = [...bySerial.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(
      ([serial, entry]) =>
        new RevokedCertificate({
          userCertificate: bufferOf(Buffer.from(serial, "hex")),
          revocationDate: new Time(entry.revokedAt),
        }),
    );
  const tbs = new TBSCertList({
    version: Version.v2,
    signature: ecdsaWithSha256(),
    issuer: request.issuer,
    thisUpdate: new Time(thisUpdate),
    nextUpdate: new Time(request.issuerNotAfter),
    // An empty list is encoded without the field (RFC 5280 §5.1.2.6).
    revokedCertificates: revokedCertificates.length > 0 ? revokedCertificates : undefined,
    crlExtensions: [
      new Extension({
        extnID: id_ce_authorityKeyIdentifier,
        critical: false,
        extnValue: new OctetString(
          AsnConvert.serialize(
            new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(request.issuerKeyId) }),
          ),
        ),
      }),
      // Required by RFC 5280 §5.2.3; milliseconds grow with every regeneration on one manager.
      new Extension({
        extnID: id_ce_cRLNumber,
        critical: false,
        extnValue: new OctetString(AsnConvert.serialize(new CRLNumber(request.now.getTime()))),
      }),
    ],
  });
  const tbsDer = new Uint8Array(AsnSerializer.serialize(tbs));
  const signature = sign("sha256", tbsDer, { key: request.signingKey, dsaEncoding: "der" });
  const crl = new CertificateList({
    tbsCertList: tbs,
    signatureAlgorithm: ecdsaWithSha256(),
    signature: bufferOf(signature),
  });
  return crlPem(Buffer.from(AsnConvert.serialize(crl)));
}

function crlPem(der: Buffer): string {
  const lines = der.toString("base64").match(/.{1,64}/g) ?? [];
  return `-----BEGIN X509 CRL-----\n${lines.join("\n")}\n-----END X509 CRL-----\n`;
}

/** The serial as a minimal positive DER INTEGER's content, in hex; refuses anything else. */
function serialHex(serial: string): string {
  const lower = serial.toLowerCase();
  if (!/^[0-9a-f]{1,64}$/.test(lower)) throw new CertInvalidError(`serial "${serial}" is not hex`);
  const digits = lower.replace(/^0+/, "");
  if (digits.length === 0) throw new CertInvalidError("serial 0 is not a valid certificate serial");
  const even = digits.length % 2 === 1 ? `0${digits}` : digits;
  // A set top bit would make the INTEGER negative: DER puts a zero octet in front.
  return Number.parseInt(even.slice(0, 2), 16) >= 0x80 ? `00${even}` : even;
}

function bufferOf(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

/** A CRL that passed `checkRevocationLists`: what it is and which CA signed it. */
export interface CheckedRevocationList {
  pem: string;
  /**
   * The known CA that signed it, or undefined for an issuer not among the known ones: a
   * rotation's new root seen only through its cross-signed twin in clients' chains, whose
   * list OpenSSL verifies against that twin at each handshake.
   */
  issuer: X509Certificate | undefined;
  thisUpdate: Date;
  nextUpdate: Date;
  revokedCount: number;
}

const CRL_BLOCK = /-----BEGIN X509 CRL-----([A-Za-z0-9+/=\s]+?)-----END X509 CRL-----/g;

/**
 * Parses and checks every CRL in `pem` before a TLS server loads it: a CRL OpenSSL cannot
 * use would refuse every client of its issuer ("CRL has expired", "CRL is not yet valid",
 * "CRL signature failure"). So each must be current at `now`, and one that names a known
 * issuer (`issuers`: trusted roots, own intermediates) must carry its valid signature.
 * Throws CertInvalidError naming the first problem.
 */
export function checkRevocationLists(
  pem: string,
  issuers: readonly X509Certificate[],
  now: Date,
): CheckedRevocationList[] {
  if (pem.length > MAX_CRL_PEM_CHARS)
    throw new CertInvalidError(`CRL input of ${pem.length} characters exceeds the limit`);
  const checked: CheckedRevocationList[] = [];
  for (const match of pem.matchAll(CRL_BLOCK)) {
    if (checked.length >= MAX_REVOCATION_LISTS)
      throw new CertInvalidError(`more than ${MAX_REVOCATION_LISTS} revocation lists`);
    checked.push(checkOne(Buffer.from(match[1] ?? "", "base64"), issuers, now));
  }
  if (checked.length === 0) throw new CertInvalidError("no PEM X509 CRL found");
  return checked;
}

function checkOne(der: Buffer, issuers: readonly X509Certificate[], now: Date): CheckedRevocationList {
  let crl: CertificateList;
  try {
    crl = AsnConvert.parse(der, CertificateList);
  } catch (cause) {
    throw new CertInvalidError("a PEM block does not hold a parseable X.509 CRL", { cause });
  }
  const tbs = crl.tbsCertList;
  const issuerDer = Buffer.from(AsnConvert.serialize(tbs.issuer));
  const signed = Buffer.from(crl.tbsCertListRaw ?? AsnConvert.serialize(tbs));
  const signature = Buffer.from(crl.signature);
  const named = issuers.filter((candidate) => subjectDerOf(candidate).equals(issuerDer));
  const issuer = named.find((candidate) =>
    verify("sha256", signed, { key: candidate.publicKey, dsaEncoding: "der" }, signature),
  );
  if (named.length > 0 && !issuer)
    throw new CertInvalidError("a revocation list names a trusted root but its signature does not verify");
  const thisUpdate = tbs.thisUpdate.getTime();
  const nextUpdate = tbs.nextUpdate?.getTime();
  if (thisUpdate > now)
    throw new CertInvalidError(
      `a revocation list is valid only from ${thisUpdate.toISOString()}: check the clock`,
    );
  if (!nextUpdate || nextUpdate <= now)
    throw new CertInvalidError(
      `a revocation list expired at ${nextUpdate?.toISOString() ?? "(no nextUpdate)"}`,
    );
  return {
    // Re-encoded from what was checked: OpenSSL loads exactly the list verified here.
    pem: crlPem(der),
    issuer,
    thisUpdate,
    nextUpdate,
    revokedCount: tbs.revokedCertificates?.length ?? 0,
  };
}

function subjectDerOf(certificate: X509Certificate): Buffer {
  const parsed = AsnConvert.parse(certificate.raw, Certificate);
  return Buffer.from(AsnConvert.serialize(parsed.tbsCertificate.subject));
}
