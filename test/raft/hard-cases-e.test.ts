// Hard cases E-F (15-21): snapshots, compaction and flow control.
// See /work/shared/notes/raft-hard-cases.md for the list and its sources.
import { expect } from "chai";
import type { Message, Snapshot } from "../../src/gen/raft/v1/raft.js";
import { entrySizeBytes } from "../../src/raft/core/log.js";
import { deliverOnly, is, makeMessage, seen, tickUntil } from "./hard-cases-helpers.js";
import { CC, confChange, data, T, TestCluster } from "./harness.js";

/** Leader 1 commits a..d while node 3 is cut off, then compacts its log past them. */
function slowFollowerAfterCompaction(): { c: TestCluster; snap: Snapshot } {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.isolate(3);
  for (const s of ["a", "b", "c", "d"]) c.propose(1, s);
  const snap = c.raft(1).compact(data("state@8"));
  c.node(1).storage.compact(snap);
  expect(snap.metadata).to.deep.include({ index: 8, term: 2 });
  expect(c.raft(1).log.firstIndex()).to.equal(9);
  expect(c.raft(3).log.lastIndex()).to.equal(4);
  return { c, snap };
}

function snapshotMsg(from: number, to: number, term: number, index: number, snapTerm: number): Message {
  return makeMessage({
    type: T.MESSAGE_TYPE_SNAPSHOT,
    from,
    to,
    term,
    snapshot: {
      metadata: { index, term: snapTerm, confState: { voters: [1, 2, 3], learners: [] } },
      data: data(`state@${index}`),
    },
  });
}

describe("raft hard cases E: snapshots and compaction", () => {
  it("hard case 15: a leader compacted past a follower's next index sends its snapshot, never a guessed term", () => {
    const { c, snap } = slowFollowerAfterCompaction();
    expect(c.raft(1).log.term(4)).to.equal(undefined); // compacted: unknown, not 0
    const mark = c.delivered.length;
    c.heal();
    tickUntil(c, () => c.raft(3).log.committed === c.raft(1).log.committed, 10);
    const after = c.delivered.slice(mark);
    const snaps = after.filter(is(T.MESSAGE_TYPE_SNAPSHOT, 1, 3));
    expect(snaps.map((m) => m.snapshot?.metadata?.index)).to.deep.equal([8]);
    // No append to node 3 ever named a compacted previous entry.
    const appends = after.filter(is(T.MESSAGE_TYPE_APPEND, 1, 3));
    expect(appends.filter((m) => m.index < 8 || m.logTerm === 0)).to.deep.equal([]);
    expect(c.raft(3).log.snapshotIndex()).to.equal(8);
    expect(c.node(3).storage.snapshot).to.deep.equal(snap);
    expect(c.raft(1).progress.get(3)).to.deep.include({ state: "replicate", match: 8 });
    expect(c.propose(1, "e").ok).to.equal(true);
    expect(c.appliedData(3)).to.deep.equal(["e"]); // a..d came with the snapshot
  });

  describe("hard case 16", () => {
    function followerWithTail(): TestCluster {
      const c = new TestCluster([1, 2, 3]);
      c.elect(1);
      for (const s of ["a", "b", "c"]) c.propose(1, s); // 5..7, committed everywhere
      for (const s of ["d", "e"]) {
        c.raft(1).propose(data(s)); // 8, 9 reach node 2 only, uncommitted
        c.process(1);
        deliverOnly(c, is(T.MESSAGE_TYPE_APPEND, 1, 2));
        c.take(() => true);
      }
      expect(c.raft(2).log.committed).to.equal(7);
      expect(c.raft(2).log.lastIndex()).to.equal(9);
      return c;
    }

    it("hard case 16: a snapshot at or below the commit index is ignored and answered with the commit index", () => {
      const c = followerWithTail();
      const readies = c.node(2).readies.length;
      c.deliver(snapshotMsg(1, 2, 2, 6, 2));
      expect(c.take(is(T.MESSAGE_TYPE_APPEND_RESPONSE, 2, 1)).map((m) => [m.index, m.reject])).to.deep.equal([
        [7, false],
      ]);
      expect(c.raft(2).log.snapshotIndex()).to.equal(0);
      expect(c.raft(2).log.lastIndex()).to.equal(9);
      expect(
        c
          .node(2)
          .readies.slice(readies)
          .some((rd) => rd.snapshot !== undefined),
      ).to.equal(false);
    });

    it("hard case 16: a snapshot matching the log at its (index, term) keeps the later entries", () => {
      const c = followerWithTail();
      const readies = c.node(2).readies.length;
      c.deliver(snapshotMsg(1, 2, 2, 8, 2));
      // The reply claims only what is known to match (the commit index, as etcd does), not the tail.
      expect(c.take(is(T.MESSAGE_TYPE_APPEND_RESPONSE, 2, 1)).map((m) => [m.index, m.reject])).to.deep.equal([
        [8, false],
      ]);
      expect(c.raft(2).log.committed).to.equal(8);
      expect(c.raft(2).log.snapshotIndex()).to.equal(0); // nothing replaced
      expect(c.logTerms(2).slice(-2)).to.deep.equal([
        { index: 8, term: 2 },
        { index: 9, term: 2 },
      ]);
      expect(
        c
          .node(2)
          .readies.slice(readies)
          .some((rd) => rd.snapshot !== undefined),
      ).to.equal(false);
      expect(c.appliedData(2)).to.deep.equal(["a", "b", "c", "d"]);
    });

    it("hard case 16: a snapshot the log does not match replaces the log", () => {
      const c = followerWithTail();
      const readies = c.node(2).readies.length;
      c.deliver(snapshotMsg(1, 2, 2, 12, 2));
      expect(c.take(is(T.MESSAGE_TYPE_APPEND_RESPONSE, 2, 1)).map((m) => [m.index, m.reject])).to.deep.equal([
        [12, false],
      ]);
      expect(c.raft(2).log.snapshotIndex()).to.equal(12);
      expect(c.raft(2).log.lastIndex()).to.equal(12);
      expect(c.raft(2).log.committed).to.equal(12);
      const persisted = c
        .node(2)
        .readies.slice(readies)
        .filter((rd) => rd.snapshot !== undefined);
      expect(persisted.map((rd) => rd.snapshot?.metadata?.index)).to.deep.equal([12]);
      expect(c.node(2).storage.entries).to.deep.equal([]);
    });
  });

  it("hard case 17: a duplicate append below a compacted follower's commit index is no conflict: it answers with the commit index", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    c.raft(1).propose(data("a"));
    c.process(1);
    const old = structuredClone(c.inflight.find(is(T.MESSAGE_TYPE_APPEND, 1, 2))!);
    expect([old.index, old.logTerm, old.entries.length]).to.deep.equal([4, 2, 1]);
    c.deliverAll();
    c.propose(1, "b");
    c.propose(1, "c");
    const snap = c.raft(2).compact(data("state@7"));
    c.node(2).storage.compact(snap);
    expect(c.raft(2).log.firstIndex()).to.equal(8);
    expect(c.raft(2).log.term(4)).to.equal(undefined);
    const mark = c.delivered.length;
    c.deliver(old); // the network duplicated it and delivers it late
    const answer = c.inflight.filter(is(T.MESSAGE_TYPE_APPEND_RESPONSE, 2, 1));
    expect(answer.map((m) => [m.index, m.reject])).to.deep.equal([[7, false]]);
    c.deliverAll();
    expect(c.delivered.slice(mark).filter(is(T.MESSAGE_TYPE_SNAPSHOT))).to.deep.equal([]);
    expect(c.raft(1).progress.get(2)).to.deep.include({ state: "replicate", match: 7 });
    expect(c.raft(2).log.committed).to.equal(7);
  });

  describe("hard case 18", () => {
    it("hard case 18: a lost snapshot leaves the peer in snapshot state until the transport reports the failure", () => {
      const { c } = slowFollowerAfterCompaction();
      c.heal();
      c.drop(is(T.MESSAGE_TYPE_SNAPSHOT));
      c.tickAll(3);
      expect(c.raft(1).progress.get(3)?.state).to.equal("snapshot");
      c.tickAll(20);
      expect(seen(c, is(T.MESSAGE_TYPE_SNAPSHOT))).to.have.length(1); // paused: not resent
      expect(c.raft(1).progress.get(3)?.state).to.equal("snapshot");
      expect(c.raft(3).log.lastIndex()).to.equal(4);
      c.raft(1).reportSnapshot(3, false);
      expect(c.raft(1).progress.get(3)).to.deep.include({ state: "probe", pendingSnapshot: 0 });
      c.heal();
      tickUntil(c, () => c.raft(3).log.committed === c.raft(1).log.committed, 10);
      expect(seen(c, is(T.MESSAGE_TYPE_SNAPSHOT))).to.have.length(2);
      expect(c.raft(1).progress.get(3)).to.deep.include({ state: "replicate", match: 8 });
    });

    it("hard case 18: stale rejections after a snapshot do not send the follower back to snapshot state", () => {
      const { c } = slowFollowerAfterCompaction();
      c.heal();
      tickUntil(c, () => c.raft(3).log.committed === 8, 10);
      c.propose(1, "e");
      const pr = c.raft(1).progress.get(3)!;
      expect(pr).to.deep.include({ state: "replicate", match: 9, next: 10 });
      const oldRejections = seen(c, (m) => is(T.MESSAGE_TYPE_APPEND_RESPONSE, 3, 1)(m) && m.reject);
      const stale = [
        ...oldRejections.map((m) => structuredClone(m)),
        makeMessage({
          type: T.MESSAGE_TYPE_APPEND_RESPONSE,
          from: 3,
          to: 1,
          term: 2,
          index: 4,
          reject: true,
          rejectHint: 4,
          rejectHintTerm: 2,
        }),
      ];
      for (const m of stale) c.deliver(m);
      c.deliverAll();
      expect(pr).to.deep.include({ state: "replicate", match: 9, next: 10 });
      expect(seen(c, is(T.MESSAGE_TYPE_SNAPSHOT))).to.have.length(1);
    });
  });

  it("hard case 19: a snapshot stores the applied (committed) configuration with its index, never an uncommitted one", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    c.addJoiningNode(4);
    c.drop(is(T.MESSAGE_TYPE_APPEND, 1));
    expect(c.raft(1).proposeConfChange(confChange(CC.CONF_CHANGE_TYPE_ADD_LEARNER, 4)).ok).to.equal(true);
    c.deliverAll();
    expect(c.raft(1).log.lastIndex()).to.equal(5);
    const before = c.raft(1).compact(data("s4"));
    expect(before.metadata).to.deep.equal({
      index: 4,
      term: 2,
      confState: { voters: [1, 2, 3], learners: [] },
    });
    c.heal();
    c.tickAll(3);
    expect(c.raft(1).log.applied).to.be.at.least(5);
    const after = c.raft(2).compact(data("s5"));
    expect(after.metadata?.index).to.be.at.least(5);
    expect(after.metadata?.confState).to.deep.equal({ voters: [1, 2, 3], learners: [4] });
    // A node restarted from that snapshot alone knows the configuration.
    c.node(2).storage.compact(after);
    c.crash(2);
    c.restart(2);
    expect(c.raft(2).status()).to.deep.include({ voters: [1, 2, 3], learners: [4] });
  });
});

describe("raft hard cases F: flow control", () => {
  it("hard case 20: a full inflight window whose acks were lost resumes on a heartbeat response", () => {
    const c = new TestCluster([1, 2, 3], { maxInflightMsgs: 2 });
    c.elect(1);
    c.drop(is(T.MESSAGE_TYPE_APPEND_RESPONSE, 3));
    c.propose(1, "p1");
    c.propose(1, "p2");
    const pr = c.raft(1).progress.get(3)!;
    expect(pr.state).to.equal("replicate");
    expect(pr.inflights.full()).to.equal(true);
    c.propose(1, "p3");
    const toThree = seen(c, is(T.MESSAGE_TYPE_APPEND, 1, 3)).flatMap((m) => m.entries.map((e) => e.index));
    expect(toThree).to.not.include(7); // paused: p3 was not sent
    c.heal(); // the lost acks stay lost
    c.deliverAll();
    expect(c.raft(3).log.lastIndex()).to.equal(6);
    c.tickAll(1);
    expect(c.raft(3).log.lastIndex()).to.equal(7);
    c.tickAll(1);
    expect(c.appliedData(3)).to.deep.equal(["p1", "p2", "p3"]);
    expect(pr).to.deep.include({ state: "replicate", match: 7 });
    expect(pr.inflights.count).to.equal(0);
  });

  describe("hard case 21", () => {
    it("hard case 21: a follower stuck in probe (its probe lost) gets an append on the next heartbeat response", () => {
      const c = new TestCluster([1, 2, 3]);
      c.elect(1);
      c.raft(1).reportUnreachable(3);
      expect(c.raft(1).progress.get(3)?.state).to.equal("probe");
      c.raft(1).propose(data("x"));
      c.process(1);
      expect(c.take(is(T.MESSAGE_TYPE_APPEND, 1, 3))).to.have.length(1); // the probe is lost
      c.deliverAll();
      c.propose(1, "y");
      expect(c.raft(1).progress.get(3)).to.deep.include({ state: "probe", probeSent: true });
      expect(c.raft(3).log.lastIndex()).to.equal(4);
      c.tickAll(2);
      expect(c.raft(1).progress.get(3)).to.deep.include({ state: "replicate", match: 6 });
      expect(c.appliedData(3)).to.deep.equal(["x", "y"]);
    });

    it("hard case 21: message size is a target (one large entry overshoots), and inflight bytes stay bounded", () => {
      const c = new TestCluster([1, 2, 3], { maxMsgBytes: 100, maxInflightMsgs: 2 });
      c.elect(1);
      const big = "B".repeat(1000);
      expect(c.propose(1, big).ok).to.equal(true);
      const bigAppend = seen(c, is(T.MESSAGE_TYPE_APPEND, 1, 2)).find((m) =>
        m.entries.some((e) => e.index === 5),
      )!;
      expect(bigAppend.entries.map((e) => e.data.byteLength)).to.deep.equal([1000]);
      // Node 3 stops acknowledging: at most two messages of at most ~100 bytes go out to it.
      c.drop(is(T.MESSAGE_TYPE_APPEND_RESPONSE, 3));
      const mark = c.delivered.length;
      for (let i = 0; i < 10; i++) c.propose(1, `s${i}`.padEnd(40, "."));
      const toThree = c.delivered
        .slice(mark)
        .filter((m) => is(T.MESSAGE_TYPE_APPEND, 1, 3)(m) && m.entries.length > 0);
      expect(toThree).to.have.length(2);
      const bytes = toThree.flatMap((m) => m.entries).reduce((n, e) => n + entrySizeBytes(e), 0);
      expect(bytes).to.be.at.most(2 * 100);
      expect(c.appliedData(2)).to.have.length(11);
    });

    it("hard case 21: uncommitted bytes are bounded; one large entry is still accepted when nothing is pending", () => {
      const c = new TestCluster([1, 2, 3], { maxUncommittedBytes: 300 });
      c.elect(1);
      c.drop(is(T.MESSAGE_TYPE_APPEND_RESPONSE));
      expect(c.propose(1, "L".repeat(1000)).ok).to.equal(true); // overshoots, alone
      const refused = c.propose(1, "small");
      expect(refused).to.deep.include({ ok: false, reason: "UNCOMMITTED_LIMIT" });
      c.heal();
      c.tickAll(2);
      expect(c.raft(1).uncommittedBytes).to.equal(0);
      expect(c.propose(1, "small").ok).to.equal(true);
      expect(c.appliedData(2)).to.deep.equal(["L".repeat(1000), "small"]);
    });
  });
});
