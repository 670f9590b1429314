// Demotion refusals inside apply (DESIGN.md "Role changes and removal"): the last
// manager and a demotion that leaves the remaining voters without a ready majority are
// refused at the command's log position and change nothing.
import { expect } from "chai";
import type { ClusterState } from "../../src/fsm/index.js";
import { NodeStatus, RaftMembership, Role } from "../../src/gen/fsm/v1/state.js";
import { type Command, cmd, createCluster, join, newState } from "./helpers.js";

function demote(nodeId: string): Command {
  return cmd({ $case: "setDesiredRole", value: { nodeId, desiredRole: Role.ROLE_WORKER } });
}

function voter(nodeId: string, raftId: number): Command[] {
  return [
    join(nodeId, Role.ROLE_MANAGER),
    cmd({
      $case: "setRaftMembership",
      value: { nodeId, raftId, membership: RaftMembership.RAFT_MEMBERSHIP_VOTER },
    }),
  ];
}

function status(nodeId: string, s: NodeStatus): Command {
  return cmd({
    $case: "recordSessions",
    value: { transitions: [{ nodeId, status: s, managerId: "", atMs: 5 }] },
  });
}

/** Refused with `code`, and the state's bytes are what they were. */
function expectRefused(s: ClusterState, command: Command, code: string): string {
  const before = Buffer.from(s.snapshot());
  const result = s.applyCommand(100, command);
  expect(result.ok).to.equal(false);
  expect(result.code).to.equal(code);
  expect(Buffer.from(s.snapshot()).equals(before)).to.equal(true);
  return result.message;
}

describe("fsm: demotion refusals", () => {
  it("refuses to demote the last manager (LAST_MANAGER), saying to promote another first", () => {
    const s = newState(createCluster(), join("w1"));
    const message = expectRefused(s, demote("m1"), "LAST_MANAGER");
    expect(message).to.contain("nodectl promote");
  });

  it("of two concurrent demotes of a two-manager cluster, the second one applied is refused", () => {
    const s = newState(createCluster(), ...voter("m2", 2), status("m2", NodeStatus.NODE_STATUS_READY));
    // Both proposals passed a check made on this same state; apply decides in log order.
    expect(s.applyCommand(10, demote("m1")).ok).to.equal(true);
    expectRefused(s, demote("m2"), "LAST_MANAGER");
    expect(s.node("m2")?.desiredRole).to.equal(Role.ROLE_MANAGER);
  });

  it("refuses a demotion that leaves a minority of the remaining voters ready (QUORUM_AT_RISK), naming them", () => {
    const s = newState(
      createCluster(),
      ...voter("m2", 2),
      ...voter("m3", 3),
      status("m2", NodeStatus.NODE_STATUS_READY),
      status("m3", NodeStatus.NODE_STATUS_DOWN),
    );
    // Remaining m2 (ready) and m3 (down): 1 of 2 ready, a quorum needs 2.
    const message = expectRefused(s, demote("m1"), "QUORUM_AT_RISK");
    expect(message).to.contain("m3 (down)").and.contain("needs 2");
    // Demoting the down one leaves m1 and m2, both ready.
    expect(s.applyCommand(20, demote("m3")).ok).to.equal(true);
  });

  it("counts a manager being demoted already as gone, and a learner as not a voter", () => {
    const s = newState(
      createCluster(),
      ...voter("m2", 2),
      ...voter("m3", 3),
      status("m2", NodeStatus.NODE_STATUS_READY),
      status("m3", NodeStatus.NODE_STATUS_READY),
      demote("m3"),
      join("m4", Role.ROLE_MANAGER),
      cmd({
        $case: "setRaftMembership",
        value: { nodeId: "m4", raftId: 4, membership: RaftMembership.RAFT_MEMBERSHIP_LEARNER },
      }),
      status("m4", NodeStatus.NODE_STATUS_READY),
    );
    // m1 leaving: remaining voters with desired role manager are m2 only (m3 is leaving,
    // m4 a learner): 1 of 1 ready passes.
    expect(s.applyCommand(30, demote("m1")).ok).to.equal(true);
    // m2 now is the only voter left; m4 is no voter yet.
    const message = expectRefused(s, demote("m2"), "QUORUM_AT_RISK");
    expect(message).to.contain("m4").and.contain("not a Raft voter yet");
    // Cancelling m4's promotion (a learner) changes no quorum.
    expect(s.applyCommand(31, demote("m4")).ok).to.equal(true);
    expectRefused(s, demote("m2"), "LAST_MANAGER");
  });

  it("a demote of a node whose desired role is worker already is a no-op, not a refusal", () => {
    const s = newState(createCluster(), join("w1"));
    expect(s.applyCommand(10, demote("w1")).ok).to.equal(true);
  });
});
