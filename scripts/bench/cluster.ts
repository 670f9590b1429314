// npm run bench:cluster [-- --figure join|failover|issue|ls|all --runs 3 ...]
// The figures issue 10 asks for, measured on a 3-manager cluster of real `nodectl`
// processes on loopback (temp state dirs, built CLI in dist/: `npm run bench:cluster`
// builds first). Each figure prints one JSON line: every run's values, then the median,
// min and max over the runs; each run starts a fresh cluster.
// - join:     N workers (--workers, 100) join through one follower and are `ready` in
//             `ls`; the RSS of the manager holding their sessions with 0 and N worker
//             sessions (--mode processes: N `nodectl join` processes, at most --parallel
//             joining at once; in-process: N workers in one child process).
// - failover: kill -9 of the leader → first issuance through a survivor (--trials per run),
//             and when a survivor's metrics first say it leads.
// - issue:    certificates per second at --concurrency: --kind renew (mTLS renewals by
//             holders of real certificates) or join; --target all (caller i asks manager
//             i mod 3), leader or followers.
// - ls:       `node bin/nodectl.js ls` latency, --calls calls each from a follower and the
//             leader, and a bare `node -e ""` start for scale.
// The machine's load average before and after each figure is in its line.
// Bounded: every wait has a deadline and --max-minutes bounds the whole run; processes
// and temp dirs are removed on exit, failure, SIGINT and SIGTERM.
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Command } from "commander";
import { killAll, ManagerCluster, nodectl, round, spread, waitUntil } from "./cluster-driver.js";
import { failoverTrial, type IssueKind, type IssueTarget, issueRun } from "./cluster-issuance.js";
import { type JoinMode, joinRun } from "./cluster-join.js";

const opts = new Command()
  .option("--figure <name>", "join | failover | issue | ls | all", "all")
  .option("--runs <n>", "runs per figure, each on a fresh cluster", "3")
  .option("--workers <n>", "join: workers", "100")
  .option("--mode <mode>", "join: processes | in-process", "processes")
  .option("--parallel <n>", "join, processes mode: `nodectl join` processes joining at once", "10")
  .option("--trials <n>", "failover: kill -9 trials per run", "10")
  .option("--concurrency <n>", "issue: renewals in flight", "16")
  .option("--seconds <s>", "issue: measured seconds", "10")
  .option("--kind <kind>", "issue: renew (mTLS renewals by holders of real certificates) | join", "renew")
  .option("--target <t>", "issue: all (caller i to manager i mod 3) | leader | followers", "all")
  .option("--calls <n>", "ls: calls per manager", "20")
  .option("--max-minutes <m>", "bound of the whole benchmark", "30")
  .parse()
  .opts<{
    figure: string;
    runs: string;
    workers: string;
    mode: string;
    parallel: string;
    trials: string;
    concurrency: string;
    seconds: string;
    kind: string;
    target: string;
    calls: string;
    maxMinutes: string;
  }>();

const FIGURES = ["join", "failover", "issue", "ls"] as const;
type Figure = (typeof FIGURES)[number];
const figures: Figure[] = opts.figure === "all" ? [...FIGURES] : FIGURES.filter((f) => f === opts.figure);
if (
  figures.length === 0 ||
  (opts.mode !== "processes" && opts.mode !== "in-process") ||
  (opts.kind !== "renew" && opts.kind !== "join") ||
  !["all", "leader", "followers"].includes(opts.target)
) {
  process.stderr.write(
    `bench:cluster: unknown --figure ${opts.figure}, --mode ${opts.mode}, --kind ${opts.kind} or --target ${opts.target} (see --help)\n`,
  );
  process.exit(2);
}
const runs = Number(opts.runs);
const base = mkdtempSync(join(tmpdir(), "bench-cluster-"));

function cleanup(): void {
  killAll();
  rmSync(base, { recursive: true, force: true });
}

for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.once(signal, () => {
    process.stderr.write(`bench:cluster: ${signal}, stopping every process\n`);
    cleanup();
    process.exit(130);
  });
setTimeout(() => {
  process.stderr.write(
    `bench:cluster: FAILED: over --max-minutes ${opts.maxMinutes}, stopping every process\n`,
  );
  cleanup();
  process.exit(1);
}, Number(opts.maxMinutes) * 60_000).unref();

/** A fresh cluster for one run, stopped (and its dir removed) whatever happens. */
async function withCluster<T>(
  name: string,
  run: (cluster: ManagerCluster, dir: string) => Promise<T>,
): Promise<T> {
  const dir = join(base, name);
  const cluster = await ManagerCluster.start(dir);
  try {
    return await run(cluster, dir);
  } catch (err) {
    for (const m of cluster.managers) {
      const log = existsSync(cluster.logOf(m.name)) ? readFileSync(cluster.logOf(m.name), "utf8") : "";
      process.stderr.write(`--- ${m.name} log (tail) ---\n${log.slice(-1500)}\n`);
    }
    throw err;
  } finally {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

type Row = Record<string, number>;

/** Per-run rows, then for each numeric key the median, min and max over the runs. */
function summary(rows: Row[]): Record<string, unknown> {
  const keys = Object.keys(rows[0] ?? {}).filter((k) => rows.every((r) => typeof r[k] === "number"));
  return Object.fromEntries(keys.map((k) => [k, spread(rows.map((r) => r[k] as number))]));
}

/** Failover over every trial of every run: what the issue asks (median and max). */
function trialsSummary(runsTrials: { issuance_ms: number; leader_ms: number }[][]): Record<string, unknown> {
  const trials = runsTrials.flat();
  return {
    trials: trials.length,
    issuance_ms: spread(trials.map((t) => t.issuance_ms)),
    leader_ms: spread(trials.map((t) => t.leader_ms)),
  };
}

async function lsCalls(stateDir: string, calls: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < calls; i++) {
    const r = await nodectl(["ls", "--state-dir", stateDir]);
    if (r.status !== 0) throw new Error(`ls failed (${r.status}): ${r.stderr.trim()}`);
    times.push(r.ms);
  }
  return times;
}

/** What starting node alone costs here (`node -e ""`): the floor under any CLI call. */
async function bareNodeCalls(calls: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < calls; i++) {
    const started = process.hrtime.bigint();
    await promisify(execFile)(process.execPath, ["-e", ""], { timeout: 15_000 });
    times.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  return times;
}

async function figure(name: Figure): Promise<Record<string, unknown>> {
  const rows: Row[] = [];
  const details: unknown[] = [];
  for (let run = 1; run <= runs; run++) {
    await withCluster(`${name}-${run}`, async (cluster, dir) => {
      if (name === "join") {
        const r = await joinRun(
          cluster,
          join(dir, "workers"),
          Number(opts.workers),
          opts.mode as JoinMode,
          Number(opts.parallel),
          600_000,
        );
        rows.push(Object.fromEntries(Object.entries(r).map(([k, v]) => [k, round(v)])));
      } else if (name === "failover") {
        const trials = [];
        for (let t = 0; t < Number(opts.trials); t++) trials.push(await failoverTrial(cluster));
        const issuance = trials.map((t) => t.issuance_ms);
        const leader = trials.map((t) => t.leader_ms);
        details.push(trials);
        rows.push({
          issuance_median_ms: spread(issuance).median,
          issuance_max_ms: Math.max(...issuance),
          leader_median_ms: spread(leader).median,
          leader_max_ms: Math.max(...leader),
        });
      } else if (name === "issue") {
        const r = await issueRun(
          cluster,
          opts.kind as IssueKind,
          opts.target as IssueTarget,
          Number(opts.concurrency),
          2,
          Number(opts.seconds),
        );
        details.push({ errors: r.errors, certificates: r.certificates, cpu_cores: r.cpu_cores });
        rows.push({
          certificates_per_s: r.certificates_per_s,
          metrics_issued_per_s: r.metrics_issued_per_s,
          manager_cpu_ms_per_certificate: r.manager_cpu_ms_per_certificate,
          latency_median_ms: r.latency_ms.median,
          latency_p99_ms: r.latency_ms.p99,
        });
      } else {
        const leader = await waitUntil("a leader", 20_000, () => cluster.leader());
        const follower = cluster.managers.find((m) => m !== leader)!;
        await lsCalls(leader.stateDir, 1); // the page cache warm, as for a script's second call
        const fromFollower = await lsCalls(follower.stateDir, Number(opts.calls));
        const fromLeader = await lsCalls(leader.stateDir, Number(opts.calls));
        const bare = await bareNodeCalls(Number(opts.calls));
        rows.push({
          follower_median_ms: spread(fromFollower).median,
          follower_max_ms: round(Math.max(...fromFollower)),
          leader_median_ms: spread(fromLeader).median,
          leader_max_ms: round(Math.max(...fromLeader)),
          bare_node_median_ms: spread(bare).median,
        });
      }
    });
  }
  const params: Record<Figure, Record<string, unknown>> = {
    join: {
      workers: Number(opts.workers),
      mode: opts.mode,
      ...(opts.mode === "processes" ? { parallel: Number(opts.parallel) } : {}),
      via: "follower",
      heartbeat_ms: 5000,
    },
    failover: {
      trials_per_run: Number(opts.trials),
      issuance: "join with the worker token through a survivor",
    },
    issue: {
      concurrency: Number(opts.concurrency),
      seconds: Number(opts.seconds),
      kind: opts.kind === "renew" ? "renewal over mTLS" : "join with the worker token",
      target: opts.target,
    },
    ls: { calls: Number(opts.calls), command: "node bin/nodectl.js ls --state-dir DIR" },
  };
  const overall =
    name === "failover"
      ? { all_trials: trialsSummary(details as { issuance_ms: number; leader_ms: number }[][]) }
      : {};
  return {
    figure: name,
    managers: 3,
    runs,
    ...params[name],
    ...overall,
    summary: summary(rows),
    per_run: rows,
    details,
  };
}

async function main(): Promise<void> {
  try {
    for (const name of figures) {
      const load = loadavg().map((l) => round(l, 2));
      const result = await figure(name);
      const after = loadavg().map((l) => round(l, 2));
      process.stdout.write(`${JSON.stringify({ ...result, loadavg_before: load, loadavg_after: after })}\n`);
    }
  } finally {
    cleanup();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench:cluster: FAILED: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
