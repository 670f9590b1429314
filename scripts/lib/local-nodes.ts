// Drives a cluster of real nodectl processes on loopback, as users run them
// (`node bin/nodectl.js ...`, the build in dist/): start daemons (`init`, `join`, `run`)
// in temporary state dirs, run admin commands against a manager, wait for a condition
// with a deadline, read a node's Prometheus metrics, kill -9 or stop one, and stop all.
// For the demo (scripts/start.ts) and benchmarks.
//
// Nothing outlives the script: every process spawned here is registered with a reaper
// process (reaper.mjs) that SIGTERMs, then SIGKILLs, whatever is still running once the
// script closes it or dies, SIGKILL included. `close()` stops everything itself first
// (SIGTERM, a deadline, SIGKILL past it) and removes the temporary directory.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Writable } from "node:stream";
import { LocalNode, type StopReport } from "./local-node.js";
import { freePort, LocalNodesError, parseMetrics } from "./support.js";

const ROOT = new URL("../..", import.meta.url).pathname;
/** The nodectl executable (loads dist/; `npm run build` makes it). */
export const NODECTL_BIN = join(ROOT, "bin", "nodectl.js");
const REAPER = new URL("./reaper.mjs", import.meta.url).pathname;

export { LocalNode, type StopReport } from "./local-node.js";
export {
  freePort,
  LocalNodesError,
  type LocalNodesErrorCode,
  mapLimit,
  parseMetrics,
  waitFor,
} from "./support.js";

export interface CliResult {
  /** Exit status; -1 when the command was killed (its timeout) or could not start. */
  status: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** One entry of `nodectl ls --json` (README "nodectl ls --json"). */
export interface NodeListEntry {
  id: string;
  role: "manager" | "worker";
  desiredRole: "manager" | "worker";
  status: "ready" | "down" | "unknown";
  leader: boolean;
  address: string | null;
  certificate: { serial: string; notAfter: string; issuerKeyId: string } | null;
  session: { managerId: string; connectedAt: string } | null;
}

/** `nodectl inspect ID --json`: an ls entry plus Raft membership and times. */
export interface NodeDetails extends NodeListEntry {
  raftId: number | null;
  membership: "voter" | "learner" | null;
  joinedAt: string;
  statusChangedAt: string;
}

export interface LocalNodesOptions {
  /** Directory holding every node's state dir and log; a new temporary one by default. */
  baseDir?: string;
  /** Name prefix of that temporary directory (default "nodectl-local-"). */
  tmpPrefix?: string;
  /** NODECTL_HEARTBEAT_MS for the daemons (session heartbeat period; nodectl's default 5000). */
  heartbeatMs?: number;
  /** LOG_LEVEL for the daemons ("info" by default); their logs go to `<name>.log`. */
  logLevel?: string;
  /** How long `close()` lets each daemon stop after SIGTERM before SIGKILL (default 10 s). */
  stopDeadlineMs?: number;
  /** Flags for node itself before the script, e.g. ["--cpu-prof", "--cpu-prof-dir", DIR] (NODE_OPTIONS refuses those). */
  nodeFlags?: string[];
}

export interface DaemonOptions {
  /** Serve Prometheus metrics on a free loopback port (default true). */
  metrics?: boolean;
  /** Deadline for the daemon to say it is up (default 30 s). */
  deadlineMs?: number;
  /** More flags for the command (e.g. ["--cert-expiry", "1m"]). */
  extraArgs?: string[];
}

export interface JoinOptions extends DaemonOptions {
  /** Give the node a --listen address (managers need one; a worker to be promoted too). Default true. */
  listen?: boolean;
}

export class LocalNodes {
  readonly baseDir: string;
  readonly nodes = new Map<string, LocalNode>();
  private readonly reaper: ChildProcess;
  private readonly ownsBaseDir: boolean;
  private readonly ports = new Set<number>();
  private closed = false;

  private constructor(readonly options: LocalNodesOptions) {
    this.ownsBaseDir = options.baseDir === undefined;
    this.baseDir = options.baseDir ?? mkdtempSync(join(tmpdir(), options.tmpPrefix ?? "nodectl-local-"));
    this.reaper = spawn(process.execPath, [REAPER, String(this.stopDeadlineMs), this.baseDir], {
      detached: true, // its own session: a terminal's Ctrl-C or hang-up does not end it early
      stdio: ["pipe", "ignore", "ignore"],
    });
    // The reaper must never keep this process alive; close() ends it explicitly.
    this.reaper.unref();
    (this.reaper.stdin as Writable & { unref?: () => void }).unref?.();
  }

  static create(options: LocalNodesOptions = {}): LocalNodes {
    return new LocalNodes(options);
  }

  private get stopDeadlineMs(): number {
    return this.options.stopDeadlineMs ?? 10_000;
  }

  node(name: string): LocalNode {
    const node = this.nodes.get(name);
    if (!node) throw new Error(`no node named ${name}`);
    return node;
  }

  /** The node whose id is `nodeId`, if it was started here. */
  byId(nodeId: string): LocalNode | undefined {
    return [...this.nodes.values()].find((n) => n.nodeId === nodeId);
  }

  /** `nodectl init`: a new cluster with `name` as its first manager. */
  async init(name: string, options: DaemonOptions = {}): Promise<LocalNode> {
    const node = await this.define(name, true, options.metrics ?? true);
    await this.startDaemon(node, ["init", "--listen", node.listen!, ...(options.extraArgs ?? [])], options);
    return node;
  }

  /** `nodectl join --token TOKEN MANAGER`, through `via` (a node started here, or HOST:PORT). */
  async join(
    name: string,
    via: LocalNode | string,
    token: string,
    options: JoinOptions = {},
  ): Promise<LocalNode> {
    const node = await this.define(name, options.listen ?? true, options.metrics ?? true);
    const manager = typeof via === "string" ? via : via.listen;
    if (!manager) throw new Error(`${typeof via === "string" ? via : via.name} has no --listen address`);
    const args = ["join", "--token", token, ...(node.listen ? ["--listen", node.listen] : [])];
    await this.startDaemon(node, [...args, ...(options.extraArgs ?? []), manager], options);
    return node;
  }

  /** `nodectl run`: restarts a node from its state dir (same ports). */
  async run(name: string, options: DaemonOptions = {}): Promise<LocalNode> {
    const node = this.node(name);
    if (node.running) throw new Error(`${name} is running already`);
    await this.startDaemon(node, ["run", ...(options.extraArgs ?? [])], options);
    return node;
  }

  /** A free port not handed out before (the OS may offer a just-closed port again). */
  private async newPort(): Promise<number> {
    for (;;) {
      const port = await freePort();
      if (!this.ports.has(port)) {
        this.ports.add(port);
        return port;
      }
    }
  }

  private async define(name: string, listen: boolean, metrics: boolean): Promise<LocalNode> {
    if (this.nodes.has(name)) throw new Error(`a node named ${name} exists already`);
    const node = new LocalNode(
      name,
      join(this.baseDir, name),
      join(this.baseDir, `${name}.log`),
      listen ? `127.0.0.1:${await this.newPort()}` : undefined,
      metrics ? `127.0.0.1:${await this.newPort()}` : undefined,
    );
    this.nodes.set(name, node);
    return node;
  }

  private async startDaemon(node: LocalNode, args: string[], options: DaemonOptions): Promise<void> {
    const metrics = node.metricsAddress ? ["--metrics", node.metricsAddress] : [];
    const child = this.spawn([
      ...args.slice(0, 1),
      "--state-dir",
      node.stateDir,
      ...metrics,
      ...args.slice(1),
    ]);
    const deadlineMs = options.deadlineMs ?? 30_000;
    const started = node.attach(child, createWriteStream(node.logFile, { flags: "a" }));
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        started,
        node.exited().then((r) => {
          throw new LocalNodesError(
            "NODE_EXITED",
            `${node.name} (${args[0]}) exited (${r.code ?? r.signal}) before it was up; log ${node.logFile}:\n${node.tail()}`,
          );
        }),
        new Promise((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new LocalNodesError(
                  "DEADLINE",
                  `${node.name} (${args[0]}) was not up after ${deadlineMs} ms; log ${node.logFile}:\n${node.tail()}`,
                ),
              ),
            deadlineMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
    const config = JSON.parse(readFileSync(join(node.stateDir, "node.json"), "utf8")) as {
      nodeId: string;
      role: "manager" | "worker";
    };
    node.nodeId = config.nodeId;
    node.startRole = config.role;
  }

  /** Spawns `nodectl ARGS` registered with the reaper. */
  private spawn(args: string[]): ChildProcess {
    // After close() nothing may start: the reaper no longer listens, so it would be missed.
    if (this.closed) throw new Error("these local nodes are closed: nothing more can start");
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      LOG_FORMAT: "json",
      LOG_LEVEL: this.options.logLevel ?? "info",
    };
    if (this.options.heartbeatMs !== undefined) env.NODECTL_HEARTBEAT_MS = String(this.options.heartbeatMs);
    const child = spawn(process.execPath, [...(this.options.nodeFlags ?? []), NODECTL_BIN, ...args], {
      cwd: ROOT,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.register(child);
    return child;
  }

  private register(child: ChildProcess): void {
    const pid = child.pid;
    if (pid === undefined) return; // failed to spawn: its 'error'/'exit' report it
    this.tellReaper(`+${pid}`);
    child.once("exit", () => this.tellReaper(`-${pid}`));
  }

  private tellReaper(line: string): void {
    const stdin = this.reaper.stdin;
    if (stdin && !stdin.destroyed && stdin.writable) stdin.write(`${line}\n`);
  }

  /**
   * One nodectl command (admin or not); never rejects: the status says how it ended.
   * `manager` adds `--state-dir` of that node. Killed after `timeoutMs`.
   */
  nodectl(args: string[], manager?: LocalNode, timeoutMs = 15_000): Promise<CliResult> {
    const full = manager ? [...args, "--state-dir", manager.stateDir] : args;
    const t0 = Date.now();
    if (this.closed) return Promise.resolve({ status: -1, stdout: "", stderr: "closed", ms: 0 });
    return new Promise((resolve) => {
      const child = execFile(
        process.execPath,
        [NODECTL_BIN, ...full],
        { cwd: ROOT, timeout: timeoutMs, killSignal: "SIGKILL", env: { ...process.env, LOG_FORMAT: "json" } },
        (err, stdout, stderr) => {
          const code = (err as { code?: unknown } | null)?.code;
          const status = err ? (typeof code === "number" ? code : -1) : 0;
          resolve({ status, stdout, stderr, ms: Date.now() - t0 });
        },
      );
      this.register(child);
    });
  }

  /** An admin command that must succeed: its stdout, or a COMMAND_FAILED error with its stderr. */
  async admin(manager: LocalNode, args: string[], timeoutMs = 15_000): Promise<string> {
    const r = await this.nodectl(args, manager, timeoutMs);
    if (r.status !== 0)
      throw new LocalNodesError(
        "COMMAND_FAILED",
        `nodectl ${args.join(" ")} (via ${manager.name}) exited ${r.status}: ${r.stderr.trim() || "(no message)"}`,
      );
    return r.stdout;
  }

  async ls(manager: LocalNode): Promise<NodeListEntry[]> {
    return JSON.parse(await this.admin(manager, ["ls", "--json"])) as NodeListEntry[];
  }

  async inspect(manager: LocalNode, nodeId: string): Promise<NodeDetails> {
    return JSON.parse(await this.admin(manager, ["inspect", nodeId, "--json"])) as NodeDetails;
  }

  async joinToken(manager: LocalNode, role: "worker" | "manager"): Promise<string> {
    return (await this.admin(manager, ["join-token", role, "--quiet"])).trim();
  }

  /** The node's /metrics, parsed (series → value). */
  async metrics(node: LocalNode, timeoutMs = 2_000): Promise<Map<string, number>> {
    if (!node.metricsAddress) throw new Error(`${node.name} serves no metrics`);
    const res = await fetch(`http://${node.metricsAddress}/metrics`, {
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!res.ok) throw new Error(`${node.name} /metrics answered ${res.status}`);
    return parseMetrics(await res.text());
  }

  /** One unlabelled metric of a node (undefined if it does not export it). */
  async metric(node: LocalNode, name: string, timeoutMs = 2_000): Promise<number | undefined> {
    return (await this.metrics(node, timeoutMs)).get(name);
  }

  /** kill -9, and wait for the exit. */
  async kill(node: LocalNode): Promise<StopReport> {
    node.signal("SIGKILL");
    return node.exited();
  }

  /** SIGTERM, then SIGKILL if it has not exited within `deadlineMs`. */
  async stop(node: LocalNode, deadlineMs = this.stopDeadlineMs): Promise<StopReport> {
    if (!node.running) return node.exited();
    const t0 = Date.now();
    node.signal("SIGTERM");
    let forced = false;
    const timer = setTimeout(() => {
      forced = true;
      node.signal("SIGKILL");
    }, deadlineMs);
    try {
      const report = await node.exited();
      return { ...report, forced, ms: Date.now() - t0 };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops every running daemon at once (SIGTERM, deadline, SIGKILL). */
  async stopAll(deadlineMs = this.stopDeadlineMs): Promise<StopReport[]> {
    const running = [...this.nodes.values()].filter((n) => n.running);
    return Promise.all(running.map((n) => this.stop(n, deadlineMs)));
  }

  /**
   * Stops every daemon, ends the reaper, and removes the base directory if this created
   * it (unless `keepDir`). Safe to call twice; the second call returns [] at once.
   */
  async close(options: { keepDir?: boolean; deadlineMs?: number } = {}): Promise<StopReport[]> {
    if (this.closed) return [];
    this.closed = true;
    const reports = await this.stopAll(options.deadlineMs);
    const reaperGone = new Promise<void>((resolve) => {
      if (this.reaper.exitCode !== null || this.reaper.signalCode !== null) resolve();
      else this.reaper.once("exit", () => resolve());
    });
    this.reaper.stdin?.end();
    const timer = setTimeout(() => this.reaper.kill("SIGKILL"), this.stopDeadlineMs + 2_000);
    await reaperGone;
    clearTimeout(timer);
    if (this.ownsBaseDir && !options.keepDir) rmSync(this.baseDir, { recursive: true, force: true });
    return reports;
  }
}
