// A process never outlives the one that started it: the Raft demo's (npm run demo:raft)
// member processes stop when the demo dies however it dies, and the demo stops them and removes its state on
// SIGTERM, SIGHUP, a closed output pipe (EPIPE) and the death of its own parent (npm).
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { expect } from "chai";
import { waitFor } from "../../src/testbed/local-cluster.js";

const root = new URL("../..", import.meta.url).pathname;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Member pids whose command line names this state dir (from /proc, Linux). */
async function memberPids(stateDir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, "utf8");
      if (cmd.includes("member-main") && cmd.includes(stateDir)) pids.push(Number(name));
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}

// The Raft test bed's demo (npm run demo:raft); test/scripts/start.test.ts covers npm start's.
const DEMO = ["--import", "tsx", "scripts/raft-demo.ts", "--members", "1"];

/**
 * Starts a one-member demo through `command args` and resolves once its output says
 * `until` (and names its state dir).
 */
async function startDemo(
  started: ChildProcess[],
  until: string,
  command = process.execPath,
  args = [...DEMO, "--keep-running"],
): Promise<{ demo: ChildProcess; stateDir: string }> {
  const demo = spawn(command, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  started.push(demo);
  let out = "";
  const stateDir = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo did not start; output:\n${out}`)), 60_000);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const dir = /state and logs in ([^\s)]+)/.exec(out)?.[1];
      if (dir && out.includes(until)) {
        clearTimeout(timer);
        demo.stdout!.off("data", onData);
        resolve(dir);
      }
    };
    demo.stdout!.on("data", onData);
    demo.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`demo exited (${code}) early:\n${out}`));
    });
  });
  return { demo, stateDir };
}

async function expectCleanedUp(stateDir: string): Promise<void> {
  await waitFor("the demo's members to exit and its state dir to go", 20_000, async () =>
    (await memberPids(stateDir)).length === 0 && !existsSync(stateDir) ? true : undefined,
  );
}

describe("test bed: no process outlives its parent", function () {
  this.timeout(90_000);
  const started: ChildProcess[] = [];
  const dirs: string[] = [];

  afterEach(async () => {
    for (const p of started.splice(0)) if (p.pid && alive(p.pid)) p.kill("SIGKILL");
    for (const dir of dirs.splice(0)) {
      for (const pid of await memberPids(dir)) process.kill(pid, "SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });

  for (const signal of ["SIGTERM", "SIGHUP"] as const) {
    it(`the demo stops its members and removes its state on ${signal}`, async () => {
      const { demo, stateDir } = await startDemo(started, "Cluster running");
      dirs.push(stateDir);
      expect(await memberPids(stateDir)).to.have.length(1);
      demo.kill(signal);
      await expectCleanedUp(stateDir);
    });
  }

  it("the demo stops its members and removes its state when its output pipe closes (EPIPE)", async () => {
    // Not kept running: the demo goes on printing, and its next line meets the closed pipe.
    const { demo, stateDir } = await startDemo(started, "Starting", process.execPath, DEMO);
    dirs.push(stateDir);
    demo.stdout!.destroy();
    await expectCleanedUp(stateDir);
  });

  it("the demo cleans up when its parent dies (npm does not pass SIGTERM on)", async () => {
    // `; true` keeps sh as the demo's parent, as npm is.
    const cmd = `${process.execPath} ${DEMO.join(" ")} --keep-running; true`;
    const { demo: sh, stateDir } = await startDemo(started, "Cluster running", "sh", ["-c", cmd]);
    dirs.push(stateDir);
    sh.kill("SIGKILL");
    await expectCleanedUp(stateDir);
  });

  it("members exit when the demo itself is killed with SIGKILL (they watch a pipe it held)", async () => {
    const { demo, stateDir } = await startDemo(started, "Cluster running");
    dirs.push(stateDir);
    expect(await memberPids(stateDir)).to.have.length(1);
    demo.kill("SIGKILL");
    await waitFor("the member to exit", 15_000, async () =>
      (await memberPids(stateDir)).length === 0 ? true : undefined,
    );
  });
});
