// promote, demote and rm: each checks the request on a linearizable read (so a refusal
// writes nothing to the log and says what to do), then proposes one command; a
// follower's proposal is forwarded to the leader by the Raft runtime. The replicated
// state's apply checks again at the command's log position (rm of a manager or of an up
// node, demotion of the last manager or past quorum), so a race between the read and
// the commit is refused there, still changing nothing. A call returns once its command
// is applied on this manager; the role change itself (renewal, Raft membership) is the
// node daemon's and the reconciler's work, watched with `nodectl ls`.
import { type ClusterState, demotionRefusal, FsmRefusal, proposeCommand } from "../fsm/index.js";
import type { RemoveNodeResponse, RoleChangeResponse } from "../gen/control/v1/messages.js";
import { type Node, NodeStatus, RaftMembership, Role } from "../gen/fsm/v1/state.js";
import type { Logger } from "../log/logger.js";
import type { RaftService } from "../raft/runtime/seam.js";
import { ClusterNotReadyError, ControlError } from "./errors.js";
import { lookupNode, requireLiveNode } from "./node-lookup.js";
import { nodeView } from "./views.js";

export interface NodeWritesOptions {
  raft: RaftService;
  state: ClusterState;
  /** Milliseconds since the epoch: the removal's timestamp travels in its command. */
  now?: () => number;
}

export class NodeWrites {
  private readonly now: () => number;

  constructor(
    private readonly options: NodeWritesOptions,
    private readonly log: Logger,
  ) {
    this.now = options.now ?? Date.now;
  }

  async promote(id: string): Promise<RoleChangeResponse> {
    const node = await this.read((state) => {
      const found = requireLiveNode(state, id);
      if (found.desiredRole !== Role.ROLE_MANAGER && !found.address)
        throw new ControlError(
          "NODE_HAS_NO_ADDRESS",
          `node ${found.id} was joined without --listen, and a manager must serve Raft, the CA and sessions: ` +
            `stop its daemon and remove it (nodectl rm ${found.id}, or nodectl rm --force ${found.id} while it ` +
            "runs), then join it again with a fresh state dir and --listen HOST:PORT, and promote it",
        );
      return found;
    });
    if (node.desiredRole === Role.ROLE_MANAGER) return { node: this.view(node), unchanged: true };
    return this.setDesiredRole(node, Role.ROLE_MANAGER);
  }

  async demote(id: string): Promise<RoleChangeResponse> {
    const node = await this.read((state) => {
      const found = requireLiveNode(state, id);
      if (found.desiredRole === Role.ROLE_MANAGER) {
        const refusal = demotionRefusal(state.nodes(), found);
        if (refusal) throw refusal;
      }
      return found;
    });
    if (node.desiredRole !== Role.ROLE_MANAGER) return { node: this.view(node), unchanged: true };
    return this.setDesiredRole(node, Role.ROLE_WORKER);
  }

  async remove(id: string, force: boolean): Promise<RemoveNodeResponse> {
    const found = await this.read((state) => {
      const lookup = lookupNode(state, id);
      if (lookup.kind === "node") removalRefusal(lookup.node, force);
      return lookup;
    });
    // Removed already (a retry whose first answer was lost, say): nothing left to do.
    if (found.kind === "removed") return { id: found.id, alreadyRemoved: true };
    const nodeId = found.node.id;
    try {
      await proposeCommand(this.options.raft, {
        $case: "removeNode",
        value: { nodeId, force, atMs: this.now() },
      });
    } catch (err) {
      // Another rm of it went through between the read and this entry: removed all the same.
      if (err instanceof FsmRefusal && err.code === "NODE_REMOVED")
        return { id: nodeId, alreadyRemoved: true };
      throw err;
    }
    this.log.info({ nodeId, force }, "node removed");
    return { id: nodeId, alreadyRemoved: false };
  }

  private async setDesiredRole(node: Node, desiredRole: Role): Promise<RoleChangeResponse> {
    await proposeCommand(this.options.raft, {
      $case: "setDesiredRole",
      value: { nodeId: node.id, desiredRole },
    });
    this.log.info({ nodeId: node.id, desiredRole: Role[desiredRole] }, "desired role changed");
    // Applied on this manager by now: its state shows at least this change.
    const after = this.options.state.node(node.id) ?? { ...node, desiredRole };
    return { node: this.view(after), unchanged: false };
  }

  private view(node: Node) {
    return nodeView(node, this.options.raft.leadership().leader);
  }

  private read<T>(fn: (state: ClusterState) => T): Promise<T> {
    const { raft, state } = this.options;
    return raft.read(() => {
      if (!state.cluster()) throw new ClusterNotReadyError();
      return fn(state);
    });
  }
}

/** The fsm's removal rules, with the operator's next step in the message. */
function removalRefusal(node: Node, force: boolean): void {
  if (node.desiredRole === Role.ROLE_MANAGER)
    throw new ControlError(
      "REFUSED",
      `node ${node.id} is a manager: demote it first (nodectl demote ${node.id}), wait until nodectl inspect ` +
        "shows it out of Raft, then remove it",
      "NODE_IS_MANAGER",
    );
  // Out of Raft (its Raft id cleared), a demoted manager may go even if it never renews as a
  // worker (it is dead). The same rule as apply's.
  if (node.raftId !== 0 || node.membership !== RaftMembership.RAFT_MEMBERSHIP_UNSPECIFIED)
    throw new ControlError(
      "REFUSED",
      `node ${node.id} is being demoted and is still in Raft: wait until nodectl inspect shows it out of ` +
        "Raft (a second or so while the cluster has a leader), then remove it",
      "NODE_IS_MANAGER",
    );
  if (node.status === NodeStatus.NODE_STATUS_READY && !force)
    throw new ControlError(
      "REFUSED",
      `node ${node.id} is up: stop its daemon and wait until nodectl ls shows it down, or remove it now with ` +
        `nodectl rm --force ${node.id} (its session is closed and its certificate refused at once)`,
      "NODE_UP",
    );
}
