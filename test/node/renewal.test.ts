// The renewal loop against a real CA service (one manager, gRPC over loopback mutual
// TLS): a renewal asks the manager holding the node's session over that session's open
// channel, and when that fails it asks the next manager on a channel of its own.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { expect } from "chai";
import { createNodeCsr, TlsCredentialHolder } from "../../src/ca/index.js";
import { joinCluster } from "../../src/issuer/index.js";
import { silentLogger } from "../../src/log/logger.js";
import { RenewalLoop } from "../../src/node/renewal.js";
import { stateDirPaths } from "../../src/node/state-dir.js";
import { TempDir, waitFor } from "../ca/helpers.js";
import { type CaServer, startCaServer } from "../issuer/fixture.js";

const RENEW = "/ca.v1.NodeCAService/RenewNodeCertificate";
/** Nothing listens there: a channel to it never connects. */
const DEAD = "127.0.0.1:1";

describe("node: the renewal loop rides the session's channel, and falls back to a channel of its own", function () {
  this.timeout(20_000);
  let ca: CaServer;
  let dir: TempDir;
  let holder: TlsCredentialHolder;
  const closers: (() => unknown)[] = [];

  beforeEach(async () => {
    ca = await startCaServer();
    dir = await TempDir.create();
    const { privateKeyPem, csrDer } = createNodeCsr();
    const node = await joinCluster({
      managerAddress: ca.address,
      token: ca.token("worker"),
      csrDer,
      timeoutMs: 10_000,
    });
    holder = new TlsCredentialHolder({
      identity: { privateKeyPem, certificateChainPem: node.certificateChainPem },
      trustBundlePem: node.trustBundlePem,
      logger: silentLogger(),
    });
    mkdirSync(join(dir.path, "certificates"), { recursive: true });
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await ca.close();
    await dir.remove();
  });

  /** A channel to the real manager, as the node's session holds one. */
  function sessionChannel(): grpc.ChannelInterface {
    const client = new grpc.Client(
      ca.address,
      holder.channelCredentials({
        clusterId: ca.clusterId,
        expectedServerRole: "manager",
        expectedServerNodeId: ca.nodeId,
      }),
      { "grpc.ssl_target_name_override": "manager" },
    );
    closers.push(() => client.close());
    return client.getChannel();
  }

  function loop(
    managers: { nodeId: string; address: string }[],
    session: () => { managerId: string; channel: grpc.ChannelInterface } | undefined,
  ): RenewalLoop {
    const renewal = new RenewalLoop({
      holder,
      paths: stateDirPaths(dir.path),
      clusterId: ca.clusterId,
      managers: () => managers,
      sessionChannel: session,
      onRenewed: async () => {},
      onRefused: (error) => expect.fail(`refused: ${error.message}`),
      logger: silentLogger(),
      random: () => 0, // no jitter: a failed attempt is retried at once
    });
    closers.push(() => renewal.stop());
    renewal.start();
    return renewal;
  }

  it("asks the session's manager over the session's channel: its own address is never dialled", async () => {
    const channel = sessionChannel();
    // The session's manager is listed at an address nothing listens on: only its channel reaches it.
    const renewal = loop([{ nodeId: ca.nodeId, address: DEAD }], () => ({ managerId: ca.nodeId, channel }));
    const serial = holder.currentIdentity.serialNumber;
    renewal.renewIn(0, "test");
    await waitFor("a renewal", () => renewal.renewals === 1, 10_000);
    expect(holder.currentIdentity.serialNumber).to.not.equal(serial);
    expect(ca.calls.filter((c) => c === RENEW)).to.have.length(1);
    // The borrowed channel is left open for its owner.
    expect(channel.getConnectivityState(false)).to.equal(grpc.connectivityState.READY);
  });

  it("when the session's channel fails, the next manager is asked on a channel of its own", async () => {
    const channel = sessionChannel();
    channel.close(); // the session ended while a renewal was due
    const renewal = loop(
      [
        { nodeId: "m-gone", address: DEAD },
        { nodeId: ca.nodeId, address: ca.address },
      ],
      () => ({ managerId: "m-gone", channel }),
    );
    renewal.renewIn(0, "test");
    await waitFor("a renewal through the second manager", () => renewal.renewals === 1, 10_000);
    expect(ca.calls.filter((c) => c === RENEW)).to.have.length(1);
  });
});
