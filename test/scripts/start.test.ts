// npm start, the product demo, run as a user runs it in a pipe: it finishes within a
// deadline with exit 0, prints each step's outcome and the summary, and leaves no
// process and no temporary directory behind. Ended early by SIGTERM it stops every
// daemon it started; killed with SIGKILL, its reaper does.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { expect } from "chai";
import { waitFor } from "../../scripts/lib/local-nodes.js";

const root = new URL("../..", import.meta.url).pathname;
const DEMO = ["--import", "tsx", "scripts/start.ts"];

/** Pids whose command line names `dir` (nodectl daemons, admin calls, the reaper), from /proc. */
function pidsUsing(dir: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, "utf8").includes(dir)) pids.push(Number(name));
    } catch {
      // ended while we looked
    }
  }
  return pids;
}

interface DemoRun {
  child: ChildProcess;
  output: () => string;
  /** The temporary directory the demo names on its first line. */
  baseDir: Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the demo (through `sh -c "...; true"` when `viaShell`: sh stays its parent, as npm does). */
function startDemo(args: string[] = [], viaShell = false): DemoRun {
  const command = [process.execPath, ...DEMO, ...args];
  const child = viaShell
    ? spawn("sh", ["-c", `${command.join(" ")}; true`], { cwd: root, stdio: ["ignore", "pipe", "pipe"] })
    : spawn(command[0], command.slice(1), { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  let text = "";
  child.stdout!.on("data", (b: Buffer) => {
    text += b.toString();
  });
  child.stderr!.on("data", (b: Buffer) => {
    text += b.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const baseDir = waitFor(
    "the demo to name its directory",
    30_000,
    () => /state and logs in (\S+)/.exec(text)?.[1],
  );
  return { child, output: () => text, baseDir, exited };
}

/** Resolves with the exit, or kills the demo and fails once `deadlineMs` passed. */
async function exitWithin(run: DemoRun, deadlineMs: number): Promise<{ code: number | null }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      run.child.kill("SIGKILL");
      reject(new Error(`the demo did not exit within ${deadlineMs} ms; output:\n${run.output()}`));
    }, deadlineMs);
  });
  try {
    return await Promise.race([run.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function expectNothingLeft(dir: string, dirToo: boolean): Promise<void> {
  const what = `every process using ${dir} to exit${dirToo ? " and the directory to go" : ""}`;
  await waitFor(what, 20_000, () =>
    pidsUsing(dir).length === 0 && !(dirToo && existsSync(dir)) ? true : undefined,
  );
}

describe("npm start: the product demo", function () {
  this.timeout(180_000);
  const runs: DemoRun[] = [];
  const dirs: string[] = [];

  afterEach(async () => {
    for (const run of runs.splice(0)) if (run.child.exitCode === null) run.child.kill("SIGKILL");
    for (const dir of dirs.splice(0)) {
      for (const pid of pidsUsing(dir)) process.kill(pid, "SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("runs the whole scenario in a pipe, exits 0 and leaves nothing behind", async () => {
    const run = startDemo();
    runs.push(run);
    const dir = await run.baseDir;
    dirs.push(dir);
    const { code } = await exitWithin(run, 120_000);
    const out = run.output();
    expect(code, out).to.equal(0);
    // Plain lines in a pipe: no progress bar's carriage returns or escape sequences.
    expect(out.includes("\r") || out.includes("\u001b["), "carriage return or escape in a pipe").to.equal(
      false,
    );
    expect(out).to.match(/All 13 nodes joined and ready [\d.]+ s after init/);
    expect(out).to.match(/ID +ROLE +STATUS +LEADER/); // nodectl ls's table
    expect(out).to.include("while it runs, rm is refused: nodectl: NODE_UP:");
    expect(out).to.match(/exit 1: nodectl: NODE_REMOVED:/);
    expect(out).to.match(/w10: manager certificate after [\d.]+ s, .*voter \(Raft member \d+\)/);
    expect(out).to.match(/Rotation done in [\d.]+ s: every node trusts root \w+ alone/);
    expect(out).to.match(
      /rotation: +12 nodes on a new root in [\d.]+ s; 0 sessions reopened, 0 leader changes/,
    );
    expect(out).to.match(/new leader: \S+ \(\w+\), \d+ ms after the kill/);
    expect(out).to.match(
      /sessions: +(\d+)\/\1 workers of m\d+ reconnected; 0\/\d+ workers of the surviving managers did/,
    );
    expect(out).to.match(
      /stop: +\d+ daemons stopped on SIGTERM in \d+ ms, none needed SIGKILL; temporary directory removed/,
    );
    await expectNothingLeft(dir, true);
  });

  it("stops every daemon and removes its directory on SIGTERM while nodes join (exit 143)", async () => {
    const run = startDemo(["--workers", "3"]);
    runs.push(run);
    const dir = await run.baseDir;
    dirs.push(dir);
    await waitFor("m2 to be up", 60_000, () =>
      run.output().includes("m2 up as manager") ? true : undefined,
    );
    expect(pidsUsing(dir).length).to.be.greaterThan(2); // m1, m2, the reaper at least
    run.child.kill("SIGTERM");
    const { code } = await exitWithin(run, 30_000);
    expect(code, run.output()).to.equal(143);
    await expectNothingLeft(dir, true);
  });

  it("stops every daemon and removes its directory when its parent dies (npm killed)", async () => {
    const run = startDemo(["--workers", "3"], true);
    runs.push(run);
    const dir = await run.baseDir;
    dirs.push(dir);
    await waitFor("m2 to be up", 60_000, () =>
      run.output().includes("m2 up as manager") ? true : undefined,
    );
    run.child.kill("SIGKILL"); // sh, the demo's parent
    await expectNothingLeft(dir, true);
  });

  it("stops every daemon and removes its directory when its output pipe closes (EPIPE)", async () => {
    const run = startDemo(["--workers", "3"]);
    runs.push(run);
    const dir = await run.baseDir;
    dirs.push(dir);
    run.child.stdout!.destroy(); // the demo's next line meets a closed pipe
    const { code } = await exitWithin(run, 60_000);
    expect(code).to.equal(141);
    await expectNothingLeft(dir, true);
  });

  it("leaves no daemon running when the demo itself is killed with SIGKILL (the reaper stops them)", async () => {
    const run = startDemo(["--workers", "3"]);
    runs.push(run);
    const dir = await run.baseDir;
    dirs.push(dir);
    await waitFor("m2 to be up", 60_000, () =>
      run.output().includes("m2 up as manager") ? true : undefined,
    );
    run.child.kill("SIGKILL");
    await run.exited;
    // Nothing catches a SIGKILL: the directory stays (afterEach removes it), the processes go.
    await expectNothingLeft(dir, false);
  });
});
