// The dispatcher's pure parts: which manager a node picks, how long it waits, and what
// the replicated state tells each node (managers, trust bundle, renewals).
import { expect } from "chai";
import {
  fullJitterDelayMs,
  managerListOf,
  pickManager,
  renewInstructionFor,
  trustBundleOf,
} from "../../src/dispatcher/index.js";
import {
  type Cluster,
  type Node,
  NodeStatus,
  RaftMembership,
  Role,
  RotationPhase,
} from "../../src/gen/fsm/v1/state.js";

const enc = (s: string) => new TextEncoder().encode(s);

function node(id: string, overrides: Partial<Node> = {}): Node {
  return {
    id,
    role: Role.ROLE_WORKER,
    desiredRole: Role.ROLE_WORKER,
    raftId: 0,
    membership: RaftMembership.RAFT_MEMBERSHIP_UNSPECIFIED,
    status: NodeStatus.NODE_STATUS_READY,
    statusChangedAtMs: 0,
    address: "",
    certificate: { serial: "01", notAfterMs: 1, issuerKeyId: "old", der: new Uint8Array() },
    session: undefined,
    joinedAtMs: 0,
    earlierCertificates: [],
    trustedRootKeyId: "",
    heldIssuerKeyId: "",
    ...overrides,
  };
}

const cluster = (rotation?: Cluster["rotation"]): Cluster => ({
  id: "c",
  root: { certPem: enc("OLD ROOT"), keyPem: enc("k"), keyId: "old" },
  rotation,
  joinTokenSecrets: undefined,
  nodeCertLifetimeS: 3600,
  renewalGraceS: 0,
  createdAtMs: 0,
  nextRaftId: 0,
});

/** A deterministic sequence in [0, 1). */
function sequence(values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}

describe("dispatcher: picking a manager and backing off", () => {
  const managers = [
    { nodeId: "m1", address: "a1", weight: 100 },
    { nodeId: "m2", address: "a2", weight: 300 },
    { nodeId: "m3", address: "a3", weight: 0 },
  ];

  it("picks in proportion to the weights, never a zero weight while another is left", () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 400; i++) {
      const m = pickManager(managers, () => (i + 0.5) / 400)!;
      counts.set(m.nodeId, (counts.get(m.nodeId) ?? 0) + 1);
    }
    expect(Object.fromEntries(counts)).to.deep.equal({ m1: 100, m2: 300 });
  });

  it("avoids the manager that just failed when another is left, and picks among zero weights uniformly", () => {
    for (let i = 0; i < 50; i++) expect(pickManager(managers, () => i / 50, "m2")?.nodeId).to.not.equal("m2");
    expect(pickManager([managers[0]!], () => 0.3, "m1")?.nodeId).to.equal("m1");
    const zeros = managers.map((m) => ({ ...m, weight: 0 }));
    expect(pickManager(zeros, () => 0.99)?.nodeId).to.equal("m3");
    expect(pickManager([], () => 0.5)).to.equal(undefined);
  });

  it("waits a uniform time below an exponentially growing ceiling, capped (full jitter)", () => {
    expect([0, 1, 2, 3, 10].map((a) => fullJitterDelayMs(a, 100, 2_000, () => 0.999999))).to.deep.equal([
      99, 199, 399, 799, 1999,
    ]);
    expect(fullJitterDelayMs(5, 100, 2_000, () => 0)).to.equal(0);
    expect(fullJitterDelayMs(1_000, 100, 2_000, sequence([0.5]))).to.equal(1_000);
  });
});

describe("dispatcher: what a session pushes", () => {
  it("lists managers with an address, sorted, a down one with a token weight", () => {
    const nodes = [
      node("m2", { role: Role.ROLE_MANAGER, address: "h2:1" }),
      node("w1"),
      node("m1", { role: Role.ROLE_MANAGER, address: "h1:1", status: NodeStatus.NODE_STATUS_DOWN }),
      node("m3", { role: Role.ROLE_MANAGER, address: "" }),
    ];
    expect(managerListOf(nodes)).to.deep.equal([
      { nodeId: "m1", address: "h1:1", weight: 1 },
      { nodeId: "m2", address: "h2:1", weight: 100 },
    ]);
  });

  it("trusts the current root, and the new one alone once a rotation reaches its trust phase", () => {
    const newRoot = { certPem: enc("NEW ROOT"), keyPem: enc("k2"), keyId: "new" };
    expect(trustBundleOf(cluster())).to.equal("OLD ROOT");
    const renewing = {
      newRoot,
      crossSignedPem: enc("X"),
      phase: RotationPhase.ROTATION_PHASE_RENEW,
      startedAtMs: 0,
      spreadWindowMs: 0,
      phaseStartedAtMs: 0,
    };
    expect(trustBundleOf(cluster(renewing))).to.equal("OLD ROOT");
    expect(trustBundleOf(cluster({ ...renewing, phase: RotationPhase.ROTATION_PHASE_TRUST }))).to.equal(
      "NEW ROOT",
    );
  });

  it("renews at once for a role change, inside the spread window for a rotation, not at all otherwise", () => {
    const newRoot = { certPem: enc("NEW ROOT"), keyPem: enc("k2"), keyId: "new" };
    const rotation = {
      newRoot,
      crossSignedPem: enc("X"),
      phase: RotationPhase.ROTATION_PHASE_RENEW,
      startedAtMs: 0,
      spreadWindowMs: 0,
      phaseStartedAtMs: 0,
    };
    expect(renewInstructionFor(node("w1"), cluster(), 60_000, () => 0.5)).to.equal(undefined);
    expect(
      renewInstructionFor(node("w1", { desiredRole: Role.ROLE_MANAGER }), cluster(), 60_000, () => 0.5),
    ).to.deep.equal({
      delayMs: 0,
      reason: "role",
    });
    const delays = [0, 0.25, 0.999].map((r) =>
      renewInstructionFor(node("w1"), cluster(rotation), 60_000, () => r),
    );
    expect(delays).to.deep.equal([
      { delayMs: 0, reason: "rotation" },
      { delayMs: 15_000, reason: "rotation" },
      { delayMs: 59_940, reason: "rotation" },
    ]);
    // Already signed by the new key: nothing to do.
    const renewed = node("w1", {
      certificate: { serial: "02", notAfterMs: 1, issuerKeyId: "new", der: new Uint8Array() },
    });
    expect(renewInstructionFor(renewed, cluster(rotation), 60_000, () => 0.5)).to.equal(undefined);
  });
});
