import type * as grpc from "@grpc/grpc-js";
import { expect } from "chai";
import type { NodeIdentity } from "../../src/ca/node-identity.js";
import { RootCA } from "../../src/ca/root-ca.js";
import { CheckedNewRoot } from "../../src/ca/root-import.js";
import { type AuthorizationPolicy, NodeAuthorizer } from "../../src/ca/tls/authorization.js";
import { TlsCredentialHolder } from "../../src/ca/tls/credential-holder.js";
import { silentLogger } from "../../src/log/logger.js";
import {
  callExpectingError,
  callUnary,
  ECHO,
  freshClient,
  issueNode,
  openTicks,
  type RunningServer,
  startEchoServer,
  TICK_PERIOD_MS,
} from "./echo-service.js";
import { waitFor } from "./helpers.js";

const CLUSTER = "cluster-hitless";
const policy: AuthorizationPolicy = {
  [ECHO.whoami]: { roles: ["manager", "worker"] },
  [ECHO.ticks]: { roles: ["manager", "worker"] },
};

/** Watches an open server stream: counts messages, records the longest silence and any error. */
class StreamWatch {
  received = 0;
  maxGapMs = 0;
  error: Error | undefined;
  ended = false;
  private last = Date.now();

  constructor(stream: grpc.ClientReadableStream<Buffer>) {
    stream.on("data", () => {
      const now = Date.now();
      this.maxGapMs = Math.max(this.maxGapMs, now - this.last);
      this.last = now;
      this.received++;
    });
    stream.on("error", (error: Error) => {
      this.error = error;
    });
    stream.on("end", () => {
      this.ended = true;
    });
  }

  /** Waits for `count` more messages and checks the stream has not failed. */
  async flows(count: number): Promise<void> {
    const target = this.received + count;
    await waitFor(`${count} more stream messages`, () => this.received >= target || this.error !== undefined);
    expect(this.error, "the open stream failed").to.equal(undefined);
    expect(this.ended).to.equal(false);
  }
}

describe("ca/tls: hitless rotation of certificates and trust bundles (DESIGN.md Hitless rotation)", () => {
  const rootA = RootCA.create({ clusterId: CLUSTER });
  const checkedB = CheckedNewRoot.generate({ clusterId: CLUSTER });
  const rootB = checkedB.root;
  const rotatingB = rootB.withIntermediates(rootA.crossSignRoot(checkedB));
  const logger = silentLogger();
  const serverHolder = new TlsCredentialHolder({
    identity: issueNode(rootA, "manager", "m-1"),
    trustBundlePem: rootA.certificatePem,
    logger,
  });
  const clientHolder = new TlsCredentialHolder({
    identity: issueNode(rootA, "worker", "w-1"),
    trustBundlePem: rootA.certificatePem,
    logger,
  });
  // A peer that never renews: it keeps its old-root certificate but trusts both roots.
  const stale = new TlsCredentialHolder({
    identity: issueNode(rootA, "worker", "w-stale"),
    trustBundlePem: rootA.certificatePem + rootB.certificatePem,
    logger,
  });
  const staleCredentials = stale.channelCredentials({ clusterId: CLUSTER, expectedServerRole: "manager" });
  const seenServers: NodeIdentity[] = [];
  const clientCredentials = clientHolder.channelCredentials({
    clusterId: CLUSTER,
    expectedServerRole: "manager",
    onServerIdentity: (identity) => seenServers.push(identity),
  });
  let server: RunningServer;
  const clients: grpc.Client[] = [];

  function newConnection(credentials: grpc.ChannelCredentials = clientCredentials): grpc.Client {
    const client = freshClient(server.target, credentials, "manager");
    clients.push(client);
    return client;
  }

  before(async () => {
    const authorizer = new NodeAuthorizer({ clusterId: CLUSTER, policy, isNodeRemoved: () => false, logger });
    server = await startEchoServer(serverHolder.serverCredentials({ requireClientCertificate: true }), [
      authorizer.interceptor(),
    ]);
  });
  after(async () => {
    for (const client of clients) client.close();
    await server.close();
  });

  it("keeps an open stream flowing through a full root rotation while new connections see each change", async () => {
    const streamClient = newConnection();
    const stream = openTicks(streamClient);
    const watch = new StreamWatch(stream);
    await watch.flows(5);
    const firstServerSerial = serverHolder.currentIdentity.serialNumber;
    expect(seenServers.at(-1)?.serialNumber).to.equal(firstServerSerial);

    // Phase 1: trust grows to old + new root on both sides.
    serverHolder.replaceTrustBundle(rootA.certificatePem + rootB.certificatePem);
    clientHolder.replaceTrustBundle(rootA.certificatePem + rootB.certificatePem);
    await watch.flows(3);

    // Phase 2a: the server renews from the new key, served with the cross-signed intermediate.
    const newServer = issueNode(rotatingB, "manager", "m-1");
    serverHolder.replaceIdentity(newServer);
    await watch.flows(3);
    expect(await callUnary(newConnection(), ECHO.whoami)).to.equal(clientHolder.currentIdentity.serialNumber);
    expect(seenServers.at(-1)?.serialNumber).to.equal(newServer.serialNumber);
    expect(seenServers.at(-1)?.issuerKeyId).to.equal(rootB.keyId);

    // Phase 2b: the client renews too; the server sees the new serial on a new connection.
    const newClient = issueNode(rotatingB, "worker", "w-1");
    clientHolder.replaceIdentity(newClient);
    await watch.flows(3);
    expect(await callUnary(newConnection(), ECHO.whoami)).to.equal(newClient.serialNumber);
    // While the server still trusts the old root, a peer that has not renewed yet is served.
    expect(await callUnary(newConnection(staleCredentials), ECHO.whoami)).to.equal(
      stale.currentIdentity.serialNumber,
    );

    // Phase 3: trust shrinks to the new root only; the new-key chains verify directly.
    serverHolder.replaceTrustBundle(rootB.certificatePem);
    clientHolder.replaceTrustBundle(rootB.certificatePem);
    await watch.flows(3);
    expect(await callUnary(newConnection(), ECHO.whoami)).to.equal(newClient.serialNumber);
    expect(seenServers.at(-1)?.serialNumber).to.equal(newServer.serialNumber);

    // The stream that started before any of this is still the same call, uninterrupted.
    await watch.flows(5);
    expect(watch.maxGapMs).to.be.below(TICK_PERIOD_MS * 25);
    stream.cancel();
  });

  it("refuses, on its next handshake, a peer still presenting an old-root chain once the old root is dropped", async () => {
    // Runs after the rotation above: the server now trusts only root B.
    expect(serverHolder.currentTrustBundlePem).to.equal(rootB.certificatePem);
    // The stale peer trusts both roots, so it accepts the server; only the server's refusal can stop it.
    const error = await callExpectingError(newConnection(staleCredentials), ECHO.whoami);
    // Under TLS 1.3 the client only learns that the connection failed (trap 8 in the notes).
    expect(error.code).to.equal(14 /* UNAVAILABLE */);
  });

  it("refuses a server of the wrong role or cluster on the client side", async () => {
    const workerServerHolder = new TlsCredentialHolder({
      identity: issueNode(rootB, "worker", "w-pretender"),
      trustBundlePem: rootB.certificatePem,
      logger,
    });
    const pretender = await startEchoServer(
      workerServerHolder.serverCredentials({ requireClientCertificate: true }),
    );
    try {
      for (const [clusterId, expected] of [
        [CLUSTER, /WRONG_ROLE|role "worker"/],
        ["another-cluster", /cluster/],
      ] as const) {
        const client = freshClient(
          pretender.target,
          clientHolder.channelCredentials({ clusterId, expectedServerRole: "manager" }),
          "manager",
        );
        clients.push(client);
        const error = await callExpectingError(client, ECHO.whoami);
        expect(error.code).to.equal(14 /* UNAVAILABLE */);
        expect(error.details).to.match(expected);
      }
    } finally {
      await pretender.close();
    }
  });

  it("rejects an invalid push and keeps serving the last good credentials", async () => {
    const before = serverHolder.currentIdentity.serialNumber;
    const keyBefore = serverHolder.currentPrivateKey;
    const other = issueNode(rootB, "manager", "m-1");
    const mismatched = {
      privateKeyPem: issueNode(rootB, "manager", "x").privateKeyPem,
      certificateChainPem: other.certificateChainPem,
    };
    expect(() => serverHolder.replaceIdentity(mismatched)).to.throw(/CREDENTIALS|not applied/);
    // A renewal keeps the key: a certificate for another key is refused against the key held.
    expect(() => serverHolder.replaceCertificate(other.certificateChainPem)).to.throw(
      /does not match this node's private key/,
    );
    const foreign = issueNode(RootCA.create({ clusterId: CLUSTER }), "manager", "m-1");
    expect(() => serverHolder.replaceIdentity(foreign)).to.throw(/trusted root/);
    const otherCluster = RootCA.fromPem({
      clusterId: "elsewhere",
      certificatePem: rootB.certificatePem,
      privateKeyPem: rootB.privateKeyPem(),
    });
    expect(() => serverHolder.replaceIdentity(issueNode(otherCluster, "manager", "m-1"))).to.throw(/cluster/);
    // OpenSSL serves the first block it can read ("X509 CERTIFICATE" included) as the leaf; the check must see the same one.
    const unchecked = issueNode(otherCluster, "manager", "m-1");
    const hiddenLeaf = {
      privateKeyPem: unchecked.privateKeyPem,
      certificateChainPem:
        unchecked.certificateChainPem.replaceAll("CERTIFICATE", "X509 CERTIFICATE") +
        other.certificateChainPem,
    };
    expect(() => serverHolder.replaceIdentity(hiddenLeaf)).to.throw(/not applied/);
    expect(() => serverHolder.replaceTrustBundle("not a bundle")).to.throw(/trust bundle/);
    expect(() => serverHolder.replaceTrustBundle(other.certificateChainPem)).to.throw(/not a CA/);
    expect(serverHolder.currentIdentity.serialNumber).to.equal(before);
    // Refused identities with other keys leave the key held (the next renewal's CSR) as it was.
    expect(serverHolder.currentPrivateKey).to.equal(keyBefore);
    expect(serverHolder.currentTrustBundlePem).to.equal(rootB.certificatePem);
    expect(await callUnary(newConnection(), ECHO.whoami)).to.equal(clientHolder.currentIdentity.serialNumber);
    expect(seenServers.at(-1)?.serialNumber).to.equal(before);
  });
});
