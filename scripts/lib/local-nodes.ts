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
import { createWriteStream, mkdtempSync, readFileSync, rmSync, type WriteStream } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Writable } from "node:stream";

const ROOT = new URL("../..", import.meta.url).pathname;
/** The nodectl executable (loads dist/; `npm run build` makes it). */
export const NODECTL_BIN = join(ROOT, "bin", "nodectl.js");
const REAPER = new URL("./reaper.mjs", import.meta.url).pathname;

export type LocalNodesErrorCode =
  /** A wait passed its deadline. */
  | "DEADLINE"
  /** A daemon exited before it said it was up. */
  | "NODE_EXITED"
  /** A nodectl command exited non-zero or printed something unreadable. */
  | "COMMAND_FAILED";

export class LocalNodesError extends Error {
  constructor(
    readonly code: LocalNodesErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "LocalNodesError";
  }
}

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

export interface StopReport {
  name: string;
  /** Exit status, or null when ended by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** SIGKILLed because it had not exited by the deadline. */
  forced: boolean;
  ms: number;
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

/** A port the OS had free a moment ago (listen on port 0, then close). */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== "object" || address === null) throw new Error("the OS gave no port");
  return address.port;
}

/**
 * Polls `probe` (every `intervalMs`) until it returns a value other than undefined, and
 * returns it; past `deadlineMs` throws a DEADLINE error naming `what` and the last error.
 */
export async function waitFor<T>(
  what: string,
  deadlineMs: number,
  probe: () => Promise<T | undefined> | T | undefined,
  intervalMs = 100,
): Promise<T> {
  const until = Date.now() + deadlineMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= until) {
      const why = last instanceof Error ? `; last error: ${last.message}` : "";
      throw new LocalNodesError("DEADLINE", `timed out after ${deadlineMs} ms waiting for ${what}${why}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Parses Prometheus text: series (name plus labels, as written) → value. */
export function parseMetrics(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    if (space > 0) values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return values;
}

/** One nodectl daemon process and its state dir. */
export class LocalNode {
  /** The node id (from node.json), known once the daemon is up. */
  nodeId: string | undefined;
  /** The role it was started with (node.json's at start; a promotion changes it later). */
  startRole: "manager" | "worker" | undefined;
  private child: ChildProcess | undefined;
  private exit: Promise<StopReport> | undefined;
  private readonly recent: string[] = [];

  constructor(
    readonly name: string,
    readonly stateDir: string,
    readonly logFile: string,
    /** HOST:PORT it serves on, if any. */
    readonly listen: string | undefined,
    /** HOST:PORT of its /metrics, if any. */
    readonly metricsAddress: string | undefined,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The last lines it printed (stdout and stderr), for error messages. */
  tail(lines = 15): string {
    return this.recent.slice(-lines).join("\n");
  }

  /** Resolves when the current process exits (at once if none runs). */
  exited(): Promise<StopReport> {
    return this.exit ?? Promise.resolve({ name: this.name, code: null, signal: null, forced: false, ms: 0 });
  }

  /** @internal LocalNodes starts the process and hands it over. */
  attach(child: ChildProcess, log: WriteStream): Promise<string> {
    this.child = child;
    let firstLine: ((line: string) => void) | undefined;
    const started = new Promise<string>((resolve) => {
      firstLine = resolve;
    });
    const keep = (stream: "out" | "err") => (chunk: Buffer) => {
      log.write(chunk);
      for (const line of chunk.toString().split("\n")) {
        if (line === "") continue;
        this.recent.push(line);
        // The daemon prints one human line on stdout once it is up (logs go to stderr).
        if (stream === "out" && firstLine) {
          firstLine(line);
          firstLine = undefined;
        }
      }
      if (this.recent.length > 200) this.recent.splice(0, this.recent.length - 100);
    };
    child.stdout!.on("data", keep("out"));
    child.stderr!.on("data", keep("err"));
    const t0 = Date.now();
    // A log file that cannot be written (its directory removed) must not crash the script.
    log.on("error", () => undefined);
    // 'close', not 'exit': output can still arrive after 'exit', never after 'close'.
    this.exit = new Promise((resolve) =>
      child.once("close", (code: number | null, signal: NodeJS.Signals | null) => {
        log.end();
        resolve({ name: this.name, code, signal, forced: false, ms: Date.now() - t0 });
      }),
    );
    return started;
  }

  /** Sends a signal to the running process (SIGSTOP/SIGCONT to pause it, for instance). */
  signal(sig: NodeJS.Signals): void {
    if (this.running) this.child!.kill(sig);
  }
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
    const child = spawn(process.execPath, [NODECTL_BIN, ...args], {
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

/** Runs `fn` over `items` with at most `limit` calls in flight; results in input order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}
