// Drives nodectl as users do: `node bin/nodectl.js ...` (what `npx nodectl` runs), on
// the build in dist/ (npm test builds it first). Daemons are child processes on
// loopback, stopped with SIGTERM (or SIGKILL when a test fails) in an afterEach.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createServer } from "node:net";

const root = new URL("../..", import.meta.url).pathname;
export const BIN = `${root}bin/nodectl.js`;

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** One nodectl call; never rejects (the status says how it ended), killed after `timeoutMs`. */
export function nodectl(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 15_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: root, env: { ...process.env, ...env }, timeout: timeoutMs },
      (err, stdout, stderr) => {
        const code = (err as { code?: unknown } | null)?.code;
        resolve({ status: err ? (typeof code === "number" ? code : -1) : 0, stdout, stderr });
      },
    );
  });
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== "object" || address === null) throw new Error("no port");
  return address.port;
}

export class Daemon {
  readonly output: string[] = [];
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;

  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    this.child = spawn(process.execPath, [BIN, ...args], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, LOG_FORMAT: "json", ...env },
    });
    this.child.stdout?.on("data", (b: Buffer) => this.output.push(b.toString()));
    this.child.stderr?.on("data", (b: Buffer) => this.output.push(b.toString()));
    this.exited = new Promise((resolve) => this.child.once("exit", (code) => resolve(code)));
  }

  get log(): string {
    return this.output.join("");
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGTERM, then the exit status within `deadlineMs` (SIGKILL and a failure past it). */
  async stop(deadlineMs = 10_000): Promise<number | null> {
    if (!this.running) return this.child.exitCode;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), deadlineMs);
    try {
      const code = await this.exited;
      if (this.child.signalCode === "SIGKILL")
        throw new Error(`did not stop within ${deadlineMs} ms:\n${this.log}`);
      return code;
    } finally {
      clearTimeout(timer);
    }
  }

  kill(): void {
    if (this.running) this.child.kill("SIGKILL");
  }
}

/** Polls `probe` until it returns a value, or fails after the deadline with the last error (the scripts' own helper). */
export { waitFor as waitUntil } from "../../scripts/lib/support.js";
