// Hard cases B-D (8-14): membership, reads, leadership transfer.
// See /work/shared/notes/raft-hard-cases.md for the list and its sources.
import { expect } from "chai";
import { EntryType } from "../../src/gen/raft/v1/raft.js";
import { bootstrapState } from "../../src/raft/core/bootstrap.js";
import { Raft } from "../../src/raft/core/raft.js";
import { SeededRng } from "../../src/raft/core/rand.js";
import type { TestingKnobs } from "../../src/raft/core/types.js";
import { deliverOnly, is, makeMessage, seen, tickUntil } from "./hard-cases-helpers.js";
import { CC, confChange, data, T, TestCluster } from "./harness.js";

const ctx = (s: string) => data(s);

describe("raft hard cases B: membership", () => {
  it("hard case 8: a new leader proposes no configuration change until its term's entry is applied, and one change at a time", () => {
    const c = new TestCluster([1, 2, 3]);
    c.drop(is(T.MESSAGE_TYPE_APPEND_RESPONSE)); // the new leader's noop cannot commit yet
    c.elect(1);
    expect(c.raft(1).role).to.equal("leader");
    const noop = c.raft(1).log.lastIndex();
    expect(c.raft(1).pendingConfIndex).to.equal(noop);
    expect(c.raft(1).log.committed).to.be.lessThan(noop);
    const early = c.raft(1).proposeConfChange(confChange(CC.CONF_CHANGE_TYPE_REMOVE_NODE, 3));
    expect(early).to.deep.include({ ok: false, reason: "CONF_CHANGE_PENDING" });
    expect(c.raft(1).log.lastIndex()).to.equal(noop); // nothing appended
    expect(c.raft(1).propose(data("normal")).ok).to.equal(true); // ordinary proposals still go
    c.heal();
    c.tickAll(2);
    expect(c.raft(1).log.applied).to.be.at.least(noop);
    // Now one change is accepted; a second waits until the first is applied.
    const first = c.raft(1).proposeConfChange(confChange(CC.CONF_CHANGE_TYPE_REMOVE_NODE, 3));
    expect(first.ok).to.equal(true);
    const second = c.raft(1).proposeConfChange(confChange(CC.CONF_CHANGE_TYPE_REMOVE_NODE, 2));
    expect(second).to.deep.include({ ok: false, reason: "CONF_CHANGE_PENDING" });
    c.deliverAll();
    expect(c.raft(1).status().voters).to.deep.equal([1, 2]);
    expect(c.raft(1).proposeConfChange(confChange(CC.CONF_CHANGE_TYPE_ADD_LEARNER, 4)).ok).to.equal(true);
  });

  it("hard case 8: a leader inheriting another term's uncommitted change cannot stack a second one on it", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    // Leader 1 appends a change that reaches node 2 only, then loses leadership.
    c.raft(1).proposeConfChange(confChange(CC.CONF_CHANGE_TYPE_REMOVE_NODE, 3));
    c.process(1);
    deliverOnly(c, is(T.MESSAGE_TYPE_APPEND, 1, 2));
    c.take(() => true);
    const changeIndex = c.raft(2).log.lastIndex();
    expect(c.raft(2).log.entryAt(changeIndex)?.type).to.equal(EntryType.ENTRY_TYPE_CONF_CHANGE);
    c.isolate(1);
    c.drop(is(T.MESSAGE_TYPE_APPEND_RESPONSE));
    tickUntil(c, () => c.raft(2).role === "leader" || c.raft(3).role === "leader");
    expect(c.raft(2).role).to.equal("leader"); // node 3's log is behind
    expect(c.raft(2).pendingConfIndex).to.equal(changeIndex + 1); // its noop
    const stacked = c.raft(2).proposeConfChange(confChange(CC.CONF_CHANGE_TYPE_REMOVE_NODE, 1));
    expect(stacked).to.deep.include({ ok: false, reason: "CONF_CHANGE_PENDING" });
  });

  describe("hard case 9 (apply-time activation)", () => {
    it("hard case 9: an appended but uncommitted change is not active, and truncating it leaves the configuration intact", () => {
      const c = new TestCluster([1, 2, 3]);
      c.elect(1);
      c.isolate(1);
      const r = c.raft(1).proposeConfChange(confChange(CC.CONF_CHANGE_TYPE_REMOVE_NODE, 3));
      expect(r.ok).to.equal(true);
      c.deliverAll();
      const changeIndex = c.raft(1).log.lastIndex();
      expect(c.raft(1).log.entryAt(changeIndex)?.type).to.equal(EntryType.ENTRY_TYPE_CONF_CHANGE);
      expect(c.raft(1).status().voters).to.deep.equal([1, 2, 3]); // appended, not active
      tickUntil(c, () => c.leaders().some((id) => id !== 1));
      const leader = c.leaders().find((id) => id !== 1)!;
      expect(c.propose(leader, "x").ok).to.equal(true);
      c.heal();
      tickUntil(
        c,
        () => c.raft(1).log.committed === c.raft(leader).log.committed && c.raft(1).lead === leader,
      );
      // The change was overwritten; nobody ever applied it, and every node keeps 3 voters.
      expect(c.raft(1).log.term(changeIndex)).to.equal(c.raft(leader).term);
      for (const id of [1, 2, 3]) {
        expect(c.raft(id).status().voters).to.deep.equal([1, 2, 3]);
        const confApplied = c.node(id).applied.filter((e) => e.type === EntryType.ENTRY_TYPE_CONF_CHANGE);
        expect(confApplied.map((e) => e.index)).to.deep.equal([1, 2, 3]);
        expect(c.appliedData(id)).to.deep.equal(["x"]);
      }
    });

    it("hard case 9: a node does not campaign while committed configuration changes are unapplied", () => {
      // Restarted with the bootstrap changes committed but not yet applied.
      const r = new Raft({ id: 1, rng: new SeededRng(7) }, bootstrapState([1, 2, 3]));
      expect(r.log.committed).to.equal(3);
      expect(r.log.applied).to.equal(0);
      r.campaign();
      expect(r.role).to.equal("follower");
      const rd = r.ready();
      expect(rd.messages).to.deep.equal([]);
      expect(rd.committedEntries.map((e) => e.index)).to.deep.equal([1, 2, 3]);
      r.advance();
      r.campaign();
      expect(r.role).to.equal("preCandidate");
      const rd2 = r.ready();
      expect(rd2.messages.map((m) => [m.type, m.to])).to.deep.equal([
        [T.MESSAGE_TYPE_PRE_VOTE, 2],
        [T.MESSAGE_TYPE_PRE_VOTE, 3],
      ]);
      r.advance();
    });
  });

  it("hard case 10: a leader removing itself hands over with TimeoutNow once the change applies, steps down and goes quiet", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    c.propose(1, "before");
    expect(c.changeConf(1, CC.CONF_CHANGE_TYPE_REMOVE_NODE, 1).ok).to.equal(true);
    // No tick was needed: the handover is immediate.
    const timeoutNow = seen(c, is(T.MESSAGE_TYPE_TIMEOUT_NOW, 1));
    expect(timeoutNow).to.have.length(1);
    expect(timeoutNow[0].term).to.equal(2);
    const successor = timeoutNow[0].to;
    expect(c.raft(1).role).to.equal("follower");
    expect(c.leaders()).to.deep.equal([successor]);
    expect(c.raft(successor).term).to.equal(3);
    expect(c.raft(successor).status().voters).to.deep.equal([2, 3]);
    expect(c.raft(1).status().voters).to.deep.equal([2, 3]);
    // The old leader neither heartbeats nor campaigns; the new pair commits without it.
    const before = c.delivered.length;
    c.tickAll(50);
    const fromOne = c.delivered.slice(before).filter((m) => m.from === 1);
    const noisy = [
      T.MESSAGE_TYPE_HEARTBEAT,
      T.MESSAGE_TYPE_APPEND,
      T.MESSAGE_TYPE_PRE_VOTE,
      T.MESSAGE_TYPE_VOTE,
    ];
    expect(fromOne.filter((m) => noisy.includes(m.type))).to.deep.equal([]);
    expect(c.leaders()).to.deep.equal([successor]);
    c.crash(1);
    expect(c.propose(successor, "after").ok).to.equal(true);
    const other = successor === 2 ? 3 : 2;
    expect(c.appliedData(other)).to.deep.equal(["before", "after"]);
  });
});

describe("raft hard cases B: membership (second reading)", () => {
  /** {1,2} led by 1 with lazy commit (the runtime's setting); 1 asks to remove itself. */
  function removeLeaderOfTwo(knobs: TestingKnobs = {}) {
    const c = new TestCluster([1, 2], { knobs, lazyCommit: true });
    c.elect(1);
    c.propose(1, "before");
    c.tickAll(2);
    const result = c.raft(1).proposeConfChange(confChange(CC.CONF_CHANGE_TYPE_REMOVE_NODE, 1));
    return { c, result };
  }

  it("hard case 10 with two voters: the leader may not remove itself (transfer first), and after a transfer the removal leaves a working single voter", () => {
    const { c, result } = removeLeaderOfTwo();
    expect(result).to.deep.include({ ok: false, reason: "INVALID_CONF_CHANGE" });
    expect(!result.ok && result.message).to.match(/transfer leadership to node 2 first/);
    c.raft(1).transferLeader(2);
    c.tickAll(5);
    expect(c.leaders()).to.deep.equal([2]);
    expect(c.changeConf(2, CC.CONF_CHANGE_TYPE_REMOVE_NODE, 1).ok).to.equal(true);
    c.tickAll(5);
    c.crash(1);
    expect(c.propose(2, "after").ok).to.equal(true);
    c.tickAll(5);
    expect(c.appliedData(2)).to.deep.equal(["before", "after"]);
  });

  it("control: allowed to remove itself, the leader of two strands the survivor (no leader with every live node up)", () => {
    const { c, result } = removeLeaderOfTwo({ removeLeaderFromTwoVoters: true });
    expect(result.ok).to.equal(true);
    c.process(1);
    deliverOnly(c, is(T.MESSAGE_TYPE_APPEND, 1, 2));
    deliverOnly(c, is(T.MESSAGE_TYPE_APPEND_RESPONSE, 2, 1));
    // 1 committed and applied its removal, handed over and went quiet; 2 never heard the commit.
    expect(c.raft(1).status().voters).to.deep.equal([2]);
    expect(c.raft(2).status().voters).to.deep.equal([1, 2]);
    c.crash(1); // the operator stops the removed node once `remove` returned
    c.heal();
    c.tickAll(300);
    expect(c.leaders()).to.deep.equal([]);
  });
});

describe("raft hard cases C: reads across a configuration change (second reading, F3)", () => {
  function readQueuedBeforeShrink(knobs: TestingKnobs = {}): string[] {
    const c = new TestCluster([1, 2], { knobs });
    c.elect(1);
    c.tickAll(2);
    c.drop(is(T.MESSAGE_TYPE_HEARTBEAT_RESPONSE)); // the read's quorum round does not complete
    expect(c.raft(1).readIndex(data("r1")).ok).to.equal(true);
    c.deliverAll();
    expect(c.raft(1).readOnly.size).to.equal(1);
    expect(c.changeConf(1, CC.CONF_CHANGE_TYPE_REMOVE_NODE, 2).ok).to.equal(true);
    c.tickAll(2);
    expect(c.raft(1).status().voters).to.deep.equal([1]);
    c.heal();
    c.tickAll(50);
    return c.node(1).readStates.map((s) => Buffer.from(s.context).toString());
  }

  it("a read queued when the leader shrinks to the only voter is answered (its own ack is a quorum now)", () => {
    expect(readQueuedBeforeShrink()).to.include("r1");
  });

  it("control: without re-checking queued reads at a configuration change, that read is never answered", () => {
    expect(readQueuedBeforeShrink({ keepReadsAcrossConfChange: true })).to.not.include("r1");
  });
});

describe("raft hard cases C: reads", () => {
  /** Leader 1 commits "x" at 5 (acknowledged) and is cut off before anyone else learns the commit. */
  function newLeaderBehindOnCommit(knobs: TestingKnobs = {}): { c: TestCluster; leader: number } {
    const c = new TestCluster([1, 2, 3], { knobs });
    c.elect(1);
    c.raft(1).propose(data("x"));
    c.process(1);
    deliverOnly(c, is(T.MESSAGE_TYPE_APPEND, 1));
    deliverOnly(c, is(T.MESSAGE_TYPE_APPEND_RESPONSE, undefined, 1));
    expect(c.raft(1).log.committed).to.equal(5);
    expect(c.appliedData(1)).to.deep.equal(["x"]);
    c.isolate(1);
    c.take(() => true);
    expect([c.raft(2).log.committed, c.raft(3).log.committed]).to.deep.equal([4, 4]);
    c.drop(is(T.MESSAGE_TYPE_APPEND_RESPONSE)); // the new leader's noop stays uncommitted
    tickUntil(c, () => c.leaders().some((id) => id !== 1));
    const leader = c.leaders().find((id) => id !== 1)!;
    expect(c.raft(leader).log.committed).to.equal(4);
    return { c, leader };
  }

  describe("hard case 11", () => {
    it("hard case 11: a new leader queues reads until an entry of its term commits", () => {
      const { c, leader } = newLeaderBehindOnCommit();
      const r = c.raft(leader).readIndex(ctx("r1"));
      expect(r.ok).to.equal(true);
      expect(c.raft(leader).pendingReadRequests).to.have.length(1);
      c.tickAll(3);
      expect(c.node(leader).readStates).to.deep.equal([]);
      c.heal();
      c.isolate(1);
      tickUntil(c, () => c.node(leader).readStates.length > 0, 10);
      const rs = c.node(leader).readStates[0];
      expect(Buffer.from(rs.context).toString()).to.equal("r1");
      expect(rs.index).to.be.at.least(6); // covers "x" (5) and the new term's noop (6)
    });

    it("hard case 11: with readIndexBeforeTermCommit the new leader answers a stale read index (the guard matters)", () => {
      const { c, leader } = newLeaderBehindOnCommit({ readIndexBeforeTermCommit: true });
      c.raft(leader).readIndex(ctx("r1"));
      c.tickAll(1);
      expect(c.node(leader).readStates).to.have.length(1);
      // "x" at index 5 was acknowledged to its client, yet the read would not wait for it.
      expect(c.node(leader).readStates[0].index).to.equal(4);
    });

    it("hard case 11: a leader change discards pending reads; the client retries and gets a fresh index", () => {
      const c = new TestCluster([1, 2, 3]);
      c.elect(1);
      c.drop(is(T.MESSAGE_TYPE_HEARTBEAT_RESPONSE)); // the read's quorum round never completes
      c.raft(1).readIndex(ctx("old"));
      c.deliverAll();
      expect(c.raft(1).readOnly.size).to.equal(1);
      c.raft(1).transferLeader(2);
      c.deliverAll();
      expect(c.leaders()).to.deep.equal([2]);
      expect(c.raft(1).readOnly.size).to.equal(0);
      c.heal();
      c.tickAll(5);
      expect(c.node(1).readStates).to.deep.equal([]); // never answered from the old term
      expect(c.raft(1).readIndex(ctx("retry"))).to.deep.equal({ ok: true, forwardedTo: 2 });
      c.tickAll(2);
      const states = c.node(1).readStates.map((s) => [Buffer.from(s.context).toString(), s.index]);
      expect(states).to.deep.equal([["retry", c.raft(2).log.committed]]);
      expect(c.raft(2).log.term(states[0][1] as number)).to.equal(3); // at or past the new term's entry
    });
  });

  describe("hard case 11: a single voter", () => {
    /**
     * A single voter acknowledges "acked", then is killed: its commit index was only in
     * a commit-only hard state, which storage defers (like the runtime). It restarts and
     * runs its election one Ready at a time; a read arrives in the round in which it has
     * just become leader, before its noop commits.
     */
    function readRightAfterElection(knobs: TestingKnobs): { c: TestCluster; acked: number } {
      const c = new TestCluster([1], { knobs });
      c.elect(1);
      const p = c.propose(1, "acked");
      const acked = p.ok && "index" in p ? p.index : 0;
      expect(c.appliedData(1)).to.deep.equal(["acked"]);
      c.crash(1);
      c.restart(1);
      const r = c.raft(1);
      expect(r.log.committed).to.be.lessThan(acked);
      for (let i = 0; i < 100 && r.role !== "leader"; i++) if (!c.processOnce(1)) r.tick();
      expect(r.role).to.equal("leader");
      expect(r.readIndex(ctx("after-restart")).ok).to.equal(true);
      c.process(1);
      return { c, acked };
    }

    it("hard case 11: a restarted single voter answers a read only once it has committed in its term", () => {
      const { c, acked } = readRightAfterElection({});
      const states = c.node(1).readStates;
      expect(states).to.have.length(1);
      expect(states[0].index).to.be.at.least(acked + 1); // "acked" and the new term's noop
    });

    it("hard case 11: with singleVoterReadBeforeTermCommit the read index misses an acknowledged write (the fix matters)", () => {
      const { c, acked } = readRightAfterElection({ singleVoterReadBeforeTermCommit: true });
      expect(c.node(1).readStates.map((s) => s.index < acked)).to.deep.equal([true]);
    });
  });

  describe("hard case 12 (N/A: no lease reads are offered)", () => {
    it("hard case 12: N/A - there is no lease read; a leader answers a read only after a quorum acknowledges a heartbeat", () => {
      const c = new TestCluster([1, 2, 3]);
      c.elect(1);
      expect(c.raft(1).cfg.checkQuorum).to.equal(true);
      // Nothing like etcd's ReadOnlyLeaseBased exists on the core.
      expect(Object.getOwnPropertyNames(Raft.prototype).filter((n) => /lease/i.test(n))).to.deep.equal([]);
      // Followers answered moments ago (recentActive), yet without heartbeat acks there is no answer.
      c.drop(is(T.MESSAGE_TYPE_HEARTBEAT_RESPONSE));
      c.raft(1).readIndex(ctx("q"));
      c.deliverAll();
      const heartbeats = seen(c, is(T.MESSAGE_TYPE_HEARTBEAT, 1)).filter(
        (m) => Buffer.from(m.context).toString() === "q",
      );
      expect(heartbeats.map((m) => m.to).sort()).to.deep.equal([2, 3]);
      c.tickAll(3);
      expect(c.node(1).readStates).to.deep.equal([]);
      c.heal();
      c.tickAll(1);
      expect(c.node(1).readStates.map((s) => s.index)).to.deep.equal([c.raft(1).log.committed]);
    });
  });
});

describe("raft hard cases D: leadership transfer", () => {
  it("hard case 13: the target is caught up first, TimeoutNow only at the leader's last index, and the log stands still meanwhile", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    c.cut(1, 3);
    for (const s of ["a", "b", "c"]) c.propose(1, s);
    const last = c.raft(1).log.lastIndex();
    expect(c.raft(3).log.lastIndex()).to.be.lessThan(last);
    c.raft(1).transferLeader(3);
    c.process(1);
    expect(c.raft(1).status().leadTransferee).to.equal(3);
    expect(c.inflight.filter(is(T.MESSAGE_TYPE_TIMEOUT_NOW))).to.deep.equal([]);
    expect(c.raft(1).propose(data("d"))).to.deep.include({ ok: false, reason: "TRANSFER_IN_PROGRESS" });
    expect(c.raft(1).log.lastIndex()).to.equal(last);
    c.heal();
    tickUntil(c, () => c.raft(3).role === "leader", 5);
    const at = c.delivered.findIndex(is(T.MESSAGE_TYPE_TIMEOUT_NOW, 1, 3));
    expect(at).to.be.greaterThan(-1);
    expect(seen(c, is(T.MESSAGE_TYPE_TIMEOUT_NOW))).to.have.length(1);
    const acksBefore = c.delivered
      .slice(0, at)
      .filter((m) => is(T.MESSAGE_TYPE_APPEND_RESPONSE, 3, 1)(m) && !m.reject);
    expect(Math.max(...acksBefore.map((m) => m.index))).to.equal(last);
    expect(c.raft(3).term).to.equal(3);
    expect(c.appliedData(3)).to.deep.equal(["a", "b", "c"]);
  });

  describe("hard case 14", () => {
    it("hard case 14: proposals fail with TRANSFER_IN_PROGRESS and the transfer aborts after an election timeout", () => {
      const c = new TestCluster([1, 2, 3]);
      c.elect(1);
      c.isolate(3);
      c.propose(1, "a");
      c.raft(1).transferLeader(3);
      expect(c.raft(1).propose(data("b"))).to.deep.equal({
        ok: false,
        reason: "TRANSFER_IN_PROGRESS",
        message: "leadership is being transferred to 3; retry shortly",
      });
      c.tickAll(c.raft(1).cfg.electionTimeoutTicks - 1);
      expect(c.raft(1).status().leadTransferee).to.equal(3);
      c.tickAll(1);
      expect(c.raft(1).status().leadTransferee).to.equal(0);
      expect(c.leaders()).to.deep.equal([1]);
      expect(c.propose(1, "b").ok).to.equal(true);
      expect(c.appliedData(2)).to.deep.equal(["a", "b"]);
    });

    it("hard case 14: the transfer aborts when its target is removed", () => {
      const c = new TestCluster([1, 2, 3]);
      c.elect(1);
      c.isolate(3);
      expect(c.raft(1).proposeConfChange(confChange(CC.CONF_CHANGE_TYPE_REMOVE_NODE, 3)).ok).to.equal(true);
      c.raft(1).transferLeader(3); // node 3 lags: no TimeoutNow yet
      expect(c.raft(1).status().leadTransferee).to.equal(3);
      c.deliverAll(); // the removal commits and applies
      expect(c.raft(1).status().voters).to.deep.equal([1, 2]);
      expect(c.raft(1).status().leadTransferee).to.equal(0);
      expect(c.propose(1, "go").ok).to.equal(true);
      expect(seen(c, is(T.MESSAGE_TYPE_TIMEOUT_NOW))).to.deep.equal([]);
    });

    it("hard case 14: a learner is refused as a target, and a TimeoutNow cannot make it campaign", () => {
      const c = new TestCluster([1, 2, 3]);
      c.elect(1);
      c.addJoiningNode(4);
      expect(c.changeConf(1, CC.CONF_CHANGE_TYPE_ADD_LEARNER, 4).ok).to.equal(true);
      c.tickAll(2);
      expect(c.raft(1).status().learners).to.deep.equal([4]);
      c.raft(1).transferLeader(4);
      expect(c.raft(1).status().leadTransferee).to.equal(0);
      c.deliverAll();
      expect(seen(c, is(T.MESSAGE_TYPE_TIMEOUT_NOW))).to.deep.equal([]);
      expect(c.propose(1, "still leader").ok).to.equal(true);
      c.deliver(makeMessage({ type: T.MESSAGE_TYPE_TIMEOUT_NOW, from: 1, to: 4, term: c.raft(1).term }));
      expect(c.raft(4).role).to.equal("follower");
      expect(c.inflight.filter((m) => m.from === 4)).to.deep.equal([]);
    });

    it("hard case 14: the target skips PreVote and marks its vote requests as a transfer, which voters in lease grant", () => {
      const c = new TestCluster([1, 2, 3]);
      c.elect(1);
      const mark = c.delivered.length;
      c.raft(1).transferLeader(2);
      c.deliverAll();
      const after = c.delivered.slice(mark);
      expect(after.filter(is(T.MESSAGE_TYPE_PRE_VOTE, 2))).to.deep.equal([]);
      const votes = after.filter(is(T.MESSAGE_TYPE_VOTE, 2));
      expect(votes.map((m) => [m.to, m.term, m.transfer])).to.deep.equal([
        [1, 3, true],
        [3, 3, true],
      ]);
      // Node 3 had just heard leader 1 (in lease), yet granted the transfer's vote.
      expect(after.filter(is(T.MESSAGE_TYPE_VOTE_RESPONSE, 3, 2)).map((m) => m.reject)).to.deep.equal([
        false,
      ]);
      expect(c.leaders()).to.deep.equal([2]);
    });
  });
});
