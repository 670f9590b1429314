// Sessions on one manager (a one-member Raft cluster on disk, real gRPC over loopback
// mutual TLS): what opening, heartbeating, falling silent, being removed, changing
// role and hitting the session bound do to the replicated state and to the node.
import * as grpc from "@grpc/grpc-js";
import { expect } from "chai";
import { Dispatcher, reasonOf, retryAfterMsOf, type WeightedManager } from "../../src/dispatcher/index.js";
import type { SessionMessage } from "../../src/gen/dispatcher/v1/dispatcher.js";
import { NodeStatus, Role } from "../../src/gen/fsm/v1/state.js";
import { silentLogger } from "../../src/log/logger.js";
import { TestCluster, type TestManager, waitFor } from "./fixture.js";

const PERIOD_MS = 100;

/** Collects a raw session's messages and how it ended. */
function openRaw(client: ReturnType<TestCluster["rawClient"]>) {
  const received: SessionMessage[] = [];
  const ended: { error?: grpc.ServiceError } = {};
  let done = false;
  const stream = client.session({});
  stream.on("data", (m: SessionMessage) => received.push(m));
  stream.on("error", (e: grpc.ServiceError) => {
    ended.error = e;
    done = true;
  });
  stream.on("end", () => {
    done = true;
  });
  return { stream, received, ended, isDone: () => done };
}

describe("dispatcher: sessions on one manager", function () {
  this.timeout(20_000);
  let cluster: TestCluster;

  afterEach(async () => {
    await cluster?.stop();
  });

  it("a session marks its node ready on this manager in the replicated state, and pushes what the node must know", async () => {
    cluster = await TestCluster.start(1, ["w1", "w2"]);
    const events: string[] = [];
    const client = await cluster.connect("w1");
    client.on("managers", () => events.push("managers"));
    client.on("trustBundle", (pem) =>
      events.push(pem === cluster.root.certificatePem ? "trust:root" : "trust:?"),
    );
    client.on("desiredRole", (role) => events.push(`role:${Role[role]}`));
    await cluster.converged("w1 ready on m1", (s) => s.node("w1")?.status === NodeStatus.NODE_STATUS_READY);
    const w1 = cluster.managers[0]!.state.node("w1")!;
    expect(w1.session?.managerId).to.equal("m1");
    expect(w1.session?.connectedAtMs).to.be.greaterThan(0);
    // w2 never connected: untouched.
    expect(cluster.managers[0]!.state.node("w2")?.status).to.equal(NodeStatus.NODE_STATUS_UNSPECIFIED);
    await waitFor("the pushes", () => events.length >= 3);
    expect(events).to.deep.equal(["managers", "trust:root", "role:ROLE_WORKER"]);
    const saved = cluster.workers.get("w1")!.saved;
    expect(saved.at(-1)).to.deep.equal([
      { nodeId: "m1", address: cluster.managers[0]!.address, weight: 100 },
    ]);
    expect(client.sessionConnects).to.equal(1);
  });

  it("steady heartbeats add no log entry", async () => {
    cluster = await TestCluster.start(1, ["w1", "w2", "w3"]);
    const m1 = cluster.managers[0]!;
    for (const w of ["w1", "w2", "w3"]) await cluster.connect(w);
    await cluster.converged("all ready", (s) =>
      ["w1", "w2", "w3"].every((w) => s.node(w)?.status === NodeStatus.NODE_STATUS_READY),
    );
    // Let the ready batch and the status settle, then count.
    await new Promise((r) => setTimeout(r, 3 * PERIOD_MS));
    const before = m1.raft.status();
    await cluster.moreHeartbeats(m1, 30, 10_000);
    const after = m1.raft.status();
    expect(after.lastIndex, "log entries").to.equal(before.lastIndex);
    expect(after.applied, "applied index").to.equal(before.applied);
    expect(m1.dispatcher.recorded.transitions).to.equal(3);
  });

  it("a node silent for 3 periods is marked down, and its session is closed", async () => {
    cluster = await TestCluster.start(1, ["w1"]);
    const m1 = cluster.managers[0]!;
    const raw = openRaw(cluster.rawClient("worker", "w1", m1));
    try {
      await cluster.converged("w1 ready", (s) => s.node("w1")?.status === NodeStatus.NODE_STATUS_READY);
      const readyAt = Date.now();
      // It never heartbeats.
      await cluster.converged("w1 down", (s) => s.node("w1")?.status === NodeStatus.NODE_STATUS_DOWN);
      expect(Date.now() - readyAt).to.be.at.least(3 * PERIOD_MS - 50);
      const w1 = m1.state.node("w1")!;
      expect(w1.session).to.equal(undefined);
      await waitFor("the silent session to be closed", raw.isDone);
      expect(raw.ended.error?.code).to.equal(grpc.status.UNAVAILABLE);
      expect(reasonOf(raw.ended.error!)).to.equal("HEARTBEAT_MISSED");
      expect(raw.received[0]?.message?.$case).to.equal("opened");
    } finally {
      raw.stream.cancel();
    }
  });

  it("a node recorded down while its session lives on here (a wrong orphan report) is ready again at its next heartbeat, without reconnecting", async () => {
    cluster = await TestCluster.start(1, ["w1"]);
    const client = await cluster.connect("w1");
    await cluster.converged("w1 ready", (s) => s.node("w1")?.status === NodeStatus.NODE_STATUS_READY);
    const openedAt = cluster.managers[0]!.state.node("w1")!.session!.connectedAtMs;
    // What a leader that took m1 for dead would record for m1's nodes after the down period.
    await cluster.propose({
      $case: "recordSessions",
      value: {
        transitions: [
          { nodeId: "w1", status: NodeStatus.NODE_STATUS_DOWN, managerId: "m1", atMs: Date.now() },
        ],
      },
    });
    await cluster.converged("w1 ready again on m1", (s) => {
      const w1 = s.node("w1");
      return w1?.status === NodeStatus.NODE_STATUS_READY && w1.session?.managerId === "m1";
    });
    expect(cluster.managers[0]!.state.node("w1")!.session!.connectedAtMs).to.equal(openedAt);
    expect(client.sessionConnects).to.equal(1);
  });

  it("a node the state records on another live manager is not fought over: its heartbeats here record nothing", async () => {
    cluster = await TestCluster.start(2, ["w1"]);
    const [m1, m2] = cluster.managers as [TestManager, TestManager];
    const [onM1, onM2] = cluster.managerList() as [WeightedManager, WeightedManager];
    // Two processes with w1's identity (a cloned state dir): one session on m1, then one on m2.
    const first = await cluster.connect("w1", [onM1]);
    try {
      await cluster.converged("w1 ready on m1", (s) => s.node("w1")?.session?.managerId === "m1");
      await cluster.connect("w1", [onM2]);
      await cluster.converged("w1 recorded on m2", (s) => s.node("w1")?.session?.managerId === "m2");
      const transitions = m1.dispatcher.recorded.transitions;
      await cluster.moreHeartbeats(m1, 5);
      expect(m1.dispatcher.recorded.transitions, "transitions m1 recorded").to.equal(transitions);
      expect(m1.state.node("w1")?.session?.managerId).to.equal("m2");
      expect(m2.dispatcher.openSessions).to.equal(1);
    } finally {
      first.stop();
    }
  });

  it("a restarted dispatcher records down the sessions of its previous run that never came back", async () => {
    cluster = await TestCluster.start(1, ["w1", "w2"]);
    const m1 = cluster.managers[0]!;
    const raw = openRaw(cluster.rawClient("worker", "w1", m1));
    await cluster.connect("w2");
    let fresh: Dispatcher | undefined;
    try {
      await cluster.converged("w1, w2 ready", (s) =>
        ["w1", "w2"].every((w) => s.node(w)?.status === NodeStatus.NODE_STATUS_READY),
      );
      // Its memory is gone; the state still says w1 is ready on m1. w1 never comes back.
      m1.dispatcher.close();
      fresh = new Dispatcher({
        selfNodeId: "m1",
        state: m1.state,
        log: m1.raft,
        authorizer: { peerIdentity: () => undefined },
        leadership: m1.raft,
        logger: silentLogger(),
        heartbeatPeriodMs: PERIOD_MS,
        transitionBatchMs: 20,
      });
      await cluster.converged("w1 down", (s) => s.node("w1")?.status === NodeStatus.NODE_STATUS_DOWN);
      expect(fresh.recorded.transitions).to.be.at.least(1);
    } finally {
      fresh?.close();
      raw.stream.cancel();
    }
  });

  it("removing a node closes its session at once; it cannot open another; the refusal changes nothing", async () => {
    cluster = await TestCluster.start(1, ["w1"]);
    const m1 = cluster.managers[0]!;
    const client = await cluster.connect("w1");
    const ended: string[] = [];
    client.on("disconnected", (_m, reason) => ended.push(reason));
    await cluster.converged("w1 ready", (s) => s.node("w1")?.status === NodeStatus.NODE_STATUS_READY);
    await cluster.propose({ $case: "removeNode", value: { nodeId: "w1", force: true, atMs: Date.now() } });
    const removedAt = Date.now(); // applied here by now
    await waitFor("w1's session to close", () => ended.length > 0, 2_000);
    expect(Date.now() - removedAt, "closed well within one heartbeat period").to.be.below(PERIOD_MS);
    expect(ended).to.deep.equal(["NODE_REMOVED"]);
    expect(m1.dispatcher.openSessions).to.equal(0);
    // Refused at the door (the interceptor), and nothing changes.
    const snapshot = Buffer.from(m1.state.snapshot());
    const raw = openRaw(cluster.rawClient("worker", "w1", m1));
    await waitFor("the refusal", raw.isDone);
    expect(raw.ended.error?.code).to.equal(grpc.status.PERMISSION_DENIED);
    expect(reasonOf(raw.ended.error!)).to.equal("NODE_REMOVED");
    await new Promise((r) => setTimeout(r, 2 * PERIOD_MS));
    expect(Buffer.from(m1.state.snapshot()).equals(snapshot)).to.equal(true);
    expect(client.sessionConnects).to.equal(1);
  });

  it("a session closes when its node's latest certificate on record expires, and survives a renewal", async () => {
    cluster = await TestCluster.start(1, ["w1", "w2"]);
    const w1 = await cluster.connect("w1");
    const w2 = await cluster.connect("w2");
    const ended = new Map<string, string[]>([
      ["w1", []],
      ["w2", []],
    ]);
    w1.on("disconnected", (_m, reason) => ended.get("w1")!.push(reason));
    w2.on("disconnected", (_m, reason) => ended.get("w2")!.push(reason));
    await cluster.converged("both ready", (s) =>
      ["w1", "w2"].every((w) => s.node(w)?.status === NodeStatus.NODE_STATUS_READY),
    );
    const renew = (nodeId: string, notAfterMs: number) =>
      cluster.propose({
        $case: "recordIssuance",
        value: {
          nodeId,
          role: Role.ROLE_WORKER,
          certificate: { serial: "02", notAfterMs, issuerKeyId: cluster.root.keyId, der: new Uint8Array() },
          join: false,
          address: "",
          atMs: Date.now(),
          joinSecretSha256: "",
        },
      });
    // Both on record as expiring soon; w2 then renews (a later expiry on record), w1 does not.
    const soon = Date.now() + 3 * PERIOD_MS;
    await renew("w1", soon);
    await renew("w2", soon);
    await renew("w2", Date.now() + 3_600_000);
    await waitFor("w1's session to close at its expiry", () => ended.get("w1")!.length > 0, 3_000);
    expect(Date.now()).to.be.at.least(soon);
    expect(ended.get("w1")![0]).to.equal("CERT_EXPIRED");
    // Its reconnections are refused the same way until it renews.
    await waitFor("a refused reconnection", () => ended.get("w1")!.length > 1, 3_000);
    expect(new Set(ended.get("w1"))).to.deep.equal(new Set(["CERT_EXPIRED"]));
    expect(w1.sessionConnects).to.equal(1);
    await new Promise((r) => setTimeout(r, 2 * PERIOD_MS));
    expect(ended.get("w2")).to.deep.equal([]);
    expect(w2.sessionConnects).to.equal(1);
  });

  it("a desired-role change is pushed at once, with an immediate renewal", async () => {
    cluster = await TestCluster.start(1, ["w1"]);
    const client = await cluster.connect("w1");
    const roles: Role[] = [];
    const renewals: { delayMs: number; reason: string }[] = [];
    client.on("desiredRole", (r) => roles.push(r));
    client.on("renew", (r) => renewals.push(r));
    await waitFor("the first desired role", () => roles.length === 1);
    expect(renewals).to.deep.equal([]);
    const changedAt = Date.now();
    await cluster.propose({
      $case: "setDesiredRole",
      value: { nodeId: "w1", desiredRole: Role.ROLE_MANAGER },
    });
    await waitFor("the pushed role", () => roles.length === 2 && renewals.length === 1, 2_000);
    expect(Date.now() - changedAt).to.be.below(PERIOD_MS);
    expect(roles).to.deep.equal([Role.ROLE_WORKER, Role.ROLE_MANAGER]);
    expect(renewals).to.deep.equal([{ delayMs: 0, reason: "role" }]);
    expect(client.sessionConnects).to.equal(1);
  });

  it("beyond its session bound a manager refuses with RESOURCE_EXHAUSTED and a retry hint, changing nothing", async () => {
    cluster = await TestCluster.start(1, ["w1", "w2", "w3"], {
      maxSessions: 2,
      sessionLimitRetryAfterMs: 1_500,
      // The raw sessions here send no heartbeat: a long period keeps them open however slow the machine.
      heartbeatPeriodMs: 60_000,
    });
    const m1 = cluster.managers[0]!;
    const first = openRaw(cluster.rawClient("worker", "w1", m1));
    const second = openRaw(cluster.rawClient("worker", "w2", m1));
    try {
      await cluster.converged("w1, w2 ready", (s) =>
        ["w1", "w2"].every((w) => s.node(w)?.status === NodeStatus.NODE_STATUS_READY),
      );
      const snapshot = Buffer.from(m1.state.snapshot());
      const third = openRaw(cluster.rawClient("worker", "w3", m1));
      await waitFor("the refusal", third.isDone);
      expect(third.ended.error?.code).to.equal(grpc.status.RESOURCE_EXHAUSTED);
      expect(reasonOf(third.ended.error!)).to.equal("SESSION_LIMIT");
      expect(retryAfterMsOf(third.ended.error!)).to.equal(1_500);
      expect(third.ended.error?.details).to.match(/retry after 1500 ms/);
      expect(third.received).to.deep.equal([]);
      await new Promise((r) => setTimeout(r, 200));
      expect(Buffer.from(m1.state.snapshot()).equals(snapshot), "state unchanged").to.equal(true);
      expect(m1.dispatcher.openSessions).to.equal(2);
    } finally {
      first.stream.cancel();
      second.stream.cancel();
    }
  });
});
