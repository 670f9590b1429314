import { TLSSocket } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import { expect } from "chai";
import { RootCA } from "../../src/ca/root-ca.js";
import { type AuthorizationPolicy, NodeAuthorizer, refusalReasonOf } from "../../src/ca/tls/authorization.js";
import { TlsCredentialHolder } from "../../src/ca/tls/credential-holder.js";
import { silentLogger } from "../../src/log/logger.js";
import {
  callExpectingError,
  callUnary,
  ECHO,
  freshClient,
  issueNode,
  type RunningServer,
  startEchoServer,
} from "./echo-service.js";

const CLUSTER = "cluster-auth";

const policy: AuthorizationPolicy = {
  [ECHO.public]: { public: true },
  [ECHO.whoami]: { roles: ["manager", "worker"] },
  [ECHO.ticks]: { roles: ["manager", "worker"] },
  [ECHO.managerOnly]: { roles: ["manager"] },
  // ECHO.unlisted is deliberately absent: closed by default.
};

describe("ca/tls: authorization interceptor (DESIGN.md Authorization)", () => {
  const root = RootCA.create({ clusterId: CLUSTER });
  // Same root, other cluster id: the TLS layer trusts it, only the O check can refuse it.
  const otherClusterCa = RootCA.fromPem({
    clusterId: "cluster-other",
    certificatePem: root.certificatePem,
    privateKeyPem: root.privateKeyPem(),
  });
  const serverHolder = new TlsCredentialHolder({
    identity: issueNode(root, "manager", "m-server"),
    trustBundlePem: root.certificatePem,
    logger: silentLogger(),
  });
  let clock = new Date();
  const removedLater = new Set<string>();
  const refusals: string[] = [];
  const authorizer = new NodeAuthorizer({
    clusterId: CLUSTER,
    policy,
    isNodeRemoved: (nodeId) => nodeId === "w-removed" || removedLater.has(nodeId),
    logger: silentLogger(),
    now: () => clock,
    onRefusal: (code) => refusals.push(code),
  });
  let server: RunningServer;
  const clients: grpc.Client[] = [];

  function clientFor(identity: ReturnType<typeof issueNode>, clusterId = CLUSTER): grpc.Client {
    const holder = new TlsCredentialHolder({
      identity,
      trustBundlePem: root.certificatePem,
      logger: silentLogger(),
    });
    const client = freshClient(
      server.target,
      holder.channelCredentials({ clusterId, expectedServerRole: "manager" }),
      "manager",
    );
    clients.push(client);
    return client;
  }

  before(async () => {
    server = await startEchoServer(serverHolder.serverCredentials({ requireClientCertificate: false }), [
      authorizer.interceptor(),
    ]);
  });
  beforeEach(() => {
    clock = new Date();
  });
  after(async () => {
    for (const client of clients) client.close();
    await server.close();
  });

  async function expectRefused(
    client: grpc.Client,
    path: string,
    status: grpc.status,
    reason: string,
  ): Promise<void> {
    const error = await callExpectingError(client, path);
    expect(error.code, error.details).to.equal(status);
    expect(error.details).to.match(new RegExp(`^${reason}: `));
    expect(refusalReasonOf(error)).to.equal(reason);
  }

  it("lets a worker of this cluster call worker methods, and a manager call manager methods", async () => {
    const worker = issueNode(root, "worker", "w-1");
    expect(await callUnary(clientFor(worker), ECHO.whoami)).to.equal(worker.serialNumber);
    const manager = issueNode(root, "manager", "m-1");
    expect(await callUnary(clientFor(manager), ECHO.managerOnly)).to.equal(manager.serialNumber);
  });

  it("refuses a call without a client certificate (UNAUTHENTICATED, CERT_MISSING) but serves public methods", async () => {
    const anonymous = freshClient(
      server.target,
      grpc.credentials.createSsl(Buffer.from(root.certificatePem), null, null, {
        checkServerIdentity: () => undefined,
      }),
      "manager",
    );
    clients.push(anonymous);
    expect(await callUnary(anonymous, ECHO.public)).to.equal("public");
    await expectRefused(anonymous, ECHO.whoami, grpc.status.UNAUTHENTICATED, "CERT_MISSING");
  });

  it("refuses a certificate from another root as not trusted (UNAUTHENTICATED)", async () => {
    const foreign = RootCA.create({ clusterId: CLUSTER });
    const identity = issueNode(foreign, "manager", "m-foreign");
    // The client trusts our root (to accept the server) but presents a foreign-root certificate.
    const holder = new TlsCredentialHolder({
      identity,
      trustBundlePem: foreign.certificatePem + root.certificatePem,
      logger: silentLogger(),
    });
    const client = freshClient(
      server.target,
      holder.channelCredentials({ clusterId: CLUSTER, expectedServerRole: "manager" }),
      "manager",
    );
    clients.push(client);
    await expectRefused(client, ECHO.whoami, grpc.status.UNAUTHENTICATED, "CERT_MISSING");
  });

  it("trusts only the roots it checked, not one hidden in the bundle under another PEM label", async () => {
    const foreign = RootCA.create({ clusterId: CLUSTER });
    // OpenSSL reads "X509 CERTIFICATE" blocks as trusted roots; our bundle check must see what OpenSSL sees.
    const hidden = foreign.certificatePem.replaceAll("CERTIFICATE", "X509 CERTIFICATE");
    serverHolder.replaceTrustBundle(root.certificatePem + hidden);
    try {
      expect(serverHolder.currentTrustBundlePem).to.equal(root.certificatePem);
      const holder = new TlsCredentialHolder({
        identity: issueNode(foreign, "manager", "m-hidden-root"),
        trustBundlePem: foreign.certificatePem + root.certificatePem,
        logger: silentLogger(),
      });
      const client = freshClient(
        server.target,
        holder.channelCredentials({ clusterId: CLUSTER, expectedServerRole: "manager" }),
        "manager",
      );
      clients.push(client);
      await expectRefused(client, ECHO.whoami, grpc.status.UNAUTHENTICATED, "CERT_MISSING");
    } finally {
      serverHolder.replaceTrustBundle(root.certificatePem);
    }
  });

  it("refuses another cluster's certificate (PERMISSION_DENIED, WRONG_CLUSTER)", async () => {
    const client = clientFor(issueNode(otherClusterCa, "manager", "m-x"));
    await expectRefused(client, ECHO.whoami, grpc.status.PERMISSION_DENIED, "WRONG_CLUSTER");
  });

  it("refuses a worker calling a manager method (PERMISSION_DENIED, WRONG_ROLE)", async () => {
    const client = clientFor(issueNode(root, "worker", "w-2"));
    await expectRefused(client, ECHO.managerOnly, grpc.status.PERMISSION_DENIED, "WRONG_ROLE");
  });

  it("refuses a removed node at once, even with a valid certificate (PERMISSION_DENIED, NODE_REMOVED)", async () => {
    const client = clientFor(issueNode(root, "worker", "w-removed"));
    await expectRefused(client, ECHO.whoami, grpc.status.PERMISSION_DENIED, "NODE_REMOVED");
  });

  it("refuses a node removed while its connection is open, on the very next call", async () => {
    const client = clientFor(issueNode(root, "worker", "w-live"));
    expect(await callUnary(client, ECHO.whoami)).to.have.length.greaterThan(0);
    removedLater.add("w-live");
    await expectRefused(client, ECHO.whoami, grpc.status.PERMISSION_DENIED, "NODE_REMOVED");
  });

  it("reads a connection's peer certificate once, not on every call (and still checks every call)", async () => {
    const client = clientFor(issueNode(root, "manager", "m-reads"));
    await callUnary(client, ECHO.whoami); // connect
    const original = TLSSocket.prototype.getPeerCertificate;
    let reads = 0;
    TLSSocket.prototype.getPeerCertificate = function (this: TLSSocket, ...args: [boolean?]) {
      reads++;
      return original.apply(this, args as [true]);
    } as typeof original;
    try {
      for (let i = 0; i < 20; i++) await callUnary(client, ECHO.managerOnly);
    } finally {
      TLSSocket.prototype.getPeerCertificate = original;
    }
    // The test service's handler reads it on every call to report the serial; the
    // interceptor must not add a read (if a grpc-js upgrade hides the session, it does).
    expect(reads, "peer certificate reads for 20 calls on one connection").to.equal(20);
  });

  it("refuses a certificate that expired on a connection that outlived it (UNAUTHENTICATED, CERT_EXPIRED)", async () => {
    const client = clientFor(issueNode(root, "worker", "w-3", { lifetimeMs: 60_000 }));
    expect(await callUnary(client, ECHO.whoami)).to.have.length.greaterThan(0);
    clock = new Date(Date.now() + 2 * 60_000);
    await expectRefused(client, ECHO.whoami, grpc.status.UNAUTHENTICATED, "CERT_EXPIRED");
  });

  it("refuses methods missing from the policy (PERMISSION_DENIED, METHOD_NOT_ALLOWED)", async () => {
    const client = clientFor(issueNode(root, "manager", "m-2"));
    await expectRefused(client, ECHO.unlisted, grpc.status.PERMISSION_DENIED, "METHOD_NOT_ALLOWED");
  });

  it("counted every refusal by reason", () => {
    expect(refusals).to.include.members([
      "CERT_MISSING",
      "WRONG_CLUSTER",
      "WRONG_ROLE",
      "NODE_REMOVED",
      "CERT_EXPIRED",
      "METHOD_NOT_ALLOWED",
    ]);
  });
});
