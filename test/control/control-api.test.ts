// The control API end to end in one process: ControlEndpoint (grpc-js on a unix
// socket) answering nodectl's own HTTP/2 client, over a ClusterState behind a log that
// applies at once. Process-level behaviour (ReadIndex on a real RaftNode, the daemon)
// is in test/node/manager.test.ts.
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { generateJoinSecret, parseJoinToken, RootCA, rootCertificateDigest } from "../../src/ca/index.js";
import { ControlCallError, ControlConnection } from "../../src/control/client.js";
import { ControlApi, ControlEndpoint, ControlError } from "../../src/control/index.js";
import { ClusterState, encodeCommand } from "../../src/fsm/index.js";
import { NodeStatus, RaftMembership, Role } from "../../src/gen/fsm/v1/state.js";
import { silentLogger } from "../../src/log/logger.js";
import type { Leadership, RaftService } from "../../src/raft/runtime/seam.js";

const WORKER_SECRET = generateJoinSecret();
const MANAGER_SECRET = generateJoinSecret();

/** One member that applies each command at once and leads as raft id 1. */
function applyingRaft(state: ClusterState): RaftService & { proposals: number } {
  let index = 0;
  const leadership: Leadership = { leader: 1, term: 2, isSelf: true };
  return {
    proposals: 0,
    async propose(command) {
      this.proposals++;
      index++;
      return { index, result: state.apply(index, command) };
    },
    async read(fn) {
      return fn();
    },
    leadership: () => leadership,
    onLeadershipChange: () => () => undefined,
  };
}

function createCluster(state: ClusterState, root: RootCA): void {
  state.apply(
    1,
    encodeCommand({
      $case: "createCluster",
      value: {
        cluster: {
          id: "c1",
          root: { certPem: Buffer.from(root.certificatePem), keyPem: Buffer.from("k"), keyId: root.keyId },
          rotation: undefined,
          joinTokenSecrets: { worker: WORKER_SECRET, manager: MANAGER_SECRET, rotatedSha256: [] },
          nodeCertLifetimeS: 3600,
          renewalGraceS: 0,
          createdAtMs: 1_000,
          nextRaftId: 0,
        },
        firstNode: {
          id: "alpha",
          role: Role.ROLE_MANAGER,
          desiredRole: Role.ROLE_MANAGER,
          raftId: 1,
          membership: RaftMembership.RAFT_MEMBERSHIP_VOTER,
          status: NodeStatus.NODE_STATUS_READY,
          statusChangedAtMs: 1_000,
          address: "127.0.0.1:4242",
          certificate: {
            serial: "0abc",
            notAfterMs: 3_601_000,
            issuerKeyId: root.keyId,
            der: new Uint8Array(),
          },
          session: undefined,
          joinedAtMs: 1_000,
          earlierCertificates: [],
          trustedRootKeyId: "",
          heldIssuerKeyId: "",
        },
      },
    }),
  );
}

async function refusal(call: Promise<unknown>): Promise<ControlCallError> {
  const outcome = await call.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(outcome).to.be.instanceOf(ControlCallError);
  return outcome as ControlCallError;
}

describe("control API over control.sock", function () {
  this.timeout(20_000);
  const dir = mkdtempSync(join(tmpdir(), "control-api-"));
  const socket = join(dir, "control.sock");
  const state = new ClusterState();
  const raft = applyingRaft(state);
  const root = RootCA.create({ clusterId: "c1" });
  let endpoint: ControlEndpoint | undefined;

  before(async () => {
    // A stale socket, as a manager killed with -9 leaves it: bound, never unlinked.
    execFileSync("python3", [
      "-c",
      `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(socket)})`,
    ]);
    expect(statSync(socket).isSocket()).to.equal(true);
    endpoint = new ControlEndpoint(
      socket,
      new ControlApi({ raft, state, logger: silentLogger() }),
      silentLogger(),
    );
    await endpoint.start();
  });

  after(async () => {
    await endpoint?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("replaces a stale socket and serves on mode 0600", () => {
    expect(statSync(socket).mode & 0o777).to.equal(0o600);
  });

  it("refuses reads before the cluster exists (CLUSTER_NOT_READY), then lists it", async () => {
    const c = ControlConnection.open(dir);
    const early = await refusal(c.listNodes());
    expect(early.code).to.equal("CLUSTER_NOT_READY");
    expect(early.message).to.contain("retry");
    createCluster(state, root);
    const nodes = await c.listNodes();
    expect(nodes.map((n) => [n.id, n.role, n.status, n.leader, n.raftId, n.membership])).to.deep.equal([
      ["alpha", "manager", "ready", true, 1, "voter"],
    ]);
    expect(nodes[0]?.certificate).to.deep.equal({
      serial: "0abc",
      notAfterMs: 3_601_000,
      issuerKeyId: root.keyId,
    });
    expect(nodes[0]?.session).to.equal(undefined);
  });

  it("returns join tokens for the root, rotates one through the log, and reads the new one back", async () => {
    const c = ControlConnection.open(dir);
    const worker = await c.getJoinToken("worker", false);
    expect(worker.managerAddresses).to.deep.equal(["127.0.0.1:4242"]);
    expect(parseJoinToken(worker.token)).to.deep.equal({
      rootDigest: rootCertificateDigest(root.certificateDer),
      secret: WORKER_SECRET,
    });
    const before = raft.proposals;
    const rotated = await c.getJoinToken("worker", true);
    expect(raft.proposals).to.equal(before + 1);
    expect(parseJoinToken(rotated.token).secret).not.to.equal(WORKER_SECRET);
    expect((await c.getJoinToken("worker", false)).token).to.equal(rotated.token);
    expect(parseJoinToken((await c.getJoinToken("manager", false)).token).secret).to.equal(MANAGER_SECRET);
  });

  it("refuses an unknown role or node with a stable code, proposing nothing", async () => {
    const c = ControlConnection.open(dir);
    const before = raft.proposals;
    expect((await refusal(c.getJoinToken("admin", true))).code).to.equal("INVALID_ARGUMENT");
    const missing = await refusal(c.inspectNode("nobody"));
    expect(missing.code).to.equal("NODE_NOT_FOUND");
    expect(missing.message).to.contain("nodectl ls");
    expect(raft.proposals).to.equal(before);
  });

  it("ca status names the root", async () => {
    const status = await ControlConnection.open(dir).caStatus();
    expect(status).to.deep.include({
      clusterId: "c1",
      rootKeyId: root.keyId,
      rootDigest: rootCertificateDigest(root.certificateDer),
      rootNotAfterMs: new Date(new X509Certificate(root.certificatePem).validTo).getTime(),
      nodeCertLifetimeS: 3600,
      rotation: undefined,
    });
  });

  it("a state dir with no socket is refused at once; a file in the socket's place is refused at start", async () => {
    const empty = mkdtempSync(join(tmpdir(), "control-none-"));
    try {
      expect(() => ControlConnection.open(empty)).to.throw(
        ControlCallError,
        /no node's state in .*running manager/,
      );
      // A manager's dir whose daemon is not running: start it.
      writeFileSync(join(empty, "node.json"), JSON.stringify({ role: "manager" }));
      expect(() => ControlConnection.open(empty)).to.throw(ControlCallError, /nodectl run --state-dir/);
      const blocker = join(empty, "control.sock");
      writeFileSync(blocker, "not a socket");
      const blocked = new ControlEndpoint(
        blocker,
        new ControlApi({ raft, state, logger: silentLogger() }),
        silentLogger(),
      );
      const err = await blocked.start().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(ControlError);
      expect((err as ControlError).code).to.equal("CONTROL_SOCKET_BLOCKED");
      expect(existsSync(blocker)).to.equal(true);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it("stop removes the socket", async () => {
    await endpoint?.stop();
    endpoint = undefined;
    expect(existsSync(socket)).to.equal(false);
  });
});
