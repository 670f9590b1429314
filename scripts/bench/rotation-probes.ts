// What bench:rotation reads around a rotation: the managers' counters (/metrics), their
// CPU time and RSS (/proc), the load average; and the load-generator child (IPC).
import { type ChildProcess, fork } from "node:child_process";
import { readFileSync } from "node:fs";
import type { LocalNode, LocalNodes } from "../lib/local-nodes.js";
import type { ChildMessage, Counts, JoinJob, ParentMessage } from "./rotation-workers.js";

/** USER_HZ: the unit of utime/stime in /proc/PID/stat (100 on Linux everywhere that matters). */
const CLOCK_TICKS = 100;

/** CPU seconds (user + system) a process used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS; // utime, stime (fields 14, 15)
}

export function rssMb(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return match ? Math.round(Number(match[1]) / 1024) : Number.NaN;
}

export function loadAverage(): number[] {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number);
}

export interface ManagerSample {
  name: string;
  pid: number;
  cpuS: number;
  leaderChanges: number;
  term: number;
  sessionsOpen: number;
  certificatesIssued: number;
}

export async function sampleManagers(nodes: LocalNodes, managers: LocalNode[]): Promise<ManagerSample[]> {
  return Promise.all(
    managers.map(async (m) => {
      const pid = m.pid;
      if (pid === undefined || !m.running) throw new Error(`manager ${m.name} is not running`);
      const metrics = await nodes.metrics(m, 10_000);
      const get = (name: string) => {
        const value = metrics.get(name);
        if (value === undefined) throw new Error(`${m.name} does not export ${name}`);
        return value;
      };
      return {
        name: m.name,
        pid,
        cpuS: cpuSeconds(pid),
        leaderChanges: get("nodectl_raft_leader_changes_total"),
        term: get("nodectl_raft_term"),
        sessionsOpen: get("nodectl_sessions_open"),
        certificatesIssued: get("nodectl_certificates_issued_total"),
      };
    }),
  );
}

const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

/** What changed between two samples of the same managers. */
export function managerDelta(before: ManagerSample[], after: ManagerSample[]) {
  const d = (f: (s: ManagerSample) => number) => sum(after.map(f)) - sum(before.map(f));
  return {
    elections: d((s) => s.leaderChanges),
    termMoves: d((s) => s.term),
    cpuS: Math.round(d((s) => s.cpuS) * 100) / 100,
    certificatesIssued: d((s) => s.certificatesIssued),
    sessionsOpenBefore: sum(before.map((s) => s.sessionsOpen)),
    sessionsOpenAfter: sum(after.map((s) => s.sessionsOpen)),
  };
}

/** The load-generator child process and its IPC requests, each with a deadline. */
export class WorkerGenerator {
  private readonly listeners = new Set<(m: ChildMessage) => void>();
  private exited = false;
  readonly exit: Promise<number | null>;

  private constructor(readonly child: ChildProcess) {
    child.on("message", (m: ChildMessage) => {
      for (const l of [...this.listeners]) l(m);
    });
    this.exit = new Promise((resolve) =>
      child.once("exit", (code) => {
        this.exited = true;
        resolve(code);
      }),
    );
  }

  /** `logFile`: the workers' info logs go there; `profileDir`: a V8 CPU profile of the generator. */
  static start(options: { logFile?: string; profileDir?: string } = {}): WorkerGenerator {
    const script = new URL("./rotation-workers.ts", import.meta.url).pathname;
    const env = { ...process.env };
    if (options.logFile) env.BENCH_GENERATOR_LOG = options.logFile;
    const profile = options.profileDir ? ["--cpu-prof", "--cpu-prof-dir", options.profileDir] : [];
    const child = fork(script, [], {
      env,
      // 5,000 workers hold ~1 GB of JS heap: room above V8's default limit.
      execArgv: ["--import", "tsx", "--max-old-space-size=8192", ...profile],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    return new WorkerGenerator(child);
  }

  get pid(): number {
    return this.child.pid as number;
  }

  /** Waits for the first message `pick` accepts; an "error" message or the child's exit rejects. */
  private await<T>(what: string, deadlineMs: number, pick: (m: ChildMessage) => T | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const done = (fn: () => void) => {
        clearTimeout(timer);
        this.listeners.delete(listener);
        fn();
      };
      const listener = (m: ChildMessage) => {
        if (m.type === "error") return done(() => reject(new Error(`load generator: ${m.message}`)));
        const value = pick(m);
        if (value !== undefined) done(() => resolve(value));
      };
      const timer = setTimeout(
        () => done(() => reject(new Error(`load generator: no ${what} within ${deadlineMs} ms`))),
        deadlineMs,
      );
      this.listeners.add(listener);
      void this.exit.then((code) =>
        done(() => reject(new Error(`load generator exited (${code}) while waiting for ${what}`))),
      );
    });
  }

  private send(message: ParentMessage): void {
    if (this.exited || !this.child.connected) throw new Error("load generator is gone");
    this.child.send(message);
  }

  async join(job: JoinJob, deadlineMs: number, onProgress: (joined: number) => void) {
    const progress = (m: ChildMessage) => {
      if (m.type === "progress") onProgress(m.joined);
    };
    this.listeners.add(progress);
    try {
      this.send({ cmd: "join", ...job });
      return await this.await("join of every worker", deadlineMs, (m) =>
        m.type === "joined" ? m : undefined,
      );
    } finally {
      this.listeners.delete(progress);
    }
  }

  counts(deadlineMs = 30_000): Promise<Counts> {
    this.send({ cmd: "counts" });
    return this.await("counts", deadlineMs, (m) => (m.type === "counts" ? m : undefined));
  }

  /** Asks the child to stop its daemons; SIGKILL past the deadline. */
  async stop(deadlineMs = 30_000): Promise<void> {
    if (this.exited) return;
    if (this.child.connected) this.child.send({ cmd: "stop" } satisfies ParentMessage);
    else this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), deadlineMs);
    await this.exit;
    clearTimeout(timer);
  }
}

/**
 * K load-generator children, the workers split evenly among them: one process runs on
 * one core, and at a few thousand workers one process is saturated by their
 * heartbeats and renewals alone (then it, not the cluster, is what the benchmark
 * measures). Each child keeps its workers' state dirs under its own folder.
 */
export class GeneratorPool {
  private constructor(readonly generators: WorkerGenerator[]) {}

  static start(count: number, options: { logFile?: string; profileDir?: string } = {}): GeneratorPool {
    return new GeneratorPool(
      Array.from({ length: Math.max(1, count) }, (_, i) =>
        WorkerGenerator.start({
          logFile: options.logFile && count > 1 ? `${options.logFile}.${i}` : options.logFile,
          profileDir: options.profileDir,
        }),
      ),
    );
  }

  /** CPU seconds the children used so far. */
  cpuSeconds(): number {
    return sum(this.generators.map((g) => cpuSeconds(g.pid)));
  }

  async join(job: JoinJob, deadlineMs: number, onProgress: (joined: number) => void) {
    const k = this.generators.length;
    const joinedBy = new Array<number>(k).fill(0);
    const results = await Promise.all(
      this.generators.map((g, i) =>
        g.join(
          {
            ...job,
            baseDir: `${job.baseDir}/g${i}`,
            count: Math.floor(job.count / k) + (i < job.count % k ? 1 : 0),
            concurrency: Math.max(1, Math.ceil(job.concurrency / k)),
          },
          deadlineMs,
          (n) => {
            joinedBy[i] = n;
            onProgress(sum(joinedBy));
          },
        ),
      ),
    );
    return {
      joined: sum(results.map((r) => r.joined)),
      ms: Math.max(...results.map((r) => r.ms)),
      overloadedRetries: sum(results.map((r) => r.overloadedRetries)),
    };
  }

  async counts(deadlineMs = 30_000): Promise<Counts> {
    const all = await Promise.all(this.generators.map((g) => g.counts(deadlineMs)));
    const merged = (pick: (c: Counts) => Record<string, number>) => {
      const out: Record<string, number> = {};
      for (const c of all) for (const [key, n] of Object.entries(pick(c))) out[key] = (out[key] ?? 0) + n;
      return out;
    };
    return {
      workers: sum(all.map((c) => c.workers)),
      sessionConnects: sum(all.map((c) => c.sessionConnects)),
      renewals: sum(all.map((c) => c.renewals)),
      fatal: sum(all.map((c) => c.fatal)),
      rssMb: sum(all.map((c) => c.rssMb)),
      cpuS: sum(all.map((c) => c.cpuS)),
      heldIssuers: merged((c) => c.heldIssuers),
      trustBundles: merged((c) => c.trustBundles),
    };
  }

  async stop(deadlineMs = 30_000): Promise<void> {
    await Promise.all(this.generators.map((g) => g.stop(deadlineMs)));
  }
}
