// npm run bench:raft [-- --seconds S --concurrency 1,16,64 --etcd]
// Starts 3 members as separate processes on loopback and drives 150-byte puts
// from a separate client process through the real write path (client -> gRPC
// -> leader -> replication -> fsync on a quorum -> apply -> reply). Prints one
// JSON line per concurrency. With --etcd (and an etcd binary on PATH), runs the
// same client loop against a 3-member etcd on loopback, side by side.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Command } from "commander";
import { freePort, LocalCluster, waitFor } from "../../src/raft/runtime/local-cluster.js";

const CLIENT = new URL("./raft-client.ts", import.meta.url).pathname;

const opts = new Command()
  .option("--seconds <s>", "measured seconds per concurrency", "5")
  .option("--concurrency <list>", "concurrency levels", "1,16,64")
  .option("--etcd", "also measure a 3-member etcd on loopback with the same client")
  .parse()
  .opts<{ seconds: string; concurrency: string; etcd?: boolean }>();
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
    await cluster.prepareClient();
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
        join(baseDir, "client", "certificates"),
        "--cluster-id",
        cluster.clusterId,
      ]);
    }
  } finally {
    await cluster.close();
    rmSync(baseDir, { recursive: true, force: true });
  }
}

async function benchEtcd(): Promise<void> {
  const baseDir = mkdtempSync(join(tmpdir(), "bench-etcd-"));
  const members = await Promise.all(
    [1, 2, 3].map(async (i) => ({ name: `e${i}`, client: await freePort(), peer: await freePort() })),
  );
  const initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peer}`).join(",");
  const procs: ChildProcess[] = members.map((m) =>
    spawn(
      "etcd",
      [
        "--name",
        m.name,
        "--data-dir",
        join(baseDir, m.name),
        "--listen-client-urls",
        `http://127.0.0.1:${m.client}`,
        "--advertise-client-urls",
        `http://127.0.0.1:${m.client}`,
        "--listen-peer-urls",
        `http://127.0.0.1:${m.peer}`,
        "--initial-advertise-peer-urls",
        `http://127.0.0.1:${m.peer}`,
        "--initial-cluster",
        initialCluster,
        "--initial-cluster-state",
        "new",
        "--initial-cluster-token",
        "bench",
        "--log-level",
        "error",
      ],
      { stdio: "ignore" },
    ),
  );
  try {
    // The leader, through etcd's JSON gateway: its member id equals the leader id it reports.
    const leader = await waitFor("an etcd leader", 20_000, async () => {
      for (const m of members) {
        const res = await fetch(`http://127.0.0.1:${m.client}/v3/maintenance/status`, {
          method: "POST",
          body: "{}",
        });
        const s = (await res.json()) as { header?: { member_id?: string }; leader?: string };
        if (s.leader && s.leader !== "0" && s.header?.member_id === s.leader) return m;
      }
      return undefined;
    });
    for (const c of levels) {
      await runClient([
        "--system",
        "etcd",
        "--target",
        `127.0.0.1:${leader.client}`,
        "--concurrency",
        String(c),
        "--seconds",
        opts.seconds,
      ]);
    }
  } finally {
    for (const p of procs) p.kill("SIGKILL");
    rmSync(baseDir, { recursive: true, force: true });
  }
}

await benchNodectl();
if (opts.etcd) await benchEtcd();
process.exit(0);
