// The replicated state's objects as the control API shows them: roles, statuses and
// memberships as stable lowercase words instead of proto enums.
import type { NodeView } from "../gen/control/v1/messages.js";
import { type Node, NodeStatus, RaftMembership, Role } from "../gen/fsm/v1/state.js";

export function roleName(role: Role): string {
  switch (role) {
    case Role.ROLE_MANAGER:
      return "manager";
    case Role.ROLE_WORKER:
      return "worker";
    default:
      return "unknown";
  }
}

export function roleFromName(name: string): Role | undefined {
  if (name === "manager") return Role.ROLE_MANAGER;
  if (name === "worker") return Role.ROLE_WORKER;
  return undefined;
}

function statusName(status: NodeStatus): string {
  switch (status) {
    case NodeStatus.NODE_STATUS_READY:
      return "ready";
    case NodeStatus.NODE_STATUS_DOWN:
      return "down";
    default:
      // Joined, no session seen yet.
      return "unknown";
  }
}

function membershipName(membership: RaftMembership): string {
  switch (membership) {
    case RaftMembership.RAFT_MEMBERSHIP_VOTER:
      return "voter";
    case RaftMembership.RAFT_MEMBERSHIP_LEARNER:
      return "learner";
    default:
      return "";
  }
}

/** `leaderRaftId`: the Raft leader the answering manager knows (0: none). */
export function nodeView(node: Node, leaderRaftId: number): NodeView {
  return {
    id: node.id,
    role: roleName(node.role),
    desiredRole: roleName(node.desiredRole),
    status: statusName(node.status),
    leader: node.raftId !== 0 && node.raftId === leaderRaftId,
    address: node.address,
    certificate: node.certificate
      ? {
          serial: node.certificate.serial,
          notAfterMs: node.certificate.notAfterMs,
          issuerKeyId: node.certificate.issuerKeyId,
        }
      : undefined,
    session: node.session
      ? { managerId: node.session.managerId, connectedAtMs: node.session.connectedAtMs }
      : undefined,
    raftId: node.raftId,
    membership: membershipName(node.membership),
    joinedAtMs: node.joinedAtMs,
    statusChangedAtMs: node.statusChangedAtMs,
  };
}
