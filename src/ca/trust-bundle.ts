// What a trust bundle holds, by key id: a node tells its manager which roots it trusts
// (a rotation's trust phase waits for every node to trust the new root alone).
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate } from "@peculiar/asn1-x509";
import { memoizeByString } from "./memo.js";
import { certificatesFromPem } from "./pem.js";
import { caKeyIdentifierOf, hex } from "./x509-build.js";

/** The key ids (hex, as RootCA.keyId) of the certificates in a PEM bundle, in order. */
export function rootKeyIdsOf(bundlePem: string): string[] {
  return [...keyIdsOf(bundlePem)];
}

// Once per distinct bundle: every node of a rotation reports the same one or two bundles.
const keyIdsOf = memoizeByString((bundlePem: string): readonly string[] =>
  certificatesFromPem(bundlePem).map((cert) =>
    hex(caKeyIdentifierOf(AsnConvert.parse(cert.raw, Certificate).tbsCertificate)),
  ),
);
