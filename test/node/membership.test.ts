// The leader's membership reconciler against real RaftNodes in process: a learner left
// in the configuration after its node was removed (an addition that raced a demotion and
// rm) is removed; the voters are left alone.
import { expect } from "chai";
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
});
