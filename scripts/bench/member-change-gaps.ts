// Why can writes pause during a membership change and a leadership transfer? Runs the
// scenario of processes.test.ts ("adds a learner, promotes it, removes a member and
// transfers leadership while committing throughout") N times and prints one JSON line:
// the longest pause between acknowledged writes in each run, and what the failed writes
// were answered with. Run it on an idle machine and beside busy loops to tell a stall in
// the protocol from CPU starvation: `npm run bench:member-change -- --runs 10`.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { LocalCluster, waitFor } from "../../src/testbed/local-cluster.js";

const opts = new Command().option("--runs <n>", "scenarios to run", "5").parse().opts<{ runs: string }>();

interface RunResult {
  maxGapMs: number;
  acked: number;
  failures: Record<string, number>;
  /** Where the longest pause happened: what the scenario was doing then. */
  longestDuring: string;
}

async function scenario(): Promise<RunResult> {
  const baseDir = mkdtempSync(join(tmpdir(), "member-change-"));
  const c = await LocalCluster.start({ size: 3, baseDir, tickMs: 50 });
  const failures: Record<string, number> = {};
  let phase = "start";
  let maxGapMs = 0;
  let longestDuring = "";
  let acked = 0;
  let writing = true;
  try {
    const leader = await waitFor("a leader", 15_000, () => c.agreedLeader());
    await c.define(4, true);
    await c.startMember(4);
    const removed = [1, 2, 3].find((id) => id !== leader)!;
    let last = Date.now();
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        const targets = [1, 2, 3, 4].filter((id) => c.members.get(id)?.proc);
        const via = targets[i % targets.length];
        try {
          await c.put(via, `w-${i}`, `v${i}`, 2_000);
          acked++;
          const gap = Date.now() - last;
          if (gap > maxGapMs) {
            maxGapMs = gap;
            longestDuring = phase;
          }
          last = Date.now();
        } catch (err) {
          const text = String((err as Error).message);
          const code = /[A-Z_]{6,}/.exec(text)?.[0] ?? text.slice(0, 40);
          failures[`${phase}: ${code} via ${via === leader ? "old leader" : `member ${via}`}`] =
            (failures[`${phase}: ${code} via ${via === leader ? "old leader" : `member ${via}`}`] ?? 0) + 1;
        }
        await new Promise((r) => setImmediate(r));
      }
    })();
    try {
      phase = "add learner";
      await c.call(leader, (k) => k.addLearner, {
        id: 4,
        nodeId: c.members.get(4)!.nodeId,
        address: c.members.get(4)!.address,
      });
      phase = "promote";
      await c.call(leader, (k) => k.promoteMember, { id: 4 }, 10_000);
      phase = "remove";
      await c.call(leader, (k) => k.removeMember, { id: removed });
      await c.kill(removed);
      phase = "transfer";
      await c.call(leader, (k) => k.transferLeadership, { id: 4 });
      await waitFor("member 4 to lead", 10_000, async () =>
        (await c.agreedLeader()) === 4 ? true : undefined,
      );
      phase = "after transfer";
      const at = acked;
      await waitFor("writes after the transfer", 10_000, () => (acked > at + 20 ? true : undefined));
    } finally {
      writing = false;
      await writer;
    }
  } finally {
    await c.close();
    rmSync(baseDir, { recursive: true, force: true });
  }
  return { maxGapMs, acked, failures, longestDuring };
}

const results: RunResult[] = [];
for (let i = 0; i < Number(opts.runs); i++) results.push(await scenario());
const gaps = results.map((r) => r.maxGapMs).sort((a, b) => a - b);
process.stdout.write(
  `${JSON.stringify({
    runs: results.length,
    max_gap_ms: {
      median: gaps[Math.floor(gaps.length / 2)],
      max: gaps[gaps.length - 1],
      all: results.map((r) => r.maxGapMs),
    },
    longest_during: results.map((r) => r.longestDuring),
    failures: results.map((r) => r.failures),
  })}\n`,
);
