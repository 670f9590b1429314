import { expect } from "chai";
import {
  type ChangeEvent,
  ClusterState,
  joinSecretSha256,
  MAX_ROTATED_SECRETS,
  SnapshotSchemaError,
} from "../../src/fsm/index.js";
import { Command, CommandResult } from "../../src/gen/fsm/v1/commands.js";
import { NodeStatus, RaftMembership, Role, State } from "../../src/gen/fsm/v1/state.js";
import { cmd, createCluster, expectRefused, join, newState, renew } from "./helpers.js";

/** A refused command returns its code and leaves the state byte-identical. */

const session = (nodeId: string, status: NodeStatus, managerId = "m1", atMs = 3_000) =>
  cmd({ $case: "recordSessions", value: { transitions: [{ nodeId, status, managerId, atMs }] } });

describe("fsm: the replicated cluster state", () => {
  it("creates the cluster once, with its first manager", () => {
    const s = newState(createCluster());
    expect(s.cluster()?.id).to.equal("c1");
    expect(s.nodes().map((n) => n.id)).to.deep.equal(["m1"]);
    expectRefused(s, createCluster(), "CLUSTER_EXISTS");
    expectRefused(new ClusterState(), join("w1"), "NO_CLUSTER");
  });

  it("records a join and a renewal; refuses a second join and a renewal of an unknown node", () => {
    const s = newState(createCluster(), join("w1"));
    const w1 = s.node("w1")!;
    expect(w1.role).to.equal(Role.ROLE_WORKER);
    expect(w1.desiredRole).to.equal(Role.ROLE_WORKER);
    expect(w1.status).to.equal(NodeStatus.NODE_STATUS_UNSPECIFIED);
    expectRefused(s, join("w1"), "NODE_EXISTS");
    const renewal = join("w1", Role.ROLE_WORKER, 5_000);
    if (renewal.command?.$case === "recordIssuance") renewal.command.value.join = false;
    expect(s.applyCommand(3, renewal).ok).to.equal(true);
    expect(s.node("w1")!.certificate!.serial).to.equal("s-w1-5000");
    expect(s.node("w1")!.joinedAtMs).to.equal(2_000);
    const unknown = join("w9");
    if (unknown.command?.$case === "recordIssuance") unknown.command.value.join = false;
    expectRefused(s, unknown, "NODE_NOT_FOUND");
  });

  it("removal: refused for a manager and for an up node without force; then no certificate, no role change", () => {
    const s = newState(createCluster(), join("w1"), session("w1", NodeStatus.NODE_STATUS_READY));
    expectRefused(
      s,
      cmd({ $case: "removeNode", value: { nodeId: "m1", force: true, atMs: 4_000 } }),
      "NODE_IS_MANAGER",
    );
    expectRefused(
      s,
      cmd({ $case: "removeNode", value: { nodeId: "w1", force: false, atMs: 4_000 } }),
      "NODE_UP",
    );
    expect(
      s.applyCommand(5, cmd({ $case: "removeNode", value: { nodeId: "w1", force: true, atMs: 4_000 } })).ok,
    ).to.equal(true);
    expect(s.node("w1")).to.equal(undefined);
    expect(s.removedNode("w1")).to.deep.equal({
      id: "w1",
      certNotAfterMs: 2_000 + 86_400_000,
      removedAtMs: 4_000,
      unexpiredCertificates: [{ serial: "s-w1-2000", notAfterMs: 2_000 + 86_400_000 }],
    });
    expectRefused(s, join("w1"), "NODE_REMOVED");
    const renewal = join("w1");
    if (renewal.command?.$case === "recordIssuance") renewal.command.value.join = false;
    expectRefused(s, renewal, "NODE_REMOVED");
    expectRefused(
      s,
      cmd({ $case: "setDesiredRole", value: { nodeId: "w1", desiredRole: Role.ROLE_MANAGER } }),
      "NODE_REMOVED",
    );
  });

  it("a node whose desired role is manager is not removable either (demote first)", () => {
    const s = newState(
      createCluster(),
      join("w1"),
      cmd({ $case: "setDesiredRole", value: { nodeId: "w1", desiredRole: Role.ROLE_MANAGER } }),
    );
    expectRefused(
      s,
      cmd({ $case: "removeNode", value: { nodeId: "w1", force: true, atMs: 1 } }),
      "NODE_IS_MANAGER",
    );
  });

  it("a demoted manager may be removed once out of Raft, though it never renewed as a worker (it is dead)", () => {
    const s = newState(
      createCluster(),
      join("m2", Role.ROLE_MANAGER),
      cmd({
        $case: "setRaftMembership",
        value: { nodeId: "m2", raftId: 2, membership: RaftMembership.RAFT_MEMBERSHIP_LEARNER },
      }),
    );
    const rm = cmd({ $case: "removeNode", value: { nodeId: "m2", force: false, atMs: 4_000 } });
    expectRefused(s, rm, "NODE_IS_MANAGER");
    const demote = cmd({ $case: "setDesiredRole", value: { nodeId: "m2", desiredRole: Role.ROLE_WORKER } });
    expect(s.applyCommand(4, demote).ok).to.equal(true);
    expectRefused(s, rm, "NODE_IS_MANAGER"); // still in Raft
    // A membership whose record was lost still has its Raft id: not out of Raft yet.
    const unrecorded = newState(createCluster(), join("m3", Role.ROLE_MANAGER));
    expect(unrecorded.node("m3")?.raftId).to.not.equal(0);
    const demoteM3 = cmd({ $case: "setDesiredRole", value: { nodeId: "m3", desiredRole: Role.ROLE_WORKER } });
    expect(unrecorded.applyCommand(3, demoteM3).ok).to.equal(true);
    expectRefused(
      unrecorded,
      cmd({ $case: "removeNode", value: { nodeId: "m3", force: true, atMs: 4_000 } }),
      "NODE_IS_MANAGER",
    );
    const left = cmd({
      $case: "setRaftMembership",
      value: { nodeId: "m2", raftId: 2, membership: RaftMembership.RAFT_MEMBERSHIP_UNSPECIFIED },
    });
    expect(s.applyCommand(5, left).ok).to.equal(true);
    expect(s.node("m2")?.role, "it never came back for its worker certificate").to.equal(Role.ROLE_MANAGER);
    expect(s.applyCommand(6, rm).ok).to.equal(true);
    expect(s.node("m2")).to.equal(undefined);
    expect(s.removedNode("m2")?.unexpiredCertificates).to.have.length(1);
  });

  it("rotating one join token changes only that secret", () => {
    const s = newState(
      createCluster(),
      cmd({ $case: "rotateJoinToken", value: { role: Role.ROLE_WORKER, secret: "w2" } }),
    );
    expect(s.cluster()!.joinTokenSecrets).to.deep.equal({
      worker: "w2",
      manager: "m-secret",
      rotatedSha256: [joinSecretSha256("w-secret")],
    });
    expectRefused(
      s,
      cmd({ $case: "rotateJoinToken", value: { role: Role.ROLE_UNSPECIFIED, secret: "x" } }),
      "INVALID_COMMAND",
    );
    expectRefused(
      s,
      cmd({ $case: "rotateJoinToken", value: { role: Role.ROLE_MANAGER, secret: "" } }),
      "INVALID_COMMAND",
    );
  });

  it("a join must present its role's current secret at the entry's own log position", () => {
    const s = newState(createCluster());
    const withSecret = (nodeId: string, role: Role, secret: string) => {
      const c = join(nodeId, role);
      if (c.command?.$case === "recordIssuance") c.command.value.joinSecretSha256 = joinSecretSha256(secret);
      return c;
    };
    expectRefused(s, withSecret("w1", Role.ROLE_WORKER, "nope"), "TOKEN_INVALID");
    // The worker token does not admit a manager.
    expectRefused(s, withSecret("w1", Role.ROLE_MANAGER, "w-secret"), "TOKEN_INVALID");
    expectRefused(s, withSecret("w1", Role.ROLE_WORKER, ""), "TOKEN_INVALID");
    // Checked fine by the issuer, then a rotation commits first: the join is refused.
    expect(
      s.applyCommand(2, cmd({ $case: "rotateJoinToken", value: { role: Role.ROLE_WORKER, secret: "w2" } }))
        .ok,
    ).to.equal(true);
    expectRefused(s, withSecret("w1", Role.ROLE_WORKER, "w-secret"), "TOKEN_ROTATED");
    expect(s.applyCommand(3, withSecret("w1", Role.ROLE_WORKER, "w2")).ok).to.equal(true);
    // The certificate itself is recorded, so any manager can serve it.
    expect(Buffer.from(s.node("w1")!.certificate!.der).toString()).to.equal("der-w1");
    // A renewal carries no token.
    const renewal = withSecret("w1", Role.ROLE_WORKER, "");
    if (renewal.command?.$case === "recordIssuance") renewal.command.value.join = false;
    expect(s.applyCommand(4, renewal).ok).to.equal(true);
  });

  it("remembers at most the last 16 rotated secrets, as digests", () => {
    const s = newState(createCluster());
    for (let i = 0; i < 20; i++)
      s.applyCommand(
        2 + i,
        cmd({ $case: "rotateJoinToken", value: { role: Role.ROLE_WORKER, secret: `w${i}` } }),
      );
    const rotated = s.cluster()!.joinTokenSecrets!.rotatedSha256;
    expect(rotated).to.have.length(MAX_ROTATED_SECRETS);
    expect(rotated.at(-1)).to.equal(joinSecretSha256("w18"));
    expect(rotated).to.not.include(joinSecretSha256("w-secret"));
  });

  it("session transitions: ready records the session's manager, down clears it, unknown nodes are skipped", () => {
    const s = newState(createCluster(), join("w1"));
    const r = s.applyCommand(
      3,
      cmd({
        $case: "recordSessions",
        value: {
          transitions: [
            { nodeId: "w1", status: NodeStatus.NODE_STATUS_READY, managerId: "m1", atMs: 3_000 },
            { nodeId: "ghost", status: NodeStatus.NODE_STATUS_READY, managerId: "m1", atMs: 3_000 },
          ],
        },
      }),
    );
    expect(r.ok).to.equal(true);
    expect(s.node("w1")!.session).to.deep.equal({ managerId: "m1", connectedAtMs: 3_000 });
    expect(s.node("ghost")).to.equal(undefined);
    s.applyCommand(4, session("w1", NodeStatus.NODE_STATUS_DOWN, "", 9_000));
    expect(s.node("w1")!.status).to.equal(NodeStatus.NODE_STATUS_DOWN);
    expect(s.node("w1")!.statusChangedAtMs).to.equal(9_000);
    expect(s.node("w1")!.session).to.equal(undefined);
  });

  it("session transitions: a down reported by a manager that no longer holds the session is skipped", () => {
    const s = newState(createCluster(), join("w1"), session("w1", NodeStatus.NODE_STATUS_READY, "m1", 3_000));
    // The node moved to m2; m1's late "down" (its old session went silent) must not mark it down.
    s.applyCommand(4, session("w1", NodeStatus.NODE_STATUS_READY, "m2", 4_000));
    s.applyCommand(5, session("w1", NodeStatus.NODE_STATUS_DOWN, "m1", 5_000));
    expect(s.node("w1")!.status).to.equal(NodeStatus.NODE_STATUS_READY);
    expect(s.node("w1")!.session).to.deep.equal({ managerId: "m2", connectedAtMs: 4_000 });
    // The holder's own "down" applies.
    s.applyCommand(6, session("w1", NodeStatus.NODE_STATUS_DOWN, "m2", 6_000));
    expect(s.node("w1")!.status).to.equal(NodeStatus.NODE_STATUS_DOWN);
    expect(s.node("w1")!.session).to.equal(undefined);
  });

  it("binds a Raft member id to one node only", () => {
    const s = newState(
      createCluster(),
      join("w1", Role.ROLE_MANAGER),
      cmd({
        $case: "setRaftMembership",
        value: { nodeId: "w1", raftId: 2, membership: RaftMembership.RAFT_MEMBERSHIP_LEARNER },
      }),
    );
    expect(s.nodeByRaftId(2)?.id).to.equal("w1");
    expectRefused(
      s,
      cmd({
        $case: "setRaftMembership",
        value: { nodeId: "w1", raftId: 1, membership: RaftMembership.RAFT_MEMBERSHIP_VOTER },
      }),
      "RAFT_ID_IN_USE",
    );
    s.applyCommand(9, cmd({ $case: "setRaftMembership", value: { nodeId: "w1", raftId: 0, membership: 0 } }));
    expect(s.node("w1")!.raftId).to.equal(0);
    expect(s.nodeByRaftId(2)).to.equal(undefined);
  });

  it("a manager certificate assigns the next Raft id in log order; a demoted node's id is never reused", () => {
    const s = newState(createCluster(), join("m2", Role.ROLE_MANAGER), join("w1"));
    expect(s.node("m2")!.raftId).to.equal(2);
    expect(s.node("w1")!.raftId).to.equal(0);
    // A renewal of a manager keeps its id; a worker renewed as a manager (promotion) gets the next.
    s.applyCommand(10, renew("m2", Role.ROLE_MANAGER, 3_000));
    expect(s.node("m2")!.raftId).to.equal(2);
    s.applyCommand(11, renew("w1", Role.ROLE_MANAGER, 3_000));
    expect(s.node("w1")!.raftId).to.equal(3);
    // Demoted: it leaves Raft (id cleared), renews as a worker, is promoted again: a new id.
    s.applyCommand(
      12,
      cmd({ $case: "setRaftMembership", value: { nodeId: "w1", raftId: 3, membership: 0 } }),
    );
    s.applyCommand(13, renew("w1", Role.ROLE_WORKER, 4_000));
    s.applyCommand(14, renew("w1", Role.ROLE_MANAGER, 5_000));
    expect(s.node("w1")!.raftId).to.equal(4);
    expect(s.cluster()!.nextRaftId).to.equal(5);
  });

  it("prunes a removed node only once its certificate expired more than the grace window ago", () => {
    const s = newState(
      createCluster(),
      join("w1"),
      cmd({ $case: "removeNode", value: { nodeId: "w1", force: false, atMs: 3_000 } }),
    );
    const notAfter = s.removedNode("w1")!.certNotAfterMs;
    const grace = 7 * 86_400_000;
    s.applyCommand(10, cmd({ $case: "pruneRemovedNodes", value: { nowMs: notAfter + grace } }));
    expect(s.removedNode("w1")).to.not.equal(undefined);
    s.applyCommand(11, cmd({ $case: "pruneRemovedNodes", value: { nowMs: notAfter + grace + 1 } }));
    expect(s.removedNode("w1")).to.equal(undefined);
  });

  it("refuses a certificate lifetime under one minute", () => {
    const s = newState(createCluster());
    expectRefused(
      s,
      cmd({ $case: "setNodeCertLifetime", value: { nodeCertLifetimeS: 59 } }),
      "INVALID_COMMAND",
    );
    expect(
      s.applyCommand(3, cmd({ $case: "setNodeCertLifetime", value: { nodeCertLifetimeS: 60 } })).ok,
    ).to.equal(true);
  });

  it("answers garbage and empty commands with INVALID_COMMAND through the StateMachine seam", () => {
    const s = newState(createCluster());
    const before = Buffer.from(s.snapshot());
    const garbage = CommandResult.decode(s.apply(5, new Uint8Array([0xff, 0xff, 0xff, 0xff])));
    expect(garbage.code).to.equal("INVALID_COMMAND");
    const empty = CommandResult.decode(s.apply(6, Command.encode({ command: undefined }).finish()));
    expect(empty.code).to.equal("INVALID_COMMAND");
    expect(Buffer.from(s.snapshot()).equals(before)).to.equal(true);
  });

  it("tells watchers what changed, after the state reflects it", () => {
    const s = newState(createCluster());
    const seen: ChangeEvent[] = [];
    s.watch((events) => {
      for (const e of events) if (e.kind === "node") expect(s.node(e.node.id)).to.equal(e.node);
      seen.push(...events);
    });
    s.applyCommand(2, join("w1"));
    s.applyCommand(3, cmd({ $case: "removeNode", value: { nodeId: "w1", force: false, atMs: 3_000 } }));
    expect(seen.map((e) => e.kind)).to.deep.equal(["node", "nodeRemoved"]);
    const removed = seen[1];
    expect(removed.kind === "nodeRemoved" && removed.previous.id).to.equal("w1");
    expect(seen.every((e) => e.index > 0)).to.equal(true);
  });

  it("snapshot/restore round-trips to identical bytes; another schema version is refused", () => {
    const s = newState(createCluster(), join("w2"), join("w1"), session("w1", NodeStatus.NODE_STATUS_READY));
    const copy = new ClusterState();
    copy.restore(s.snapshot());
    expect(Buffer.from(copy.snapshot()).equals(Buffer.from(s.snapshot()))).to.equal(true);
    expect(copy.nodes().map((n) => n.id)).to.deep.equal(["m1", "w1", "w2"]);
    const future = State.encode({ ...State.decode(s.snapshot()), schemaVersion: 2 }).finish();
    expect(() => new ClusterState().restore(future)).to.throw(SnapshotSchemaError, /schema version 2/);
    const empty = new ClusterState();
    empty.restore(new Uint8Array());
    expect(empty.cluster()).to.equal(undefined);
  });
});
