// Sessions across three managers (a three-member Raft cluster on disk, real gRPC over
// loopback mutual TLS): a dead manager moves only its own nodes, to the others, after a
// backoff; a leader change moves nobody.
import { expect } from "chai";
import type { SessionClient } from "../../src/dispatcher/index.js";
import { NodeStatus } from "../../src/gen/fsm/v1/state.js";
import { TestCluster, type TestManager, waitFor } from "./fixture.js";

const WORKERS = ["w1", "w2", "w3", "w4", "w5", "w6"];

interface Watched {
  client: SessionClient;
  disconnects: { at: number; reason: string }[];
  connects: { at: number; managerId: string }[];
}

/** Worker i starts on manager i mod 3 (its persisted list weighs only that one), so each manager holds two. */
async function connectAll(cluster: TestCluster): Promise<Map<string, Watched>> {
  const watched = new Map<string, Watched>();
  for (const [i, w] of WORKERS.entries()) {
    const home = cluster.managers[i % 3]!.nodeId;
    const client = await cluster.connect(w, cluster.listFavouring(home), () => 0.5);
    const entry: Watched = { client, disconnects: [], connects: [] };
    client.on("disconnected", (_m, reason) => entry.disconnects.push({ at: Date.now(), reason }));
    client.on("connected", (managerId) => entry.connects.push({ at: Date.now(), managerId }));
    watched.set(w, entry);
  }
  await cluster.converged("every worker ready", (s) =>
    WORKERS.every((w) => s.node(w)?.status === NodeStatus.NODE_STATUS_READY),
  );
  for (const [i, w] of WORKERS.entries())
    expect(watched.get(w)!.client.managerId, w).to.equal(cluster.managers[i % 3]!.nodeId);
  return watched;
}

describe("dispatcher: sessions across three managers", function () {
  this.timeout(30_000);
  let cluster: TestCluster;

  afterEach(async () => {
    await cluster?.stop();
  });

  it("killing a manager (the leader) moves only its own nodes, to the others, after a backoff; the leader reports its orphans down", async () => {
    cluster = await TestCluster.start(3, [...WORKERS, "w7"]);
    const watched = await connectAll(cluster);
    const victim = cluster.leader() as TestManager;
    const own = WORKERS.filter((w) => watched.get(w)!.client.managerId === victim.nodeId);
    const others = WORKERS.filter((w) => !own.includes(w));
    expect(own).to.have.length(2);

    // The victim's own session is on a survivor (any node holds one), and w7, which dies
    // with it (same host), is on the victim: nobody is left to report w7 but the leader.
    const survivor = cluster.managers.find((m) => m !== victim)!;
    await cluster.connect(victim.nodeId, cluster.listFavouring(survivor.nodeId));
    const w7 = await cluster.connect("w7", cluster.listFavouring(victim.nodeId));
    await cluster.converged("the victim and w7 ready", (s) =>
      [victim.nodeId, "w7"].every((id) => s.node(id)?.status === NodeStatus.NODE_STATUS_READY),
    );
    w7.stop();
    const killedAt = Date.now();
    await cluster.kill(victim);
    await waitFor(
      "its nodes to reconnect",
      () => own.every((w) => watched.get(w)!.connects.length === 2),
      10_000,
    );
    await waitFor("a new leader", () => cluster.leader() !== undefined, 10_000);
    await cluster.converged("its nodes recorded ready on a survivor", (s) =>
      own.every((w) => {
        const n = s.node(w);
        return n?.status === NodeStatus.NODE_STATUS_READY && n.session?.managerId !== victim.nodeId;
      }),
    );
    for (const w of own) {
      const { client, disconnects, connects } = watched.get(w)!;
      expect(client.sessionConnects, w).to.equal(2);
      expect(client.managerId, w).to.not.equal(victim.nodeId);
      expect(disconnects, w).to.have.length(1);
      // Backoff with full jitter: random() = 0.5 of the 50 ms base on the first attempt.
      expect(connects[1]!.at - disconnects[0]!.at, `${w}'s wait before reconnecting`).to.be.at.least(20);
    }
    // A few more periods: the survivors' nodes never moved and nobody went down.
    await new Promise((r) => setTimeout(r, 500));
    for (const w of others) {
      const { client, disconnects } = watched.get(w)!;
      expect(client.sessionConnects, w).to.equal(1);
      expect(disconnects, w).to.deep.equal([]);
    }
    for (const m of cluster.managers.filter((x) => !x.stopped))
      for (const w of WORKERS)
        expect(m.state.node(w)?.status, `${w} on ${m.nodeId}`).to.equal(NodeStatus.NODE_STATUS_READY);
    expect(Date.now() - killedAt).to.be.below(10_000);
    // The dead manager is recorded down by the one holding its session, then the leader
    // records its orphan down on its behalf.
    await cluster.converged(
      "the victim and its orphan w7 down",
      (s) => [victim.nodeId, "w7"].every((id) => s.node(id)?.status === NodeStatus.NODE_STATUS_DOWN),
      5_000,
    );
    for (const m of cluster.managers.filter((x) => !x.stopped))
      for (const w of WORKERS)
        expect(m.state.node(w)?.status, `${w} on ${m.nodeId}`).to.equal(NodeStatus.NODE_STATUS_READY);
  });

  it("a leader change makes no node reconnect; a removal closes a session held by a follower", async () => {
    cluster = await TestCluster.start(3, WORKERS);
    const watched = await connectAll(cluster);
    const leader = cluster.leader() as TestManager;
    const target = cluster.managers.find((m) => m !== leader)!;
    const termBefore = leader.raft.leadership().term;
    leader.raft.transferLeadership(target.raftId);
    await waitFor(
      "the transfer",
      () => cluster.managers.every((m) => m.raft.leadership().leader === target.raftId),
      10_000,
    );
    expect(target.raft.leadership().term).to.be.greaterThan(termBefore);
    // Several heartbeat periods under the new leader, and a write through it.
    await cluster.propose({ $case: "setNodeCertLifetime", value: { nodeCertLifetimeS: 7200 } });
    await new Promise((r) => setTimeout(r, 500));
    for (const w of WORKERS) {
      const { client, disconnects } = watched.get(w)!;
      expect(client.sessionConnects, w).to.equal(1);
      expect(disconnects, w).to.deep.equal([]);
    }
    for (const m of cluster.managers)
      for (const w of WORKERS)
        expect(m.state.node(w)?.status, `${w} on ${m.nodeId}`).to.equal(NodeStatus.NODE_STATUS_READY);
    // Removal reaches every manager through the log: a session held by a follower closes too.
    const onFollower = WORKERS.find((w) => watched.get(w)!.client.managerId !== target.nodeId)!;
    await cluster.propose({
      $case: "removeNode",
      value: { nodeId: onFollower, force: true, atMs: Date.now() },
    });
    await waitFor(
      `${onFollower}'s session on a follower to close`,
      () => watched.get(onFollower)!.disconnects.length > 0,
      2_000,
    );
    expect(watched.get(onFollower)!.disconnects.map((d) => d.reason)).to.deep.equal(["NODE_REMOVED"]);
  });

  it("a manager whose session ended does not report the node down once it is ready on another", async () => {
    cluster = await TestCluster.start(3, ["w1"]);
    const [a, b] = cluster.managers as [TestManager, TestManager];
    const first = await cluster.connect("w1", cluster.listFavouring(a.nodeId), () => 0.5);
    await cluster.converged("w1 ready on a", (s) => s.node("w1")?.session?.managerId === a.nodeId);
    first.stop();
    await cluster.connect("w1", cluster.listFavouring(b.nodeId), () => 0.5);
    await cluster.converged("w1 ready on b", (s) => s.node("w1")?.session?.managerId === b.nodeId);
    const recorded = a.dispatcher.recorded.transitions;
    // 6 heartbeat periods: twice the down period since w1 left a.
    await cluster.moreHeartbeats(b, 6);
    expect(a.dispatcher.recorded.transitions, "transitions a recorded after w1 moved").to.equal(recorded);
    expect(a.state.node("w1")?.status).to.equal(NodeStatus.NODE_STATUS_READY);
  });

  it("a node the leader adopted is let go, not recorded down, once its manager is heard again", async () => {
    // Raft misses the holder for one orphan scan (a pause), then hears it again.
    const asked: boolean[] = [];
    cluster = await TestCluster.start(3, ["w1"], {
      managerHeard: () => {
        asked.push(asked.length > 0);
        return asked.at(-1)!;
      },
    });
    const { leader, holder } = await holderRecordedDown(cluster);
    const recorded = leader.dispatcher.recorded.transitions;
    await waitFor(
      "the leader to adopt w1, then ask again before recording it down",
      () => asked.length >= 2,
      5_000,
    );
    await cluster.moreHeartbeats(holder, 6);
    expectUntouched(leader, holder, recorded);
  });

  it("the leader does not adopt the sessions of a manager recorded down while Raft still hears it", async () => {
    cluster = await TestCluster.start(3, ["w1"]);
    // The holder's own session status says down (its session host missed it on a loaded machine).
    const { leader, holder } = await holderRecordedDown(cluster);
    const recorded = leader.dispatcher.recorded.transitions;
    // 12 heartbeat periods: 4 down periods, each with an orphan scan on the leader.
    await cluster.moreHeartbeats(holder, 12);
    expectUntouched(leader, holder, recorded);
  });
});

/** w1's session on a follower (the holder), then the holder itself recorded down. */
async function holderRecordedDown(
  cluster: TestCluster,
): Promise<{ leader: TestManager; holder: TestManager }> {
  const leader = cluster.leader() as TestManager;
  const holder = cluster.managers.find((m) => m !== leader)!;
  const onHolder = cluster.listFavouring(holder.nodeId);
  await cluster.connect("w1", onHolder, () => 0.5);
  await cluster.converged(
    "w1 ready on its manager",
    (s) => s.node("w1")?.session?.managerId === holder.nodeId,
  );
  await cluster.propose({
    $case: "recordSessions",
    value: {
      transitions: [
        { nodeId: holder.nodeId, status: NodeStatus.NODE_STATUS_DOWN, managerId: "", atMs: Date.now() },
      ],
    },
  });
  await cluster.converged(
    "the holder recorded down",
    (s) => s.node(holder.nodeId)?.status === NodeStatus.NODE_STATUS_DOWN,
  );
  return { leader, holder };
}

/** The leader recorded nothing more, and w1 is still ready on its holder. */
function expectUntouched(leader: TestManager, holder: TestManager, recorded: number): void {
  expect(leader.dispatcher.recorded.transitions, "transitions the leader recorded").to.equal(recorded);
  const w1 = leader.state.node("w1");
  expect([w1?.status, w1?.session?.managerId]).to.deep.equal([NodeStatus.NODE_STATUS_READY, holder.nodeId]);
}
