// npm run bench:restart [-- --restarts N --down-ms MS]
// How long a restarted member takes to serve again: starts 3 members on loopback,
// then N times kills a follower with kill -9, leaves it down for a while (so its
// peers' reconnect backoff grows, as after a real crash), restarts it and times
// the first write and then the first read served through that member's own KV
// service. Prints one JSON line: medians and maxima from the process spawn and
// from the moment the member listens.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { LocalCluster, waitFor } from "../../src/testbed/local-cluster.js";

const opts = new Command()
  .option("--restarts <n>", "restarts to measure", "12")
  .option("--down-ms <ms>", "how long the member stays down before it is restarted", "1500")
  .parse()
  .opts<{ restarts: string; downMs: string }>();
const restarts = Number(opts.restarts);
const downMs = Number(opts.downMs);

/** Retries `attempt` until it succeeds: the member answers NO_LEADER until it knows the leader. */
async function firstSuccess<T>(what: string, attempt: () => Promise<T>): Promise<T> {
  const until = Date.now() + 30_000;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (Date.now() > until) throw new Error(`no ${what} served within 30 s: ${err}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

function summary(values: number[]): { median: number; max: number; min: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median: Math.round(median), max: sorted[sorted.length - 1], min: sorted[0] };
}

async function main(): Promise<void> {
  const baseDir = mkdtempSync(join(tmpdir(), "bench-restart-"));
  const cluster = await LocalCluster.start({ size: 3, baseDir, logLevel: "warn" });
  const fromSpawn: number[] = [];
  const fromListening: number[] = [];
  try {
    await waitFor("a leader", 20_000, () => cluster.agreedLeader());
    for (let i = 0; i < restarts; i++) {
      const leader = await waitFor("a leader", 20_000, () => cluster.agreedLeader());
      const followers = [1, 2, 3].filter((id) => id !== leader);
      const id = followers[i % followers.length];
      await cluster.kill(id);
      await new Promise((r) => setTimeout(r, downMs));
      const spawnedAt = Date.now();
      await cluster.startMember(id);
      const listeningAt = Date.now();
      const key = `restart-${i}`;
      await firstSuccess("write", () => cluster.put(id, key, `v${i}`, 1_000));
      const got = await firstSuccess("read", () => cluster.get(id, key, 1_000));
      if (!got.found || got.value !== `v${i}`) throw new Error(`member ${id} read ${JSON.stringify(got)}`);
      const servedAt = Date.now();
      fromSpawn.push(servedAt - spawnedAt);
      fromListening.push(servedAt - listeningAt);
    }
  } finally {
    await cluster.close();
    rmSync(baseDir, { recursive: true, force: true });
  }
  process.stdout.write(
    `${JSON.stringify({
      restarts,
      down_ms: downMs,
      served_after_listening_ms: summary(fromListening),
      served_after_spawn_ms: summary(fromSpawn),
    })}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:restart: ${(err as Error).message}\n`);
  process.exit(1);
});
