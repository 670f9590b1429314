// What a session tells a node, computed from the replicated state alone (pure
// functions, no I/O): the managers to connect to with their weights, the roots to
// trust, and whether (and when) to renew its certificate.
import type { Manager, RenewInstruction } from "../gen/dispatcher/v1/dispatcher.js";
import {
  type Cluster,
  type Node,
  NodeStatus,
  RaftMembership,
  Role,
  RotationPhase,
} from "../gen/fsm/v1/state.js";

export { trustBundleOf } from "../issuer/index.js";

/** A manager the cluster believes is up gets this weight; a down one keeps a little, so a node
 * whose list holds only down managers still tries them. */
export const UP_MANAGER_WEIGHT = 100;
export const DOWN_MANAGER_WEIGHT = 1;

/** The managers with an address, sorted by node id, so equal states give equal lists. */
export function managerListOf(nodes: readonly Node[]): Manager[] {
  return nodes
    .filter((n) => n.role === Role.ROLE_MANAGER && n.address.length > 0)
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((n) => ({
      nodeId: n.id,
      address: n.address,
      weight: n.status === NodeStatus.NODE_STATUS_DOWN ? DOWN_MANAGER_WEIGHT : UP_MANAGER_WEIGHT,
    }));
}

export function sameManagerList(a: readonly Manager[], b: readonly Manager[]): boolean {
  return (
    a.length === b.length &&
    a.every((m, i) => m.nodeId === b[i]?.nodeId && m.address === b[i]?.address && m.weight === b[i]?.weight)
  );
}

/**
 * The renewal a node needs, if any. A role change is urgent (the operator waits on a
 * promote or demote): at once. A rotation touches every node: a random point inside the
 * spread window, so 10,000 nodes do not renew in one burst. `random` is in [0, 1).
 */
export function renewInstructionFor(
  node: Node,
  cluster: Cluster,
  spreadWindowMs: number,
  random: () => number,
): RenewInstruction | undefined {
  if (node.desiredRole !== Role.ROLE_UNSPECIFIED && node.desiredRole !== node.role) {
    // A demoted manager renews as a worker only once the leader removed it from Raft
    // (the CA refuses it before: its peers must keep accepting it while it is a member).
    const leftRaft = node.membership === RaftMembership.RAFT_MEMBERSHIP_UNSPECIFIED;
    if (node.desiredRole === Role.ROLE_MANAGER || leftRaft) return { delayMs: 0, reason: "role" };
  }
  const rotation = cluster.rotation;
  const newKeyId = rotation?.newRoot?.keyId;
  if (
    rotation?.phase === RotationPhase.ROTATION_PHASE_RENEW &&
    newKeyId &&
    node.certificate?.issuerKeyId !== newKeyId
  )
    return {
      delayMs: Math.floor(random() * (rotation.spreadWindowMs || spreadWindowMs)),
      reason: "rotation",
    };
  return undefined;
}
