// Figures 1 and 2 of issue 10 from one run (both need the same 100 workers): the time
// for N workers to join a 3-manager cluster and be `ready` in `nodectl ls`, and the RSS
// of the manager holding their sessions, before (its own and the other managers'
// sessions only) and after. Workers join through one follower (they hold their first
// session on the manager that admitted them, so that one holds all N); `ls --json` is
// polled through the other follower. Mode `processes`: N `nodectl join` processes, as
// users start them; mode `in-process`: N workers in one child process (cluster-workers.ts),
// the same code path minus N node runtimes.
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  cpuSeconds,
  Daemon,
  FatalError,
  joinToken,
  lsJson,
  type ManagerCluster,
  type ManagerProc,
  nodectl,
  nodectlDaemon,
  rssMiB,
  rssSampledMiB,
  scrape,
  waitUntil,
} from "./cluster-driver.js";

const WORKERS_CHILD = new URL("./cluster-workers.ts", import.meta.url).pathname;

export type JoinMode = "processes" | "in-process";

export interface JoinRun {
  join_to_ready_ms: number;
  /** Readiness is seen by polling `ls`; this is the polling step's own latency bound. */
  poll_ms: number;
  manager_rss_0_mib: number;
  manager_rss_n_mib: number;
  sessions_open_0: number;
  sessions_open_n: number;
  workers_on_manager: number;
  worker_rss_total_mib: number;
  /** CPU seconds the worker processes used in all (start, join, sessions), at the end. */
  worker_cpu_s_total: number;
  join_retries?: number;
  /**
   * Until every worker was joined (processes: its node.json written, i.e. certificate
   * recorded and held; in-process: every daemon started), from the same start.
   */
  joined_ms?: number;
}

interface Workers {
  pids(): number[];
  /** Epoch ms of the first join call. */
  started(): Promise<number>;
  failure(): string | undefined;
  stop(): Promise<void>;
  /** Joins retried after OVERLOADED/UNAVAILABLE. */
  retries?(): number | undefined;
  /** Epoch ms when the last worker was joined, once it was. */
  joinedAt?(): number | undefined;
}

/**
 * `nodectl join` processes, at most `parallel` joining at once (as a script with
 * `xargs -P` would: 100 node processes starting together on 2 cores starve each other
 * past the join's 30 s bound). A slot frees when the node's node.json exists (its
 * certificate is recorded and its state dir written); the daemon keeps running. A join
 * that exits with UNAVAILABLE or OVERLOADED is retried (counted) in a new state dir, at
 * most 3 times; anything else fails the run.
 */
function processWorkers(
  dir: string,
  count: number,
  token: string,
  via: ManagerProc,
  parallel: number,
): Workers {
  const at = Date.now();
  const all: Daemon[] = [];
  const joined: Daemon[] = [];
  let retries = 0;
  let joinedAt: number | undefined;
  let fatal: string | undefined;
  let stopped = false;
  const launch = async (i: number): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      const name = `w${i}-${attempt}`;
      const log = join(dir, `${name}.log`);
      const daemon = nodectlDaemon(
        ["join", "--state-dir", join(dir, name), "--token", token, via.listen],
        log,
      );
      all.push(daemon);
      const outcome = await waitUntil(`${name} to join`, 120_000, async () => {
        if (existsSync(join(dir, name, "node.json"))) return "joined";
        return daemon.running ? undefined : "exited";
      });
      if (outcome === "joined") {
        joined.push(daemon);
        if (joined.length === count) joinedAt = Date.now();
        return;
      }
      const output = readFileSync(log, "utf8");
      if (stopped || attempt >= 3 || !/UNAVAILABLE|OVERLOADED/.test(output))
        throw new FatalError(`${name} failed to join: ${output.slice(-800)}`);
      retries++;
    }
  };
  let next = 1;
  const slot = async (): Promise<void> => {
    while (next <= count && !stopped) await launch(next++);
  };
  const pump = Promise.all(Array.from({ length: Math.min(parallel, count) }, slot)).catch((err: unknown) => {
    fatal = err instanceof Error ? err.message : String(err);
  });
  return {
    pids: () => all.filter((d) => d.running).map((d) => d.pid),
    started: async () => at,
    failure: () => {
      if (fatal) return fatal;
      return joined.some((d) => !d.running) ? "a joined worker exited; see its log" : undefined;
    },
    stop: async () => {
      stopped = true;
      await Promise.all(all.map((d) => d.stop()));
      await pump;
    },
    retries: () => retries,
    joinedAt: () => joinedAt,
  };
}

function inProcessWorkers(dir: string, count: number, token: string, via: ManagerProc): Workers {
  const log = join(dir, "workers.log");
  const child = new Daemon(
    [
      "--import",
      "tsx",
      WORKERS_CHILD,
      "--manager",
      via.listen,
      "--token",
      token,
      "--dir",
      dir,
      "--count",
      String(count),
    ],
    log,
  );
  const events = () =>
    readFileSync(log, "utf8")
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { event: string; at?: number; retries?: number });
  const joinedEvent = () => events().find((e) => e.event === "joined");
  return {
    pids: () => (child.running ? [child.pid] : []),
    started: () =>
      waitUntil("the workers' process to start joining", 30_000, async () => {
        if (!child.running) throw new Error(readFileSync(log, "utf8").slice(-800));
        return events().find((e) => e.event === "started")?.at;
      }),
    failure: () =>
      child.running ? undefined : `the workers' process exited: ${readFileSync(log, "utf8").slice(-800)}`,
    stop: () => child.stop(),
    retries: () => joinedEvent()?.retries,
    joinedAt: () => joinedEvent()?.at,
  };
}

export async function joinRun(
  cluster: ManagerCluster,
  dir: string,
  count: number,
  mode: JoinMode,
  parallel: number,
  deadlineMs: number,
): Promise<JoinRun> {
  const leader = await waitUntil("a leader", 20_000, () => cluster.leader());
  const [via, poll] = cluster.managers.filter((m) => m !== leader);
  if (!via || !poll) throw new Error("the join figure needs 3 managers");
  const token = await joinToken(via.stateDir, "worker");
  // The managers' own sessions settle and start-up garbage is collected before the baseline.
  await new Promise((r) => setTimeout(r, 10_000));
  const sessions0 = (await scrape(via.metricsPort, "nodectl_sessions_open")) ?? Number.NaN;
  const rss0 = await rssSampledMiB(via.daemon.pid);
  mkdirSync(dir, { recursive: true });
  const workers =
    mode === "processes"
      ? processWorkers(dir, count, token, via, parallel)
      : inProcessWorkers(dir, count, token, via);
  try {
    const started = await workers.started();
    let pollMs = 0;
    await waitUntil(
      `${count} workers ready in ls`,
      deadlineMs,
      async () => {
        const failure = workers.failure();
        if (failure) throw new FatalError(failure);
        const r = await nodectl(["ls", "--json", "--state-dir", poll.stateDir]);
        pollMs = Math.max(pollMs, r.ms);
        if (r.status !== 0) return undefined;
        const nodes = JSON.parse(r.stdout) as { role: string; status: string }[];
        return nodes.filter((n) => n.role === "worker" && n.status === "ready").length >= count
          ? true
          : undefined;
      },
      250,
    );
    const readyMs = Date.now() - started;
    // Two heartbeat periods (default 5 s) with every session open, then the steady figure.
    await new Promise((r) => setTimeout(r, 10_000));
    const rssN = await rssSampledMiB(via.daemon.pid);
    const nodes = await lsJson(poll.stateDir);
    const retries = workers.retries?.();
    const joinedAt = workers.joinedAt?.();
    return {
      join_to_ready_ms: readyMs,
      poll_ms: Math.round(pollMs),
      manager_rss_0_mib: rss0,
      manager_rss_n_mib: rssN,
      sessions_open_0: sessions0,
      sessions_open_n: (await scrape(via.metricsPort, "nodectl_sessions_open")) ?? Number.NaN,
      workers_on_manager: nodes.filter((n) => n.role === "worker" && n.session?.managerId === via.nodeId)
        .length,
      worker_rss_total_mib: workers.pids().reduce((sum, pid) => sum + rssMiB(pid), 0),
      worker_cpu_s_total: workers.pids().reduce((sum, pid) => sum + cpuSeconds(pid), 0),
      ...(retries === undefined ? {} : { join_retries: retries }),
      ...(joinedAt === undefined ? {} : { joined_ms: joinedAt - started }),
    };
  } finally {
    await workers.stop();
  }
}
