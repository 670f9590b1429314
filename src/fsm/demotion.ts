// When a manager may be demoted (DESIGN.md "Role changes and removal"). Checked inside
// apply, at the command's log position, so two demotes racing through different
// managers cannot both pass a check made on the same older state; the control API runs
// the same function on a linearizable read first, to refuse without writing to the log.
import { type Node, NodeStatus, RaftMembership, Role } from "../gen/fsm/v1/state.js";
import { FsmRefusal } from "./errors.js";

/**
 * Why demoting `target` must be refused, or undefined when it may go ahead. Refused:
 * the last node whose desired role is manager (LAST_MANAGER), and a voter whose
 * departure would leave the remaining voters without a ready majority (QUORUM_AT_RISK).
 * The remaining voters are the Raft voters whose desired role is still manager: one
 * being demoted already is leaving and counts for nothing. Reachable means status
 * ready in the replicated state.
 */
export function demotionRefusal(nodes: readonly Node[], target: Node): FsmRefusal | undefined {
  const others = nodes.filter((n) => n.id !== target.id && n.desiredRole === Role.ROLE_MANAGER);
  if (others.length === 0)
    return new FsmRefusal(
      "LAST_MANAGER",
      `node ${target.id} is the last manager: promote another node first (nodectl promote ID), ` +
        `wait until nodectl ls shows it as a manager, then demote ${target.id}`,
    );
  // A node that is not a voter leaves the quorum as it is.
  if (target.membership !== RaftMembership.RAFT_MEMBERSHIP_VOTER) return undefined;
  const voters = others.filter((n) => n.membership === RaftMembership.RAFT_MEMBERSHIP_VOTER);
  if (voters.length === 0)
    return new FsmRefusal(
      "QUORUM_AT_RISK",
      `node ${target.id} is the only voting manager; ${names(others)} ${others.length === 1 ? "is" : "are"} ` +
        "not a Raft voter yet: wait until nodectl ls shows a promoted manager ready, then retry",
    );
  const ready = voters.filter((n) => n.status === NodeStatus.NODE_STATUS_READY);
  const needed = Math.floor(voters.length / 2) + 1;
  if (ready.length >= needed) return undefined;
  const unreachable = voters.filter((n) => n.status !== NodeStatus.NODE_STATUS_READY);
  return new FsmRefusal(
    "QUORUM_AT_RISK",
    `demoting ${target.id} would leave ${voters.length} voting managers of which only ${ready.length} ` +
      `${ready.length === 1 ? "is" : "are"} ready (a quorum needs ${needed}); not ready: ` +
      `${unreachable.map((n) => `${n.id} (${statusWord(n.status)})`).join(", ")}. ` +
      "Bring them back (nodectl run on their hosts) or demote them first, then retry",
  );
}

function names(nodes: readonly Node[]): string {
  return nodes.map((n) => n.id).join(", ");
}

function statusWord(status: NodeStatus): string {
  if (status === NodeStatus.NODE_STATUS_DOWN) return "down";
  return status === NodeStatus.NODE_STATUS_READY ? "ready" : "unknown";
}
