// A cluster of real nodectl processes on loopback, driven as users drive it: `init`,
// `join` with tokens, admin commands over a manager's control.sock, metrics over HTTP.
// Every daemon is a child process this fixture owns: stop() ends them all (SIGTERM,
// SIGKILL past a deadline) and removes the state dirs.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import type { NodeJson } from "../../src/cli/format.js";
import { sClient } from "../ca/s-client.js";
import { Daemon, freePort, nodectl, waitUntil } from "./nodectl.js";

export type LsNode = NodeJson;

export interface NodeProc {
  name: string;
  stateDir: string;
  listen?: string;
  metricsPort: number;
  daemon: Daemon;
  /** Filled once the node is known (node.json). */
  nodeId: string;
}

export interface ClusterOptions {
  heartbeatMs?: number;
  certExpiry?: string;
}

/** How often waits that run `nodectl ls` poll. */
const LS_POLL_MS = 400;

export class ProcessCluster {
  readonly base = mkdtempSync(join(tmpdir(), "nodectl-cluster-"));
  readonly nodes = new Map<string, NodeProc>();
  private readonly env: NodeJS.ProcessEnv;

  constructor(private readonly options: ClusterOptions = {}) {
    this.env = { NODECTL_HEARTBEAT_MS: String(options.heartbeatMs ?? 300) };
  }

  node(name: string): NodeProc {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name}`);
    return n;
  }

  async init(name: string): Promise<NodeProc> {
    const stateDir = join(this.base, name);
    const listen = `127.0.0.1:${await freePort()}`;
    const metricsPort = await freePort();
    const args = [
      "init",
      "--state-dir",
      stateDir,
      "--listen",
      listen,
      "--metrics",
      `127.0.0.1:${metricsPort}`,
    ];
    if (this.options.certExpiry) args.push("--cert-expiry", this.options.certExpiry);
    const proc = { name, stateDir, listen, metricsPort, daemon: new Daemon(args, this.env), nodeId: "" };
    this.nodes.set(name, proc);
    await waitUntil(`${name} to lead its new cluster`, 20_000, async () =>
      (await this.ls(name)).some((n) => n.leader) ? true : undefined,
    );
    proc.nodeId = (await this.nodeIdOf(stateDir)) ?? "";
    return proc;
  }

  /** Starts `nodectl join` through `via` (a manager's name); resolves once node.json exists. */
  async join(
    name: string,
    role: "worker" | "manager",
    via: string,
    listen = role === "manager",
  ): Promise<NodeProc> {
    const token = await this.token(via, role);
    const stateDir = join(this.base, name);
    const address = listen ? `127.0.0.1:${await freePort()}` : undefined;
    const metricsPort = await freePort();
    const args = ["join", "--state-dir", stateDir, "--token", token, "--metrics", `127.0.0.1:${metricsPort}`];
    if (address) args.push("--listen", address);
    args.push(this.node(via).listen ?? "");
    const proc = {
      name,
      stateDir,
      listen: address,
      metricsPort,
      daemon: new Daemon(args, this.env),
      nodeId: "",
    };
    this.nodes.set(name, proc);
    proc.nodeId = await waitUntil(`${name} to join`, 20_000, async () => {
      if (!proc.daemon.running) throw new Error(`join exited:\n${proc.daemon.log}`);
      return this.nodeIdOf(stateDir);
    });
    return proc;
  }

  /** `nodectl run` from the node's state dir (after a stop or a kill). */
  run(name: string): NodeProc {
    const proc = this.node(name);
    proc.daemon = new Daemon(
      ["run", "--state-dir", proc.stateDir, "--metrics", `127.0.0.1:${proc.metricsPort}`],
      this.env,
    );
    return proc;
  }

  async token(via: string, role: string, ...flags: string[]): Promise<string> {
    const r = await nodectl([
      "join-token",
      role,
      "--quiet",
      "--state-dir",
      this.node(via).stateDir,
      ...flags,
    ]);
    expect(r.status, r.stderr).to.equal(0);
    return r.stdout.trim();
  }

  async ls(via: string): Promise<LsNode[]> {
    const r = await nodectl(["ls", "--json", "--state-dir", this.node(via).stateDir]);
    if (r.status !== 0) throw new Error(`ls through ${via} failed (${r.status}): ${r.stderr}`);
    return JSON.parse(r.stdout) as LsNode[];
  }

  /** ls once every listed node is ready and `count` are listed. */
  async allReady(via: string, count: number, deadlineMs = 30_000): Promise<LsNode[]> {
    const notReady = new Set<string>();
    try {
      return await this.allReadyOnce(via, count, deadlineMs, notReady);
    } catch (error) {
      // What the daemons logged about the nodes still not ready: the failure says why, not only who.
      (error as Error).message += this.logsAbout([...notReady]);
      throw error;
    }
  }

  /** The last session-related lines every daemon logged about these node ids. */
  private logsAbout(nodeIds: string[], max = 15): string {
    if (nodeIds.length === 0) return "";
    const lines: string[] = [];
    for (const proc of this.nodes.values())
      for (const line of proc.daemon.log.split("\n"))
        if (nodeIds.some((id) => line.includes(id)) && /session|down|adopt|expir|refus|renew/i.test(line))
          lines.push(`${proc.name}: ${line}`);
    return `\nlogged about ${nodeIds.map((id) => this.nameOfOrId(id)).join(", ")} (last ${max}):\n${lines.slice(-max).join("\n")}`;
  }

  private allReadyOnce(
    via: string,
    count: number,
    deadlineMs: number,
    notReady: Set<string>,
  ): Promise<LsNode[]> {
    let last = "";
    return waitUntil(
      `${count} nodes ready (through ${via})`,
      deadlineMs,
      async () => {
        const nodes = await this.ls(via);
        const managers = nodes.filter((n) => n.role === "manager").length;
        // Settled, not only "ready": every node holds its session, a manager on another manager
        // when there is one (the first manager is ready by construction before its session opens,
        // and moves it off itself once a second manager joins: a session count read earlier moves).
        const why = (n: LsNode): string | undefined =>
          n.status !== "ready"
            ? n.status
            : !n.session
              ? "ready, no session yet"
              : n.role === "manager" && managers > 1 && n.session.managerId === n.id
                ? "ready, its session still on itself"
                : undefined;
        const unsettled = nodes.filter((n) => why(n) !== undefined);
        if (nodes.length === count && unsettled.length === 0) return nodes;
        // The failure names who is missing or not ready, not only that the wait ran out.
        notReady.clear();
        for (const n of unsettled) notReady.add(n.id);
        last = `${nodes.length} listed; not ready: ${unsettled
          .map((n) => `${this.nameOfOrId(n.id)}=${why(n)}`)
          .join(", ")}`;
        throw new Error(last);
        // Each probe is a nodectl process (~0.1 s of CPU): polling faster would itself load 2 cores.
      },
      LS_POLL_MS,
    );
  }

  private nameOfOrId(id: string): string {
    for (const n of this.nodes.values()) if (n.nodeId === id) return n.name;
    return id;
  }

  async inspect(
    via: string,
    id: string,
  ): Promise<{ raftId: number | null; membership: string | null; role: string }> {
    const r = await nodectl(["inspect", id, "--json", "--state-dir", this.node(via).stateDir]);
    if (r.status !== 0) throw new Error(`inspect failed: ${r.stderr}`);
    return JSON.parse(r.stdout);
  }

  async metric(name: string, metric: string): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${this.node(name).metricsPort}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(`${metric} `));
    if (!line) throw new Error(`${name} exports no ${metric}`);
    return Number(line.split(" ")[1]);
  }

  /** The name of the node with this id. */
  nameOf(id: string): string {
    for (const n of this.nodes.values()) if (n.nodeId === id) return n.name;
    throw new Error(`no node with id ${id}`);
  }

  async stop(): Promise<void> {
    await Promise.all([...this.nodes.values()].map((n) => n.daemon.stop().catch(() => n.daemon.kill())));
    rmSync(this.base, { recursive: true, force: true });
  }

  private async nodeIdOf(stateDir: string): Promise<string | undefined> {
    try {
      const { readFile } = await import("node:fs/promises");
      return (JSON.parse(await readFile(join(stateDir, "node.json"), "utf8")) as { nodeId: string }).nodeId;
    } catch {
      return undefined;
    }
  }
}

/**
 * openssl s_client to a manager with a node's certificate (its whole chain, as nodes
 * serve it) and key, verifying the manager against `caFile`.
 */
export function handshake(manager: string, certDir: string, caFile = join(certDir, "ca.crt")) {
  return sClient([
    "-connect",
    manager,
    "-alpn",
    "h2",
    "-servername",
    "manager",
    "-CAfile",
    caFile,
    "-verify_return_error",
    "-cert",
    join(certDir, "node.crt"),
    "-cert_chain",
    join(certDir, "node.crt"),
    "-key",
    join(certDir, "node.key"),
  ]);
}
