// npm start: the product demo. Real nodectl processes on loopback, in a temporary
// directory: 3 managers and 10 workers join, `nodectl ls` shows them, a worker is
// removed and refused when it comes back, a worker is promoted to a Raft voter, the
// leader is killed with SIGKILL and the cluster recovers with no worker of a surviving
// manager reconnecting; then everything stops (SIGTERM, a deadline, SIGKILL past it),
// the directory is removed and a summary gives the figures measured.
//
// No process outlives the demo: Ctrl-C, SIGTERM, SIGHUP, a closed output pipe and the
// death of our parent all stop the daemons (scripts/lib/exit-guard.ts); a SIGKILL of the
// demo itself is covered by the reaper of scripts/lib/local-nodes.ts.

import { existsSync } from "node:fs";
import { Command, InvalidArgumentError } from "commander";
import { DemoOutput } from "./lib/demo-output.js";
import { type Rotation, rotateRoot } from "./lib/demo-rotation.js";
import {
  checkReconnects,
  type DemoContext,
  type Failover,
  type Formed,
  formCluster,
  killLeader,
  type Promotion,
  promoteWorker,
  type Removal,
  removeWorker,
  secs,
  showList,
} from "./lib/demo-steps.js";
import { EXIT_STATUS, watchForEnd } from "./lib/exit-guard.js";
import { LocalNodes, NODECTL_BIN, type StopReport } from "./lib/local-nodes.js";

/** The session heartbeat period of the demo's nodes: a node silent 3 periods is down. */
const HEARTBEAT_MS = 500;
/** How long each daemon gets to stop after SIGTERM before SIGKILL. */
const STOP_DEADLINE_MS = 10_000;

function workerCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 3 || n > 50) throw new InvalidArgumentError("a whole number from 3 to 50");
  return n;
}

const opts = new Command()
  .name("npm start --")
  .description("nodectl's demo: a cluster of real processes on loopback, then a clean stop")
  .option("--workers <n>", "how many workers join (3..50)", workerCount, 10)
  .option("--keep-running", "after the demo, leave the cluster running until Ctrl-C")
  .parse()
  .opts<{ workers: number; keepRunning?: boolean }>();

const out = new DemoOutput();
const t0 = Date.now();

if (!existsSync(new URL("../dist/cli/main.js", import.meta.url))) {
  process.stderr.write("demo: dist/ is missing; run `npm run build` (npm ci runs it) and retry\n");
  process.exit(1);
}

const nodes = LocalNodes.create({
  tmpPrefix: "nodectl-demo-",
  heartbeatMs: HEARTBEAT_MS,
  stopDeadlineMs: STOP_DEADLINE_MS,
});
const d: DemoContext = { nodes, out, managers: [], workers: [], heartbeatMs: HEARTBEAT_MS };

let ending = false;
/** Stops everything once, however the demo ends, and exits with `status`. */
async function end(status: number, why?: string): Promise<never> {
  if (ending) return new Promise<never>(() => undefined); // the first end() exits
  ending = true; // later signals find end() running and change nothing
  out.endProgress();
  if (why) out.line(`Stopping (${why}) ...`);
  const keepDir = status === 1;
  const reports = await nodes.close({ keepDir }).catch((err: unknown) => {
    process.stderr.write(`demo: stopping the nodes failed: ${String(err)}\n`);
    return [] as StopReport[];
  });
  const forced = reports.filter((r) => r.forced).map((r) => r.name);
  if (forced.length > 0)
    out.line(`(${forced.join(", ")} did not stop within ${STOP_DEADLINE_MS} ms: SIGKILLed)`);
  if (keepDir) out.line(`State and logs kept in ${nodes.baseDir}`);
  process.exit(status);
}
watchForEnd((reason) => void end(EXIT_STATUS[reason], reason));

interface Figures {
  formed: Formed;
  removal: Removal;
  promotion: Promotion;
  rotation: Rotation;
  failover: Failover;
}

async function scenario(): Promise<Figures> {
  out.line(
    `Starting a cluster on loopback: 3 managers and ${opts.workers} workers, each a nodectl process ` +
      `(node ${NODECTL_BIN.replace(/.*\/(bin\/)/, "$1")}); state and logs in ${nodes.baseDir}`,
  );
  const formed = await formCluster(d, opts.workers);
  out.line(`All ${formed.total} nodes joined and ready ${secs(formed.joinMs)} after init.`);
  await showList(d, d.managers[0]);
  out.line();
  const removal = await removeWorker(d);
  out.line();
  const promotion = await promoteWorker(d);
  out.line();
  const rotation = await rotateRoot(d);
  out.line();
  const failover = await killLeader(d);
  checkReconnects(d, failover);
  await showList(d, d.nodes.node(failover.newLeader));
  return { formed, removal, promotion, rotation, failover };
}

/** "0.4–1.2 s" over the known values, "-" if none. */
function range(values: (number | undefined)[]): string {
  const known = values.filter((v): v is number => v !== undefined);
  if (known.length === 0) return "-";
  const [lo, hi] = [Math.min(...known), Math.max(...known)];
  return lo === hi ? secs(lo) : `${(lo / 1000).toFixed(1)}–${secs(hi)}`;
}

function summary(f: Figures, stop: StopReport[], stopMs: number): void {
  const { formed, removal, promotion, rotation, failover } = f;
  const orphans = failover.moves.filter((m) => m.orphaned);
  const others = failover.moves.filter((m) => !m.orphaned);
  const reconnected = (list: typeof orphans) => list.filter((m) => m.connectsAfter > m.connectsBefore).length;
  const forced = stop.filter((r) => r.forced).length;
  out.line();
  out.line("Summary");
  out.line(`  join:      3 managers + ${opts.workers} workers ready in ${secs(formed.joinMs)} (from init)`);
  const code = /^nodectl: (\w+):/.exec(removal.refusedAfter)?.[1] ?? removal.refusedAfter;
  out.line(
    `  removal:   ${removal.name} stopped and removed; restarted on its old certificate: refused, ${code}`,
  );
  out.line(
    `  promotion: ${promotion.name} manager in ${secs(promotion.managerMs)}, Raft voter ${promotion.raftId} in ${secs(promotion.voterMs)}`,
  );
  out.line(
    `  rotation:  ${rotation.nodes} nodes on a new root in ${secs(rotation.ms)}; ${rotation.reconnects} sessions reopened, ${rotation.leaderChanges} leader changes`,
  );
  out.line(
    `  failover:  kill -9 of leader ${failover.killed}; new leader ${failover.newLeader} in ${failover.failoverMs} ms; ` +
      (orphans.length === 0
        ? "it held no worker's session"
        : `its workers' new sessions opened ${range(orphans.map((m) => m.reconnectMs))} after the kill`),
  );
  out.line(
    `  sessions:  ${reconnected(orphans)}/${orphans.length} workers of ${failover.killed} reconnected; ` +
      `${reconnected(others)}/${others.length} workers of the surviving managers did`,
  );
  out.line(
    `  stop:      ${stop.length} daemons stopped on SIGTERM in ${stopMs} ms` +
      `${forced > 0 ? `, ${forced} SIGKILLed past ${STOP_DEADLINE_MS} ms` : ", none needed SIGKILL"}; ` +
      (existsSync(nodes.baseDir) ? `${nodes.baseDir} NOT removed` : "temporary directory removed"),
  );
  out.line(`  total:     ${secs(Date.now() - t0)}`);
}

try {
  const figures = await scenario();
  if (opts.keepRunning) {
    out.line();
    out.line(
      `Cluster running. Try: NODECTL_STATE_DIR=${d.nodes.node(figures.failover.newLeader).stateDir} nodectl ls`,
    );
    out.line("Ctrl-C stops it.");
    await new Promise(() => undefined);
  }
  out.line();
  out.line(`Stopping every daemon (SIGTERM, ${STOP_DEADLINE_MS / 1000} s deadline, then SIGKILL) ...`);
  ending = true;
  const s0 = Date.now();
  const stop = await nodes.close();
  summary(figures, stop, Date.now() - s0);
  process.exit(stop.some((r) => r.forced) ? 1 : 0);
} catch (err) {
  if (ending) await new Promise(() => undefined); // already stopping: the first end() exits
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  await end(1);
}
