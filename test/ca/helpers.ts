// Shared fixtures for the CA tests: a throwaway directory and the openssl CLI
// as an outside verifier (our own code must not be the only judge of our certificates).
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(
  command: string,
  args: readonly string[],
  input?: string,
  timeoutMs = 10_000,
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(command, args, { timeout: timeoutMs }, (error, stdout, stderr) => {
      if (error && typeof error.code !== "number") {
        reject(error);
        return;
      }
      resolve({ code: typeof error?.code === "number" ? error.code : 0, stdout, stderr });
    });
    // A command that exits without reading its input (openssl verify) makes this write fail with EPIPE;
    // its exit status and output above are the result, so that error is not one.
    child.stdin?.on("error", () => {});
    child.stdin?.end(input ?? "");
  });
}

export class TempDir {
  private constructor(readonly path: string) {}

  static async create(): Promise<TempDir> {
    return new TempDir(await mkdtemp(join(tmpdir(), "ca-test-")));
  }

  async file(name: string, contents: string): Promise<string> {
    const path = join(this.path, name);
    await writeFile(path, contents);
    return path;
  }

  async remove(): Promise<void> {
    await rm(this.path, { recursive: true, force: true });
  }
}

/** `openssl verify -x509_strict`; resolves to openssl's exit status and output. */
export async function opensslVerify(
  dir: TempDir,
  options: { trusted: string; untrusted?: string; leaf: string; purpose?: "sslclient" | "sslserver" },
): Promise<RunResult> {
  const args = ["verify", "-x509_strict", "-CAfile", await dir.file("trusted.pem", options.trusted)];
  if (options.untrusted) args.push("-untrusted", await dir.file("untrusted.pem", options.untrusted));
  if (options.purpose) args.push("-purpose", options.purpose);
  args.push(await dir.file("leaf.pem", options.leaf));
  return run("openssl", args);
}

/** Polls a condition until it holds or the deadline passes: no sleep-and-hope. */
export async function waitFor(what: string, condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
