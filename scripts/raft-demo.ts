// npm run demo:raft: the Raft runtime on its own (the test bed's KV members, not the
// product; `npm start` is the product demo). Three Raft members as real
// processes on loopback (mutual TLS, level storage): elect a leader, replicate
// writes, kill -9 the leader, time the failover, restart it and watch it
// converge. Exits when done; --keep-running leaves the cluster up until Ctrl-C.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { LocalCluster, waitFor } from "../src/testbed/local-cluster.js";

const opts = new Command()
  .name("npm run demo:raft --")
  .option("--members <n>", "how many members", "3")
  .option("--keep-running", "leave the cluster running until Ctrl-C")
  .parse()
  .opts<{ members: string; keepRunning?: boolean }>();

const say = (s: string) => process.stdout.write(`${s}\n`);
const size = Number(opts.members);
if (!Number.isInteger(size) || size < 1 || size > 7) {
  console.error("--members must be 1..7");
  process.exit(2);
}

async function table(c: LocalCluster): Promise<void> {
  for (const m of c.members.values()) {
    const s = m.proc ? await c.status(m.id).catch(() => undefined) : undefined;
    say(
      s
        ? `  member ${m.id}  ${m.address.padEnd(16)} ${s.role.padEnd(9)} term ${s.term}  commit ${s.commit}  applied ${s.applied}`
        : `  member ${m.id}  ${m.address.padEnd(16)} down`,
    );
  }
}

const baseDir = mkdtempSync(join(tmpdir(), "nodectl-demo-"));
let cluster: LocalCluster | undefined;
let closing = false;
const close = async (code: number) => {
  if (closing) return;
  closing = true;
  await cluster?.close();
  // Keep the members' state and logs when something went wrong; remove them otherwise.
  if (code === 0) rmSync(baseDir, { recursive: true, force: true });
  else say(`State and logs kept in ${baseDir}`);
  process.exit(code);
};
// Stop the members and clean up however this demo is ended: Ctrl-C, a signal from npm or
// a terminal that went away, or a reader that closed our output (`npm run demo:raft | head -5`).
// (The members also stop on their own if this process dies: they watch a pipe we hold.)
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => void close(0));
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") void close(0);
});
// npm does not pass its own SIGTERM on to the script: notice that it (our parent) is gone.
const parentPid = process.ppid;
setInterval(() => {
  if (process.ppid !== parentPid) void close(0);
}, 250).unref();

say(`Starting ${size} Raft member${size === 1 ? "" : "s"} on loopback (state and logs in ${baseDir}) ...`);
cluster = await LocalCluster.start({ size, baseDir, logLevel: "warn" });

try {
  if (closing) await new Promise(() => undefined); // output already closed: close() exits
  const t0 = Date.now();
  const leader = await waitFor("a leader", 20_000, () => cluster.agreedLeader());
  say(`Leader elected: member ${leader} (${Date.now() - t0} ms)`);
  const w0 = Date.now();
  for (let i = 0; i < 100; i++) await cluster.put(leader, `demo-${i}`, `value ${i}`);
  say(
    size === 1
      ? `100 writes acknowledged after fsync (${Date.now() - w0} ms)`
      : `100 writes acknowledged after replication to a quorum and fsync (${Date.now() - w0} ms)`,
  );
  // Followers learn the commit index with the next append or heartbeat (one tick at most).
  const a0 = Date.now();
  const commit = (await cluster.status(leader)).commit;
  await waitFor("every member to apply the writes", 5_000, async () => {
    const applied = await Promise.all([...cluster.members.keys()].map((id) => cluster.status(id)));
    return applied.every((s) => s.applied >= commit) ? true : undefined;
  });
  say(`Every member applied them (${Date.now() - a0} ms later)`);
  await table(cluster);
  if (size < 3)
    say(`(failover needs 3 members or more: with ${size}, losing the leader loses the quorum; skipped)`);
  else {
    say(`kill -9 member ${leader} (the leader) ...`);
    await cluster.kill(leader);
    const k0 = Date.now();
    const next = await waitFor("a new leader", 10_000, () => cluster.agreedLeader());
    say(`New leader: member ${next} after ${Date.now() - k0} ms`);
    await cluster.put(next, "after-failover", "still writable");
    say(`Restarting member ${leader} ...`);
    await cluster.startMember(leader);
    await waitFor("the old leader to catch up", 15_000, async () => {
      const [a, b] = await Promise.all([cluster.status(leader), cluster.status(next)]);
      return a.applied >= b.commit ? true : undefined;
    });
    const got = await cluster.get(leader, "demo-99");
    say(
      `Member ${leader} rejoined as ${(await cluster.status(leader)).role} and reads demo-99 = "${got.value}"`,
    );
    await table(cluster);
  }
  if (opts.keepRunning) {
    say("Cluster running; Ctrl-C to stop.");
    await new Promise(() => undefined);
  }
  await close(0);
} catch (err) {
  // Once closing (a signal, or our output closed), failures are those of the stopping members.
  if (closing) await new Promise(() => undefined);
  console.error(`demo failed: ${(err as Error).message}`);
  await close(1);
}
