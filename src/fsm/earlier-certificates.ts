// Which of a node's certificates are still valid, so that a removal can name every one
// of them (each manager's revocation list then refuses their handshakes). A node renews
// at 50-80 % of its certificate's life, so the certificate it renewed away from stays
// valid for a while; apply keeps those here, pruned by the command's own time (at_ms),
// never a clock, so every replica keeps the same list.
import type { Certificate, IssuedSerial, Node } from "../gen/fsm/v1/state.js";

/**
 * Earlier certificates kept per node. Normal renewal keeps one or two; a node told to renew
 * at once many times within one lifetime (role changes, root rotations) could hold more:
 * past this bound the oldest is forgotten and, if the node is then removed, only the
 * authorization interceptor (by node id) refuses it, not the handshake.
 */
export const MAX_EARLIER_CERTIFICATES = 8;

function serialOf(certificate: Certificate): IssuedSerial {
  return { serial: certificate.serial, notAfterMs: certificate.notAfterMs };
}

/** The node's earlier certificates after it renews into `next` at `atMs`: the replaced one added, expired ones dropped. */
export function earlierAfterRenewal(node: Node, next: Certificate, atMs: number): IssuedSerial[] {
  const candidates = node.certificate
    ? [...node.earlierCertificates, serialOf(node.certificate)]
    : node.earlierCertificates;
  return candidates
    .filter((c) => c.notAfterMs >= atMs && c.serial !== next.serial)
    .slice(-MAX_EARLIER_CERTIFICATES);
}

/** Every certificate of the node still valid at `atMs`: its current one first, then the earlier ones. */
export function unexpiredCertificates(node: Node, atMs: number): IssuedSerial[] {
  const all = node.certificate
    ? [serialOf(node.certificate), ...node.earlierCertificates]
    : node.earlierCertificates;
  return all.filter((c) => c.notAfterMs >= atMs);
}
