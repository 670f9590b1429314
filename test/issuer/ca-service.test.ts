// The CA service end to end in one process: real gRPC over loopback TLS, a real
// one-member Raft log on disk, the NodeAuthorizer in front, and the node-side client.
// Every refusal is checked for its reason code and for leaving the replicated state
// byte-identical.
import { X509Certificate } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { expect } from "chai";
import { pino } from "pino";
import {
  CaError,
  checkNodeCsr,
  createNodeCsr,
  formatJoinToken,
  generateJoinSecret,
  nodeIdProblem,
  parseNodeCertificate,
  RootCA,
  TlsCredentialHolder,
} from "../../src/ca/index.js";
import { joinSecretSha256, proposeCommand } from "../../src/fsm/index.js";
import {
  IssuanceState,
  NodeCAServiceClient,
  type NodeCertificateStatusResponse,
} from "../../src/gen/ca/v1/ca.js";
import { Role } from "../../src/gen/fsm/v1/state.js";
import {
  IssuerCallError,
  type JoinedNode,
  joinCluster,
  newNodeId,
  renewCertificate,
} from "../../src/issuer/index.js";
import { silentLogger } from "../../src/log/logger.js";
import { opensslVerify, TempDir, waitFor } from "../ca/helpers.js";
import { type CaServer, startCaCluster, startCaServer } from "./fixture.js";

const ISSUE = "/ca.v1.NodeCAService/IssueNodeCertificate";
const GET_ROOT = "/ca.v1.NodeCAService/GetRootCACertificate";

/** A fresh key's CSR as DER (the PEM body is the DER in base64), and the key it proves. */
function csrDer(): { der: Uint8Array; privateKeyPem: string } {
  const { csrPem, privateKeyPem } = createNodeCsr();
  const base64 = csrPem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  return { der: new Uint8Array(Buffer.from(base64, "base64")), privateKeyPem };
}

async function refusal(promise: Promise<unknown>): Promise<{ code: string; error: unknown }> {
  try {
    await promise;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    return { code: typeof code === "string" ? code : String(code), error };
  }
  expect.fail("expected a refusal");
}

/** The refusal's code, and the replicated state byte-identical before and after. */
async function expectRefusedUnchanged(
  ca: CaServer,
  attempt: () => Promise<unknown>,
  code: string,
): Promise<unknown> {
  const before = ca.snapshot();
  const nodes = ca.state.nodes().length;
  const result = await refusal(attempt());
  expect(result.code, String(result.error)).to.equal(code);
  expect(ca.snapshot().equals(before), "replicated state unchanged by the refusal").to.equal(true);
  expect(ca.state.nodes()).to.have.length(nodes);
  return result.error;
}

function credentialsOf(ca: CaServer, node: JoinedNode, privateKeyPem: string): grpc.ChannelCredentials {
  const holder = new TlsCredentialHolder({
    identity: { privateKeyPem, certificateChainPem: node.certificateChainPem },
    trustBundlePem: node.trustBundlePem,
    logger: silentLogger(),
  });
  return holder.channelCredentials({ clusterId: ca.clusterId, expectedServerRole: "manager" });
}

async function join(ca: CaServer, role: "worker" | "manager") {
  const { der, privateKeyPem } = csrDer();
  const node = await joinCluster({
    managerAddress: ca.address,
    token: ca.token(role),
    csrDer: der,
    // A manager serves: it joins with the address it listens on.
    address: role === "manager" ? "127.0.0.1:7000" : undefined,
    timeoutMs: 10_000,
  });
  return { node, privateKeyPem };
}

describe("issuer: the CA service (gRPC over loopback TLS, one-member Raft on disk)", function () {
  this.timeout(20_000);
  let ca: CaServer;
  let dir: TempDir;

  beforeEach(async () => {
    ca = await startCaServer();
    dir = await TempDir.create();
  });
  afterEach(async () => {
    await ca.close();
    await dir.remove();
  });

  it("a worker and a manager join with their tokens: profile subject and SANs, openssl -x509_strict accepts, recorded in the log", async () => {
    for (const role of ["worker", "manager"] as const) {
      const { node } = await join(ca, role);
      expect(node.nodeId).to.match(/^[0-9a-z]{25}$/);
      expect(nodeIdProblem(node.nodeId)).to.equal(undefined);
      expect(node.role).to.equal(role);
      expect(node.clusterId).to.equal(ca.clusterId);
      const leaf = new X509Certificate(node.certificateChainPem);
      expect(leaf.subject.split("\n")).to.deep.equal([
        `O=${ca.clusterId}`,
        `OU=${role}`,
        `CN=${node.nodeId}`,
      ]);
      expect(leaf.subjectAltName).to.equal(`DNS:${node.nodeId}, DNS:${role}`);
      const verified = await opensslVerify(dir, {
        trusted: node.trustBundlePem,
        leaf: node.certificateChainPem,
      });
      expect(verified.code, verified.stderr).to.equal(0);
      expect(verified.stdout).to.contain("OK");
      // Handed out from the replicated state: the recorded DER is the certificate.
      const recorded = ca.state.node(node.nodeId);
      expect(recorded?.role).to.equal(role === "manager" ? Role.ROLE_MANAGER : Role.ROLE_WORKER);
      expect(Buffer.from(recorded?.certificate?.der ?? []).equals(leaf.raw)).to.equal(true);
      expect(recorded?.certificate?.serial).to.equal(parseNodeCertificate(leaf.raw).serialNumber);
    }
    expect(ca.issuer.stats().issued).to.equal(2);
  });

  it("renewal over mTLS issues the node's desired role, so a promotion takes effect by renewal", async () => {
    const { node, privateKeyPem } = await join(ca, "worker");
    const credentials = credentialsOf(ca, node, privateKeyPem);
    const renewed = await renewCertificate({ managerAddress: ca.address, credentials, csrDer: csrDer().der });
    expect(renewed.role).to.equal("worker");
    await proposeCommand(ca.raft, {
      $case: "setDesiredRole",
      value: { nodeId: node.nodeId, desiredRole: Role.ROLE_MANAGER },
    });
    const promoted = await renewCertificate({
      managerAddress: ca.address,
      credentials,
      csrDer: csrDer().der,
    });
    expect(promoted.role).to.equal("manager");
    const leaf = new X509Certificate(promoted.certificateChainPem);
    expect(leaf.subject).to.contain("OU=manager");
    expect(leaf.subject).to.contain(`CN=${node.nodeId}`);
    expect(ca.state.node(node.nodeId)?.role).to.equal(Role.ROLE_MANAGER);
    expect(ca.state.node(node.nodeId)?.certificate?.serial).to.equal(
      parseNodeCertificate(leaf.raw).serialNumber,
    );
  });

  it("refuses a manager token without the address the manager will serve on (ADDRESS_INVALID), recording nothing", async () => {
    const refusal = await expectRefusedUnchanged(
      ca,
      () => joinCluster({ managerAddress: ca.address, token: ca.token("manager"), csrDer: csrDer().der }),
      "ADDRESS_INVALID",
    );
    const message = (refusal as Error).message;
    expect(message).to.contain("--listen HOST:PORT");
    expect(message, "the code is not repeated in the message").to.not.contain("ADDRESS_INVALID");
  });

  it("refuses a wrong token (TOKEN_INVALID) and a malformed one before sending anything", async () => {
    const wrong = formatJoinToken(ca.root.certificateDer, generateJoinSecret());
    await expectRefusedUnchanged(
      ca,
      () => joinCluster({ managerAddress: ca.address, token: wrong, csrDer: csrDer().der }),
      "TOKEN_INVALID",
    );
    const calls = ca.calls.length;
    await expectRefusedUnchanged(
      ca,
      () => joinCluster({ managerAddress: ca.address, token: "SWMTKN-1-nope", csrDer: csrDer().der }),
      "TOKEN_INVALID",
    );
    expect(ca.calls.length, "a malformed token never leaves the node").to.equal(calls);
  });

  it("a rotated token stops admitting at once (TOKEN_ROTATED); the new one works", async () => {
    const old = ca.token("worker");
    await proposeCommand(ca.raft, {
      $case: "rotateJoinToken",
      value: { role: Role.ROLE_WORKER, secret: generateJoinSecret() },
    });
    const error = await expectRefusedUnchanged(
      ca,
      () => joinCluster({ managerAddress: ca.address, token: old, csrDer: csrDer().der }),
      "TOKEN_ROTATED",
    );
    expect((error as IssuerCallError).grpcStatus).to.equal(grpc.status.UNAUTHENTICATED);
    expect((await join(ca, "worker")).node.role).to.equal("worker");
  });

  it("a token rotated after the check but before the commit is refused by apply (TOKEN_ROTATED)", async () => {
    ca.log.close(); // the issuance waits at the log's door, its token already checked
    const pending = joinCluster({
      managerAddress: ca.address,
      token: ca.token("worker"),
      csrDer: csrDer().der,
    });
    await waitFor("the issuance to reach the log", () => ca.log.waiting === 1);
    // The rotation goes through the runtime directly, ahead of the held issuance.
    await proposeCommand(ca.raft, {
      $case: "rotateJoinToken",
      value: { role: Role.ROLE_WORKER, secret: generateJoinSecret() },
    });
    const before = ca.snapshot();
    ca.log.release();
    const { code } = await refusal(pending);
    expect(code).to.equal("TOKEN_ROTATED");
    expect(ca.snapshot().equals(before)).to.equal(true);
  });

  it("a join whose answer is lost (PROPOSAL_TIMEOUT) is found on the status stream, not joined twice", async () => {
    ca.log.loseAnswers(1);
    const nodes = ca.state.nodes().length;
    const { node } = await join(ca, "worker");
    expect(ca.state.nodes()).to.have.length(nodes + 1);
    expect(ca.state.node(node.nodeId)).to.not.equal(undefined);
    expect(ca.issuer.stats().issued).to.equal(0); // this manager never saw the answer
  });

  it("a token naming another root: the joining node refuses before any CSR is sent (ROOT_DIGEST_MISMATCH)", async () => {
    const other = RootCA.create({ clusterId: "another-cluster" });
    const foreign = formatJoinToken(other.certificateDer, ca.state.cluster()?.joinTokenSecrets?.worker ?? "");
    ca.calls.length = 0;
    const error = await expectRefusedUnchanged(
      ca,
      () => joinCluster({ managerAddress: ca.address, token: foreign, csrDer: csrDer().der }),
      "ROOT_DIGEST_MISMATCH",
    );
    expect(error).to.be.instanceOf(CaError);
    expect(ca.calls, "only the root was fetched").to.deep.equal([GET_ROOT]);
    expect(ca.calls).to.not.include(ISSUE);
    // The manager refuses it too, for a client that skips the check.
    const client = rawClient(ca);
    try {
      await expectRefusedUnchanged(
        ca,
        () => rawIssue(client, { token: foreign, csrDer: csrDer().der, address: "" }),
        "ROOT_DIGEST_MISMATCH",
      );
    } finally {
      client.close();
    }
  });

  it("refuses a malformed CSR (CSR_INVALID)", async () => {
    await expectRefusedUnchanged(
      ca,
      () =>
        joinCluster({
          managerAddress: ca.address,
          token: ca.token("worker"),
          csrDer: new Uint8Array([0x30, 3, 1, 2, 3]),
        }),
      "CSR_INVALID",
    );
    const { der } = csrDer();
    const tampered = new Uint8Array(der);
    tampered[tampered.length - 5] = (tampered[tampered.length - 5] ?? 0) ^ 0xff; // breaks the self-signature
    await expectRefusedUnchanged(
      ca,
      () => joinCluster({ managerAddress: ca.address, token: ca.token("worker"), csrDer: tampered }),
      "CSR_INVALID",
    );
  });

  it("a removed node can neither renew (NODE_REMOVED) nor fetch its certificate again", async () => {
    const { node, privateKeyPem } = await join(ca, "worker");
    await proposeCommand(ca.raft, {
      $case: "removeNode",
      value: { nodeId: node.nodeId, force: false, atMs: Date.now() },
    });
    const credentials = credentialsOf(ca, node, privateKeyPem);
    await expectRefusedUnchanged(
      ca,
      () => renewCertificate({ managerAddress: ca.address, credentials, csrDer: csrDer().der }),
      "NODE_REMOVED",
    );
    const client = rawClient(ca);
    try {
      const messages = await statusMessages(client, node.nodeId);
      expect(messages.map((m) => [m.state, m.reasonCode])).to.deep.equal([
        [IssuanceState.ISSUANCE_STATE_REFUSED, "NODE_REMOVED"],
      ]);
    } finally {
      client.close();
    }
  });

  it("renewal: a certificate of this cluster for a node not on record gets NODE_NOT_FOUND", async () => {
    const { csrPem, privateKeyPem } = createNodeCsr();
    const stranger = ca.root.issueNodeCertificate({
      csr: checkNodeCsr(csrPem),
      role: "worker",
      nodeId: newNodeId(),
    });
    const credentials = credentialsOf(
      ca,
      {
        nodeId: "",
        role: "worker",
        clusterId: ca.clusterId,
        certificateChainPem: stranger.chainPem,
        trustBundlePem: ca.root.certificatePem,
        managerNodeId: "",
      },
      privateKeyPem,
    );
    await expectRefusedUnchanged(
      ca,
      () => renewCertificate({ managerAddress: ca.address, credentials, csrDer: csrDer().der }),
      "NODE_NOT_FOUND",
    );
  });

  it("renewal: a node removed after its checks but before its entry commits is refused by apply", async () => {
    const { node, privateKeyPem } = await join(ca, "worker");
    const credentials = credentialsOf(ca, node, privateKeyPem);
    ca.log.close();
    const pending = renewCertificate({ managerAddress: ca.address, credentials, csrDer: csrDer().der });
    await waitFor("the renewal to reach the log", () => ca.log.waiting === 1);
    await proposeCommand(ca.raft, {
      $case: "removeNode",
      value: { nodeId: node.nodeId, force: false, atMs: Date.now() },
    });
    const before = ca.snapshot();
    ca.log.release();
    expect((await refusal(pending)).code).to.equal("NODE_REMOVED");
    expect(ca.snapshot().equals(before)).to.equal(true);
  });

  it("the status stream waits while the issuance is not applied here, then serves it from the replicated state", async () => {
    const client = rawClient(ca);
    try {
      const nodeId = newNodeId();
      const stream = statusMessages(client, nodeId);
      await waitFor("the stream to wait", () => ca.issuer.stats().statusWaiters === 1);
      // Recorded by another manager's issuance, as far as this one knows: it arrives through the log.
      const root = ca.root;
      const { csrPem } = createNodeCsr();
      const issued = root.issueNodeCertificate({ csr: checkNodeCsr(csrPem), role: "worker", nodeId });
      await proposeCommand(ca.raft, {
        $case: "recordIssuance",
        value: {
          nodeId,
          role: Role.ROLE_WORKER,
          join: true,
          joinSecretSha256: joinSecretSha256(ca.state.cluster()?.joinTokenSecrets?.worker ?? ""),
          address: "",
          atMs: Date.now(),
          certificate: {
            serial: issued.serialNumber,
            notAfterMs: issued.notAfter.getTime(),
            issuerKeyId: issued.issuerKeyId,
            der: new Uint8Array(new X509Certificate(issued.certificatePem).raw),
          },
        },
      });
      const messages = await stream;
      expect(messages.map((m) => m.state)).to.deep.equal([
        IssuanceState.ISSUANCE_STATE_PENDING,
        IssuanceState.ISSUANCE_STATE_ISSUED,
      ]);
      expect(new TextDecoder().decode(messages[1]?.certificateChainPem)).to.equal(issued.chainPem);
      expect(ca.issuer.stats().statusWaiters).to.equal(0);
    } finally {
      client.close();
    }
  });
});

describe("issuer: every manager serves (three managers, one log)", function () {
  this.timeout(20_000);

  it("a follower signs and records a join; another follower serves the certificate from its replicated state", async () => {
    const cluster = await startCaCluster(3);
    try {
      const followers = cluster.managers.filter((m) => !m.raft.leadership().isSelf);
      expect(followers).to.have.length(2);
      const [signer, other] = followers as [CaServer, CaServer];
      const { node } = await join(signer, "worker");
      expect(signer.issuer.stats().issued).to.equal(1);
      const client = rawClient(other);
      try {
        const messages = await statusMessages(client, node.nodeId);
        const last = messages.at(-1);
        expect(last?.state).to.equal(IssuanceState.ISSUANCE_STATE_ISSUED);
        expect(new TextDecoder().decode(last?.certificateChainPem)).to.equal(node.certificateChainPem);
      } finally {
        client.close();
      }
      await waitFor("every manager to apply the join", () =>
        cluster.managers.every((m) => m.state.node(node.nodeId) !== undefined),
      );
      const [first, ...rest] = cluster.managers.map((m) => m.snapshot());
      for (const snapshot of rest) expect(snapshot.equals(first!)).to.equal(true);
    } finally {
      await cluster.close();
    }
  });
});

describe("issuer: bounded CSRs in flight", function () {
  this.timeout(20_000);

  it("a burst queues up to the bound, the rest get RESOURCE_EXHAUSTED with a retry hint; the queued ones are issued", async () => {
    const ca = await startCaServer({ limits: { maxInFlight: 2, maxQueued: 3 } });
    try {
      const before = ca.snapshot();
      ca.log.close(); // issuances in flight stay in flight until released
      const burst = Array.from({ length: 8 }, () =>
        joinCluster({ managerAddress: ca.address, token: ca.token("worker"), csrDer: csrDer().der }).then(
          (node) => ({ node }),
          (error: unknown) => ({ error }),
        ),
      );
      await waitFor("2 in flight, 3 queued, 3 refused", () => {
        const s = ca.issuer.stats();
        return s.inFlight === 2 && s.queued === 3 && s.refusedOverloaded === 3;
      });
      expect(ca.snapshot().equals(before), "nothing recorded while held").to.equal(true);
      ca.log.release();
      const outcomes = await Promise.all(burst);
      const refused = outcomes.flatMap((o) => ("error" in o ? [o.error as IssuerCallError] : []));
      expect(refused).to.have.length(3);
      for (const error of refused) {
        expect(error).to.be.instanceOf(IssuerCallError);
        expect(error.code).to.equal("OVERLOADED");
        expect(error.grpcStatus).to.equal(grpc.status.RESOURCE_EXHAUSTED);
        expect(error.retryAfterMs).to.be.a("number").and.to.be.greaterThan(0);
      }
      expect(outcomes.filter((o) => "node" in o)).to.have.length(5);
      expect(ca.state.nodes()).to.have.length(1 + 5);
      expect(ca.issuer.stats()).to.include({ inFlight: 0, queued: 0 });
    } finally {
      await ca.close();
    }
  });

  it("a status stream for a node nobody joined waits its bound, then ends with NODE_NOT_FOUND", async () => {
    const ca = await startCaServer({ statusWaitMs: 200 });
    const client = rawClient(ca);
    try {
      const messages: NodeCertificateStatusResponse[] = [];
      const error = await new Promise<grpc.ServiceError>((resolve, reject) => {
        const stream = client.nodeCertificateStatus(
          { nodeId: newNodeId() },
          { deadline: Date.now() + 5_000 },
        );
        stream.on("data", (m: NodeCertificateStatusResponse) => messages.push(m));
        stream.on("error", resolve);
        stream.on("end", () => reject(new Error("the stream ended without an error")));
      });
      expect(messages.map((m) => m.state)).to.deep.equal([IssuanceState.ISSUANCE_STATE_PENDING]);
      expect(error.code).to.equal(grpc.status.NOT_FOUND);
      expect(IssuerCallError.from(error).code).to.equal("NODE_NOT_FOUND");
      expect(ca.issuer.stats().statusWaiters).to.equal(0);
      // Nothing to wait for on a name that cannot be a node id.
      const invalid = await refusal(
        statusMessages(client, "Not-A-Node-Id").catch((e) => Promise.reject(IssuerCallError.from(e))),
      );
      expect(invalid.code).to.equal("NODE_ID_INVALID");
    } finally {
      client.close();
      await ca.close();
    }
  });

  it("logs each refusal with its code (and never the token)", async () => {
    const lines: string[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(line) });
    const ca = await startCaServer({ logger });
    try {
      const wrong = formatJoinToken(ca.root.certificateDer, generateJoinSecret());
      await expectRefusedUnchanged(
        ca,
        () => joinCluster({ managerAddress: ca.address, token: wrong, csrDer: csrDer().der }),
        "TOKEN_INVALID",
      );
      const entries = lines.map((l) => JSON.parse(l) as { code?: string; method?: string; level: number });
      expect(
        entries.filter((e) => e.code === "TOKEN_INVALID" && e.method === "IssueNodeCertificate"),
      ).to.have.length(1);
      expect(lines.join("\n")).to.not.contain(wrong.split("-")[3]);
    } finally {
      await ca.close();
    }
  });

  it("draws 25-character base36 node ids that are valid node ids and distinct", () => {
    const ids = new Set(Array.from({ length: 2000 }, () => newNodeId()));
    expect(ids.size).to.equal(2000);
    for (const id of ids) {
      expect(id).to.match(/^[0-9a-z]{25}$/);
      expect(nodeIdProblem(id)).to.equal(undefined);
    }
  });
});

function rawClient(ca: CaServer): NodeCAServiceClient {
  const credentials = grpc.credentials.createSsl(Buffer.from(ca.root.certificatePem), null, null, {
    checkServerIdentity: () => undefined,
  });
  return new NodeCAServiceClient(ca.address, credentials, { "grpc.ssl_target_name_override": "manager" });
}

function rawIssue(
  client: NodeCAServiceClient,
  request: { token: string; csrDer: Uint8Array; address: string },
): Promise<unknown> {
  return new Promise((resolve, reject) =>
    client.issueNodeCertificate(request, (error, response) =>
      error ? reject(IssuerCallError.from(error)) : resolve(response),
    ),
  );
}

function statusMessages(
  client: NodeCAServiceClient,
  nodeId: string,
): Promise<NodeCertificateStatusResponse[]> {
  return new Promise((resolve, reject) => {
    const messages: NodeCertificateStatusResponse[] = [];
    const stream = client.nodeCertificateStatus({ nodeId }, { deadline: Date.now() + 10_000 });
    stream.on("data", (m: NodeCertificateStatusResponse) => messages.push(m));
    stream.on("error", reject);
    stream.on("end", () => resolve(messages));
  });
}
