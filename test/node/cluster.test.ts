// The cluster as users run it (issue 10's process tests): real nodectl processes on
// loopback, one scenario per describe, each step waiting on conditions with deadlines.
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "chai";
import { handshake, type LsNode, ProcessCluster } from "./cluster-fixture.js";
import { nodectl, waitUntil } from "./nodectl.js";

const leaders = (nodes: LsNode[]) => nodes.filter((n) => n.leader);

describe("cluster: init, 2 managers and 5 workers join; refusals; rm", function () {
  this.timeout(120_000);
  const c = new ProcessCluster();

  before(async () => {
    await c.init("m1");
    // Spread over the managers: a node's first session is on the manager it joined through.
    await c.join("m2", "manager", "m1");
    await c.join("m3", "manager", "m1");
    await c.allReady("m1", 3);
    const via = ["m1", "m2", "m3", "m1", "m2"];
    await Promise.all(via.map((m, i) => c.join(`w${i + 1}`, "worker", m, i === 0)));
  });
  after(() => c.stop());

  it("ls shows 8 nodes ready with the right roles and exactly one leader, on every manager", async () => {
    const nodes = await c.allReady("m2", 8);
    expect(nodes.filter((n) => n.role === "manager")).to.have.length(3);
    expect(nodes.filter((n) => n.role === "worker")).to.have.length(5);
    expect(leaders(nodes)).to.have.length(1);
    for (const via of ["m1", "m3"])
      expect((await c.ls(via)).map((n) => n.id)).to.deep.equal(nodes.map((n) => n.id));
    for (const name of ["m2", "m3"])
      expect(await c.inspect("m1", c.node(name).nodeId)).to.include({ membership: "voter" });
  });

  it("every node's certificate verifies with openssl -x509_strict against its ca.crt and has the profile", async () => {
    const nodes = await c.ls("m1");
    const clusterId = JSON.parse(readFileSync(join(c.node("m1").stateDir, "node.json"), "utf8")).clusterId;
    for (const proc of c.nodes.values()) {
      const dir = join(proc.stateDir, "certificates");
      const out = execFileSync(
        "openssl",
        [
          "verify",
          "-x509_strict",
          "-purpose",
          "sslclient",
          "-CAfile",
          join(dir, "ca.crt"),
          join(dir, "node.crt"),
        ],
        { encoding: "utf8" },
      );
      expect(out.trim()).to.match(/: OK$/);
      const cert = new X509Certificate(readFileSync(join(dir, "node.crt")));
      const role = nodes.find((n) => n.id === proc.nodeId)?.role;
      expect(cert.subject).to.equal(`O=${clusterId}\nOU=${role}\nCN=${proc.nodeId}`);
      expect(cert.subjectAltName).to.equal(`DNS:${proc.nodeId}, DNS:${role}`);
    }
  });

  it("refuses a wrong, a rotated, a malformed and another cluster's token, and a manager token without --listen, adding nothing", async () => {
    const before = await c.ls("m1");
    const good = await c.token("m1", "worker");
    const wrong = `${good.slice(0, -25)}${"0".repeat(25)}`;
    await c.token("m2", "worker", "--rotate");
    const other = new ProcessCluster();
    try {
      await other.init("x1");
      const foreign = await other.token("x1", "worker");
      const cases: [string, string][] = [
        [wrong, "TOKEN_INVALID"],
        [good, "TOKEN_ROTATED"],
        ["SWMTKN-1-not-a-token", "TOKEN_"],
        [foreign, "ROOT_DIGEST_MISMATCH"],
      ];
      for (const [i, [token, code]] of cases.entries()) {
        const dir = join(c.base, `refused-${i}`);
        const r = await nodectl(["join", "--state-dir", dir, "--token", token, c.node("m1").listen ?? ""]);
        expect(r.status, r.stderr).to.equal(1);
        expect(r.stderr).to.contain(code);
        if (!code.endsWith("_")) expect(r.stderr.split(code), `${code} said once`).to.have.length(2);
        expect(existsSync(dir) ? readdirSync(dir) : []).to.deep.equal([]);
      }
      // A manager token without --listen: refused before anything is recorded (a usage error).
      const managerToken = await c.token("m1", "manager");
      const dir = join(c.base, "refused-no-listen");
      const r = await nodectl([
        "join",
        "--state-dir",
        dir,
        "--token",
        managerToken,
        c.node("m1").listen ?? "",
      ]);
      expect(r.status, r.stderr).to.equal(2);
      expect(r.stderr).to.match(/ADDRESS_INVALID: .*--listen HOST:PORT/);
      expect(r.stderr.match(/ADDRESS_INVALID/g), "the code is said once").to.have.length(1);
      expect(existsSync(dir) ? readdirSync(dir) : []).to.deep.equal([]);
    } finally {
      await other.stop();
    }
    const after = await c.ls("m3");
    expect(after.map((n) => n.id)).to.deep.equal(before.map((n) => n.id));
  });

  it("a second process on a running worker's state dir is refused (STATE_DIR_LOCKED), disturbing nothing", async () => {
    const w2 = c.node("w2");
    const connects = await c.metric("w2", "nodectl_session_connects_total");
    const second = await nodectl(["run", "--state-dir", w2.stateDir]);
    expect(second.status, second.stderr).to.equal(1);
    expect(second.stderr).to.contain("STATE_DIR_LOCKED");
    expect(await c.metric("w2", "nodectl_session_connects_total")).to.equal(connects);
    expect((await c.ls("m1")).find((n) => n.id === w2.nodeId)?.status).to.equal("ready");
  });

  it("rm: an up worker is refused without --force; a stopped one is removed from a follower, for good", async () => {
    const w5 = c.node("w5");
    const refused = await nodectl(["rm", w5.nodeId, "--state-dir", c.node("m2").stateDir]);
    expect(refused.status).to.equal(1);
    expect(refused.stderr).to.contain("NODE_UP");
    expect((await c.ls("m1")).map((n) => n.id)).to.include(w5.nodeId);

    const managers = ["m1", "m2", "m3"].map((m) => c.node(m).listen ?? "");
    for (const m of managers)
      expect(
        (await handshake(m, join(w5.stateDir, "certificates"))).accepted,
        `w5 -> ${m} before rm`,
      ).to.equal(true);
    await w5.daemon.stop();
    await waitUntil("w5 down", 15_000, async () =>
      (await c.ls("m1")).find((n) => n.id === w5.nodeId)?.status === "down" ? true : undefined,
    );
    const follower = leaders(await c.ls("m1"))[0]?.id === c.node("m2").nodeId ? "m3" : "m2";
    const removed = await nodectl(["rm", w5.nodeId, "--state-dir", c.node(follower).stateDir]);
    expect(removed.status, removed.stderr).to.equal(0);
    for (const m of ["m1", "m2", "m3"])
      await waitUntil(`w5 gone on ${m}`, 5_000, async () =>
        (await c.ls(m)).some((n) => n.id === w5.nodeId) ? undefined : true,
      );
    // Its certificate no longer completes a handshake with any manager; another node's still does.
    for (const m of managers) {
      const refused = await handshake(m, join(w5.stateDir, "certificates"));
      expect(refused.accepted, `w5 -> ${m} after rm:\n${refused.output}`).to.equal(false);
      expect(refused.exitCode).to.not.equal(0);
      expect(
        (await handshake(m, join(c.node("w2").stateDir, "certificates"))).accepted,
        `w2 -> ${m}`,
      ).to.equal(true);
    }
    // It cannot come back: its session and renewal are refused, and run exits 1 saying so.
    c.run("w5");
    const code = await waitUntil("the removed node's run to exit", 20_000, async () =>
      c.node("w5").daemon.running ? undefined : c.node("w5").daemon.exited,
    );
    expect(code).to.equal(1);
    expect(c.node("w5").daemon.log).to.contain("NODE_REMOVED");
  });
  it("leave: a worker leaves on its own and its daemon stops; a manager is refused, changing nothing", async () => {
    const before = await c.ls("m1");
    const refused = await nodectl(["leave", "--state-dir", c.node("m3").stateDir]);
    expect(refused.status).to.equal(1);
    expect(refused.stderr).to.contain("NODE_IS_MANAGER");
    expect(await c.ls("m2")).to.deep.equal(before);

    const w4 = c.node("w4");
    const left = await nodectl(["leave", "--state-dir", w4.stateDir]);
    expect(left.status, left.stderr).to.equal(0);
    expect(left.stdout).to.contain(`Node ${w4.nodeId} left the cluster`);
    const code = await waitUntil("w4's daemon to stop", 15_000, async () =>
      w4.daemon.running ? undefined : w4.daemon.exited,
    );
    expect(code).to.equal(1);
    expect(w4.daemon.log).to.contain("NODE_REMOVED");
    expect((await c.ls("m3")).map((n) => n.id)).to.not.include(w4.nodeId);
  });
});

describe("cluster: promote, demote the leader, kill -9 the leader, restart everything", function () {
  this.timeout(150_000);
  const c = new ProcessCluster();
  const leaderOf = async (via: string) => leaders(await c.ls(via))[0]?.id;

  before(async () => {
    await c.init("m1");
    await c.join("m2", "manager", "m1");
    await c.join("m3", "manager", "m2");
    await c.allReady("m1", 3);
    await Promise.all([
      c.join("w1", "worker", "m1", true),
      c.join("w2", "worker", "m2"),
      c.join("w3", "worker", "m3"),
    ]);
    await c.allReady("m1", 6);
  });
  after(() => c.stop());

  it("promote a worker, then demote the leader: membership and certificates follow, one leader throughout", async () => {
    const terms = async () => Promise.all(["m1", "m2", "m3"].map((m) => c.metric(m, "nodectl_raft_term")));
    const termBefore = Math.max(...(await terms()));
    const w1 = c.node("w1");
    const promoted = await nodectl(["promote", w1.nodeId, "--state-dir", c.node("m2").stateDir]);
    expect(promoted.status, promoted.stderr).to.equal(0);
    await waitUntil("w1 a voter", 30_000, async () => {
      const v = await c.inspect("m1", w1.nodeId);
      return v.role === "manager" && v.membership === "voter" ? v : undefined;
    });
    const cert = new X509Certificate(readFileSync(join(w1.stateDir, "certificates/node.crt")));
    expect(cert.subject).to.contain("OU=manager");
    expect(existsSync(join(w1.stateDir, "raft"))).to.equal(true);
    expect(JSON.parse(readFileSync(join(w1.stateDir, "node.json"), "utf8")).role).to.equal("manager");
    // The promoted node answers admin commands: it is a full manager.
    expect(await c.ls("w1")).to.have.length(6);

    const oldLeader = await leaderOf("m1");
    if (!oldLeader) throw new Error("no leader");
    const leaderName = c.nameOf(oldLeader);
    const demoted = await nodectl(["demote", oldLeader, "--state-dir", c.node(leaderName).stateDir]);
    expect(demoted.status, demoted.stderr).to.equal(0);
    const survivor = ["m1", "m2", "m3"].find((m) => m !== leaderName) ?? "w1";
    await waitUntil("the old leader a worker", 30_000, async () => {
      const v = await c.inspect(survivor, oldLeader);
      return v.role === "worker" && v.membership === null ? v : undefined;
    });
    const after = await c.ls(survivor);
    expect(leaders(after)).to.have.length(1);
    expect(leaders(after)[0]?.id).to.not.equal(oldLeader);
    const old = c.node(leaderName);
    await waitUntil("its Raft data dropped", 10_000, async () =>
      existsSync(join(old.stateDir, "raft")) ? undefined : true,
    );
    expect(JSON.parse(readFileSync(join(old.stateDir, "node.json"), "utf8")).role).to.equal("worker");
    expect(new X509Certificate(readFileSync(join(old.stateDir, "certificates/node.crt"))).subject).to.contain(
      "OU=worker",
    );
    // One leadership transfer, no election: the term moved by one at most.
    const live = ["m1", "m2", "m3", "w1"].filter((m) => m !== leaderName);
    const termAfter = Math.max(...(await Promise.all(live.map((m) => c.metric(m, "nodectl_raft_term")))));
    expect(termAfter - termBefore).to.be.at.most(1);

    // The promoted node serves sessions: a worker joining through it holds its session there.
    const w4 = await c.join("w4", "worker", "w1");
    await waitUntil("w4's session on w1", 15_000, async () =>
      (await c.ls(survivor)).find((n) => n.id === w4.nodeId)?.session?.managerId === w1.nodeId
        ? true
        : undefined,
    );
  });

  it("kill -9 of the leader: a new leader within 3 s; only the killed manager's nodes reconnect", async () => {
    const managers = (await c.ls("w1")).filter((n) => n.role === "manager").map((n) => c.nameOf(n.id));
    const leaderId = await leaderOf("w1");
    if (!leaderId) throw new Error("no leader");
    const leaderName = c.nameOf(leaderId);
    // Make sure the leader holds at least one session to lose.
    const w5 = await c.join("w5", "worker", leaderName);
    const nodes = await waitUntil("every session settled", 20_000, async () => {
      const all = await c.ls("w1");
      return all.length === 8 && all.every((n) => n.status === "ready" && n.session) ? all : undefined;
    });
    expect(nodes.find((n) => n.id === w5.nodeId)?.session?.managerId).to.equal(leaderId);
    const others = [...c.nodes.values()].filter((n) => n.name !== leaderName && n.daemon.running);
    const connects = new Map(
      await Promise.all(
        others.map(async (n) => [n.name, await c.metric(n.name, "nodectl_session_connects_total")] as const),
      ),
    );

    const survivor = managers.find((m) => m !== leaderName) ?? "";
    c.node(leaderName).daemon.kill();
    const killedAt = Date.now();
    const newLeader = await waitUntil("a new leader", 10_000, async () => {
      const id = await leaderOf(survivor).catch(() => undefined);
      return id && id !== leaderId ? id : undefined;
    });
    const failoverMs = Date.now() - killedAt;
    expect(failoverMs, `failover took ${failoverMs} ms`).to.be.below(3_000);
    expect(newLeader).to.not.equal(leaderId);

    // The killed manager's nodes come back elsewhere; nobody else reconnected.
    const lost = new Set(nodes.filter((n) => n.session?.managerId === leaderId).map((n) => n.id));
    await waitUntil("the orphans reconnected elsewhere", 30_000, async () => {
      const all = await c.ls(survivor);
      return [...lost].every((id) => {
        const s = all.find((n) => n.id === id)?.session;
        return s && s.managerId !== leaderId;
      })
        ? true
        : undefined;
    });
    for (const n of others) {
      const now = await c.metric(n.name, "nodectl_session_connects_total");
      const expected = (connects.get(n.name) ?? 0) + (lost.has(n.nodeId) ? 1 : 0);
      expect(now, `${n.name} reconnects`).to.equal(expected);
    }
  });

  it("restart every process from its state dir: the cluster comes back as it was", async () => {
    const before = await c.ls("w1");
    await Promise.all([...c.nodes.values()].map((n) => n.daemon.stop()));
    for (const n of c.nodes.values()) c.run(n.name);
    const after = await c.allReady("w1", before.length, 45_000);
    expect(after.map((n) => [n.id, n.role, n.desiredRole])).to.deep.equal(
      before.map((n) => [n.id, n.role, n.desiredRole]),
    );
    expect(leaders(after)).to.have.length(1);
  });
});

describe("cluster: 1-minute certificates renew on their own, hitlessly", function () {
  this.timeout(200_000);
  const c = new ProcessCluster({ certExpiry: "1m", heartbeatMs: 500 });

  before(async () => {
    await c.init("m1");
    await c.join("m2", "manager", "m1");
    await c.join("m3", "manager", "m2");
    await Promise.all([c.join("w1", "worker", "m1"), c.join("w2", "worker", "m3")]);
    await c.allReady("m1", 5);
  });
  after(() => c.stop());

  it("every node renews at least twice with no session dropped and no election", async () => {
    const names = [...c.nodes.keys()];
    const changes = await Promise.all(["m1", "m2", "m3"].map((m) => c.metric(m, "nodectl_raft_term")));
    // Every session is settled (allReady): m1's is on another manager, so no count below moves on its own.
    const connects = await Promise.all(names.map((n) => c.metric(n, "nodectl_session_connects_total")));
    const handshakes = await Promise.all(
      ["m1", "m2", "m3"].map((m) => c.metric(m, "nodectl_tls_handshakes_total")),
    );
    // A renewal comes between 50 % and 80 % of a 1-minute life: two within ~100 s.
    await waitUntil("two renewals on every node", 150_000, async () => {
      const counts = await Promise.all(names.map((n) => c.metric(n, "nodectl_certificate_renewals_total")));
      return counts.every((k) => k >= 2) ? true : undefined;
    });
    const after = await Promise.all(names.map((n) => c.metric(n, "nodectl_session_connects_total")));
    expect(after, `sessions opened by ${names.join(", ")}`).to.deep.equal(connects);
    // Renewals ride each node's session connection: not one new TLS connection on any manager.
    const handshakesAfter = await Promise.all(
      ["m1", "m2", "m3"].map((m) => c.metric(m, "nodectl_tls_handshakes_total")),
    );
    expect(handshakesAfter, "TLS handshakes completed by m1, m2, m3").to.deep.equal(handshakes);
    expect(await Promise.all(["m1", "m2", "m3"].map((m) => c.metric(m, "nodectl_raft_term")))).to.deep.equal(
      changes,
    );
    const nodes = await c.allReady("m2", 5);
    for (const n of nodes) expect(new Date(n.certificate?.notAfter ?? 0).getTime()).to.be.above(Date.now());
  });
});
