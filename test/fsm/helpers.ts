import { expect } from "chai";
import { type ChangeEvent, ClusterState, joinSecretSha256 } from "../../src/fsm/index.js";
import { Command, type CommandResult } from "../../src/gen/fsm/v1/commands.js";
import { type Node, NodeStatus, RaftMembership, Role } from "../../src/gen/fsm/v1/state.js";

export const enc = new TextEncoder();

export function cmd(command: NonNullable<Command["command"]>): Command {
  return { command };
}

export function firstManager(id = "m1"): Node {
  return {
    id,
    role: Role.ROLE_MANAGER,
    desiredRole: Role.ROLE_MANAGER,
    raftId: 1,
    membership: RaftMembership.RAFT_MEMBERSHIP_VOTER,
    status: NodeStatus.NODE_STATUS_READY,
    statusChangedAtMs: 1_000,
    address: "127.0.0.1:4242",
    certificate: { serial: "01", notAfterMs: 86_400_000, issuerKeyId: "aa", der: new Uint8Array() },
    session: undefined,
    joinedAtMs: 1_000,
    earlierCertificates: [],
    trustedRootKeyId: "",
    heldIssuerKeyId: "",
  };
}

export function createCluster(): Command {
  return cmd({
    $case: "createCluster",
    value: {
      cluster: {
        id: "c1",
        root: { certPem: enc.encode("root-cert"), keyPem: enc.encode("root-key"), keyId: "aa" },
        rotation: undefined,
        joinTokenSecrets: { worker: "w-secret", manager: "m-secret", rotatedSha256: [] },
        nodeCertLifetimeS: 86_400,
        renewalGraceS: 7 * 86_400,
        createdAtMs: 1_000,
        nextRaftId: 0,
      },
      firstNode: firstManager(),
    },
  });
}

export function join(nodeId: string, role = Role.ROLE_WORKER, atMs = 2_000): Command {
  return cmd({
    $case: "recordIssuance",
    value: {
      nodeId,
      role,
      join: true,
      address: "",
      atMs,
      certificate: {
        serial: `s-${nodeId}-${atMs}`,
        notAfterMs: atMs + 86_400_000,
        issuerKeyId: "aa",
        der: enc.encode(`der-${nodeId}`),
      },
      joinSecretSha256: joinSecretSha256(role === Role.ROLE_MANAGER ? "m-secret" : "w-secret"),
    },
  });
}

/** Applies in order, with increasing indexes from `start`; returns the results. */
export function applyAll(s: ClusterState, commands: Command[], start = 1): CommandResult[] {
  return commands.map((c, i) => s.applyCommand(start + i, c));
}

export function newState(...commands: Command[]): ClusterState {
  const s = new ClusterState();
  const results = applyAll(s, commands);
  for (const r of results) if (!r.ok) throw new Error(`setup command refused: ${r.code} ${r.message}`);
  return s;
}

export { Command };

/** Applies `command`, which must be refused with `code`, changing no byte and emitting no event. */
export function expectRefused(s: ClusterState, command: Command, code: string): void {
  const before = Buffer.from(s.snapshot());
  const events: ChangeEvent[] = [];
  const unwatch = s.watch((e) => events.push(...e));
  const result = s.applyCommand(100, command);
  unwatch();
  expect(result.ok, result.message).to.equal(false);
  expect(result.code).to.equal(code);
  expect(result.message).to.not.equal("");
  expect(Buffer.from(s.snapshot()).equals(before), "state unchanged by a refusal").to.equal(true);
  expect(events, "no change event for a refusal").to.deep.equal([]);
}

/** A renewal (not a join) of `nodeId` as `role`, signed by `issuerKeyId`, recorded at `atMs`. */
export function renew(nodeId: string, role: Role, atMs: number, issuerKeyId = "aa"): Command {
  return cmd({
    $case: "recordIssuance",
    value: {
      nodeId,
      role,
      join: false,
      address: "",
      atMs,
      joinSecretSha256: "",
      certificate: {
        serial: `r-${nodeId}-${atMs}`,
        notAfterMs: atMs + 60_000,
        issuerKeyId,
        der: new Uint8Array(),
      },
    },
  });
}
