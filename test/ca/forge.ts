// Certificates our CA would refuse to issue (a CN like "2.0", any OU), signed by a
// real root: for tests of what peers do when such a certificate reaches them.
import { createPublicKey } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import {
  BasicConstraints,
  Certificate,
  ExtendedKeyUsage,
  Extensions,
  GeneralName,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_subjectAltName,
  id_kp_clientAuth,
  id_kp_serverAuth,
  SubjectAlternativeName,
  TBSCertificate,
  Validity,
  Version,
} from "@peculiar/asn1-x509";
import { createNodeCsr } from "../../src/ca/csr.js";
import { privateKeyFromPem } from "../../src/ca/keys.js";
import type { RootCA } from "../../src/ca/root-ca.js";
import {
  authorityKeyIdentifier,
  buildName,
  caKeyIdentifierOf,
  ecdsaWithSha256,
  extension,
  randomSerialNumber,
  signCertificate,
  spkiOf,
  toPem,
} from "../../src/ca/x509-build.js";

export interface ForgedIdentity {
  privateKeyPem: string;
  certificateChainPem: string;
}

/** A leaf with exactly this subject and these DNS SANs, issued by `root`, valid for an hour. */
export function forgeLeaf(
  root: RootCA,
  subject: { organization: string; organizationalUnit: string; commonName: string },
  dnsNames: string[],
): ForgedIdentity {
  const { privateKey, privateKeyPem } = createNodeCsr();
  const rootTbs = AsnConvert.parse(root.certificateDer, Certificate).tbsCertificate;
  const now = Date.now();
  const tbs = new TBSCertificate({
    version: Version.v3,
    serialNumber: randomSerialNumber(),
    signature: ecdsaWithSha256(),
    issuer: rootTbs.subject,
    validity: new Validity({ notBefore: new Date(now - 60_000), notAfter: new Date(now + 3_600_000) }),
    subject: buildName(subject),
    subjectPublicKeyInfo: spkiOf(createPublicKey(privateKey)),
    extensions: new Extensions([
      extension(id_ce_basicConstraints, true, new BasicConstraints({ cA: false })),
      extension(id_ce_extKeyUsage, false, new ExtendedKeyUsage([id_kp_serverAuth, id_kp_clientAuth])),
      extension(id_ce_authorityKeyIdentifier, false, authorityKeyIdentifier(caKeyIdentifierOf(rootTbs))),
      extension(
        id_ce_subjectAltName,
        false,
        new SubjectAlternativeName(dnsNames.map((dNSName) => new GeneralName({ dNSName }))),
      ),
    ]),
  });
  const der = signCertificate(tbs, privateKeyFromPem(root.privateKeyPem()));
  return { privateKeyPem, certificateChainPem: toPem("CERTIFICATE", der) };
}
