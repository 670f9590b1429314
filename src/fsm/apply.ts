// One function per command: each checks everything first and throws FsmRefusal before
// touching the state, then changes it and returns what changed. Deterministic: the only
// inputs are the state and the command (no clock, no randomness, no signing, no I/O).
import type {
  CreateCluster,
  PruneRemovedNodes,
  RecordIssuance,
  RecordSessions,
  RemoveNode,
  RotateJoinToken,
  SetDesiredRole,
  SetNodeCertLifetime,
  SetRaftMembership,
} from "../gen/fsm/v1/commands.js";
import { type Cluster, type Node, NodeStatus, RaftMembership, Role } from "../gen/fsm/v1/state.js";
import { demotionRefusal } from "./demotion.js";
import { earlierAfterRenewal, unexpiredCertificates } from "./earlier-certificates.js";
import { FsmRefusal } from "./errors.js";
import type { ChangeEvent } from "./events.js";
import { joinSecretSha256, MAX_ROTATED_SECRETS } from "./join-secret.js";
import type { MutableState } from "./state-data.js";

type Changes = ChangeEvent[];

export function requireCluster(s: MutableState): Cluster {
  if (!s.cluster) throw new FsmRefusal("NO_CLUSTER", "the cluster is not initialized yet");
  return s.cluster;
}

function requireRole(role: Role, what: string): void {
  if (role !== Role.ROLE_WORKER && role !== Role.ROLE_MANAGER)
    throw new FsmRefusal("INVALID_COMMAND", `${what} must be worker or manager`);
}

function requireId(id: string): void {
  if (id.length === 0) throw new FsmRefusal("INVALID_COMMAND", "a node id is required");
}

/** The node, refused if it was removed or is unknown. */
export function requireNode(s: MutableState, id: string): Node {
  requireId(id);
  if (s.removed.has(id)) throw new FsmRefusal("NODE_REMOVED", `node ${id} was removed from the cluster`);
  const node = s.nodes.get(id);
  if (!node) throw new FsmRefusal("NODE_NOT_FOUND", `no node ${id} in the cluster`);
  return node;
}

export function putNode(s: MutableState, index: number, node: Node, out: Changes): void {
  const previous = s.nodes.get(node.id);
  s.nodes.set(node.id, node);
  out.push({ kind: "node", index, node, previous });
}

export function putCluster(s: MutableState, index: number, cluster: Cluster, out: Changes): void {
  const previous = s.cluster;
  s.cluster = cluster;
  out.push({ kind: "cluster", index, cluster, previous });
}

export function createCluster(s: MutableState, index: number, c: CreateCluster, out: Changes): void {
  if (s.cluster) throw new FsmRefusal("CLUSTER_EXISTS", `cluster ${s.cluster.id} already exists`);
  if (!c.cluster?.id || !c.cluster.root)
    throw new FsmRefusal("INVALID_COMMAND", "a cluster id and root are required");
  const first = c.firstNode;
  if (!first) throw new FsmRefusal("INVALID_COMMAND", "the first manager is required");
  requireId(first.id);
  if (first.role !== Role.ROLE_MANAGER)
    throw new FsmRefusal("INVALID_COMMAND", "the first node must be a manager");
  const nextRaftId = Math.max(c.cluster.nextRaftId, first.raftId + 1);
  putCluster(s, index, { ...c.cluster, nextRaftId }, out);
  putNode(s, index, first, out);
}

/**
 * A manager certificate binds its node to a Raft member id; a node without one gets the
 * next, in log order (every replica assigns the same). The node learns it with its
 * certificate, and the leader adds it to Raft under it.
 */
function raftIdFor(s: MutableState, index: number, role: Role, current: number, out: Changes): number {
  if (role !== Role.ROLE_MANAGER || current !== 0) return current;
  const cluster = requireCluster(s);
  const raftId = Math.max(cluster.nextRaftId, 1);
  putCluster(s, index, { ...cluster, nextRaftId: raftId + 1 }, out);
  return raftId;
}

export function recordIssuance(s: MutableState, index: number, c: RecordIssuance, out: Changes): void {
  requireCluster(s);
  requireId(c.nodeId);
  requireRole(c.role, "the certificate's role");
  if (!c.certificate) throw new FsmRefusal("INVALID_COMMAND", "the issued certificate is required");
  if (s.removed.has(c.nodeId))
    throw new FsmRefusal("NODE_REMOVED", `node ${c.nodeId} was removed; it cannot get a certificate`);
  const existing = s.nodes.get(c.nodeId);
  if (c.join) {
    if (existing) throw new FsmRefusal("NODE_EXISTS", `node ${c.nodeId} already exists`);
    requireCurrentJoinSecret(requireCluster(s), c.role, c.joinSecretSha256);
    putNode(
      s,
      index,
      {
        id: c.nodeId,
        role: c.role,
        desiredRole: c.role,
        raftId: raftIdFor(s, index, c.role, 0, out),
        membership: RaftMembership.RAFT_MEMBERSHIP_UNSPECIFIED,
        status: NodeStatus.NODE_STATUS_UNSPECIFIED,
        statusChangedAtMs: c.atMs,
        address: c.address,
        certificate: c.certificate,
        session: undefined,
        joinedAtMs: c.atMs,
        earlierCertificates: [],
        trustedRootKeyId: "",
        heldIssuerKeyId: "",
      },
      out,
    );
    return;
  }
  if (!existing) throw new FsmRefusal("NODE_NOT_FOUND", `no node ${c.nodeId} in the cluster`);
  const raftId = raftIdFor(s, index, c.role, existing.raftId, out);
  putNode(
    s,
    index,
    {
      ...existing,
      role: c.role,
      raftId,
      certificate: c.certificate,
      earlierCertificates: earlierAfterRenewal(existing, c.certificate, c.atMs),
      trustedRootKeyId: "",
      heldIssuerKeyId: "",
      address: c.address || existing.address,
    },
    out,
  );
}

/**
 * The token must admit the role at this log position, not only when the issuer checked
 * it: a rotation committed in between refuses the join.
 */
function requireCurrentJoinSecret(cluster: Cluster, role: Role, presentedSha256: string): void {
  const secrets = cluster.joinTokenSecrets;
  const current = role === Role.ROLE_MANAGER ? secrets?.manager : secrets?.worker;
  if (current && presentedSha256 === joinSecretSha256(current)) return;
  if (presentedSha256 && secrets?.rotatedSha256.includes(presentedSha256))
    throw new FsmRefusal(
      "TOKEN_ROTATED",
      'the join token was rotated and no longer admits new nodes; get the current one with "nodectl join-token"',
    );
  throw new FsmRefusal(
    "TOKEN_INVALID",
    'the join token is not a current token for this role; get it with "nodectl join-token worker|manager"',
  );
}

export function setDesiredRole(s: MutableState, index: number, c: SetDesiredRole, out: Changes): void {
  const node = requireNode(s, c.nodeId);
  requireRole(c.desiredRole, "the desired role");
  if (node.desiredRole === c.desiredRole) return;
  if (c.desiredRole === Role.ROLE_WORKER) {
    const refusal = demotionRefusal([...s.nodes.values()], node);
    if (refusal) throw refusal;
  }
  putNode(s, index, { ...node, desiredRole: c.desiredRole }, out);
}

export function removeNode(s: MutableState, index: number, c: RemoveNode, out: Changes): void {
  const node = requireNode(s, c.nodeId);
  // A manager must be demoted and out of Raft first; then it may go even if it never came back
  // for its worker certificate (a dead manager, or one that joined without an address). Out of
  // Raft is a zero Raft id: only the record of its removal from the configuration (or of its
  // never being in it) clears the id; a membership left unrecorded (a learner whose record was
  // lost) still has one.
  if (node.desiredRole === Role.ROLE_MANAGER)
    throw new FsmRefusal("NODE_IS_MANAGER", `node ${c.nodeId} is a manager: demote it first`);
  if (node.raftId !== 0 || node.membership !== RaftMembership.RAFT_MEMBERSHIP_UNSPECIFIED)
    throw new FsmRefusal(
      "NODE_IS_MANAGER",
      `node ${c.nodeId} is being demoted and is still in Raft: remove it once it has left`,
    );
  if (node.status === NodeStatus.NODE_STATUS_READY && !c.force)
    throw new FsmRefusal("NODE_UP", `node ${c.nodeId} is up: stop it first, or remove it with --force`);
  const unexpired = unexpiredCertificates(node, c.atMs);
  const removed = {
    id: node.id,
    // The last of its certificates to expire: the entry (and its revocation) outlives them all,
    // even an earlier certificate that outlives a current one issued under a shorter lifetime.
    certNotAfterMs: Math.max(node.certificate?.notAfterMs ?? 0, ...unexpired.map((u) => u.notAfterMs)),
    removedAtMs: c.atMs,
    unexpiredCertificates: unexpired,
  };
  s.nodes.delete(node.id);
  s.removed.set(node.id, removed);
  out.push({ kind: "nodeRemoved", index, removed, previous: node });
}

export function rotateJoinToken(s: MutableState, index: number, c: RotateJoinToken, out: Changes): void {
  const cluster = requireCluster(s);
  requireRole(c.role, "the token's role");
  if (c.secret.length === 0) throw new FsmRefusal("INVALID_COMMAND", "a new secret is required");
  const previous = { worker: "", manager: "", rotatedSha256: [], ...cluster.joinTokenSecrets };
  const replaced = c.role === Role.ROLE_WORKER ? previous.worker : previous.manager;
  // Remembered as digests, bounded: enough to tell a joiner its token was rotated.
  const rotatedSha256 =
    replaced && replaced !== c.secret
      ? [...previous.rotatedSha256, joinSecretSha256(replaced)].slice(-MAX_ROTATED_SECRETS)
      : previous.rotatedSha256;
  const secrets = { ...previous, rotatedSha256 };
  if (c.role === Role.ROLE_WORKER) secrets.worker = c.secret;
  else secrets.manager = c.secret;
  putCluster(s, index, { ...cluster, joinTokenSecrets: secrets }, out);
}

/** Applies each transition of a known node; transitions of unknown or removed nodes are skipped. */
export function recordSessions(s: MutableState, index: number, c: RecordSessions, out: Changes): void {
  requireCluster(s);
  for (const t of c.transitions) {
    const node = s.nodes.get(t.nodeId);
    if (!node) continue;
    // A manager reports down only the sessions it holds: once the node's session moved to
    // another manager, a late "down" from the old one must not mark a live node down.
    const stale =
      t.status === NodeStatus.NODE_STATUS_DOWN &&
      t.managerId.length > 0 &&
      node.session !== undefined &&
      node.session.managerId !== t.managerId;
    if (stale) continue;
    const ready = t.status === NodeStatus.NODE_STATUS_READY;
    const session = ready && t.managerId ? { managerId: t.managerId, connectedAtMs: t.atMs } : node.session;
    putNode(
      s,
      index,
      {
        ...node,
        status: t.status,
        statusChangedAtMs: t.atMs,
        session: t.status === NodeStatus.NODE_STATUS_DOWN ? undefined : session,
      },
      out,
    );
  }
}

export function setRaftMembership(s: MutableState, index: number, c: SetRaftMembership, out: Changes): void {
  const node = requireNode(s, c.nodeId);
  const leaving = c.membership === RaftMembership.RAFT_MEMBERSHIP_UNSPECIFIED;
  if (!leaving) {
    if (c.raftId === 0) throw new FsmRefusal("INVALID_COMMAND", "a Raft member id is required");
    for (const other of s.nodes.values())
      if (other.id !== node.id && other.raftId === c.raftId)
        throw new FsmRefusal("RAFT_ID_IN_USE", `Raft member id ${c.raftId} is bound to node ${other.id}`);
  }
  putNode(s, index, { ...node, raftId: leaving ? 0 : c.raftId, membership: c.membership }, out);
}

export function pruneRemovedNodes(s: MutableState, index: number, c: PruneRemovedNodes, out: Changes): void {
  const graceMs = requireCluster(s).renewalGraceS * 1000;
  const expired = [...s.removed.values()]
    .filter((r) => r.certNotAfterMs + graceMs < c.nowMs)
    .map((r) => r.id)
    .sort();
  for (const id of expired) {
    s.removed.delete(id);
    out.push({ kind: "removedPruned", index, id });
  }
}

export function setNodeCertLifetime(
  s: MutableState,
  index: number,
  c: SetNodeCertLifetime,
  out: Changes,
): void {
  const cluster = requireCluster(s);
  if (c.nodeCertLifetimeS < 60)
    throw new FsmRefusal("INVALID_COMMAND", "node certificates must live at least 1 minute");
  putCluster(s, index, { ...cluster, nodeCertLifetimeS: c.nodeCertLifetimeS }, out);
}
