// A cluster's first manager as users drive it: `nodectl init` in the foreground, admin
// commands over its control.sock, SIGTERM, `nodectl run` from the state dir. Real
// processes on loopback; every wait has a deadline.
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { expect } from "chai";
import { service as healthService } from "grpc-health-check";
import { checkRootDigest, parseJoinToken, rootCertificateDigest } from "../../src/ca/index.js";
import type { NodeJson } from "../../src/cli/format.js";
import { silentLogger } from "../../src/log/logger.js";
import { initManager } from "../../src/node/init.js";
import { Daemon, freePort, nodectl, waitUntil } from "./nodectl.js";

async function lsJson(stateDir: string): Promise<NodeJson[]> {
  const r = await nodectl(["ls", "--json", "--state-dir", stateDir]);
  if (r.status !== 0) throw new Error(`ls failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as NodeJson[];
}

/** ls once the cluster record is applied and this manager leads. */
function readyCluster(stateDir: string): Promise<NodeJson[]> {
  return waitUntil("the cluster to answer ls with a leader", 20_000, async () => {
    const nodes = await lsJson(stateDir);
    return nodes.some((n) => n.leader) ? nodes : undefined;
  });
}

async function token(stateDir: string, role: string, ...flags: string[]): Promise<string> {
  const r = await nodectl(["join-token", role, "--quiet", ...flags], { NODECTL_STATE_DIR: stateDir });
  expect(r.status, r.stderr).to.equal(0);
  return r.stdout.trim();
}

function nodeJsonOf(stateDir: string): { nodeId: string; clusterId: string } {
  return JSON.parse(readFileSync(join(stateDir, "node.json"), "utf8"));
}

describe("node daemon: a cluster's first manager (nodectl init, run, ls, join-token, ca status)", function () {
  this.timeout(90_000);
  const base = mkdtempSync(join(tmpdir(), "nodectl-manager-"));
  const stateDir = join(base, "m1");
  let daemon: Daemon | undefined;
  let listen = "";
  let metricsPort = 0;

  before(async () => {
    listen = `127.0.0.1:${await freePort()}`;
    metricsPort = await freePort();
    daemon = new Daemon([
      "init",
      "--state-dir",
      stateDir,
      "--listen",
      listen,
      "--cert-expiry",
      "2h",
      "--metrics",
      `127.0.0.1:${metricsPort}`,
    ]);
    await readyCluster(stateDir);
  });

  after(async () => {
    daemon?.kill();
    await daemon?.exited;
    rmSync(base, { recursive: true, force: true });
  });

  it("ls --json shows the one manager: ready, leader, its address and certificate, its session on itself", async () => {
    const { nodeId } = nodeJsonOf(stateDir);
    // The only manager holds its own session on itself (it moves once another manager joins).
    const nodes = await waitUntil("the manager's own session", 10_000, async () => {
      const all = await lsJson(stateDir);
      return all[0]?.session ? all : undefined;
    });
    const cert = new X509Certificate(readFileSync(join(stateDir, "certificates/node.crt")));
    expect(nodes).to.have.length(1);
    expect(nodes[0]).to.deep.equal({
      id: nodeId,
      role: "manager",
      desiredRole: "manager",
      status: "ready",
      leader: true,
      address: listen,
      certificate: {
        // The DER INTEGER's hex, as src/ca reads serials: a leading 00 when the top bit is set.
        serial: cert.serialNumber.toLowerCase().padStart(nodes[0]?.certificate?.serial.length ?? 0, "0"),
        notAfter: new Date(cert.validTo).toISOString(),
        issuerKeyId: nodes[0]?.certificate?.issuerKeyId,
      },
      session: { managerId: nodeId, connectedAt: nodes[0]?.session?.connectedAt },
    });
    expect(nodeId).to.match(/^[a-z0-9]{25}$/);
    const ca = new X509Certificate(readFileSync(join(stateDir, "certificates/ca.crt")));
    expect(nodes[0]?.certificate?.issuerKeyId).to.match(/^[0-9a-f]{40}$/);
    expect(ca.toLegacyObject().ext_key_usage).to.equal(undefined); // a root, not a leaf
    // A 2h --cert-expiry gives a certificate of about two hours.
    const lifetimeMs = new Date(cert.validTo).getTime() - Date.now();
    expect(lifetimeMs).to.be.within(110 * 60_000, 121 * 60_000);

    const table = await nodectl(["ls", "--state-dir", stateDir]);
    expect(table.status).to.equal(0);
    expect(table.stdout).to.match(/^ID\s+ROLE\s+STATUS\s+LEADER\s+ADDRESS/);
    expect(table.stdout).to.contain(nodeId).and.contain("manager").and.contain("ready");
  });

  it("join-token worker prints a token that parses and names this cluster's root", async () => {
    const worker = await token(stateDir, "worker");
    const manager = await token(stateDir, "manager");
    const rootDer = new X509Certificate(readFileSync(join(stateDir, "certificates/ca.crt"))).raw;
    const parsed = parseJoinToken(worker);
    expect(() => checkRootDigest(parsed, rootDer)).not.to.throw();
    expect(parsed.rootDigest).to.equal(rootCertificateDigest(rootDer));
    expect(parseJoinToken(manager).secret).not.to.equal(parsed.secret);

    const human = await nodectl(["join-token", "worker", "--state-dir", stateDir]);
    expect(human.status).to.equal(0);
    expect(human.stdout).to.contain(`nodectl join --state-dir DIR --token ${worker} ${listen}`);
  });

  it("join-token worker --rotate changes the secret; the next plain read returns the new token", async () => {
    const before = await token(stateDir, "worker");
    const managerBefore = await token(stateDir, "manager");
    const rotated = await token(stateDir, "worker", "--rotate");
    expect(parseJoinToken(rotated).secret).not.to.equal(parseJoinToken(before).secret);
    expect(parseJoinToken(rotated).rootDigest).to.equal(parseJoinToken(before).rootDigest);
    expect(await token(stateDir, "worker")).to.equal(rotated);
    expect(await token(stateDir, "manager")).to.equal(managerBefore);
  });

  it("ca status and inspect answer from the replicated state; an unknown id is refused (exit 1)", async () => {
    const { nodeId, clusterId } = nodeJsonOf(stateDir);
    const ca = new X509Certificate(readFileSync(join(stateDir, "certificates/ca.crt")));
    const status = await nodectl(["ca", "status", "--json", "--state-dir", stateDir]);
    expect(status.status, status.stderr).to.equal(0);
    const json = JSON.parse(status.stdout);
    expect(json).to.deep.include({
      clusterId,
      rootNotAfter: new Date(ca.validTo).toISOString(),
      rootDigest: rootCertificateDigest(ca.raw),
      nodeCertLifetimeSeconds: 7200,
      rotation: null,
    });
    expect(json.rootKeyId).to.match(/^[0-9a-f]{40}$/);

    const inspect = await nodectl(["inspect", nodeId, "--json", "--state-dir", stateDir]);
    expect(inspect.status, inspect.stderr).to.equal(0);
    expect(JSON.parse(inspect.stdout)).to.deep.include({ id: nodeId, raftId: 1, membership: "voter" });

    const unknown = await nodectl(["inspect", "nosuchnode", "--state-dir", stateDir]);
    expect(unknown.status).to.equal(1);
    expect(unknown.stderr).to.contain("NODE_NOT_FOUND").and.contain("nodectl ls");
  });

  it("control.sock is mode 0600; metrics show the Raft term and leader changes", async () => {
    expect(statSync(join(stateDir, "control.sock")).mode & 0o777).to.equal(0o600);
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const term = /^nodectl_raft_term (\d+)$/m.exec(metrics);
    expect(Number(term?.[1])).to.be.at.least(2);
    expect(metrics).to.match(/^nodectl_raft_leader_changes_total [1-9]/m);
  });

  it("the standard health service answers SERVING over TLS to a caller with no client certificate", async () => {
    const Health = grpc.makeGenericClientConstructor(healthService, "Health");
    const client = new Health(
      listen,
      grpc.credentials.createSsl(readFileSync(join(stateDir, "certificates/ca.crt")), null, null, {
        // The manager's certificate names its node id, not 127.0.0.1.
        checkServerIdentity: () => undefined,
      }),
      { "grpc.ssl_target_name_override": nodeJsonOf(stateDir).nodeId },
    );
    try {
      const answer = await new Promise<{ status: string }>((resolve, reject) =>
        client.makeUnaryRequest(
          "/grpc.health.v1.Health/Check",
          (value: { service: string }) => healthService.Check!.requestSerialize(value),
          (bytes: Buffer) => healthService.Check!.responseDeserialize(bytes) as { status: string },
          { service: "" },
          { deadline: Date.now() + 5_000 },
          (err, res) => (err || !res ? reject(err) : resolve(res)),
        ),
      );
      expect(answer.status).to.equal("SERVING");
    } finally {
      client.close();
    }
  });

  it("the node certificate verifies with openssl -x509_strict and has the profile's subject and SANs", () => {
    const { nodeId, clusterId } = nodeJsonOf(stateDir);
    const dir = join(stateDir, "certificates");
    const verify = execFileSync(
      "openssl",
      ["verify", "-x509_strict", "-CAfile", join(dir, "ca.crt"), join(dir, "node.crt")],
      { encoding: "utf8" },
    );
    expect(verify.trim()).to.equal(`${join(dir, "node.crt")}: OK`);
    const text = execFileSync(
      "openssl",
      ["x509", "-in", join(dir, "node.crt"), "-noout", "-subject", "-ext", "subjectAltName,extendedKeyUsage"],
      { encoding: "utf8" },
    );
    expect(text).to.contain(`subject=O = ${clusterId}, OU = manager, CN = ${nodeId}`);
    expect(text).to.contain(`DNS:${nodeId}, DNS:manager`);
    expect(text).to.contain("TLS Web Server Authentication, TLS Web Client Authentication");
    expect(statSync(join(dir, "node.key")).mode & 0o777).to.equal(0o600);
  });

  it("refuses a second process on the running state dir (exit 1) and init on an existing dir, changing nothing", async () => {
    const nodeJsonBefore = readFileSync(join(stateDir, "node.json"));
    const run = await nodectl(["run", "--state-dir", stateDir]);
    expect(run.status).to.equal(1);
    expect(run.stderr).to.contain("STATE_DIR_LOCKED");
    const init = await nodectl([
      "init",
      "--state-dir",
      stateDir,
      "--listen",
      `127.0.0.1:${await freePort()}`,
    ]);
    expect(init.status).to.equal(1);
    expect(init.stderr).to.contain("STATE_DIR_LOCKED");
    expect(readFileSync(join(stateDir, "node.json"))).to.deep.equal(nodeJsonBefore);
    // The running manager was not disturbed.
    expect((await lsJson(stateDir)).map((n) => n.leader)).to.deep.equal([true]);
  });

  it("SIGTERM stops it cleanly; run brings back the same node, cluster and rotated token", async () => {
    const { nodeId, clusterId } = nodeJsonOf(stateDir);
    const workerToken = await token(stateDir, "worker");
    const stopStarted = Date.now();
    expect(await daemon?.stop()).to.equal(0);
    // It closed everything it opened: the process ended on its own, not by bin/nodectl.js's 5 s fallback.
    expect(Date.now() - stopStarted).to.be.below(4_000);
    expect(daemon?.log).not.to.contain("handles were still open");
    expect(existsSync(join(stateDir, "control.sock"))).to.equal(false);
    expect(existsSync(join(stateDir, "pending-cluster.bin"))).to.equal(false);
    const down = await nodectl(["ls", "--state-dir", stateDir]);
    expect(down.status).to.equal(1);
    expect(down.stderr).to.contain("CONTROL_UNREACHABLE").and.contain(`nodectl run --state-dir ${stateDir}`);

    daemon = new Daemon(["run", "--state-dir", stateDir]);
    const nodes = await readyCluster(stateDir);
    expect(nodes.map((n) => [n.id, n.leader, n.status])).to.deep.equal([[nodeId, true, "ready"]]);
    const status = JSON.parse((await nodectl(["ca", "status", "--json", "--state-dir", stateDir])).stdout);
    expect(status.clusterId).to.equal(clusterId);
    expect(await token(stateDir, "worker")).to.equal(workerToken);
    expect(await daemon.stop()).to.equal(0);
  });
});

describe("node daemon: refusals and usage errors", function () {
  this.timeout(60_000);
  const base = mkdtempSync(join(tmpdir(), "nodectl-refusals-"));
  after(() => rmSync(base, { recursive: true, force: true }));

  it("run on a missing dir, or a dir that holds no node, exits 1 saying what to do, creating nothing", async () => {
    const missing = join(base, "missing");
    const r = await nodectl(["run", "--state-dir", missing]);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.contain("STATE_DIR_MISSING").and.contain("nodectl init");
    expect(existsSync(missing)).to.equal(false);

    const notANode = mkdtempSync(join(base, "other-"));
    const other = await nodectl(["run", "--state-dir", notANode]);
    expect(other.status).to.equal(1);
    expect(other.stderr).to.contain("STATE_DIR_MISSING").and.contain("no node.json");
  });

  it("init on a port in use exits 1 and leaves the state dir empty, so the same init can be retried", async () => {
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
    const port = (busy.address() as AddressInfo).port;
    const dir = mkdtempSync(join(base, "busy-"));
    try {
      const r = await nodectl(["init", "--state-dir", dir, "--listen", `127.0.0.1:${port}`]);
      expect(r.status).to.equal(1);
      expect(r.stderr).to.contain("ADDRESS_UNAVAILABLE").and.contain(`127.0.0.1:${port}`);
      expect(readdirSync(dir)).to.deep.equal([]);
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }
  });

  it("run on a dir whose node.json is corrupt exits 1 (STATE_DIR_CORRUPT)", async () => {
    const dir = mkdtempSync(join(base, "corrupt-"));
    execFileSync("sh", ["-c", `printf '{"version":1,' > ${join(dir, "node.json")}`]);
    const r = await nodectl(["run", "--state-dir", dir]);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.contain("STATE_DIR_CORRUPT");
  });

  it("usage errors exit 2: unknown command, missing flag, bad duration, bad role, bad address, no state dir", async () => {
    const port = await freePort();
    const dir = join(base, "never");
    const cases: string[][] = [
      ["frobnicate"],
      ["init", "--state-dir", dir],
      ["init", "--state-dir", dir, "--listen", `127.0.0.1:${port}`, "--cert-expiry", "10s"],
      ["init", "--state-dir", dir, "--listen", `127.0.0.1:${port}`, "--cert-expiry", "soon"],
      ["init", "--state-dir", dir, "--listen", "localhost"],
      ["init", "--state-dir", dir, "--listen", `0.0.0.0:${port}`],
      ["join-token", "admin", "--state-dir", dir],
      ["ls"],
    ];
    for (const args of cases) {
      const r = await nodectl(args, { NODECTL_STATE_DIR: "" });
      expect(r.status, `${args.join(" ")}: ${r.stderr}`).to.equal(2);
      expect(r.stderr.length, args.join(" ")).to.be.greaterThan(0);
    }
    expect(existsSync(dir)).to.equal(false);
  });
});

describe("node daemon: the cluster's creation survives a crash before it was proposed", function () {
  this.timeout(90_000);
  const base = mkdtempSync(join(tmpdir(), "nodectl-creation-"));
  let daemon: Daemon | undefined;
  afterEach(async () => {
    daemon?.kill();
    await daemon?.exited;
  });
  after(() => rmSync(base, { recursive: true, force: true }));

  it("a state dir bootstrapped but never started gets its cluster on run; a leftover proposal is a no-op", async () => {
    const stateDir = join(base, "m1");
    // What init leaves when the process dies right after writing the state dir.
    const { config, storage } = await initManager({
      stateDir,
      listen: `127.0.0.1:${await freePort()}`,
      logger: silentLogger(),
    });
    await storage.close();
    const pending = join(stateDir, "pending-cluster.bin");
    copyFileSync(pending, join(base, "pending-copy.bin"));

    daemon = new Daemon(["run", "--state-dir", stateDir]);
    const nodes = await readyCluster(stateDir);
    expect(nodes.map((n) => n.id)).to.deep.equal([config.nodeId]);
    await waitUntil("the pending creation to be removed", 5_000, async () =>
      existsSync(pending) ? undefined : true,
    );
    expect(await daemon.stop()).to.equal(0);

    // A crash after the creation was applied but before the file went: proposed again, refused, removed.
    copyFileSync(join(base, "pending-copy.bin"), pending);
    daemon = new Daemon(["run", "--state-dir", stateDir]);
    await readyCluster(stateDir);
    await waitUntil("the leftover creation to be removed", 10_000, async () =>
      existsSync(pending) ? undefined : true,
    );
    expect((await lsJson(stateDir)).map((n) => n.id)).to.deep.equal([config.nodeId]);
    expect(
      JSON.parse((await nodectl(["ca", "status", "--json", "--state-dir", stateDir])).stdout).clusterId,
    ).to.equal(config.clusterId);
    expect(await daemon.stop()).to.equal(0);
  });
});
