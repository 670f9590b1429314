// Keeps the Raft configuration in line with the replicated state (DESIGN.md "Role
// changes and removal"). It runs on every manager and acts only on the leader, one
// change at a time (Raft takes membership changes one at a time anyway):
// - a node holding a manager certificate, wanted as a manager, with a Raft id the log
//   assigned, and not in the configuration: added as a learner (bound to its node id
//   and address), then promoted to voter once caught up (RaftNode.promote retries);
// - a manager whose desired role is worker (demote): removed from the configuration;
//   if it is this leader, leadership goes to another voter first, whose own
//   reconciler then removes it, so a demotion costs no election;
// - a learner bound to no node any more (its node was removed while it was being added):
//   removed from the configuration;
// - each node's recorded membership follows the configuration (SetRaftMembership), so
//   `ls`, the CA (a demoted node's worker certificate waits for it) and the dispatcher
//   see where it stands.
// Every pass starts from the state and the configuration as they are now, so a leader
// change or a crash between two steps is repaired by the next pass.
import { type ChangeEvent, type ClusterState, proposeCommand, ReconcileLoop } from "../fsm/index.js";
import { type Node, NodeStatus, RaftMembership, Role } from "../gen/fsm/v1/state.js";
import type { Logger } from "../log/logger.js";
import type { RaftNode } from "../raft/runtime/node.js";

const PASS_INTERVAL_MS = 500;

export class MembershipReconciler {
  private readonly loop: ReconcileLoop;
  private readonly logger: Logger;

  constructor(
    private readonly raft: RaftNode,
    private readonly state: ClusterState,
    logger: Logger,
  ) {
    this.logger = logger.child({ component: "membership" });
    this.loop = new ReconcileLoop({
      state,
      onLeadershipChange: (listener) => raft.onLeadershipChange(listener),
      pass: () => this.pass(),
      // A pass reads every node: a worker's renewal or session change (most of what a busy
      // cluster applies, a whole rotation's worth) cannot change the configuration.
      relevant: (events) => events.some(concernsManagers),
      onError: (err) =>
        this.logger.warn({ err: (err as Error).message }, "membership change failed; retrying"),
      intervalMs: PASS_INTERVAL_MS,
    });
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** At most one configuration change or one recorded-membership fix per pass. */
  private async pass(): Promise<void> {
    if (!this.raft.leadership().isSelf || !this.state.cluster()) return;
    const status = this.raft.status();
    const voters = new Set(status.voters);
    const learners = new Set(status.learners);
    // A learner whose node is gone: added by a pass that raced its demotion and removal
    // (rm takes a demoted manager once its membership is recorded out of Raft). Voters are
    // never removed this way: a voter's node cannot be removed.
    const nodes = this.state.nodes();
    const bound = new Set(nodes.map((n) => n.raftId));
    for (const learner of learners) {
      if (bound.has(learner)) continue;
      this.logger.info({ raftId: learner }, "removing a Raft learner whose node was removed");
      await this.raft.remove(learner);
      return;
    }
    for (const node of nodes) {
      if (this.loop.isStopped) return;
      const inConfig = voters.has(node.raftId) || learners.has(node.raftId);
      if (wantsRaft(node) && !inConfig) {
        this.logger.info({ nodeId: node.id, raftId: node.raftId }, "adding a manager to Raft as a learner");
        await this.raft.addLearner(node.raftId, { nodeId: node.id, address: node.address });
        return this.record(node, RaftMembership.RAFT_MEMBERSHIP_LEARNER);
      }
      if (wantsRaft(node) && learners.has(node.raftId)) {
        // Its learner record lost (a leader change between the change and its record): record
        // it first, so demote's quorum check and rm see it in Raft while it is promoted.
        if (node.membership === RaftMembership.RAFT_MEMBERSHIP_UNSPECIFIED)
          return this.record(node, RaftMembership.RAFT_MEMBERSHIP_LEARNER);
        this.logger.info({ nodeId: node.id, raftId: node.raftId }, "promoting a caught-up learner to voter");
        await this.raft.promote(node.raftId);
        return this.record(node, RaftMembership.RAFT_MEMBERSHIP_VOTER);
      }
      if (node.desiredRole === Role.ROLE_WORKER && node.raftId !== 0 && inConfig) {
        if (node.raftId === status.id) return this.handOver(node, [...voters]);
        this.logger.info({ nodeId: node.id, raftId: node.raftId }, "removing a demoted manager from Raft");
        await this.raft.remove(node.raftId);
        return this.record(node, RaftMembership.RAFT_MEMBERSHIP_UNSPECIFIED);
      }
      const recorded = inConfig
        ? voters.has(node.raftId)
          ? RaftMembership.RAFT_MEMBERSHIP_VOTER
          : RaftMembership.RAFT_MEMBERSHIP_LEARNER
        : node.desiredRole === Role.ROLE_WORKER && node.raftId !== 0
          ? RaftMembership.RAFT_MEMBERSHIP_UNSPECIFIED
          : node.membership;
      // A demoted node out of the configuration keeps its Raft id until this records it out
      // (also one never added: joined without an address, or demoted before it was added);
      // rm waits for that.
      const demotedOut = node.desiredRole === Role.ROLE_WORKER && node.raftId !== 0 && !inConfig;
      if (recorded !== node.membership || demotedOut) return this.record(node, recorded);
    }
  }

  /** This leader is being demoted: leadership goes first to a voter that is up. */
  private handOver(self: Node, voters: number[]): void {
    const up = new Set(
      this.state
        .nodes()
        .filter((n) => n.status !== NodeStatus.NODE_STATUS_DOWN)
        .map((n) => n.raftId),
    );
    const target =
      voters.find((v) => v !== self.raftId && up.has(v)) ?? voters.find((v) => v !== self.raftId);
    if (target === undefined) return;
    this.logger.info({ target }, "this leader is being demoted: transferring leadership first");
    // Retried by the next pass while this member still leads (a target that has not
    // applied its own promotion yet ignores the request).
    this.raft.transferLeadership(target);
  }

  private async record(node: Node, membership: RaftMembership): Promise<void> {
    await proposeCommand(this.raft, {
      $case: "setRaftMembership",
      value: { nodeId: node.id, raftId: node.raftId, membership },
    });
  }
}

/** A node the cluster wants in Raft: a manager certificate, wanted as a manager, bound to a Raft id. */
function wantsRaft(node: Node): boolean {
  return node.role === Role.ROLE_MANAGER && node.desiredRole === Role.ROLE_MANAGER && node.raftId !== 0;
}

/** Whether a change can matter to the Raft configuration or to a recorded membership. */
function concernsManagers(event: ChangeEvent): boolean {
  switch (event.kind) {
    case "node":
      return involvesRaft(event.node) || (event.previous !== undefined && involvesRaft(event.previous));
    case "nodeRemoved":
      return involvesRaft(event.previous);
    case "removedPruned":
      return false;
    default:
      return true; // the cluster record, a snapshot installed
  }
}

function involvesRaft(node: Node): boolean {
  return (
    node.role === Role.ROLE_MANAGER ||
    node.desiredRole === Role.ROLE_MANAGER ||
    node.raftId !== 0 ||
    node.membership !== RaftMembership.RAFT_MEMBERSHIP_UNSPECIFIED
  );
}
