// promote, demote and rm through the control API of real RaftNodes (three in process,
// each with its control.sock), driven by nodectl's own client. Every refusal is shown to
// change nothing: the replicated state's bytes on every manager are what they were, and
// a refusal seen on the read appends nothing to the log.
import { expect } from "chai";
import { ControlCallError, type ControlConnection } from "../../src/control/client.js";
import { FsmRefusal, proposeCommand } from "../../src/fsm/index.js";
import { NodeStatus, RaftMembership, Role } from "../../src/gen/fsm/v1/state.js";
import { ControlCluster } from "./fixture.js";

async function refusal(call: Promise<unknown>): Promise<ControlCallError> {
  const outcome = await call.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(outcome).to.be.instanceOf(ControlCallError);
  return outcome as ControlCallError;
}

describe("control API: promote, demote, rm on a three-manager Raft cluster", function () {
  this.timeout(30_000);
  let cluster: ControlCluster;

  /** Runs `call`, expects it refused with `code`, and checks that nothing changed anywhere. */
  async function refusedUnchanged(call: () => Promise<unknown>, code: string): Promise<string> {
    const before = await cluster.converged();
    const indexes = cluster.lastIndexes();
    const err = await refusal(call());
    expect(err.code, err.message).to.equal(code);
    expect((await cluster.converged()).equals(before)).to.equal(true);
    // Refused on the linearizable read: not even a refused entry went into the log.
    expect(cluster.lastIndexes()).to.deep.equal(indexes);
    return err.message;
  }

  const on = (which: "leader" | "follower"): ControlConnection => cluster[which].control();

  before(async () => {
    cluster = await ControlCluster.start(3);
    await cluster.join("w-listen", { address: "127.0.0.1:5001", status: NodeStatus.NODE_STATUS_READY });
    await cluster.join("w-quiet", { status: NodeStatus.NODE_STATUS_READY });
    await cluster.join("w-down", { status: NodeStatus.NODE_STATUS_DOWN });
    await cluster.join("w-up", { status: NodeStatus.NODE_STATUS_READY });
    await cluster.join("w-spare", { address: "127.0.0.1:5002" });
    await cluster.converged();
  });

  after(async () => {
    await cluster?.stop();
  });

  it("promote of a worker with an address sets its desired role on every manager, from a follower", async () => {
    const answer = await on("follower").promoteNode("w-listen");
    expect(answer.unchanged).to.equal(false);
    expect(answer.node).to.deep.include({ id: "w-listen", role: "worker", desiredRole: "manager" });
    await cluster.converged();
    for (const m of cluster.managers)
      expect(m.state.node("w-listen")?.desiredRole).to.equal(Role.ROLE_MANAGER);
  });

  it("promote again, or of a manager, succeeds and proposes nothing", async () => {
    const before = await cluster.converged();
    const indexes = cluster.lastIndexes();
    const again = await on("leader").promoteNode("w-listen");
    expect(again.unchanged).to.equal(true);
    expect(again.node?.desiredRole).to.equal("manager");
    const manager = await on("follower").promoteNode("m2");
    expect(manager.unchanged).to.equal(true);
    expect(manager.node?.role).to.equal("manager");
    expect(cluster.lastIndexes()).to.deep.equal(indexes);
    expect((await cluster.converged()).equals(before)).to.equal(true);
  });

  it("promote of a worker joined without --listen is refused (NODE_HAS_NO_ADDRESS), changing nothing", async () => {
    const message = await refusedUnchanged(
      () => on("follower").promoteNode("w-quiet"),
      "NODE_HAS_NO_ADDRESS",
    );
    expect(message).to.contain("--listen").and.contain("nodectl rm w-quiet");
  });

  it("an unknown id is refused (NODE_NOT_FOUND, pointing at nodectl ls); an ambiguous prefix too", async () => {
    for (const call of [
      () => on("leader").promoteNode("nobody"),
      () => on("follower").demoteNode("nobody"),
      () => on("follower").removeNode("nobody", true),
    ]) {
      const message = await refusedUnchanged(call, "NODE_NOT_FOUND");
      expect(message).to.contain("nodectl ls");
    }
    const message = await refusedUnchanged(() => on("leader").removeNode("w-", true), "AMBIGUOUS_NODE_ID");
    expect(message).to.contain("w-down").and.contain("w-up");
  });

  it("a prefix that names one node is that node (inspect too)", async () => {
    expect((await on("follower").inspectNode("w-sp")).id).to.equal("w-spare");
    const answer = await on("follower").promoteNode("w-sp");
    expect(answer.node?.id).to.equal("w-spare");
    expect(answer.unchanged).to.equal(false);
    // Back to worker: a node that is not a voter leaves the quorum as it is.
    const back = await on("leader").demoteNode("w-spare");
    expect(back.unchanged).to.equal(false);
    expect(back.node?.desiredRole).to.equal("worker");
  });

  it("demote of a worker succeeds and proposes nothing", async () => {
    const indexes = cluster.lastIndexes();
    const answer = await on("follower").demoteNode("w-up");
    expect(answer.unchanged).to.equal(true);
    expect(answer.node?.role).to.equal("worker");
    expect(cluster.lastIndexes()).to.deep.equal(indexes);
  });

  it("rm of a manager is refused (NODE_IS_MANAGER: demote it first)", async () => {
    const message = await refusedUnchanged(() => on("follower").removeNode("m2", true), "NODE_IS_MANAGER");
    expect(message).to.contain("nodectl demote m2");
    // A worker being promoted is a manager too, as far as removal goes.
    await refusedUnchanged(() => on("leader").removeNode("w-listen", true), "NODE_IS_MANAGER");
  });

  it("rm of a demoted manager out of Raft succeeds though it never renewed as a worker (a dead manager)", async () => {
    await cluster.join("m-dead", { role: Role.ROLE_MANAGER, address: "127.0.0.1:5003" });
    await cluster.setStatus("m-dead", NodeStatus.NODE_STATUS_DOWN);
    await refusedUnchanged(() => on("leader").removeNode("m-dead", false), "NODE_IS_MANAGER");
    await on("follower").demoteNode("m-dead");
    // Its Raft id stays until the leader's reconciler records it out of the configuration.
    await refusedUnchanged(() => on("leader").removeNode("m-dead", false), "NODE_IS_MANAGER");
    const raftId = cluster.leader.state.node("m-dead")?.raftId ?? 0;
    expect(raftId).to.not.equal(0);
    await cluster.propose({
      $case: "setRaftMembership",
      value: { nodeId: "m-dead", raftId, membership: RaftMembership.RAFT_MEMBERSHIP_UNSPECIFIED },
    });
    const answer = await on("follower").removeNode("m-dead", false);
    expect(answer).to.deep.equal({ id: "m-dead", alreadyRemoved: false });
    await cluster.converged();
    for (const m of cluster.managers) expect(m.state.removedNode("m-dead")?.id).to.equal("m-dead");
  });

  it("rm of an up worker without --force is refused (NODE_UP), saying how to go ahead", async () => {
    const message = await refusedUnchanged(() => on("follower").removeNode("w-up", false), "NODE_UP");
    expect(message).to.contain("nodectl rm --force w-up");
  });

  it("rm of a stopped worker from a follower removes it on every manager, stamped by the control service", async () => {
    const before = Date.now();
    const answer = await on("follower").removeNode("w-down", false);
    expect(answer).to.deep.equal({ id: "w-down", alreadyRemoved: false });
    await cluster.converged();
    for (const m of cluster.managers) {
      expect(m.state.node("w-down")).to.equal(undefined);
      const removed = m.state.removedNode("w-down");
      expect(removed?.removedAtMs).to.be.within(before, Date.now());
      expect(removed?.certNotAfterMs).to.be.above(before);
    }
    // A second rm (a retry whose answer was lost) succeeds without proposing.
    const indexes = cluster.lastIndexes();
    expect(await on("leader").removeNode("w-down", false)).to.deep.equal({
      id: "w-down",
      alreadyRemoved: true,
    });
    expect(cluster.lastIndexes()).to.deep.equal(indexes);
    // A removed node cannot come back through promote.
    const message = await refusedUnchanged(() => on("leader").promoteNode("w-down"), "NODE_REMOVED");
    expect(message).to.contain("join a new node");
  });

  it("concurrent rm of one node through both managers all succeed; exactly one removed it", async () => {
    await cluster.join("w-race", { status: NodeStatus.NODE_STATUS_DOWN });
    await cluster.converged();
    const answers = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        on(i % 2 === 0 ? "leader" : "follower").removeNode("w-race", false),
      ),
    );
    expect(answers.filter((a) => !a.alreadyRemoved)).to.have.length(1);
    for (const a of answers) expect(a.id).to.equal("w-race");
  });

  it("rm --force of an up worker from a follower removes it", async () => {
    expect(await on("follower").removeNode("w-up", true)).to.deep.equal({
      id: "w-up",
      alreadyRemoved: false,
    });
    await cluster.converged();
    for (const m of cluster.managers) expect(m.state.removedNode("w-up")?.id).to.equal("w-up");
  });

  it("demote that would leave the remaining voters without a ready majority is refused, naming who is down", async () => {
    await cluster.setStatus("m3", NodeStatus.NODE_STATUS_DOWN);
    // m1 leaving would leave m2 (ready) and m3 (down): 1 of 2, a quorum needs 2.
    const message = await refusedUnchanged(() => on("follower").demoteNode("m1"), "QUORUM_AT_RISK");
    expect(message).to.contain("m3 (down)").and.contain("needs 2");
    // Demoting the down manager itself keeps m1 and m2, both ready.
    const answer = await on("follower").demoteNode("m3");
    expect(answer.unchanged).to.equal(false);
    expect(answer.node).to.deep.include({ id: "m3", role: "manager", desiredRole: "worker" });
    // Still a manager while it is being demoted: rm waits for it to become a worker.
    const rm = await refusedUnchanged(() => on("leader").removeNode("m3", true), "NODE_IS_MANAGER");
    expect(rm).to.contain("being demoted");
  });

  it("of two demotes racing through two managers, one goes through and the other is refused (LAST_MANAGER)", async () => {
    // m3 is leaving and w-listen is no voter yet: cancel its promotion so m1 and m2 are the managers.
    await on("leader").demoteNode("w-listen");
    const before = await cluster.converged();
    const [a, b] = [cluster.managers[0]!, cluster.managers[1]!];
    const outcomes = await Promise.allSettled([a.control().demoteNode("m1"), b.control().demoteNode("m2")]);
    const fulfilled = outcomes.filter((o) => o.status === "fulfilled");
    const rejected = outcomes.flatMap((o) => (o.status === "rejected" ? [o.reason as ControlCallError] : []));
    expect(fulfilled).to.have.length(1);
    expect(rejected.map((e) => e.code)).to.deep.equal(["LAST_MANAGER"]);
    expect(rejected[0]?.message).to.contain("nodectl promote");
    const after = await cluster.converged();
    expect(after.equals(before)).to.equal(false);
    const managers = cluster.leader.state.nodes().filter((n) => n.desiredRole === Role.ROLE_MANAGER);
    expect(managers).to.have.length(1);
    // The one left is refused on the read from now on, and nothing changes.
    await refusedUnchanged(() => on("follower").demoteNode(managers[0]!.id), "LAST_MANAGER");
  });

  it("a demote that got past the read (as a race would) is refused by apply on every manager, changing nothing", async () => {
    const [last] = cluster.leader.state.nodes().filter((n) => n.desiredRole === Role.ROLE_MANAGER);
    const before = await cluster.converged();
    const indexes = cluster.lastIndexes();
    const outcome = await proposeCommand(cluster.follower.raft, {
      $case: "setDesiredRole",
      value: { nodeId: last!.id, desiredRole: Role.ROLE_WORKER },
    }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(outcome).to.be.instanceOf(FsmRefusal);
    expect((outcome as FsmRefusal).code).to.equal("LAST_MANAGER");
    expect((await cluster.converged()).equals(before)).to.equal(true);
    // This one did reach the log: apply refused it at its position.
    expect(cluster.lastIndexes()[0]).to.be.above(indexes[0]!);
  });
});
