// RaftNode on its seams (simulated storage, clock and network, seeded entropy), driven
// step by step in virtual time: scenarios a process test could only hit by luck.
import { expect } from "chai";
import { silentLogger } from "../../../src/log/logger.js";
import { bootstrapState } from "../../../src/raft/core/bootstrap.js";
import { SeededRng } from "../../../src/raft/core/rand.js";
import { RaftRuntimeError } from "../../../src/raft/runtime/errors.js";
import { RaftNode } from "../../../src/raft/runtime/node.js";
import type { StateMachine } from "../../../src/raft/runtime/types.js";
import { SimClock, SimProcess, SimScheduler } from "../../../src/raft/sim/sim-clock.js";
import { SimNetwork } from "../../../src/raft/sim/sim-network.js";
import { SimDisk, SimStorage } from "../../../src/raft/sim/sim-storage.js";

const PROPOSAL_TIMEOUT_MS = 5_000;

class Counter implements StateMachine {
  applied = 0;
  apply(): Uint8Array {
    this.applied++;
    return new Uint8Array([this.applied]);
  }
  snapshot(): Uint8Array {
    return new Uint8Array([this.applied]);
  }
  restore(data: Uint8Array): void {
    this.applied = data[0] ?? 0;
  }
}

/** Three RaftNodes on one virtual clock and a loss-free simulated network. */
function cluster(seed: number) {
  const sched = new SimScheduler(new SeededRng(seed));
  const faults = { healed: true }; // no drops, duplicates or stalls: only what the test does
  const network = new SimNetwork(
    sched,
    { minDelayMs: 1, maxDelayMs: 3, slowRate: 0, dropRate: 0, duplicateRate: 0, unflushedMs: 0 },
    faults,
  );
  const ids = [1, 2, 3];
  const nodes = new Map<number, RaftNode>();
  for (const id of ids) {
    const proc = new SimProcess(sched, id);
    const storage = new SimStorage(
      new SimDisk(bootstrapState(ids)),
      proc,
      { syncMinMs: 0, syncMaxMs: 1, slowSyncRate: 0, slowSyncMaxMs: 0 },
      faults,
    );
    const node = new RaftNode({
      id,
      storage,
      stateMachine: new Counter(),
      logger: silentLogger(),
      clock: new SimClock(proc),
      randomBytes: (n) => sched.randomBytes(n),
      tickMs: 10,
      proposalTimeoutMs: PROPOSAL_TIMEOUT_MS,
    });
    node.start(network.attach(proc, node, ids));
    nodes.set(id, node);
  }
  /** Runs virtual time until `done` (every promise continuation of an event runs before the next). */
  async function runUntil(what: string, limitMs: number, done: () => boolean): Promise<void> {
    const deadline = sched.now + limitMs;
    while (!done()) {
      const ev = sched.pop();
      if (!ev || ev.at > deadline) throw new Error(`${what}: not within ${limitMs} virtual ms`);
      sched.now = ev.at;
      ev.value();
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  const leader = () => [...nodes.values()].find((n) => n.leadership().isSelf);
  return { sched, network, nodes, runUntil, leader };
}

describe("RaftNode on simulated storage, clock and network", () => {
  it("answers a proposal with its log index and the state machine's result", async () => {
    const c = cluster(1);
    await c.runUntil("a leader", 2_000, () => c.leader() !== undefined);
    let answer: { index: number; result: Uint8Array } | undefined;
    void c
      .leader()!
      .propose(new Uint8Array([7]))
      .then((a) => {
        answer = a;
      });
    await c.runUntil("the answer", 2_000, () => answer !== undefined);
    // After the three founding PROMOTE_VOTER entries and the leader's empty entry.
    expect(answer!.index).to.equal(5);
    expect([...answer!.result]).to.deep.equal([1]);
  });

  it("rejects a read stranded on a deposed leader with LEADER_CHANGED when the leader changes, not at its timeout", async () => {
    const c = cluster(2);
    await c.runUntil("a leader every member knows", 2_000, () => {
      const lead = c.leader()?.id;
      return lead !== undefined && [...c.nodes.values()].every((n) => n.leadership().leader === lead);
    });
    const old = c.leader()!;
    const follower = [...c.nodes.values()].find((n) => n !== old)!;
    // Cut the leader off: the follower's read is forwarded to it and lost.
    c.network.partition = new Map([...c.nodes.keys()].map((id) => [id, id === old.id ? 1 : 0]));
    const began = c.sched.now;
    let outcome: { code: string; at: number } | undefined;
    follower
      .read(() => undefined)
      .then(
        () => {
          outcome = { code: "resolved", at: c.sched.now };
        },
        (err: unknown) => {
          outcome = { code: err instanceof RaftRuntimeError ? err.code : String(err), at: c.sched.now };
        },
      );
    await c.runUntil("the read to settle", PROPOSAL_TIMEOUT_MS + 1_000, () => outcome !== undefined);
    expect(outcome!.code).to.equal("LEADER_CHANGED");
    // Within a couple of election timeouts (100-200 ms here), far from the 5 s timeout.
    expect(outcome!.at - began).to.be.lessThan(1_000);
  });
});
