// nodectl promote|demote|rm as the CLI runs them (src/cli/main.ts's `main`, in process
// to spare a build and a process per call; test/node drives the built bin) against the
// control.sock of three in-process managers: usage errors exit 2 before anything is
// sent, each id gets one line, and a refused id makes the exit status 1 without stopping
// the others.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { main } from "../../src/cli/main.js";
import { NodeStatus, Role } from "../../src/gen/fsm/v1/state.js";
import { ControlCluster } from "../control/fixture.js";

interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

/** One nodectl command line, its output captured (commander and the commands write to process.stdout/stderr). */
async function nodectl(...args: string[]): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const stdoutWrite = process.stdout.write;
  const stderrWrite = process.stderr.write;
  process.stdout.write = ((chunk: string | Uint8Array) => out.push(String(chunk)) > 0) as typeof stdoutWrite;
  process.stderr.write = ((chunk: string | Uint8Array) => err.push(String(chunk)) > 0) as typeof stderrWrite;
  try {
    const status = await main(["node", "nodectl", ...args]);
    return { status, stdout: out.join(""), stderr: err.join("") };
  } finally {
    process.stdout.write = stdoutWrite;
    process.stderr.write = stderrWrite;
  }
}

function lines(text: string): string[] {
  return text.split("\n").filter((l) => l.length > 0);
}

describe("nodectl promote, demote, rm", function () {
  this.timeout(30_000);
  let cluster: ControlCluster;
  let followerDir = "";

  before(async () => {
    cluster = await ControlCluster.start(3);
    await cluster.join("w-listen", { address: "127.0.0.1:5001", status: NodeStatus.NODE_STATUS_READY });
    await cluster.join("w-quiet", { status: NodeStatus.NODE_STATUS_READY });
    await cluster.join("w-down", { status: NodeStatus.NODE_STATUS_DOWN });
    await cluster.join("w-gone", { status: NodeStatus.NODE_STATUS_DOWN });
    await cluster.converged();
    followerDir = cluster.follower.stateDir;
  });

  after(async () => {
    await cluster?.stop();
  });

  it("usage errors exit 2 and send nothing: no id, an id that cannot be one, an unknown flag", async () => {
    const indexes = cluster.lastIndexes();
    for (const args of [
      ["promote", "--state-dir", followerDir],
      ["demote", "--state-dir", followerDir, "M1"],
      ["rm", "--state-dir", followerDir, "w-down", "bad_id"],
      ["rm", "--state-dir", followerDir, "--now", "w-down"],
    ]) {
      const run = await nodectl(...args);
      expect(run.status, `${args.join(" ")}: ${run.stderr}`).to.equal(2);
      expect(run.stdout).to.equal("");
    }
    const bad = await nodectl("demote", "--state-dir", followerDir, "M1");
    expect(bad.stderr).to.contain("USAGE").and.contain('"M1" is not a node id');
    expect(cluster.node("w-down")).not.to.equal(undefined);
    expect(cluster.lastIndexes()).to.deep.equal(indexes);
  });

  it("--help of each write command says what it does and when it is refused", async () => {
    const rm = await nodectl("rm", "--help");
    expect(rm.status).to.equal(0);
    expect(rm.stdout).to.contain("Usage: nodectl rm [options] <id...>").and.contain("--force");
    expect(rm.stdout).to.contain("demote it first");
    const demote = await nodectl("demote", "--help");
    expect(demote.stdout).to.contain("last manager").and.contain("ready majority");
    const promote = await nodectl("promote", "--help");
    expect(promote.stdout).to.contain("--listen").and.contain("nodectl ls");
    const root = await nodectl("--help");
    expect(root.stdout)
      .to.match(/promote \[options\] <id\.\.\.>/)
      .and.contain("2 usage error");
  });

  it("rm of several ids: one line each, the refused ones on stderr with their code, exit 1", async () => {
    const run = await nodectl(
      "rm",
      "--state-dir",
      followerDir,
      "w-down",
      "nobody",
      "w-listen",
      "m2",
      "w-gone",
    );
    expect(run.status).to.equal(1);
    expect(lines(run.stdout)).to.deep.equal([
      "Node w-down removed: its session is closed and managers refuse its certificate from now on.",
      "Node w-gone removed: its session is closed and managers refuse its certificate from now on.",
    ]);
    const errors = lines(run.stderr);
    expect(errors).to.have.length(3);
    expect(errors[0]).to.match(/^nodectl: NODE_NOT_FOUND: no node nobody; nodectl ls lists the nodes$/);
    expect(errors[1]).to.match(/^nodectl: NODE_UP: node w-listen is up: .*nodectl rm --force w-listen/);
    expect(errors[2]).to.match(/^nodectl: NODE_IS_MANAGER: node m2 is a manager: demote it first/);
    await cluster.converged();
    expect(cluster.node("w-down")).to.equal(undefined);
    expect(cluster.node("w-listen")?.id).to.equal("w-listen");
  });

  it("rm of a removed node succeeds again and says so (NODECTL_STATE_DIR names the manager)", async () => {
    process.env.NODECTL_STATE_DIR = cluster.leader.stateDir;
    try {
      const run = await nodectl("rm", "w-down");
      expect(run.status, run.stderr).to.equal(0);
      expect(run.stdout).to.equal("Node w-down was removed already.\n");
    } finally {
      delete process.env.NODECTL_STATE_DIR;
    }
  });

  it("promote: one line per id, saying what happens next and how to follow it; refusals exit 1", async () => {
    const run = await nodectl("promote", "--state-dir", followerDir, "w-l", "w-quiet", "m1");
    expect(run.status).to.equal(1);
    expect(lines(run.stdout)).to.deep.equal([
      "Node w-listen promoted: it renews as a manager, joins Raft as a learner and becomes a voter " +
        "once caught up; follow it with nodectl ls.",
      "Node m1 is already a manager.",
    ]);
    expect(run.stderr).to.match(/^nodectl: NODE_HAS_NO_ADDRESS: node w-quiet was joined without --listen/);
    await cluster.converged();
    expect(cluster.node("w-listen")?.desiredRole).to.equal(Role.ROLE_MANAGER);
    const again = await nodectl("promote", "--state-dir", followerDir, "w-listen");
    expect(again).to.deep.equal({
      status: 0,
      stdout: "Node w-listen is already being promoted; follow it with nodectl ls.\n",
      stderr: "",
    });
  });

  it("demote: a manager, a worker (already), and one that would lose the ready quorum", async () => {
    await cluster.setStatus("m3", NodeStatus.NODE_STATUS_DOWN);
    const run = await nodectl("demote", "--state-dir", followerDir, "m1", "w-quiet", "m3");
    expect(run.status).to.equal(1);
    expect(lines(run.stdout)).to.deep.equal([
      "Node w-quiet is already a worker.",
      "Manager m3 demoted: it hands over leadership if it leads, leaves Raft and renews as a worker; " +
        "follow it with nodectl ls.",
    ]);
    expect(run.stderr).to.match(
      /^nodectl: QUORUM_AT_RISK: demoting m1 would leave 2 voting managers .*m3 \(down\)/,
    );
  });

  it("a state dir with no manager: exit 1, nothing tried", async () => {
    const run = await nodectl("rm", "--state-dir", "/nonexistent-state-dir", "w-quiet");
    expect(run.status).to.equal(1);
    expect(run.stderr).to.match(
      /^nodectl: CONTROL_UNREACHABLE: no node's state in .*running manager's directory/,
    );
    expect(run.stderr, "there is nothing to run there").to.not.contain("nodectl run");
    // A worker's state dir (a demoted manager's, say): it serves no admin commands, so no advice to run it.
    const worker = mkdtempSync(join(tmpdir(), "worker-dir-"));
    try {
      writeFileSync(join(worker, "node.json"), JSON.stringify({ role: "worker" }));
      const onWorker = await nodectl("ls", "--state-dir", worker);
      expect(onWorker.status).to.equal(1);
      expect(onWorker.stderr).to.match(/^nodectl: CONTROL_UNREACHABLE: the node of state dir .* is a worker/);
      expect(onWorker.stderr).to.not.contain("nodectl run");
    } finally {
      rmSync(worker, { recursive: true, force: true });
    }
    expect(cluster.node("w-quiet")?.id).to.equal("w-quiet");
  });
});
