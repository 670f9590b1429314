// Starts Raft members as real processes on loopback, for the runtime's tests,
// the benchmark and the demo: free ports, a dev PKI, per-member state and log
// files, kill -9 / SIGSTOP / restart, and KV clients over mutual TLS.
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, mkdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import type { NodeRole } from "../ca/profile.js";
import { KVServiceClient, type StatusResponse } from "../gen/testbed/kv/v1/kv.js";
import { silentLogger } from "../log/logger.js";
import {
  createDevPki,
  type DevPki,
  loadCredentialHolder,
  memberNodeId,
  OPERATOR,
  writeMemberCertificates,
  writeNodeCertificates,
} from "./dev-pki.js";

const MEMBER_MAIN = new URL("./member-main.ts", import.meta.url).pathname;

export interface LocalClusterOptions {
  size: number;
  baseDir: string;
  tickMs?: number;
  snapshotEvery?: number;
  /** Entries kept behind each snapshot (the member's default when unset). */
  keepEntries?: number;
  logLevel?: string;
  /** Extra node flags for member processes (profiling, heap limits). */
  nodeArgs?: string[];
}

export interface Member {
  id: number;
  /** The CN of its certificate, which the membership binds to `id`. */
  nodeId: string;
  address: string;
  dir: string;
  proc: ChildProcess | undefined;
  join: boolean;
  /** Whether it has served once: its state exists, and restarts must not ask to create it. */
  started: boolean;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export async function waitFor<T>(
  what: string,
  deadlineMs: number,
  probe: () => Promise<T | undefined> | T | undefined,
  intervalMs = 50,
): Promise<T> {
  const until = Date.now() + deadlineMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > until) {
      throw new Error(
        `timed out after ${deadlineMs} ms waiting for ${what}${lastErr ? ` (last error: ${lastErr})` : ""}`,
      );
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export class LocalCluster {
  readonly members = new Map<number, Member>();
  readonly clusterId = "c-local";
  private pki: DevPki;
  private readonly clients = new Map<number, InstanceType<typeof KVServiceClient>>();
  private operator: ReturnType<typeof loadCredentialHolder> | undefined;

  private constructor(readonly options: LocalClusterOptions) {
    this.pki = createDevPki(this.clusterId);
  }

  static async start(options: LocalClusterOptions): Promise<LocalCluster> {
    const c = new LocalCluster(options);
    for (let id = 1; id <= options.size; id++) await c.define(id, false);
    await Promise.all([...c.members.keys()].map((id) => c.startMember(id)));
    await c.prepareClient();
    return c;
  }

  /** Allocates an address and certificates for a member (not started). */
  async define(id: number, joining: boolean): Promise<Member> {
    const dir = join(this.options.baseDir, `m${id}`);
    mkdirSync(dir, { recursive: true });
    await writeMemberCertificates(this.pki, id, join(dir, "certificates"));
    const member: Member = {
      id,
      nodeId: memberNodeId(id),
      address: `127.0.0.1:${await freePort()}`,
      dir,
      proc: undefined,
      join: joining,
      started: false,
    };
    this.members.set(id, member);
    return member;
  }

  private peersArg(): string {
    return [...this.members.values()]
      .filter((m) => !m.join)
      .map((m) => `${m.id}=${m.nodeId}@${m.address}`)
      .join(",");
  }

  /** Starts (or restarts) a member process and waits until it serves. */
  async startMember(id: number): Promise<void> {
    const m = this.members.get(id)!;
    const args = [
      ...(this.options.nodeArgs ?? []),
      "--import",
      "tsx",
      MEMBER_MAIN,
      "--id",
      String(id),
      "--listen",
      m.address,
      "--data-dir",
      join(m.dir, "raft"),
      "--tls-dir",
      join(m.dir, "certificates"),
      "--cluster-id",
      this.clusterId,
      "--peers",
      m.join
        ? [...this.members.values()].map((p) => `${p.id}=${p.nodeId}@${p.address}`).join(",")
        : this.peersArg(),
      "--tick-ms",
      String(this.options.tickMs ?? 100),
      "--snapshot-every",
      String(this.options.snapshotEvery ?? 100_000),
      ...(this.options.keepEntries === undefined ? [] : ["--keep-entries", String(this.options.keepEntries)]),
      ...(m.started ? [] : [m.join ? "--join" : "--bootstrap"]),
      // A member never outlives this process: it stops when the pipe we hold closes.
      "--exit-with-parent",
    ];
    const proc = spawn(process.execPath, args, {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, LOG_FORMAT: "json", LOG_LEVEL: this.options.logLevel ?? "info" },
    });
    m.proc = proc;
    proc.stderr!.pipe(createWriteStream(join(m.dir, "member.log"), { flags: "a" }));
    let out = "";
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('"listening"')) {
          proc.stdout!.off("data", onData);
          m.started = true;
          resolve();
        }
      };
      proc.stdout!.on("data", onData);
      proc.once("exit", (code) =>
        reject(new Error(`member ${id} exited (${code}) before serving; see ${m.dir}/member.log`)),
      );
    });
  }

  /** kill -9: nothing gets flushed or closed. */
  kill(id: number): Promise<void> {
    return this.signal(id, "SIGKILL");
  }

  /** Graceful stop (SIGTERM) and wait for exit. */
  stop(id: number): Promise<void> {
    return this.signal(id, "SIGTERM");
  }

  private async signal(id: number, sig: NodeJS.Signals): Promise<void> {
    const m = this.members.get(id)!;
    const proc = m.proc;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise<void>((r) => proc.once("exit", () => r()));
    proc.kill(sig);
    await exited;
    m.proc = undefined;
    this.clients.get(id)?.close();
    this.clients.delete(id);
  }

  pause(id: number): void {
    this.members.get(id)!.proc?.kill("SIGSTOP");
  }

  resume(id: number): void {
    this.members.get(id)!.proc?.kill("SIGCONT");
  }

  logOf(id: number): string {
    return readFileSync(join(this.members.get(id)!.dir, "member.log"), "utf8");
  }

  client(id: number): InstanceType<typeof KVServiceClient> {
    let c = this.clients.get(id);
    if (!c) {
      const member = this.members.get(id)!;
      c = new KVServiceClient(member.address, this.credentials(member.nodeId), {
        "grpc.ssl_target_name_override": "manager",
        "grpc.default_authority": "manager",
      });
      this.clients.set(id, c);
    }
    return c;
  }

  /** The operator's credentials for dialling the member whose certificate is `nodeId`. */
  credentials(nodeId: string): grpc.ChannelCredentials {
    // The operator is a worker-role identity (dev-pki.ts OPERATOR): the members let it
    // use the KV service, never the Raft transport.
    this.operator ??= loadCredentialHolder(this.operatorDir, silentLogger());
    return this.operator.channelCredentials({
      clusterId: this.clusterId,
      expectedServerRole: "manager",
      expectedServerNodeId: nodeId,
    });
  }

  /** Where the operator client's node.key, node.crt and ca.crt are (benchmark clients use them). */
  get operatorDir(): string {
    return join(this.options.baseDir, "client", "certificates");
  }

  /** Issues the operator client's certificate (start() does it). */
  private async prepareClient(): Promise<void> {
    await writeNodeCertificates(this.pki, OPERATOR, this.operatorDir);
  }

  /** Certificates from this cluster's CA for any identity, e.g. a manager that is no member (tests). */
  async writeIdentity(identity: { role: NodeRole; nodeId: string }, dir: string): Promise<void> {
    await writeNodeCertificates(this.pki, identity, dir);
  }

  call<Req, Res>(
    id: number,
    method: (
      c: InstanceType<typeof KVServiceClient>,
    ) => (
      req: Req,
      md: grpc.Metadata,
      opts: Partial<grpc.CallOptions>,
      cb: (err: grpc.ServiceError | null, res: Res) => void,
    ) => grpc.ClientUnaryCall,
    req: Req,
    timeoutMs = 5_000,
  ): Promise<Res> {
    const c = this.client(id);
    const fn = method(c).bind(c);
    return new Promise((resolve, reject) =>
      fn(req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
        err ? reject(err) : resolve(res),
      ),
    );
  }

  status(id: number, timeoutMs = 1_000): Promise<StatusResponse> {
    return this.call(id, (c) => c.status, {}, timeoutMs);
  }

  put(id: number, key: string, value: string | Uint8Array, timeoutMs = 5_000): Promise<{ index: number }> {
    const v = typeof value === "string" ? new TextEncoder().encode(value) : value;
    return this.call(id, (c) => c.put, { key, value: v }, timeoutMs);
  }

  async get(
    id: number,
    key: string,
    timeoutMs = 5_000,
  ): Promise<{ found: boolean; value: string; index: number }> {
    const r = await this.call(id, (c) => c.get, { key }, timeoutMs);
    return { found: r.found, value: new TextDecoder().decode(r.value), index: r.index };
  }

  /** The leader that every running member agrees on, if any. */
  async agreedLeader(): Promise<number | undefined> {
    const running = [...this.members.values()].filter((m) => m.proc);
    const statuses = await Promise.all(running.map((m) => this.status(m.id).catch(() => undefined)));
    const leaders = new Set(statuses.map((s) => s?.lead));
    if (leaders.size !== 1) return undefined;
    const lead = statuses[0]?.lead;
    return lead && lead !== 0 && statuses.find((s) => s?.id === lead)?.role === "leader" ? lead : undefined;
  }

  async close(): Promise<void> {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
    await Promise.all([...this.members.keys()].map((id) => this.kill(id)));
  }
}
