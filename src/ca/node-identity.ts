// Reading a peer's node certificate back into the identity the cluster cares
// about. Used by the authorization interceptor and the client's server check.
import { AsnConvert } from "@peculiar/asn1-schema";
import { AuthorityKeyIdentifier, Certificate, id_ce_authorityKeyIdentifier } from "@peculiar/asn1-x509";
import { CertInvalidError } from "./errors.js";
import { MAX_CERT_BYTES, type NodeRole, nodeIdProblem } from "./profile.js";
import { hex, readName } from "./x509-build.js";

export interface NodeIdentity {
  clusterId: string;
  role: NodeRole;
  nodeId: string;
  /** Hex key id of the issuing root: tells which root (old or new) signed it during a rotation. */
  issuerKeyId: string;
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
}

export function parseNodeCertificate(der: Uint8Array): NodeIdentity {
  if (der.length === 0 || der.length > MAX_CERT_BYTES) {
    throw new CertInvalidError(`certificate of ${der.length} bytes`);
  }
  let cert: Certificate;
  try {
    cert = AsnConvert.parse(der, Certificate);
  } catch (cause) {
    throw new CertInvalidError("not a DER X.509 certificate", { cause });
  }
  const tbs = cert.tbsCertificate;
  const subject = readName(tbs.subject);
  const { organization: clusterId, organizationalUnit: role, commonName: nodeId } = subject;
  if (!clusterId) throw new CertInvalidError("subject has no O (cluster id)");
  if (role !== "manager" && role !== "worker")
    throw new CertInvalidError(`subject OU "${role ?? ""}" is not a role`);
  if (!nodeId) throw new CertInvalidError("subject has no CN (node id)");
  // Strict: a CN our CA would not issue ("2.0", "Member-1") is refused, not normalized.
  const idProblem = nodeIdProblem(nodeId);
  if (idProblem) throw new CertInvalidError(`subject CN is not a node id: ${idProblem}`);
  const akiExtension = tbs.extensions?.find((e) => e.extnID === id_ce_authorityKeyIdentifier);
  const keyIdentifier = akiExtension
    ? AsnConvert.parse(akiExtension.extnValue, AuthorityKeyIdentifier).keyIdentifier
    : undefined;
  if (!keyIdentifier) throw new CertInvalidError("no authority key identifier");
  return {
    clusterId,
    role,
    nodeId,
    issuerKeyId: hex(keyIdentifier.buffer),
    serialNumber: hex(tbs.serialNumber),
    notBefore: tbs.validity.notBefore.getTime(),
    notAfter: tbs.validity.notAfter.getTime(),
  };
}
