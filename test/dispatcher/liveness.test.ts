// The liveness bookkeeping on its own, against a recording log: transitions coalesce
// per node into batches, a batch the log did not take is retried (newer transitions
// win), a refused one is dropped; silence turns into one "down" naming the holder.
import { expect } from "chai";
import { LivenessTracker, TransitionBatcher } from "../../src/dispatcher/liveness.js";
import type { CommandLog } from "../../src/fsm/index.js";
import { Command, CommandResult, type SessionTransition } from "../../src/gen/fsm/v1/commands.js";
import { NodeStatus } from "../../src/gen/fsm/v1/state.js";
import { silentLogger } from "../../src/log/logger.js";
import { waitFor } from "./fixture.js";

/** Answers each proposal with the next scripted outcome (ok when the script is exhausted). */
class ScriptedLog implements CommandLog {
  readonly batches: SessionTransition[][] = [];
  /** Times out the proposals scripted "hang" (sent to a leader that died: no answer until then). */
  readonly hung: (() => void)[] = [];
  constructor(private readonly script: ("ok" | "timeout" | "refuse" | "hang")[] = []) {}

  async propose(command: Uint8Array): Promise<{ index: number; result: Uint8Array }> {
    const decoded = Command.decode(command).command;
    if (decoded?.$case !== "recordSessions") throw new Error("unexpected command");
    this.batches.push(decoded.value.transitions);
    const outcome = this.script.shift() ?? "ok";
    if (outcome === "hang") await new Promise<void>((resolve) => this.hung.push(resolve));
    if (outcome === "timeout" || outcome === "hang") throw new Error("proposal timed out");
    const answer =
      outcome === "refuse"
        ? { ok: false, code: "NO_CLUSTER", message: "the cluster is not initialized yet" }
        : { ok: true, code: "", message: "" };
    return { index: this.batches.length, result: CommandResult.encode(answer).finish() };
  }
}

const t = (nodeId: string, status: NodeStatus, managerId = "m1", atMs = 1): SessionTransition => ({
  nodeId,
  status,
  managerId,
  atMs,
});
const READY = NodeStatus.NODE_STATUS_READY;
const DOWN = NodeStatus.NODE_STATUS_DOWN;

describe("dispatcher: liveness bookkeeping", () => {
  it("batches transitions, the latest per node winning, and retries a batch the log did not take", async () => {
    const log = new ScriptedLog(["timeout"]);
    const batcher = new TransitionBatcher({ log, logger: silentLogger(), batchMs: 10, retryMs: 20 });
    try {
      batcher.record(t("w1", READY));
      batcher.record(t("w2", READY));
      batcher.record(t("w1", DOWN));
      await waitFor("the first (failed) batch", () => log.batches.length === 1);
      expect(log.batches[0]).to.deep.equal([t("w2", READY), t("w1", DOWN)]);
      // While it was out, w2 changed again: the retry carries the newer one.
      batcher.record(t("w2", DOWN, "m1", 2));
      await waitFor("the retry", () => batcher.proposals === 1);
      const byNode = (a: SessionTransition, b: SessionTransition) => a.nodeId.localeCompare(b.nodeId);
      expect([...log.batches[1]!].sort(byNode)).to.deep.equal([t("w1", DOWN), t("w2", DOWN, "m1", 2)]);
      expect(batcher.committedTransitions).to.equal(2);
      expect(batcher.pendingCount).to.equal(0);
    } finally {
      batcher.close();
    }
  });

  it("at a leader change, sends the batch in flight again at once; a newer transition of its nodes waits for the old proposal", async () => {
    // Proposals in order: A's first (to the leader that dies) and its copy; B's first and the
    // newer transition; C's first and its copy, both unanswered for a while.
    const log = new ScriptedLog(["hang", "ok", "hang", "ok", "hang", "hang"]);
    const batcher = new TransitionBatcher({ log, logger: silentLogger(), batchMs: 10, retryMs: 1_000_000 });
    const settle = () => new Promise((r) => setTimeout(r, 50));
    try {
      // A: the same transition again at once; the old proposal's late outcome changes nothing.
      batcher.record(t("w1", READY));
      await waitFor("A's batch sent to the leader that dies", () => log.batches.length === 1);
      batcher.leaderChanged();
      await waitFor("A's batch sent again", () => batcher.proposals === 1);
      expect(log.batches[1]).to.deep.equal([t("w1", READY)]);
      expect(batcher.holds("w1"), "the old proposal may still commit").to.equal(true);
      log.hung.shift()!();
      await settle();
      expect([log.batches.length, batcher.holds("w1")]).to.deep.equal([2, false]);

      // B: a newer transition of the node is not sent while the old proposal may still land after it.
      batcher.record(t("w2", READY));
      await waitFor("B's batch sent to the leader that dies", () => log.batches.length === 3);
      batcher.record(t("w2", DOWN, "m1", 2));
      batcher.leaderChanged();
      await settle();
      expect(log.batches, "nothing sent while w2's old proposal is out").to.have.length(3);
      expect(batcher.holds("w2")).to.equal(true);
      log.hung.shift()!();
      await waitFor("the newer transition, once the old proposal settled", () => batcher.proposals === 2);
      expect(log.batches[3]).to.deep.equal([t("w2", DOWN, "m1", 2)]);

      // C: the old proposal settling first does not end the copy's flight (no third batch).
      batcher.record(t("w3", READY));
      await waitFor("C's batch sent to the leader that dies", () => log.batches.length === 5);
      batcher.leaderChanged();
      await waitFor("C's batch sent again", () => log.batches.length === 6);
      log.hung.shift()!();
      await settle();
      expect([log.batches.length, batcher.holds("w3")]).to.deep.equal([6, true]);
      batcher.record(t("w4", READY));
      await settle();
      expect(log.batches, "one batch in flight at a time").to.have.length(6);
    } finally {
      for (const release of log.hung.splice(0)) release();
      batcher.close();
    }
  });

  it("drops a batch the state machine refused (retrying cannot help) and forgets a removed node's", async () => {
    const log = new ScriptedLog(["refuse"]);
    const batcher = new TransitionBatcher({ log, logger: silentLogger(), batchMs: 10, retryMs: 10 });
    try {
      batcher.record(t("w1", READY));
      await waitFor("the refused batch", () => log.batches.length === 1);
      await new Promise((r) => setTimeout(r, 50));
      expect(log.batches).to.have.length(1);
      expect(batcher.proposals).to.equal(0);
      batcher.record(t("w2", READY));
      batcher.forget("w2");
      await new Promise((r) => setTimeout(r, 50));
      expect(log.batches).to.have.length(1);
    } finally {
      batcher.close();
    }
  });

  it("turns silence into one down naming the holder, adopted orphans included, heartbeats in memory only", async () => {
    const log = new ScriptedLog();
    const batcher = new TransitionBatcher({ log, logger: silentLogger(), batchMs: 1_000_000, retryMs: 10 });
    let now = 0;
    const tracker = new LivenessTracker({
      selfId: "m1",
      batcher,
      silentAfterMs: 300,
      maxTracked: 3,
      now: () => now,
    });
    try {
      tracker.opened("w1", now, () => true);
      tracker.opened("w2", now, () => true);
      tracker.adopt("w3", "m9"); // on a dead manager
      for (now = 100; now <= 1_000; now += 100) tracker.heard("w1", true, 0);
      now = 1_000;
      expect(tracker.sweep()).to.deep.equal(["w2", "w3"]);
      expect(tracker.sweep()).to.deep.equal([]);
      expect(tracker.isTracked("w1")).to.equal(true);
      expect(batcher.pendingCount).to.equal(3); // w1 ready, w2 down, w3 down: no heartbeat among them
      // The bound: a fourth node evicts the least recently heard one without an open session.
      tracker.opened("w2", now, () => true);
      tracker.adopt("w4", "m9");
      tracker.opened("w5", now, (id) => id !== "w2");
      expect(tracker.tracked).to.equal(3);
      expect(tracker.isTracked("w1")).to.equal(true);
      expect(tracker.isTracked("w2")).to.equal(false);
    } finally {
      batcher.close();
    }
  });

  it("a heartbeat on a session the state does not show ready here records ready again, once, dated from its opening", async () => {
    const log = new ScriptedLog();
    const batcher = new TransitionBatcher({ log, logger: silentLogger(), batchMs: 10, retryMs: 10 });
    let now = 5_000;
    const tracker = new LivenessTracker({
      selfId: "m1",
      batcher,
      silentAfterMs: 300,
      maxTracked: 10,
      now: () => now,
    });
    try {
      // Recorded ready here: a heartbeat stays in memory.
      tracker.heard("w1", true, 4_000);
      expect(batcher.pendingCount).to.equal(0);
      // Recorded down (or on another manager) while its session lives here: ready again, once.
      tracker.heard("w1", false, 4_000);
      now += 100;
      tracker.heard("w1", false, 4_000);
      expect(batcher.pendingCount).to.equal(1);
      await waitFor("the batch", () => batcher.proposals === 1);
      expect(log.batches).to.deep.equal([[t("w1", READY, "m1", 4_000)]]);
    } finally {
      batcher.close();
    }
  });
});
