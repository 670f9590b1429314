// Open streams are authorized again when the state they were admitted on changes
// (DESIGN.md "Authorization", issue 10): real gRPC on loopback with mutual TLS, a
// server stream and a bidi stream (the Raft transport's shape) per case, and another
// node's streams that must stay open through every close.
import * as grpc from "@grpc/grpc-js";
import { expect } from "chai";
import { callExpectingError, callUnary, ECHO, type IssuedNode } from "./echo-service.js";
import { waitFor } from "./helpers.js";
import { expectAlive, expectClosed, ReauthFixture, type StreamWatch } from "./reauth-fixture.js";

const HOUR_MS = 60 * 60 * 1000;
const DAY_MS = 24 * HOUR_MS;
const MIN_LIFETIME_MS = 60_000;
// The timer closes at notAfter + 1 ms; this covers delivery to the client on a loaded machine.
const CLOSE_SLACK_MS = 1_500;

async function expectRefused(client: grpc.Client, path: string, status: grpc.status, reason: string) {
  const error = await callExpectingError(client, path);
  expect(error.code, error.details).to.equal(status);
  expect(error.details).to.match(new RegExp(`^${reason}: `));
}

describe("ca/tls: open streams are authorized again when the state changes (DESIGN.md Authorization)", function () {
  this.timeout(20_000);
  let f: ReauthFixture;
  let bystanderIdentity: IssuedNode;
  let bystander: StreamWatch[] = [];

  /**
   * A certificate with `secondsLeft` seconds to live (at second precision), issued as if
   * a minute ago: the CA's minimum lifetime is 1 minute, and a test waits seconds, not minutes.
   */
  function expiringSoon(role: "manager" | "worker", nodeId: string, secondsLeft = 3): IssuedNode {
    const now = new Date(Date.now() - MIN_LIFETIME_MS + secondsLeft * 1000);
    return f.issue(role, nodeId, { lifetimeMs: MIN_LIFETIME_MS, now });
  }

  async function bystanderStaysOpen(): Promise<void> {
    for (const stream of bystander) await expectAlive(stream);
  }

  before(async () => {
    f = await ReauthFixture.start();
    // Lives past the 48 h clock jump below: only the nodes under test lose their streams.
    bystanderIdentity = f.issue("manager", "m-bystander", { lifetimeMs: 7 * DAY_MS });
    const client = f.clientFor(bystanderIdentity);
    bystander = [
      await f.open(client, ECHO.ticks, "the bystander's server stream"),
      await f.open(client, ECHO.chat, "the bystander's bidi stream"),
    ];
  });
  afterEach(async () => {
    f.offsetMs = 0;
    f.cancelStreamsExcept(bystander);
    await waitFor("only the bystander's streams to be tracked", () => f.authorizer.tracking.streams === 2);
  });
  after(async () => {
    await f?.close();
  });

  it("closes a removed node's streams at once on reauthorize (PERMISSION_DENIED, NODE_REMOVED)", async () => {
    const node = f.clientFor(f.issue("manager", "m-removed"));
    const streams = [
      await f.open(node, ECHO.ticks, "the removed node's server stream"),
      await f.open(node, ECHO.chat, "the removed node's bidi stream"),
    ];
    expect(f.authorizer.tracking).to.include({ streams: 4, nodes: 2 });
    const cancelledBefore = f.server.observations.streamsCancelled;
    const refusalsBefore = f.refusals.length;

    f.removed.add("m-removed");
    expect(f.authorizer.reauthorize(["m-removed"]), "streams closed").to.equal(2);

    expect(f.authorizer.tracking).to.include({ streams: 2, nodes: 1 });
    for (const stream of streams)
      await expectClosed(stream, grpc.status.PERMISSION_DENIED, "NODE_REMOVED", 1_000);
    await waitFor(
      "both handlers to see their stream end",
      () => f.server.observations.streamsCancelled === cancelledBefore + 2,
    );
    expect(f.refusals.slice(refusalsBefore)).to.deep.equal(["NODE_REMOVED", "NODE_REMOVED"]);
    expect(f.logLines.filter((line) => line.code === "NODE_REMOVED" && line.openStream)).to.have.length(1);
    await bystanderStaysOpen();
  });

  it("closes a demoted manager's manager-only streams (WRONG_ROLE) and keeps its worker-allowed stream", async () => {
    const node = f.clientFor(f.issue("manager", "m-demoted"));
    const raftLike = await f.open(node, ECHO.chat, "the demoted node's manager-only bidi stream");
    const managerTicks = await f.open(
      node,
      ECHO.managerTicks,
      "the demoted node's manager-only server stream",
    );
    const workerTicks = await f.open(node, ECHO.ticks, "the demoted node's worker-allowed server stream");
    expect(f.authorizer.reauthorize(["m-demoted"]), "closed before the demotion").to.equal(0);

    f.currentRoles.set("m-demoted", "worker");
    expect(f.authorizer.reauthorize(["m-demoted"]), "closed after the demotion").to.equal(2);

    await expectClosed(raftLike, grpc.status.PERMISSION_DENIED, "WRONG_ROLE", 1_000);
    await expectClosed(managerTicks, grpc.status.PERMISSION_DENIED, "WRONG_ROLE", 1_000);
    await expectAlive(workerTicks);
    // New calls are judged on the current role too, on the same connection and certificate.
    await expectRefused(node, ECHO.managerOnly, grpc.status.PERMISSION_DENIED, "WRONG_ROLE");
    expect(await callUnary(node, ECHO.whoami)).to.have.length.greaterThan(0);
    await bystanderStaysOpen();
  });

  it("lets the state narrow a certificate's role, never widen it", async () => {
    const node = f.clientFor(f.issue("worker", "w-promoted-on-record"));
    f.currentRoles.set("w-promoted-on-record", "manager"); // promoted, not yet renewed as manager
    await expectRefused(node, ECHO.managerOnly, grpc.status.PERMISSION_DENIED, "WRONG_ROLE");
    expect(await callUnary(node, ECHO.whoami)).to.have.length.greaterThan(0);
  });

  it("closes the streams of a node with no renewal on record at its certificate's expiry, with no reauthorize call (UNAUTHENTICATED, CERT_EXPIRED)", async () => {
    const identity = expiringSoon("manager", "m-never-renewed");
    const node = f.clientFor(identity);
    const streams = [
      await f.open(node, ECHO.ticks, "the expiring node's server stream"),
      await f.open(node, ECHO.chat, "the expiring node's bidi stream"),
    ];
    expect(f.authorizer.tracking.nextDeadline, "the one timer's deadline").to.deep.equal(identity.notAfter);

    for (const stream of streams) {
      await expectClosed(stream, grpc.status.UNAUTHENTICATED, "CERT_EXPIRED", 5_000);
      expect(Date.now(), "closed after the expiry").to.be.greaterThan(identity.notAfter.getTime());
      expect(Date.now(), "closed at the expiry").to.be.lessThan(identity.notAfter.getTime() + CLOSE_SLACK_MS);
    }
    expect(f.authorizer.tracking.nextDeadline, "re-armed for the next one").to.deep.equal(
      bystanderIdentity.notAfter,
    );
    await bystanderStaysOpen();
  });

  it("keeps the streams of a node that renewed past the presented certificate's expiry, until the renewed one's", async () => {
    const identity = expiringSoon("manager", "m-renewed");
    const node = f.clientFor(identity);
    const streams = [
      await f.open(node, ECHO.ticks, "the renewed node's server stream"),
      await f.open(node, ECHO.chat, "the renewed node's bidi stream"),
    ];
    // The renewal is applied: the new certificate is on record, the old connection stays. No
    // reauthorize call: the timer wakes at the presented expiry, finds the renewal, re-arms.
    const renewedNotAfter = new Date(identity.notAfter.getTime() + 2_000);
    f.recorded.set("m-renewed", renewedNotAfter);

    await waitFor(
      "the presented certificate to expire",
      () => Date.now() > identity.notAfter.getTime() + 200,
    );
    for (const stream of streams) await expectAlive(stream);
    expect(f.authorizer.tracking.nextDeadline, "re-armed for the renewed expiry").to.deep.equal(
      renewedNotAfter,
    );
    // A new call on the old connection is the node's too: the serial is the expired certificate's.
    expect(await callUnary(node, ECHO.whoami)).to.equal(identity.serialNumber);

    // A node that does not renew again loses its streams when the one on record expires.
    for (const stream of streams) {
      await expectClosed(stream, grpc.status.UNAUTHENTICATED, "CERT_EXPIRED", 5_000);
      expect(Date.now(), "closed after the renewed expiry").to.be.greaterThan(renewedNotAfter.getTime());
    }
    await bystanderStaysOpen();
  });

  it("closes a Raft-like stream opened before its peer was removed, with the clock 48 h past its expiry (the known defect)", async () => {
    const identity = f.issue("manager", "m-peer", { lifetimeMs: MIN_LIFETIME_MS });
    const node = f.clientFor(identity);
    const raftLike = await f.open(node, ECHO.chat, "the peer's Raft-like stream");

    f.removed.add("m-peer");
    f.offsetMs = identity.notAfter.getTime() + 48 * HOUR_MS - Date.now();
    // As before the fix, a new call on the same connection is refused...
    await expectRefused(node, ECHO.whoami, grpc.status.UNAUTHENTICATED, "CERT_EXPIRED");
    // ...and now the open stream ends too, instead of delivering on.
    expect(f.authorizer.reauthorize(["m-peer"])).to.equal(1);
    await expectClosed(raftLike, grpc.status.PERMISSION_DENIED, "NODE_REMOVED", 1_000);
    await bystanderStaysOpen();
  });

  it("closes a stream whose certificate the clock moved 48 h past, at the next check of all streams", async () => {
    const identity = f.issue("manager", "m-stale", { lifetimeMs: MIN_LIFETIME_MS });
    const node = f.clientFor(identity);
    const raftLike = await f.open(node, ECHO.chat, "the stale node's Raft-like stream");

    f.offsetMs = identity.notAfter.getTime() + 48 * HOUR_MS - Date.now();
    expect(f.authorizer.reauthorize(), "closed among all open streams").to.equal(1);
    await expectClosed(raftLike, grpc.status.UNAUTHENTICATED, "CERT_EXPIRED", 1_000);
    await bystanderStaysOpen();
  });

  it("leaves a unary call in flight alone (checked at its start only) and does not track it", async () => {
    const node = f.clientFor(f.issue("worker", "w-unary"));
    const started = f.server.observations.slowCallsStarted;
    const slow = callUnary(node, ECHO.slow);
    await waitFor(
      "the slow call to reach its handler",
      () => f.server.observations.slowCallsStarted > started,
    );
    expect(f.authorizer.tracking.streams, "tracked: the bystander's only").to.equal(2);

    f.removed.add("w-unary");
    expect(f.authorizer.reauthorize(["w-unary"])).to.equal(0);

    expect(await slow).to.have.length.greaterThan(0);
    await expectRefused(node, ECHO.whoami, grpc.status.PERMISSION_DENIED, "NODE_REMOVED");
  });

  it("does not close, count or throw for a stream whose handler is already ending it", async () => {
    const node = f.clientFor(f.issue("manager", "m-ending"));
    const chat = await f.open(node, ECHO.chat, "the ending node's bidi stream");
    const refusalsBefore = f.refusals.length;
    let closedWhileEnding: number | undefined;
    f.server.observations.afterChatEnded = () => {
      f.removed.add("m-ending");
      closedWhileEnding = f.authorizer.reauthorize(["m-ending"]);
    };
    try {
      chat.halfClose();
      await waitFor("the bidi stream to end", () => chat.status !== undefined);
    } finally {
      f.server.observations.afterChatEnded = undefined;
    }
    expect(closedWhileEnding, "reauthorize ran inside the handler's end").to.equal(0);
    expect(chat.status?.code, chat.status?.details).to.equal(grpc.status.OK);
    expect(chat.error).to.equal(undefined);
    expect(f.refusals.length).to.equal(refusalsBefore);
  });

  it("closes and counts a stream once when checked twice before grpc-js reports its end", async () => {
    const node = f.clientFor(f.issue("manager", "m-twice"));
    const chat = await f.open(node, ECHO.chat, "the twice-checked bidi stream");
    const refusalsBefore = f.refusals.length;
    f.removed.add("m-twice");
    expect(f.authorizer.reauthorize(["m-twice"])).to.equal(1);
    expect(f.authorizer.reauthorize(["m-twice"])).to.equal(0);
    expect(f.authorizer.reauthorize()).to.equal(0);
    await expectClosed(chat, grpc.status.PERMISSION_DENIED, "NODE_REMOVED", 1_000);
    expect(f.refusals.length - refusalsBefore).to.equal(1);
  });
});

describe("ca/tls: open-stream tracking is bounded and owned", function () {
  this.timeout(20_000);
  let f: ReauthFixture;

  beforeEach(async () => {
    f = await ReauthFixture.start();
  });
  afterEach(async () => {
    await f?.close();
  });

  it("forgets every stream once it ends, whichever way: nothing tracked, no timer armed", async () => {
    const a = f.clientFor(f.issue("manager", "m-many"));
    const b = f.clientFor(f.issue("worker", "w-many"));
    const cancelledByClient: StreamWatch[] = [];
    const endedByHandler: StreamWatch[] = [];
    const closedByAuthorizer: StreamWatch[] = [];
    for (let i = 0; i < 20; i++) {
      cancelledByClient.push(f.openWithoutWaiting(a, ECHO.ticks, `a's server stream ${i}`));
      endedByHandler.push(f.openWithoutWaiting(a, ECHO.chat, `a's bidi stream ${i}`));
      closedByAuthorizer.push(f.openWithoutWaiting(b, ECHO.ticks, `b's server stream ${i}`));
    }
    await waitFor("60 streams tracked", () => f.authorizer.tracking.streams === 60, 10_000);
    expect(f.authorizer.tracking.nodes).to.equal(2);
    expect(f.authorizer.tracking.nextDeadline).to.not.equal(undefined);

    // A client's cancel reaches the server as the HTTP/2 stream closing, as when the client is gone.
    for (const stream of cancelledByClient) stream.cancel();
    for (const stream of endedByHandler) stream.halfClose();
    f.removed.add("w-many");
    expect(f.authorizer.reauthorize(["w-many"])).to.equal(20);

    await waitFor("no stream tracked", () => f.authorizer.tracking.streams === 0, 10_000);
    expect(f.authorizer.tracking).to.deep.equal({ streams: 0, nodes: 0, nextDeadline: undefined });
    await waitFor("the handler-ended streams to end with OK", () =>
      endedByHandler.every((stream) => stream.status?.code === grpc.status.OK),
    );
    for (const stream of closedByAuthorizer)
      await expectClosed(stream, grpc.status.PERMISSION_DENIED, "NODE_REMOVED");
  });

  it("close() stops the timer and forgets open streams; streams opened later are not tracked", async () => {
    const node = f.clientFor(f.issue("manager", "m-owner"));
    const before = await f.open(node, ECHO.ticks, "a stream opened before close()");
    expect(f.authorizer.tracking.nextDeadline).to.not.equal(undefined);

    f.authorizer.close();

    expect(f.authorizer.tracking).to.deep.equal({ streams: 0, nodes: 0, nextDeadline: undefined });
    f.removed.add("m-owner");
    expect(f.authorizer.reauthorize()).to.equal(0);
    // Ending calls is the server's shutdown's job: close() only lets go of them.
    await expectAlive(before);
    f.removed.delete("m-owner");
    await f.open(node, ECHO.ticks, "a stream opened after close()");
    expect(f.authorizer.tracking).to.deep.equal({ streams: 0, nodes: 0, nextDeadline: undefined });
  });
});
