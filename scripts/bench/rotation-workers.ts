// The load generator of bench:rotation (rotation.ts forks it with `node --import tsx`):
// N real workers in one process, each a NodeDaemon as `nodectl join` makes it (its own
// key, certificate and state dir, one gRPC session to a manager, its renewal loop), so
// a rotation renews and re-trusts real nodes without N node processes. Talks to its
// parent over IPC only:
//   parent → {cmd:"join", ...JoinJob} → child: progress lines, then {type:"joined"}
//   parent → {cmd:"counts"}           → child: {type:"counts", ...}
//   parent → {cmd:"stop"}             → child stops every daemon and exits
// It exits on its own when the IPC channel closes (the parent died, even by SIGKILL),
// so no worker outlives the benchmark.
import { join } from "node:path";
import { pino } from "pino";
import { rootKeyIdsOf } from "../../src/ca/index.js";
import { IssuerCallError } from "../../src/issuer/index.js";
import { type Logger, silentLogger } from "../../src/log/logger.js";
import { joinNode, NodeDaemon } from "../../src/node/index.js";

export interface JoinJob {
  /** Worker state dirs go under this directory (w1, w2, ...). */
  baseDir: string;
  token: string;
  /** Manager HOST:PORTs; worker i joins through managers[i % length]. */
  managers: string[];
  /** Number of workers to join (adds to those already held). */
  count: number;
  /** Joins in flight at once. */
  concurrency: number;
  heartbeatMs?: number;
  /** A single join gives up after this long (OVERLOADED retries included). */
  joinDeadlineMs: number;
}

export type ParentMessage = ({ cmd: "join" } & JoinJob) | { cmd: "counts" } | { cmd: "stop" };

export interface Counts {
  workers: number;
  sessionConnects: number;
  renewals: number;
  /** Daemons that reported a fatal error (removed, renewal refused). */
  fatal: number;
  rssMb: number;
  cpuS: number;
  /** Workers by the key id of the root that signed the certificate they hold and use now. */
  heldIssuers: Record<string, number>;
  /** Workers by the root key ids in the trust bundle they hold now (joined with "+"). */
  trustBundles: Record<string, number>;
}

export type ChildMessage =
  | { type: "progress"; joined: number }
  | { type: "joined"; joined: number; ms: number; overloadedRetries: number }
  | ({ type: "counts" } & Counts)
  | { type: "error"; message: string }
  | { type: "stopped"; ms: number };

const daemons: NodeDaemon[] = [];
const fatalErrors: string[] = [];
let overloadedRetries = 0;
// Silent unless the parent asks for a log file (--generator-log: the workers' info logs, to
// see why a session ended or a renewal failed).
const logFile = process.env.BENCH_GENERATOR_LOG;
const logger: Logger = logFile
  ? pino({ level: "info" }, pino.destination({ dest: logFile, sync: true }))
  : silentLogger();

function send(message: ChildMessage): void {
  // After the parent went away there is no one to tell (and send would throw).
  if (process.connected) process.send?.(message);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One worker: join (retrying only OVERLOADED, which records nothing), then start its daemon. */
async function joinOne(job: JoinJob, index: number): Promise<NodeDaemon> {
  const stateDir = join(job.baseDir, `w${index}`);
  const manager = job.managers[index % job.managers.length] as string;
  const until = Date.now() + job.joinDeadlineMs;
  for (;;) {
    try {
      const joined = await joinNode({ stateDir, token: job.token, manager, logger });
      const daemon = await NodeDaemon.start({
        stateDir,
        config: joined.config,
        logger: logger.child({ nodeId: joined.config.nodeId }),
        heartbeatPeriodMs: job.heartbeatMs,
      });
      daemon.onFatal((error) => fatalErrors.push(`${daemon.nodeId}: ${error.message}`));
      return daemon;
    } catch (err) {
      const overloaded = err instanceof IssuerCallError && err.code === "OVERLOADED";
      if (!overloaded || Date.now() > until) throw err;
      overloadedRetries++;
      // The CA's hint, with jitter so refused joins do not come back as one burst.
      await sleep((err.retryAfterMs ?? 100) * (0.5 + Math.random()));
    }
  }
}

async function joinAll(job: JoinJob): Promise<void> {
  const t0 = Date.now();
  const first = daemons.length + 1;
  let next = 0;
  let lastReport = 0;
  const lane = async () => {
    while (next < job.count) {
      const i = first + next++;
      daemons.push(await joinOne(job, i));
      if (Date.now() - lastReport > 1_000) {
        lastReport = Date.now();
        send({ type: "progress", joined: daemons.length });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(job.concurrency, job.count) }, lane));
  send({ type: "joined", joined: daemons.length, ms: Date.now() - t0, overloadedRetries });
}

function histogram(values: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}

function counts(): Counts {
  const usage = process.cpuUsage();
  return {
    workers: daemons.length,
    sessionConnects: daemons.reduce((sum, d) => sum + d.session.sessionConnects, 0),
    renewals: daemons.reduce((sum, d) => sum + d.renewal.renewals, 0),
    fatal: fatalErrors.length,
    rssMb: Math.round(process.memoryUsage.rss() / 2 ** 20),
    cpuS: (usage.user + usage.system) / 1e6,
    heldIssuers: histogram(daemons.map((d) => d.credentials.currentIdentity.issuerKeyId)),
    trustBundles: histogram(
      daemons.map((d) => rootKeyIdsOf(d.credentials.currentTrustBundlePem).sort().join("+")),
    ),
  };
}

let stopping: Promise<void> | undefined;
function stopAll(): Promise<void> {
  stopping ??= (async () => {
    const t0 = Date.now();
    // Bounded: a daemon that does not stop in time is left to the process exit.
    await Promise.race([Promise.allSettled(daemons.map((d) => d.stop())), sleep(20_000)]);
    send({ type: "stopped", ms: Date.now() - t0 });
    process.exit(0);
  })();
  return stopping;
}

process.on("message", (message: ParentMessage) => {
  if (message.cmd === "join")
    joinAll(message).catch((err: unknown) =>
      send({ type: "error", message: err instanceof Error ? `${err.name}: ${err.message}` : String(err) }),
    );
  else if (message.cmd === "counts") send({ type: "counts", ...counts() });
  else if (message.cmd === "stop") void stopAll();
});
// The parent is gone (its IPC channel closed): stop, whatever it was doing.
process.on("disconnect", () => void stopAll());
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => void stopAll());
if (!process.send) {
  process.stderr.write("rotation-workers.ts runs as a child of scripts/bench/rotation.ts (IPC)\n");
  process.exit(2);
}
