import { expect } from "chai";
import { rotationViewOf } from "../../src/control/rotation.js";
import {
  type Cluster,
  type Node,
  NodeStatus,
  RaftMembership,
  Role,
  RotationPhase,
} from "../../src/gen/fsm/v1/state.js";

const enc = new TextEncoder();
const NEW = "bb";

function node(id: string, overrides: Partial<Node> = {}): Node {
  return {
    id,
    role: Role.ROLE_WORKER,
    desiredRole: Role.ROLE_WORKER,
    raftId: 0,
    membership: RaftMembership.RAFT_MEMBERSHIP_UNSPECIFIED,
    status: NodeStatus.NODE_STATUS_READY,
    statusChangedAtMs: 1_000,
    address: "",
    certificate: { serial: "01", notAfterMs: 9e12, issuerKeyId: "aa", der: new Uint8Array() },
    session: { managerId: "m1", connectedAtMs: 1_000 },
    joinedAtMs: 1_000,
    earlierCertificates: [],
    trustedRootKeyId: "",
    heldIssuerKeyId: "",
    ...overrides,
  };
}

function cluster(phase: RotationPhase): Cluster {
  return {
    id: "c1",
    root: { certPem: enc.encode("old"), keyPem: enc.encode("k"), keyId: "aa" },
    rotation: {
      newRoot: { certPem: enc.encode("new"), keyPem: enc.encode("k2"), keyId: NEW },
      crossSignedPem: enc.encode("x"),
      phase,
      startedAtMs: 2_000,
      spreadWindowMs: 500,
      phaseStartedAtMs: 2_000,
    },
    joinTokenSecrets: undefined,
    nodeCertLifetimeS: 86_400,
    renewalGraceS: 0,
    createdAtMs: 0,
    nextRaftId: 2,
  };
}

const renewed = { serial: "02", notAfterMs: 9e12, issuerKeyId: NEW, der: new Uint8Array() };

describe("control: a rotation's progress and pending nodes", () => {
  it("names why each node holds the renew phase", () => {
    const nodes = [
      node("down", { status: NodeStatus.NODE_STATUS_DOWN, statusChangedAtMs: 1_500 }),
      node("nosession", { session: undefined }),
      node("refused"),
      node("waiting"),
      node("done", { certificate: renewed, heldIssuerKeyId: NEW }),
    ];
    const view = rotationViewOf(cluster(RotationPhase.ROTATION_PHASE_RENEW), nodes, (id) =>
      id === "refused" ? { code: "OVERLOADED", atMs: 3_000 } : undefined,
    );
    expect(view).to.include({ phase: "renew", renewed: 1, trusted: 0, total: 5, newRootKeyId: NEW });
    expect(Object.fromEntries(view?.pending.map((p) => [p.id, p.reason]) ?? [])).to.deep.equal({
      down: "down since 1970-01-01T00:00:01.500Z",
      nosession: "no session: it cannot be told to renew until it connects",
      refused: "renewal refused with OVERLOADED at 1970-01-01T00:00:03.000Z (by this manager)",
      waiting: "told to renew over its session on m1; not renewed yet",
    });
  });

  it("in the trust phase, waits for renewed nodes to confirm the new root; none once there is no rotation", () => {
    const nodes = [
      node("a", { certificate: renewed, heldIssuerKeyId: NEW, trustedRootKeyId: NEW }),
      node("b", { certificate: renewed, heldIssuerKeyId: NEW }),
    ];
    const view = rotationViewOf(cluster(RotationPhase.ROTATION_PHASE_TRUST), nodes);
    expect(view).to.include({ phase: "trust", renewed: 2, trusted: 1, total: 2 });
    expect(view?.pending).to.deep.equal([
      { id: "b", reason: "renewed; has not confirmed the new root as its only trust anchor yet" },
    ]);
    expect(
      rotationViewOf({ ...cluster(RotationPhase.ROTATION_PHASE_RENEW), rotation: undefined }, nodes),
    ).to.equal(undefined);
  });
});
