// npm run bench:raft [-- --seconds S --concurrency 1,16,64 --etcd]
// Starts 3 members as separate processes on loopback and drives 150-byte puts
// from a separate client process through the real write path (client -> gRPC
// -> leader -> replication -> fsync on a quorum -> apply -> reply). Prints one
// JSON line per concurrency. With --etcd (and an etcd binary on PATH), runs the
// same client loop against a 3-member etcd on loopback, side by side.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Command } from "commander";
import { freePort, LocalCluster, waitFor } from "../../src/testbed/local-cluster.js";

const CLIENT = new URL("./raft-client.ts", import.meta.url).pathname;

const opts = new Command()
  .option("--seconds <s>", "measured seconds per concurrency", "5")
  .option("--concurrency <list>", "concurrency levels", "1,16,64")
  .option(
    "--etcd",
    "also measure a 3-member etcd on loopback with the same client, with mutual TLS like ours",
  )
  .option("--etcd-plaintext", "the same, but etcd without TLS (cheaper for etcd than what nodectl does)")
  .parse()
  .opts<{ seconds: string; concurrency: string; etcd?: boolean; etcdPlaintext?: boolean }>();
const levels = opts.concurrency.split(",").map(Number);

async function runClient(args: string[]): Promise<void> {
  const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", CLIENT, ...args], {
    maxBuffer: 1 << 20,
  });
  process.stdout.write(stdout);
}

async function benchNodectl(): Promise<void> {
  const baseDir = mkdtempSync(join(tmpdir(), "bench-raft-"));
  const cluster = await LocalCluster.start({ size: 3, baseDir, logLevel: "warn" });
  try {
    const leader = await waitFor("a leader", 20_000, () => cluster.agreedLeader());
    for (const c of levels) {
      await runClient([
        "--target",
        cluster.members.get(leader)!.address,
        "--concurrency",
        String(c),
        "--seconds",
        opts.seconds,
        "--cert-dir",
        cluster.operatorDir,
        "--cluster-id",
        cluster.clusterId,
      ]);
    }
  } finally {
    await cluster.close();
    rmSync(baseDir, { recursive: true, force: true });
  }
}

interface EtcdTls {
  ca: string;
  cert: string;
  key: string;
}

/** P-256 certificates for etcd with the IP SAN its peer TLS checks, made with openssl. */
async function etcdCertificates(dir: string): Promise<EtcdTls> {
  const sh = promisify(execFile);
  const [ca, caKey, key, csr, cert, ext] = [
    "ca.crt",
    "ca.key",
    "node.key",
    "node.csr",
    "node.crt",
    "ext.cnf",
  ].map((f) => join(dir, f));
  await sh("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", caKey]);
  await sh("openssl", [
    "req",
    "-x509",
    "-new",
    "-key",
    caKey,
    "-subj",
    "/CN=bench-etcd-ca",
    "-days",
    "2",
    "-out",
    ca,
  ]);
  await sh("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key]);
  await sh("openssl", ["req", "-new", "-key", key, "-subj", "/CN=etcd", "-out", csr]);
  writeFileSync(ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n");
  await sh(
    "openssl",
    ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", caKey, "-CAcreateserial", "-days", "2"].concat([
      "-extfile",
      ext,
      "-out",
      cert,
    ]),
  );
  return { ca, cert, key };
}

interface EtcdStatus {
  header?: { member_id?: string };
  leader?: string;
}

/** etcd's maintenance status through its JSON gateway (over mutual TLS when enabled). */
function etcdStatus(port: number, tls: EtcdTls | undefined): Promise<EtcdStatus> {
  const options = { host: "127.0.0.1", port, path: "/v3/maintenance/status", method: "POST" };
  return new Promise((resolve, reject) => {
    const onResponse = (res: IncomingMessage) => {
      let text = "";
      res.on("data", (d: Buffer) => {
        text += d.toString();
      });
      res.on("end", () => {
        try {
          resolve(JSON.parse(text) as EtcdStatus);
        } catch (err) {
          reject(err);
        }
      });
    };
    const req = tls
      ? httpsRequest(
          { ...options, ca: readFileSync(tls.ca), cert: readFileSync(tls.cert), key: readFileSync(tls.key) },
          onResponse,
        )
      : httpRequest(options, onResponse);
    req.on("error", reject);
    req.end("{}");
  });
}

async function benchEtcd(): Promise<void> {
  const baseDir = mkdtempSync(join(tmpdir(), "bench-etcd-"));
  const tls = opts.etcdPlaintext ? undefined : await etcdCertificates(baseDir);
  const scheme = tls ? "https" : "http";
  const tlsFlags = tls
    ? [
        "--cert-file",
        tls.cert,
        "--key-file",
        tls.key,
        "--trusted-ca-file",
        tls.ca,
        "--client-cert-auth",
      ].concat(
        ["--peer-cert-file", tls.cert, "--peer-key-file", tls.key, "--peer-trusted-ca-file", tls.ca],
        ["--peer-client-cert-auth"],
      )
    : [];
  const members = await Promise.all(
    [1, 2, 3].map(async (i) => ({ name: `e${i}`, client: await freePort(), peer: await freePort() })),
  );
  const url = (port: number) => `${scheme}://127.0.0.1:${port}`;
  const initialCluster = members.map((m) => `${m.name}=${url(m.peer)}`).join(",");
  const procs: ChildProcess[] = members.map((m) =>
    spawn(
      "etcd",
      [
        ["--name", m.name, "--data-dir", join(baseDir, m.name)],
        ["--listen-client-urls", url(m.client), "--advertise-client-urls", url(m.client)],
        ["--listen-peer-urls", url(m.peer), "--initial-advertise-peer-urls", url(m.peer)],
        [
          "--initial-cluster",
          initialCluster,
          "--initial-cluster-state",
          "new",
          "--initial-cluster-token",
          "bench",
        ],
        ["--log-level", "error"],
        tlsFlags,
      ].flat(),
      { stdio: "ignore" },
    ),
  );
  try {
    // The leader: the member whose own id equals the leader id it reports.
    const leader = await waitFor("an etcd leader", 20_000, async () => {
      for (const m of members) {
        const s = await etcdStatus(m.client, tls);
        if (s.leader && s.leader !== "0" && s.header?.member_id === s.leader) return m;
      }
      return undefined;
    });
    const tlsArgs = tls ? ["--etcd-ca", tls.ca, "--etcd-cert", tls.cert, "--etcd-key", tls.key] : [];
    for (const c of levels) {
      await runClient(
        ["--system", "etcd", "--target", `127.0.0.1:${leader.client}`, "--concurrency", String(c)].concat(
          ["--seconds", opts.seconds],
          tlsArgs,
        ),
      );
    }
  } finally {
    for (const p of procs) p.kill("SIGKILL");
    rmSync(baseDir, { recursive: true, force: true });
  }
}

await benchNodectl();
if (opts.etcd || opts.etcdPlaintext) await benchEtcd();
process.exit(0);
