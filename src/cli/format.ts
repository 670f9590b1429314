// What nodectl prints with --json: the stable shapes documented in the README (the
// human tables are in tables.ts). Times are ISO 8601 in UTC; null where a field does
// not apply.
import type { CaStatusResponse, NodeView } from "../gen/control/v1/messages.js";

/** One element of `nodectl ls --json` (the shape issue 10 fixes). */
export interface NodeJson {
  id: string;
  role: string;
  desiredRole: string;
  status: string;
  leader: boolean;
  address: string | null;
  certificate: { serial: string; notAfter: string; issuerKeyId: string } | null;
  session: { managerId: string; connectedAt: string } | null;
}

/** `nodectl inspect ID --json`: the ls element plus what only inspect shows. */
export interface NodeDetailJson extends NodeJson {
  raftId: number | null;
  membership: string | null;
  joinedAt: string | null;
  statusChangedAt: string | null;
}

export function iso(ms: number): string | null {
  return ms > 0 ? new Date(ms).toISOString() : null;
}

export function nodeJson(n: NodeView): NodeJson {
  return {
    id: n.id,
    role: n.role,
    desiredRole: n.desiredRole,
    status: n.status,
    leader: n.leader,
    address: n.address || null,
    certificate: n.certificate
      ? {
          serial: n.certificate.serial,
          notAfter: iso(n.certificate.notAfterMs) ?? "",
          issuerKeyId: n.certificate.issuerKeyId,
        }
      : null,
    session: n.session
      ? { managerId: n.session.managerId, connectedAt: iso(n.session.connectedAtMs) ?? "" }
      : null,
  };
}

export function nodeDetailJson(n: NodeView): NodeDetailJson {
  return {
    ...nodeJson(n),
    raftId: n.raftId > 0 ? n.raftId : null,
    membership: n.membership || null,
    joinedAt: iso(n.joinedAtMs),
    statusChangedAt: iso(n.statusChangedAtMs),
  };
}

export interface CaStatusJson {
  clusterId: string;
  rootKeyId: string;
  rootNotAfter: string | null;
  rootDigest: string;
  nodeCertLifetimeSeconds: number;
  rotation: RotationJson | null;
}

/** A rotation in progress (`ca status --json`'s `rotation`). */
export interface RotationJson {
  phase: string;
  newRootKeyId: string;
  renewed: number;
  trusted: number;
  total: number;
  pending: { id: string; reason: string }[];
  startedAt: string | null;
  phaseStartedAt: string | null;
}

export function caStatusJson(s: CaStatusResponse): CaStatusJson {
  return {
    clusterId: s.clusterId,
    rootKeyId: s.rootKeyId,
    rootNotAfter: iso(s.rootNotAfterMs),
    rootDigest: s.rootDigest,
    nodeCertLifetimeSeconds: s.nodeCertLifetimeS,
    rotation: s.rotation
      ? {
          phase: s.rotation.phase,
          newRootKeyId: s.rotation.newRootKeyId,
          renewed: s.rotation.renewed,
          trusted: s.rotation.trusted,
          total: s.rotation.total,
          pending: s.rotation.pending.map((p) => ({ id: p.id, reason: p.reason })),
          startedAt: iso(s.rotation.startedAtMs),
          phaseStartedAt: iso(s.rotation.phaseStartedAtMs),
        }
      : null,
  };
}
