// Client-side check of the server a node connects to. Hostnames mean nothing in
// the cluster (managers are reached by IP); what matters is that the server's
// certificate belongs to this cluster (O), holds the expected role SAN and, when
// the caller dials one particular node (a Raft member), is that node's (CN).
import type { PeerCertificate } from "node:tls";
import { CaError, CertInvalidError, WrongClusterError, WrongNodeError, WrongRoleError } from "../errors.js";
import { type NodeIdentity, parseNodeCertificate } from "../node-identity.js";
import type { NodeRole } from "../profile.js";

/** Returns the server's identity, or the error to refuse the handshake with. */
export function verifyServerNode(
  cert: PeerCertificate,
  clusterId: string,
  expectedRole: NodeRole,
  expectedNodeId?: string,
): NodeIdentity | CaError {
  try {
    if (!cert.raw) return new CertInvalidError("the server sent no certificate");
    const identity = parseNodeCertificate(cert.raw);
    if (identity.clusterId !== clusterId) return new WrongClusterError(clusterId, identity.clusterId);
    const sans = (cert.subjectaltname ?? "").split(", ");
    if (identity.role !== expectedRole || !sans.includes(`DNS:${expectedRole}`)) {
      return new WrongRoleError([expectedRole], identity.role);
    }
    // Compared as strings: node ids are names, and "2" is not "2.0" or "0x2".
    if (expectedNodeId !== undefined && identity.nodeId !== expectedNodeId)
      return new WrongNodeError(expectedNodeId, identity.nodeId);
    return identity;
  } catch (error) {
    if (error instanceof CaError) return error;
    return new CertInvalidError(String(error), { cause: error });
  }
}
