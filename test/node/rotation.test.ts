// Root rotation on real processes (issue 11): 3 managers and 10 workers; `ca rotate`
// to its end with every session, Raft stream and election counter watched; then a
// rotation held by a stopped worker, the leader killed in the middle, and `rm --force`
// of the stopped worker letting it finish under the new leader.
import { execFileSync } from "node:child_process";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "chai";
import { rootKeyIdsOf } from "../../src/ca/index.js";
import type { CaStatusJson } from "../../src/cli/format.js";
import { buildCertificate, DAY_MS } from "../ca/root-fixture.js";
import { handshake, ProcessCluster } from "./cluster-fixture.js";
import { nodectl, waitUntil } from "./nodectl.js";

const MANAGERS = ["m1", "m2", "m3"];

/** openssl verify of the node's own chain (leaf + what it serves with it) against the roots it trusts now. */
function verifyOwnChain(stateDir: string): string {
  const dir = join(stateDir, "certificates");
  return execFileSync(
    "openssl",
    [
      "verify",
      "-x509_strict",
      "-CAfile",
      join(dir, "ca.crt"),
      "-untrusted",
      join(dir, "node.crt"),
      join(dir, "node.crt"),
    ],
    { encoding: "utf8" },
  ).trim();
}

describe("root rotation: 3 managers and 10 workers", function () {
  this.timeout(180_000);
  const c = new ProcessCluster();
  const workers = Array.from({ length: 10 }, (_, i) => `w${i + 1}`);

  async function caStatus(via: string): Promise<CaStatusJson> {
    const r = await nodectl(["ca", "status", "--json", "--state-dir", c.node(via).stateDir]);
    if (r.status !== 0) throw new Error(`ca status failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as CaStatusJson;
  }
  const counters = (names: string[], metric: string) => Promise.all(names.map((n) => c.metric(n, metric)));
  const running = () => [...c.nodes.values()].filter((n) => n.daemon.running).map((n) => n.name);

  before(async () => {
    await c.init("m1");
    await c.join("m2", "manager", "m1");
    await c.join("m3", "manager", "m2");
    await c.allReady("m1", 3);
    await Promise.all(workers.map((w, i) => c.join(w, "worker", MANAGERS[i % 3] ?? "m1")));
    await c.allReady("m1", 13, 120_000);
  });
  after(() => c.stop());

  it("rotates hitlessly: no session reopened, no election, every chain on the new root, old certificates refused", async () => {
    const oldRoot = (await caStatus("m1")).rootKeyId;
    const saved = join(c.base, "w1-old-certificates");
    cpSync(join(c.node("w1").stateDir, "certificates"), saved, { recursive: true });
    const names = running();
    const connects = await counters(names, "nodectl_session_connects_total");
    const leaderChanges = await counters(MANAGERS, "nodectl_raft_leader_changes_total");
    const logMarks = new Map(names.map((n) => [n, c.node(n).daemon.log.length]));

    const r = await nodectl(["ca", "rotate", "--state-dir", c.node("m2").stateDir], {}, 60_000);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout)
      .to.match(/renew phase: renewed \d+\/13/)
      .and.match(/Rotation done in [\d.]+ s/);
    const status = await caStatus("m3");
    expect(status.rotation).to.equal(null);
    expect(status.rootKeyId).to.not.equal(oldRoot);

    expect(await counters(names, "nodectl_session_connects_total"), "sessions opened").to.deep.equal(
      connects,
    );
    expect(await counters(MANAGERS, "nodectl_raft_leader_changes_total"), "leader changes").to.deep.equal(
      leaderChanges,
    );
    for (const n of names) {
      // No RPC failed: no error or warning logged by any node during the rotation.
      const during = c.node(n).daemon.log.slice(logMarks.get(n));
      const bad = during.split("\n").filter((l) => /"level":(40|50|60)/.test(l));
      expect(bad, `${n} logged`).to.deep.equal([]);
      const dir = c.node(n).stateDir;
      expect(rootKeyIdsOf(readFileSync(join(dir, "certificates/ca.crt"), "utf8"))).to.deep.equal([
        status.rootKeyId,
      ]);
      expect(verifyOwnChain(dir)).to.match(/: OK$/);
    }
    for (const node of await c.ls("m1"))
      expect(node.certificate?.issuerKeyId, node.id).to.equal(status.rootKeyId);
    // The old root is trusted nowhere: w1's pre-rotation certificate fails every handshake; its new one passes.
    for (const m of MANAGERS) {
      const address = c.node(m).listen ?? "";
      const ca = join(c.node("w1").stateDir, "certificates/ca.crt");
      expect((await handshake(address, saved, ca)).accepted, `old w1 certificate -> ${m}`).to.equal(false);
      expect((await handshake(address, join(c.node("w1").stateDir, "certificates"), ca)).accepted).to.equal(
        true,
      );
    }
  });

  it("a stopped worker holds the renew phase and is named; killing the leader mid-rotation; rm --force lets it finish", async () => {
    await c.node("w10").daemon.stop();
    await waitUntil("w10 down", 20_000, async () =>
      (await c.ls("m1")).find((n) => n.id === c.node("w10").nodeId)?.status === "down" ? true : undefined,
    );
    const r = await nodectl(["ca", "rotate", "--detach", "--state-dir", c.node("m1").stateDir]);
    expect(r.status, r.stderr).to.equal(0);
    const held = await waitUntil("every running node renewed", 30_000, async () => {
      const s = await caStatus("m1");
      return s.rotation && s.rotation.renewed === 12 ? s : undefined;
    });
    expect(held.rotation?.phase).to.equal("renew");
    expect(held.rotation?.pending).to.have.length(1);
    expect(held.rotation?.pending[0]?.id).to.equal(c.node("w10").nodeId);
    expect(held.rotation?.pending[0]?.reason).to.match(/^down since /);
    // Mid-rotation every running node's chain verifies against the roots it holds, and workers reach managers.
    for (const n of running()) expect(verifyOwnChain(c.node(n).stateDir)).to.match(/: OK$/);
    for (const m of MANAGERS) {
      const w = c.node("w2").stateDir;
      const ok = await handshake(
        c.node(m).listen ?? "",
        join(w, "certificates"),
        join(w, "certificates/ca.crt"),
      );
      expect(ok.accepted, `w2 -> ${m} mid-rotation`).to.equal(true);
    }

    const leaderId = (await c.ls("m1")).find((n) => n.leader)?.id ?? "";
    const leader = c.nameOf(leaderId);
    c.node(leader).daemon.kill();
    await c.node(leader).daemon.exited;
    const survivor = MANAGERS.find((m) => m !== leader) ?? "m1";
    await waitUntil("a new leader", 15_000, async () => {
      const l = (await c.ls(survivor)).find((n) => n.leader);
      return l && l.id !== leaderId ? true : undefined;
    });
    c.run(leader);
    const removed = await nodectl([
      "rm",
      "--force",
      c.node("w10").nodeId,
      "--state-dir",
      c.node(survivor).stateDir,
    ]);
    expect(removed.status, removed.stderr).to.equal(0);
    const done = await waitUntil("the rotation done under the new leader", 60_000, async () => {
      const s = await caStatus(survivor);
      return s.rotation === null && s.rootKeyId === held.rotation?.newRootKeyId ? s : undefined;
    });
    for (const n of running()) {
      const dir = c.node(n).stateDir;
      await waitUntil(`${n} trusts the new root alone`, 10_000, async () =>
        rootKeyIdsOf(readFileSync(join(dir, "certificates/ca.crt"), "utf8")).join() === done.rootKeyId
          ? true
          : undefined,
      );
      expect(verifyOwnChain(dir)).to.match(/: OK$/);
    }
  });

  it("imports an external root with --ca-cert/--ca-key; refuses a non-CA, a mismatched key, an expired root, changing nothing", async () => {
    const clusterId = JSON.parse(readFileSync(join(c.node("m1").stateDir, "node.json"), "utf8"))
      .clusterId as string;
    const subject = { organization: clusterId, commonName: "imported-root" };
    const good = buildCertificate({ subject });
    const files = (name: string, cert: string, key: string) => {
      const certFile = join(c.base, `${name}.crt`);
      const keyFile = join(c.base, `${name}.key`);
      writeFileSync(certFile, cert);
      writeFileSync(keyFile, key, { mode: 0o600 });
      return ["--ca-cert", certFile, "--ca-key", keyFile];
    };
    const leaf = buildCertificate({ subject, basicConstraints: { cA: false } });
    const expired = buildCertificate({
      subject,
      notBefore: new Date(Date.now() - 400 * DAY_MS),
      notAfter: new Date(Date.now() - DAY_MS),
    });
    const cases: [string[], string][] = [
      [files("leaf", leaf.certificatePem, leaf.privateKeyPem), "ROOT_NOT_CA"],
      [
        files("mismatch", good.certificatePem, buildCertificate({ subject }).privateKeyPem),
        "ROOT_KEY_MISMATCH",
      ],
      [files("expired", expired.certificatePem, expired.privateKeyPem), "ROOT_EXPIRED"],
    ];
    const before = await caStatus("m1");
    for (const [args, code] of cases) {
      const r = await nodectl(["ca", "rotate", "--detach", ...args, "--state-dir", c.node("m2").stateDir]);
      expect(r.status, r.stdout).to.equal(1);
      expect(r.stderr).to.contain(code);
    }
    expect(await caStatus("m3")).to.deep.equal(before);

    const imported = await nodectl(
      [
        "ca",
        "rotate",
        "--cert-expiry",
        "90m",
        ...files("good", good.certificatePem, good.privateKeyPem),
        "--state-dir",
        c.node("m1").stateDir,
      ],
      {},
      60_000,
    );
    expect(imported.status, imported.stderr).to.equal(0);
    const after = await caStatus("m2");
    expect(after.rotation).to.equal(null);
    expect(after.rootKeyId).to.equal(rootKeyIdsOf(good.certificatePem)[0]);
    // --cert-expiry: certificates issued from then on (the rotation's renewals) live 90 minutes.
    expect(after.nodeCertLifetimeSeconds).to.equal(5400);
    const w2 = (await c.ls("m2")).find((n) => n.id === c.node("w2").nodeId);
    const lifetimeMs = new Date(w2?.certificate?.notAfter ?? 0).getTime() - Date.now();
    expect(lifetimeMs).to.be.within(80 * 60_000, 91 * 60_000);
  });
});
