// The leader's membership reconciler against real RaftNodes in process: a learner left
// in the configuration after its node was removed (an addition that raced a demotion and
// rm) is removed; the voters are left alone.
import { expect } from "chai";
import { Role } from "../../src/gen/fsm/v1/state.js";
import { silentLogger } from "../../src/log/logger.js";
import { MembershipReconciler } from "../../src/node/membership.js";
import { ControlCluster } from "../control/fixture.js";
import { waitFor } from "../dispatcher/fixture.js";

describe("membership reconciler", function () {
  this.timeout(20_000);

  it("removes a learner bound to no node, and no voter", async () => {
    const cluster = await ControlCluster.start(3);
    const reconcilers = cluster.managers.map(
      (m) => new MembershipReconciler(m.raft, m.state, silentLogger()),
    );
    try {
      const voters = [...cluster.leader.raft.status().voters].sort();
      await cluster.leader.raft.addLearner(9, { nodeId: "ghost", address: "127.0.0.1:1" });
      expect(cluster.leader.raft.status().learners).to.include(9);
      for (const r of reconcilers) r.start();
      await waitFor(
        "the ghost learner removed",
        () => !cluster.leader.raft.status().learners.includes(9),
        10_000,
      );
      expect([...cluster.leader.raft.status().voters].sort()).to.deep.equal(voters);
    } finally {
      for (const r of reconcilers) await r.stop();
      await cluster.stop();
    }
  });

  it("records a demoted manager out of Raft (its Raft id cleared, so rm may take it), added or not", async () => {
    const cluster = await ControlCluster.start(3);
    const reconcilers = cluster.managers.map(
      (m) => new MembershipReconciler(m.raft, m.state, silentLogger()),
    );
    try {
      // One that can be added (it has an address) and one that cannot (joined without one).
      await cluster.join("m-added", { role: Role.ROLE_MANAGER, address: "127.0.0.1:1" });
      await cluster.join("m-never", { role: Role.ROLE_MANAGER });
      for (const r of reconcilers) r.start();
      const leader = cluster.leader;
      const added = leader.state.node("m-added")!.raftId;
      await waitFor("m-added a learner", () => leader.raft.status().learners.includes(added), 10_000);
      for (const nodeId of ["m-added", "m-never"])
        await cluster.propose({ $case: "setDesiredRole", value: { nodeId, desiredRole: Role.ROLE_WORKER } });
      await waitFor(
        "both recorded out of Raft",
        () => ["m-added", "m-never"].every((id) => leader.state.node(id)?.raftId === 0),
        10_000,
      );
      expect(leader.raft.status().learners).to.not.include(added);
    } finally {
      for (const r of reconcilers) await r.stop();
      await cluster.stop();
    }
  });
});
