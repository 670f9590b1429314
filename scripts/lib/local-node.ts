// One nodectl daemon process as the driver (local-nodes.ts) sees it: its state dir,
// addresses, output (tee'd to its log file, the last lines kept for error messages)
// and exit.
import type { ChildProcess } from "node:child_process";
import type { WriteStream } from "node:fs";

export interface StopReport {
  name: string;
  /** Exit status, or null when ended by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** SIGKILLed because it had not exited by the deadline. */
  forced: boolean;
  ms: number;
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
