// PEM <-> DER for certificate bundles, with size limits so untrusted input
// (pushed bundles, peer chains) cannot make us parse megabytes.
import { X509Certificate } from "node:crypto";
import { CertInvalidError } from "./errors.js";
import { memoizeBy } from "./memo.js";
import { MAX_CERT_BYTES, MAX_CHAIN_CERTS } from "./profile.js";

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----/g;

// CA certificates by their PEM body: the roots and the cross-signed intermediate arrive
// with every chain and bundle, parsing each costs about as much as the rest of a chain
// check, and an X509Certificate is immutable. Leaves (one per renewal) are not kept.
const parsedCertificate = memoizeBy(
  (block: { body: string; der: Buffer }) => block.body,
  (block): X509Certificate => {
    try {
      return new X509Certificate(block.der);
    } catch (cause) {
      throw new CertInvalidError("a PEM block does not hold a parseable X.509 certificate", { cause });
    }
  },
  16,
  (cert) => cert.ca,
);

export function certificatesFromPem(pem: string, maxCerts = MAX_CHAIN_CERTS): X509Certificate[] {
  if (pem.length > maxCerts * MAX_CERT_BYTES * 2) {
    throw new CertInvalidError(`PEM input of ${pem.length} characters exceeds the limit`);
  }
  const certs: X509Certificate[] = [];
  for (const match of pem.matchAll(PEM_BLOCK)) {
    if (certs.length >= maxCerts)
      throw new CertInvalidError(`more than ${maxCerts} certificates in one bundle`);
    const der = Buffer.from(match[1] ?? "", "base64");
    if (der.length > MAX_CERT_BYTES) throw new CertInvalidError(`a certificate of ${der.length} bytes`);
    certs.push(parsedCertificate({ body: match[1] ?? "", der }));
  }
  if (certs.length === 0) throw new CertInvalidError("no PEM certificate found");
  return certs;
}

export function pemOf(certs: readonly X509Certificate[]): string {
  return certs.map((c) => (c.toString().endsWith("\n") ? c.toString() : `${c.toString()}\n`)).join("");
}
