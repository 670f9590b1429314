// A small process driver for the cluster benchmarks: nodectl daemons as real child
// processes on loopback (`node bin/nodectl.js`, what `npx nodectl` runs, on dist/),
// admin commands as processes, waits with deadlines, metrics scraped over HTTP and a
// process's RSS from /proc. Every process started here is in one registry, so the
// entry point can kill them all (finally, SIGINT, SIGTERM) and remove the temp dir.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { request } from "node:http";
import { createServer } from "node:net";
import { join } from "node:path";
import type { NodeJson } from "../../src/cli/format.js";
import { waitFor } from "../lib/support.js";

const root = new URL("../..", import.meta.url).pathname;
export const BIN = join(root, "bin/nodectl.js");

/** What the benches read of `nodectl ls --json` (its documented shape, src/cli/format.ts). */
export type LsNode = Omit<NodeJson, "certificate">;

const live = new Set<Daemon>();

/** Kills every daemon still running (SIGKILL): the cleanup path, never the measured one. */
export function killAll(): void {
  for (const d of live) d.kill();
}

export class Daemon {
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;

  /**
   * `node ARGV...`; output goes to `logFile` (not kept in memory: 100 workers log a
   * lot). Use `nodectlDaemon` for nodectl itself.
   */
  constructor(argv: string[], logFile: string, env: NodeJS.ProcessEnv = {}) {
    const fd = openSync(logFile, "a");
    try {
      this.child = spawn(process.execPath, argv, {
        cwd: root,
        stdio: ["ignore", fd, fd],
        env: { ...process.env, LOG_FORMAT: "json", LOG_LEVEL: "warn", ...env },
      });
    } finally {
      closeSync(fd);
    }
    live.add(this);
    this.exited = new Promise((resolve) =>
      this.child.once("exit", (code) => {
        live.delete(this);
        resolve(code);
      }),
    );
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error("the daemon has no pid (spawn failed)");
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  kill(): void {
    if (this.running) this.child.kill("SIGKILL");
  }

  /** SIGTERM, SIGKILL after `deadlineMs`. */
  async stop(deadlineMs = 10_000): Promise<void> {
    if (!this.running) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.kill(), deadlineMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/** `node bin/nodectl.js ARGS...` (init, join, run) in the background. */
export function nodectlDaemon(
  args: string[],
  logFile: string,
  env: NodeJS.ProcessEnv = {},
  nodeFlags: string[] = [],
): Daemon {
  return new Daemon([...nodeFlags, BIN, ...args], logFile, env);
}

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** One nodectl call as a process; never rejects, killed after `timeoutMs`. */
export function nodectl(args: string[], timeoutMs = 15_000): Promise<CliResult> {
  const started = process.hrtime.bigint();
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: root, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = (err as { code?: unknown } | null)?.code;
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      resolve({ status: err ? (typeof code === "number" ? code : -1) : 0, stdout, stderr, ms });
    });
  });
}

export async function lsJson(stateDir: string): Promise<LsNode[]> {
  const r = await nodectl(["ls", "--json", "--state-dir", stateDir]);
  if (r.status !== 0) throw new Error(`ls failed (${r.status}): ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as LsNode[];
}

export async function joinToken(stateDir: string, role: "worker" | "manager"): Promise<string> {
  const r = await nodectl(["join-token", role, "--quiet", "--state-dir", stateDir]);
  if (r.status !== 0) throw new Error(`join-token failed (${r.status}): ${r.stderr.trim()}`);
  return r.stdout.trim();
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== "object" || address === null) throw new Error("no free port");
  return address.port;
}

/** A failure a wait must not retry (a process it waits on died). */
export class FatalError extends Error {}

/** Polls `probe` every `everyMs` until it returns a value; a FatalError ends the wait at once. */
export function waitUntil<T>(
  what: string,
  deadlineMs: number,
  probe: () => Promise<T | undefined>,
  everyMs = 100,
): Promise<T> {
  return waitFor(what, deadlineMs, probe, everyMs, (err) => err instanceof FatalError);
}

/** One sample of a metric (the first line naming it), or undefined if absent. */
export function scrape(port: number, name: string, timeoutMs = 2_000): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path: "/metrics", timeout: timeoutMs }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => {
        const line = body.split("\n").find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
        resolve(line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1)));
      });
    });
    req.on("timeout", () => req.destroy(new Error(`metrics on port ${port} did not answer`)));
    req.on("error", reject);
    req.end();
  });
}

/** VmRSS of a process, in MiB. */
export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (!kb) throw new Error(`no VmRSS for process ${pid}`);
  return Number(kb[1]) / 1024;
}

/** The median of `samples` RSS readings `everyMs` apart: one reading moves with the collector. */
export async function rssSampledMiB(pid: number, samples = 5, everyMs = 1_000): Promise<number> {
  const values: number[] = [];
  for (let i = 0; i < samples; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, everyMs));
    values.push(rssMiB(pid));
  }
  return median(values);
}

/** CPU seconds (user + system) a process has used so far, from /proc (clock ticks of 10 ms). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

export interface ManagerProc {
  name: string;
  stateDir: string;
  listen: string;
  metricsPort: number;
  nodeId: string;
  daemon: Daemon;
}

/** Three (or `size`) managers: `nodectl init` then `nodectl join` with the manager token. */
export class ManagerCluster {
  readonly managers: ManagerProc[] = [];
  private constructor(
    readonly baseDir: string,
    private readonly env: NodeJS.ProcessEnv,
    private readonly nodeFlags: string[],
  ) {}

  /** `nodeFlags` go to each manager's node (e.g. --cpu-prof, which NODE_OPTIONS refuses). */
  static async start(
    baseDir: string,
    size = 3,
    env: NodeJS.ProcessEnv = {},
    nodeFlags: string[] = [],
  ): Promise<ManagerCluster> {
    const cluster = new ManagerCluster(baseDir, env, nodeFlags);
    mkdirSync(join(baseDir, "logs"), { recursive: true });
    const first = await cluster.spawnManager("m1", env, (listen, metrics, dir) => [
      "init",
      "--state-dir",
      dir,
      "--listen",
      listen,
      "--metrics",
      metrics,
    ]);
    await waitUntil("the first manager to lead", 30_000, async () =>
      (await lsJson(first.stateDir)).some((n) => n.leader) ? true : undefined,
    );
    const token = await joinToken(first.stateDir, "manager");
    for (let i = 2; i <= size; i++) {
      const m = await cluster.spawnManager(`m${i}`, env, (listen, metrics, dir) => [
        "join",
        "--state-dir",
        dir,
        "--token",
        token,
        "--listen",
        listen,
        "--metrics",
        metrics,
        first.listen,
      ]);
      // Its control.sock answers a linearizable ls once it is a Raft member that caught up.
      await waitUntil(`${m.name} to join and answer ls`, 60_000, async () =>
        (await lsJson(m.stateDir)).length > 0 ? true : undefined,
      );
    }
    await cluster.waitHealthy(60_000);
    return cluster;
  }

  private async spawnManager(
    name: string,
    env: NodeJS.ProcessEnv,
    args: (listen: string, metrics: string, dir: string) => string[],
  ): Promise<ManagerProc> {
    const listen = `127.0.0.1:${await freePort()}`;
    const metricsPort = await freePort();
    const stateDir = join(this.baseDir, name);
    const daemon = nodectlDaemon(
      args(listen, `127.0.0.1:${metricsPort}`, stateDir),
      this.logOf(name),
      env,
      this.nodeFlags,
    );
    const m: ManagerProc = { name, stateDir, listen, metricsPort, nodeId: "", daemon };
    this.managers.push(m);
    await waitUntil(`${name}'s node.json`, 30_000, async () => {
      if (!daemon.running)
        throw new FatalError(`${name} exited: ${readFileSync(this.logOf(name), "utf8").slice(-800)}`);
      try {
        m.nodeId = (
          JSON.parse(readFileSync(join(stateDir, "node.json"), "utf8")) as { nodeId: string }
        ).nodeId;
        return true;
      } catch {
        return undefined;
      }
    });
    return m;
  }

  logOf(name: string): string {
    return join(this.baseDir, "logs", `${name}.log`);
  }

  /** Every manager answers ls, sees all managers ready and exactly one leader. */
  async waitHealthy(deadlineMs: number): Promise<void> {
    await waitUntil("every manager ready with one leader", deadlineMs, async () => {
      for (const m of this.managers) {
        const nodes = await lsJson(m.stateDir);
        const managers = nodes.filter((n) => n.role === "manager");
        if (managers.length !== this.managers.length) return undefined;
        if (managers.some((n) => n.status !== "ready")) return undefined;
        if (nodes.filter((n) => n.leader).length !== 1) return undefined;
      }
      return true;
    });
  }

  /** The manager that reports itself leader in its metrics (Raft's own view). */
  async leader(): Promise<ManagerProc | undefined> {
    for (const m of this.managers) {
      if (!m.daemon.running) continue;
      if ((await scrape(m.metricsPort, "nodectl_raft_is_leader").catch(() => 0)) === 1) return m;
    }
    return undefined;
  }

  /** Restarts a stopped or killed manager from its state dir. */
  restart(m: ManagerProc): void {
    if (m.daemon.running) throw new Error(`${m.name} is still running`);
    m.daemon = nodectlDaemon(
      ["run", "--state-dir", m.stateDir, "--metrics", `127.0.0.1:${m.metricsPort}`],
      this.logOf(m.name),
      this.env,
      this.nodeFlags,
    );
  }

  async stop(): Promise<void> {
    await Promise.all(this.managers.map((m) => m.daemon.stop()));
  }
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  return (s[Math.floor((s.length - 1) / 2)]! + s[Math.ceil((s.length - 1) / 2)]!) / 2;
}

export function round(n: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** Median, min and max of a figure measured over several runs. */
export function spread(values: number[]): { median: number; min: number; max: number } {
  return { median: round(median(values)), min: round(Math.min(...values)), max: round(Math.max(...values)) };
}
