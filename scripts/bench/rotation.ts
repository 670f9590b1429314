// npm run bench:rotation [-- --workers 1000 --runs 1 --fresh --heartbeat-ms MS --concurrency 24 --generators K]
// Issue 11's benchmark: how long a root rotation of a running cluster takes, and what it
// costs. Three manager processes (`nodectl init` + two `nodectl join`, real processes on
// loopback through scripts/lib/local-nodes.ts) and N workers held by load-generator
// children (rotation-workers.ts: real NodeDaemons with their own keys, certificates,
// sessions and renewal loops; one child per 2,000 workers, since one process is one
// core). Once all N+3 nodes are ready, the managers' counters, CPU time and the
// workers' session connects are read, `nodectl ca rotate` runs to its
// "Rotation done", and everything is read again. Prints one JSON line per rotation:
//   {"workers","rotation_s","reconnects","elections","manager_rss_mb","manager_cpu_s",...}
// rotation_s is the wall time of `nodectl ca rotate` from spawn to exit, as an operator
// sees it (it polls ca status every 250 ms, so it is up to ~0.3 s above the cluster's);
// reconnects = worker sessions opened during it, elections = leader changes summed over
// the managers (both must be 0); manager_rss_mb = max VmRSS after; manager_cpu_s = CPU
// the three managers spent during it. With --runs K > 1: K rotations one after the other
// on the same cluster (or each on a new cluster with --fresh), then a summary line with
// medians and min/max. Then the workers are asked which root signed the certificate they
// hold (workers_holding_new_cert_*; the cluster's record alone cannot tell) for --settle-s.
// A rotation that does not end within --rotate-timeout-s prints a line with "done":false,
// the phase, counts and pending reasons, and the bench exits 1 (state dirs and logs kept).
// Diagnostics: --generator-log FILE (the workers' info logs), --generator-prof DIR, --manager-prof DIR.
import { spawn } from "node:child_process";
import { Command } from "commander";
import type { RotationJson } from "../../src/cli/format.js";
import { EXIT_STATUS, watchForEnd } from "../lib/exit-guard.js";
import { type LocalNode, LocalNodes, waitFor } from "../lib/local-nodes.js";
import { GeneratorPool, loadAverage, managerDelta, rssMb, sampleManagers } from "./rotation-probes.js";

const opts = new Command()
  .option("--workers <n>", "workers held by the load generator", "1000")
  .option("--runs <k>", "rotations to measure", "1")
  .option("--fresh", "a new cluster for every run (default: the runs rotate one cluster in turn)")
  .option("--heartbeat-ms <ms>", "NODECTL_HEARTBEAT_MS for every node (default: the product's, 5000)")
  .option("--concurrency <n>", "joins in flight at once over the load generators", "24")
  .option("--generators <k>", "load-generator processes holding the workers (default: one per 2,000 workers)")
  .option("--ls-max <n>", "above this many workers, readiness is read from sessions_open, not ls", "2000")
  .option("--rotate-timeout-s <s>", "give up on ca rotate after this long (default max(120, N/10))")
  .option(
    "--settle-s <s>",
    "after the rotation, how long to wait for every worker to hold a certificate of the new root",
    "30",
  )
  .option("--generator-log <file>", "the workers' info logs (default: silent)")
  .option("--generator-prof <dir>", "write a V8 CPU profile of the load generator there")
  .option("--manager-prof <dir>", "write a V8 CPU profile of each manager there")
  .option("--keep-dir", "keep the state dirs and manager logs (path printed on stderr)")
  .parse()
  .opts<{
    workers: string;
    runs: string;
    fresh?: boolean;
    heartbeatMs?: string;
    concurrency: string;
    generators?: string;
    lsMax: string;
    keepDir?: boolean;
    settleS: string;
    rotateTimeoutS?: string;
    generatorLog?: string;
    generatorProf?: string;
    managerProf?: string;
  }>();
const N = Number(opts.workers);
const RUNS = Number(opts.runs);
const HEARTBEAT_MS = opts.heartbeatMs === undefined ? undefined : Number(opts.heartbeatMs);
const USE_LS = N <= Number(opts.lsMax);
const GENERATORS = opts.generators === undefined ? Math.ceil(N / 2000) : Number(opts.generators);
const log = (line: string) => process.stderr.write(`[bench:rotation ${new Date().toISOString()}] ${line}\n`);
const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

interface Cluster {
  nodes: LocalNodes;
  managers: LocalNode[];
  generator: GeneratorPool;
  joinS: number;
  overloadedRetries: number;
}

// Everything running, for the finally and the signal handlers.
let failed = false; // then the state dirs and logs are kept, for the report
const live = new Set<Cluster>();
const pendingNodes = new Set<LocalNodes>();
const pendingGenerators = new Set<GeneratorPool>();

async function startCluster(): Promise<Cluster> {
  const nodes = LocalNodes.create({
    tmpPrefix: "bench-rotation-",
    heartbeatMs: HEARTBEAT_MS,
    nodeFlags: opts.managerProf ? ["--cpu-prof", "--cpu-prof-dir", opts.managerProf] : undefined,
  });
  pendingNodes.add(nodes);
  log(`cluster in ${nodes.baseDir}`);
  const m1 = await nodes.init("m1");
  // init returns once it listens; its first term may still be electing.
  const managerToken = await waitFor(
    "a leader for join-token",
    30_000,
    () => nodes.joinToken(m1, "manager"),
    200,
  );
  const m2 = await nodes.join("m2", m1, managerToken);
  const m3 = await nodes.join("m3", m2, managerToken);
  const managers = [m1, m2, m3];
  await waitFor("3 ready managers", 60_000, async () =>
    (await nodes.ls(m1)).filter((n) => n.status === "ready").length === 3 ? true : undefined,
  );
  const token = await nodes.joinToken(m1, "worker");
  const generator = GeneratorPool.start(GENERATORS, {
    logFile: opts.generatorLog,
    profileDir: opts.generatorProf,
  });
  pendingGenerators.add(generator);
  const t0 = Date.now();
  const joined = await generator.join(
    {
      baseDir: `${nodes.baseDir}/workers`,
      token,
      managers: managers.map((m) => m.listen as string),
      count: N,
      concurrency: Number(opts.concurrency),
      heartbeatMs: HEARTBEAT_MS,
      joinDeadlineMs: 120_000,
    },
    Math.max(120_000, N * 200),
    (n) => log(`joined ${n}/${N}`),
  );
  log(`${joined.joined} workers joined in ${joined.ms} ms (${joined.overloadedRetries} OVERLOADED retries)`);
  const cluster: Cluster = {
    nodes,
    managers,
    generator,
    joinS: round((Date.now() - t0) / 1000, 1),
    overloadedRetries: joined.overloadedRetries,
  };
  live.add(cluster);
  await waitReady(cluster);
  return cluster;
}

/** Every node ready by `ls` (or, past --ls-max, every worker's session open on a manager). */
async function waitReady(c: Cluster): Promise<void> {
  const want = N + 3;
  const deadline = Math.max(60_000, N * 60);
  if (USE_LS) {
    await waitFor(
      `${want} ready nodes in ls`,
      deadline,
      async () => {
        const ls = await c.nodes.ls(c.managers[0] as LocalNode);
        const ready = ls.filter((n) => n.status === "ready").length;
        if (ls.length !== want) throw new Error(`ls lists ${ls.length} nodes, expected ${want}`);
        return ready === want ? true : undefined;
      },
      500,
    );
  }
  await waitFor(
    `${want} open sessions on the managers`,
    deadline,
    async () => {
      const samples = await sampleManagers(c.nodes, c.managers);
      const open = samples.reduce((s, m) => s + m.sessionsOpen, 0);
      return open >= N ? true : undefined;
    },
    500,
  );
}

interface RotationResult {
  workers: number;
  rotation_s: number;
  reconnects: number;
  elections: number;
  manager_rss_mb: number;
  manager_cpu_s: number;
  [extra: string]: unknown;
}

/** `nodectl ca rotate` (not detached) against m1, its output lines timestamped. */
function runRotate(c: Cluster, timeoutMs: number): Promise<{ ms: number; lines: [number, string][] }> {
  const m1 = c.managers[0] as LocalNode;
  const t0 = Date.now();
  const child = spawn(process.execPath, ["bin/nodectl.js", "ca", "rotate", "--state-dir", m1.stateDir], {
    cwd: new URL("../..", import.meta.url).pathname,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: [number, string][] = [];
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    for (const line of chunk.toString().split("\n")) if (line) lines.push([Date.now() - t0, line]);
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      const ms = Date.now() - t0;
      if (code === 0) resolve({ ms, lines });
      else
        reject(
          new Error(
            `nodectl ca rotate ended (${code ?? signal}) after ${ms} ms${signal === "SIGKILL" ? " (its deadline)" : ""}:\n` +
              `${lines.map(([t, l]) => `+${t} ms ${l}`).join("\n")}\n${stderr}`,
          ),
        );
    });
  });
}

function rotateTimeoutMs(): number {
  return opts.rotateTimeoutS ? Number(opts.rotateTimeoutS) * 1000 : Math.max(120_000, N * 100);
}

/** ca status's rotation, with the pending nodes' reasons counted by kind. */
async function rotationSummary(c: Cluster): Promise<unknown> {
  const r = await c.nodes.nodectl(["ca", "status", "--json"], c.managers[0], 30_000);
  if (r.status !== 0) return { error: r.stderr.trim() };
  const rotation = (JSON.parse(r.stdout) as { rotation: RotationJson | null }).rotation;
  if (!rotation) return null;
  const reasons: Record<string, number> = {};
  for (const p of rotation.pending) {
    const kind = p.reason.replace(/[0-9a-z]{25}/g, "ID").replace(/\d{4}-\d\d-\d\dT[\d:.]+Z/g, "T");
    reasons[kind] = (reasons[kind] ?? 0) + 1;
  }
  const { pending: _, ...counts } = rotation;
  return { ...counts, pending: rotation.pending.length, pending_reasons: reasons };
}

async function rotateOnce(c: Cluster, run: number): Promise<RotationResult> {
  const m1 = c.managers[0] as LocalNode;
  const before = await sampleManagers(c.nodes, c.managers);
  const genBefore = await c.generator.counts();
  const genCpuBefore = genBefore.cpuS;
  const statusBefore = JSON.parse(await c.nodes.admin(m1, ["ca", "status", "--json"])) as {
    rootKeyId: string;
  };
  const loadBefore = loadAverage();
  const rotate = await runRotate(c, rotateTimeoutMs()).catch(async (err: unknown) => {
    // Stalled or failed: say where it stood and what it cost so far, then fail.
    const after = await sampleManagers(c.nodes, c.managers);
    // A saturated generator may not answer: report the managers' side anyway.
    const gen = await c.generator.counts(60_000).catch(() => undefined);
    process.stdout.write(
      `${JSON.stringify({
        workers: N,
        done: false,
        run,
        error: err instanceof Error ? err.message.split("\n")[0] : String(err),
        rotation: await rotationSummary(c),
        reconnects: gen ? gen.sessionConnects - genBefore.sessionConnects : "generator did not answer",
        elections: managerDelta(before, after).elections,
        manager_cpu_s: managerDelta(before, after).cpuS,
        manager_rss_mb: Math.max(...after.map((s) => rssMb(s.pid))),
        renewals: gen ? gen.renewals - genBefore.renewals : null,
        workers_holding_issuers: gen?.heldIssuers ?? null,
        generator_cpu_s: gen ? round(gen.cpuS - genCpuBefore) : null,
        generator_cpu_total_s: c.generator.cpuSeconds(),
        manager_sessions_open: after.map((s) => s.sessionsOpen),
        loadavg_before: loadBefore,
        loadavg_after: loadAverage(),
      })}\n`,
    );
    throw err;
  });
  const after = await sampleManagers(c.nodes, c.managers);
  const genAfter = await c.generator.counts();
  const delta = managerDelta(before, after);
  const status = JSON.parse(await c.nodes.admin(m1, ["ca", "status", "--json"])) as {
    rootKeyId: string;
    rotation: unknown;
  };
  if (status.rotation !== null || status.rootKeyId === statusBefore.rootKeyId)
    throw new Error(`ca rotate said done but ca status is ${JSON.stringify(status)}`);
  let onNewRoot: number | undefined;
  if (USE_LS) {
    const ls = await c.nodes.ls(m1);
    onNewRoot = ls.filter((n) => n.certificate?.issuerKeyId === status.rootKeyId).length;
  }
  // The cluster's record says every node renewed; do the workers hold those certificates?
  const heldAtDone = genAfter.heldIssuers[status.rootKeyId] ?? 0;
  const settle = await settleHeld(c, status.rootKeyId);
  const trustAt = rotate.lines.find(([, l]) => l.startsWith("trust phase"))?.[0];
  const cliDone = /Rotation done in ([\d.]+) s/.exec(rotate.lines.at(-1)?.[1] ?? "")?.[1];
  return {
    workers: N,
    rotation_s: round(rotate.ms / 1000),
    reconnects: genAfter.sessionConnects - genBefore.sessionConnects,
    elections: delta.elections,
    manager_rss_mb: Math.max(...after.map((s) => rssMb(s.pid))),
    manager_cpu_s: delta.cpuS,
    run,
    cli_reported_s: cliDone === undefined ? null : Number(cliDone),
    first_trust_line_s: trustAt === undefined ? null : round(trustAt / 1000),
    term_moves: delta.termMoves,
    renewals: genAfter.renewals - genBefore.renewals,
    certificates_issued: delta.certificatesIssued,
    nodes_on_new_root: onNewRoot ?? null,
    worker_fatal: genAfter.fatal,
    // Workers holding a certificate of the new root when ca rotate said done, and after --settle-s.
    workers_holding_new_cert_at_done: heldAtDone,
    workers_holding_new_cert_after_settle: settle.held,
    settle_s: settle.s,
    workers_trusting_new_root_only: genAfter.trustBundles[status.rootKeyId] ?? 0,
    worker_renewals_after_done: settle.renewals - genAfter.renewals,
    sessions_open: [delta.sessionsOpenBefore, delta.sessionsOpenAfter],
    generator_cpu_s: round(genAfter.cpuS - genCpuBefore),
    generator_rss_mb: genAfter.rssMb,
    generators: GENERATORS,
    manager_rss_each_mb: after.map((s) => rssMb(s.pid)),
    join_s: c.joinS,
    overloaded_retries: c.overloadedRetries,
    heartbeat_ms: HEARTBEAT_MS ?? 5000,
    loadavg_before: loadBefore,
    loadavg_after: loadAverage(),
  };
}

/** Polls the generator until every worker holds a certificate of `rootKeyId`, for --settle-s at most. */
async function settleHeld(c: Cluster, rootKeyId: string) {
  const t0 = Date.now();
  const until = t0 + Number(opts.settleS) * 1000;
  for (;;) {
    const counts = await c.generator.counts();
    const held = counts.heldIssuers[rootKeyId] ?? 0;
    if (held === N || Date.now() >= until) {
      if (held < N)
        log(
          `after ${opts.settleS} s, ${N - held} workers still hold a certificate of another root: ${JSON.stringify(counts.heldIssuers)}`,
        );
      return { held, s: round((Date.now() - t0) / 1000, 1), renewals: counts.renewals };
    }
    await new Promise((r) => setTimeout(r, 1_000));
  }
}

async function closeCluster(c: Cluster | undefined, nodes?: LocalNodes, generator?: GeneratorPool) {
  const gen = c?.generator ?? generator;
  const lns = c?.nodes ?? nodes;
  if (gen) {
    await gen.stop().catch((err: unknown) => log(`stopping the load generator: ${String(err)}`));
    pendingGenerators.delete(gen);
  }
  if (lns) {
    const keepDir = opts.keepDir || failed;
    await lns.close({ keepDir });
    if (keepDir) log(`kept ${lns.baseDir} (state dirs and manager logs)`);
    pendingNodes.delete(lns);
  }
  if (c) live.delete(c);
}

async function closeEverything(): Promise<void> {
  for (const c of [...live]) await closeCluster(c);
  for (const g of [...pendingGenerators]) await closeCluster(undefined, undefined, g);
  for (const n of [...pendingNodes]) await closeCluster(undefined, n);
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function summary(results: RotationResult[]) {
  const keys = ["rotation_s", "reconnects", "elections", "manager_rss_mb", "manager_cpu_s"] as const;
  const out: Record<string, unknown> = {
    summary: true,
    workers: N,
    runs: results.length,
    fresh: !!opts.fresh,
  };
  for (const k of keys) {
    const v = results.map((r) => r[k]);
    out[k] = round(median(v));
    out[`${k}_min`] = Math.min(...v);
    out[`${k}_max`] = Math.max(...v);
  }
  return out;
}

async function main(): Promise<void> {
  const results: RotationResult[] = [];
  let cluster: Cluster | undefined;
  for (let run = 1; run <= RUNS; run++) {
    if (!cluster || opts.fresh) {
      if (cluster) await closeCluster(cluster);
      cluster = await startCluster();
    }
    log(`run ${run}/${RUNS}: rotating ${N + 3} nodes`);
    const result = await rotateOnce(cluster, run);
    results.push(result);
    process.stdout.write(`${JSON.stringify(result)}\n`);
  }
  if (RUNS > 1) process.stdout.write(`${JSON.stringify(summary(results))}\n`);
}

let ending = false;
const stopWatching = watchForEnd((reason) => {
  if (ending) return;
  ending = true;
  log(`${reason}: stopping everything`);
  void closeEverything().finally(() => process.exit(EXIT_STATUS[reason]));
});

main()
  .then(
    () => 0,
    (err: unknown) => {
      failed = true;
      log(`FAILED: ${err instanceof Error ? err.message : String(err)}`);
      return 1;
    },
  )
  .then(async (status) => {
    if (ending) return;
    ending = true;
    await closeEverything();
    stopWatching();
    process.exit(status);
  });
