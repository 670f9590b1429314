// npm run bench:ls [-- --calls N --state-dir DIR]
// How fast an admin command answers, as an operator's script sees it: N sequential
// `node bin/nodectl.js ls` calls (what `npx nodectl ls` runs, minus npx's own start),
// each timed from spawn to exit, against a manager started here with `nodectl init`
// on loopback (or the running manager of --state-dir). Needs the build (npm run build;
// npm ci runs it). Prints one JSON line: median, max and min in milliseconds.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";

const opts = new Command()
  .option("--calls <n>", "calls to time", "20")
  .option("--state-dir <dir>", "measure against this running manager instead of starting one")
  .parse()
  .opts<{ calls: string; stateDir?: string }>();
const calls = Number(opts.calls);
const root = new URL("../..", import.meta.url).pathname;
const bin = join(root, "bin/nodectl.js");

function ls(stateDir: string): Promise<number> {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) =>
    execFile(
      process.execPath,
      [bin, "ls", "--state-dir", stateDir],
      { timeout: 15_000 },
      (err, _out, stderr) =>
        err
          ? reject(new Error(`ls failed: ${stderr}`))
          : resolve(Number(process.hrtime.bigint() - started) / 1e6),
    ),
  );
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return typeof address === "object" && address ? address.port : 0;
}

async function startManager(stateDir: string): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [bin, "init", "--state-dir", stateDir, "--listen", `127.0.0.1:${await freePort()}`],
    { stdio: "ignore" },
  );
  const until = Date.now() + 30_000;
  for (;;) {
    try {
      await ls(stateDir);
      return child;
    } catch (err) {
      if (Date.now() > until) {
        child.kill("SIGKILL");
        throw err;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function main(): Promise<void> {
  const base = opts.stateDir ? undefined : mkdtempSync(join(tmpdir(), "bench-ls-"));
  const stateDir = opts.stateDir ?? join(base as string, "m1");
  const manager = base ? await startManager(stateDir) : undefined;
  try {
    await ls(stateDir); // warm the page cache once, as a script's second call would be
    const times: number[] = [];
    for (let i = 0; i < calls; i++) times.push(await ls(stateDir));
    times.sort((a, b) => a - b);
    const median =
      (times[Math.floor((times.length - 1) / 2)]! + times[Math.ceil((times.length - 1) / 2)]!) / 2;
    const round = (ms: number) => Math.round(ms * 10) / 10;
    process.stdout.write(
      `${JSON.stringify({
        calls,
        managers: 1,
        median_ms: round(median),
        max_ms: round(times[times.length - 1]!),
        min_ms: round(times[0]!),
      })}\n`,
    );
  } finally {
    if (manager) {
      manager.kill("SIGTERM");
      await new Promise((r) => manager.once("exit", r));
    }
    if (base) rmSync(base, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:ls: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
