// Leadership transfer (thesis §3.10) and linearizable reads with ReadIndex (§6.4).
import { expect } from "chai";
import type { TestingKnobs } from "../../src/raft/core/types.js";
import { CC, T, TestCluster } from "./harness.js";
import { deliveredOfType, liveTerms } from "./paper-helpers.js";

const enc = new TextEncoder();

describe("Thesis §3.10 leadership transfer", () => {
  it("§3.10 to an up-to-date follower: TimeoutNow goes out at once and the target leads at term+1", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    c.propose(1, "a");
    c.tickAll(1);
    const term = c.raft(1).term;
    expect(c.raft(1).transferLeader(2).ok).to.equal(true);
    c.process(1);
    const out = c.inflight.filter((m) => m.from === 1);
    expect(out.map((m) => [m.type, m.to])).to.deep.equal([[T.MESSAGE_TYPE_TIMEOUT_NOW, 2]]);
    c.deliverAll();
    expect(c.leaders()).to.deep.equal([2]);
    expect(liveTerms(c)).to.deep.equal([term + 1, term + 1, term + 1]);
    // The target skipped PreVote and marked its requests as a transfer.
    const votes = deliveredOfType(c, T.MESSAGE_TYPE_VOTE, (m) => m.from === 2);
    expect(votes.length).to.equal(2);
    expect(votes.every((m) => m.transfer && m.term === term + 1)).to.equal(true);
    c.propose(1, "b");
    c.tickAll(1);
    for (const id of [1, 2, 3]) expect(c.appliedData(id)).to.deep.equal(["a", "b"]);
  });

  it("§3.10 to a lagging follower: appends first, TimeoutNow only at match == last index; proposals dropped meanwhile", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    c.cut(1, 3);
    for (const v of ["a", "b", "c"]) c.propose(1, v);
    c.heal();
    const last = c.raft(1).log.lastIndex();
    expect(c.raft(3).log.lastIndex()).to.be.lessThan(last);
    const term = c.raft(1).term;

    expect(c.raft(1).transferLeader(3).ok).to.equal(true);
    expect(c.raft(1).status().leadTransferee).to.equal(3);
    const during = c.raft(1).propose(enc.encode("during"));
    expect(during.ok === false && during.reason).to.equal("TRANSFER_IN_PROGRESS");
    c.process(1);
    expect(c.inflight.filter((m) => m.type === T.MESSAGE_TYPE_TIMEOUT_NOW)).to.deep.equal([]);
    expect(c.inflight.some((m) => m.type === T.MESSAGE_TYPE_APPEND && m.to === 3)).to.equal(true);
    const firstTimeoutNow = c.delivered.length;
    c.deliverAll();

    expect(c.leaders()).to.deep.equal([3]);
    expect(c.raft(3).term).to.equal(term + 1);
    // TimeoutNow was sent once, after node 3 acknowledged the leader's last index.
    const log = c.delivered.slice(firstTimeoutNow);
    const tn = log.findIndex((m) => m.type === T.MESSAGE_TYPE_TIMEOUT_NOW);
    expect(tn).to.be.greaterThan(-1);
    expect(log.filter((m) => m.type === T.MESSAGE_TYPE_TIMEOUT_NOW)).to.have.length(1);
    const acks = log
      .slice(0, tn)
      .filter((m) => m.type === T.MESSAGE_TYPE_APPEND_RESPONSE && m.from === 3 && !m.reject);
    expect(acks.length).to.be.greaterThan(0);
    expect(Math.max(...acks.map((m) => m.index))).to.equal(last);
    c.propose(3, "after");
    c.tickAll(1);
    for (const id of [1, 2, 3]) expect(c.appliedData(id)).to.deep.equal(["a", "b", "c", "after"]);
    expect(c.appliedData(1)).to.not.include("during");
  });

  /** Leader 1 transfers to lagging 3; follower 2's proposal reaches 1 during the transfer. */
  function forwardDuringTransfer(knobs: TestingKnobs = {}): TestCluster {
    const c = new TestCluster([1, 2, 3], { knobs });
    c.elect(1);
    c.cut(1, 3);
    c.propose(1, "a");
    c.heal();
    expect(c.raft(1).transferLeader(3).ok).to.equal(true);
    expect(c.raft(2).propose(enc.encode("forwarded")).ok).to.equal(true); // to leader 1
    c.deliverAll(); // the transfer completes: 3 leads
    expect(c.leaders()).to.deep.equal([3]);
    c.tickAll(3);
    return c;
  }

  it("§3.10 a proposal forwarded during a transfer is held and passed on to the new leader, not dropped", () => {
    const c = forwardDuringTransfer();
    for (const id of [1, 2, 3]) expect(c.appliedData(id)).to.deep.equal(["a", "forwarded"]);
  });

  it("§3.10 control: dropped, a forwarded proposal is lost and its caller waits for its timeout", () => {
    const c = forwardDuringTransfer({ dropForwardedDuringTransfer: true });
    for (const id of [1, 2, 3]) expect(c.appliedData(id)).to.deep.equal(["a"]);
  });

  it("§3.10 a proposal forwarded to a member that no longer leads is passed on once, never bounced back", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    c.raft(1).transferLeader(3);
    c.deliverAll();
    expect(c.leaders()).to.deep.equal([3]);
    // 2 still believes 1 leads (it has not heard from 3 yet): its proposal goes to 1.
    c.raft(2).becomeFollower(c.raft(3).term, 1);
    expect(c.raft(2).propose(enc.encode("via 1")).ok).to.equal(true);
    c.deliverAll();
    c.tickAll(2);
    for (const id of [1, 2, 3]) expect(c.appliedData(id)).to.deep.equal(["via 1"]);
    const passedOn = c.delivered.filter((m) => m.type === T.MESSAGE_TYPE_PROPOSE && m.from === 1);
    expect(passedOn.map((m) => [m.to, m.index])).to.deep.equal([[3, 1]]);
  });

  it("§3.10 a transfer that cannot finish is aborted after an election timeout; proposals resume", () => {
    const electionTimeoutTicks = 10;
    const c = new TestCluster([1, 2, 3], { electionTimeoutTicks });
    c.elect(1);
    c.isolate(3);
    c.propose(1, "x"); // node 3 lags and cannot catch up
    c.raft(1).transferLeader(3);
    expect(c.raft(1).status().leadTransferee).to.equal(3);
    c.tickAll(electionTimeoutTicks - 1);
    expect(c.raft(1).status().leadTransferee).to.equal(3);
    const blocked = c.raft(1).propose(enc.encode("blocked"));
    expect(blocked.ok === false && blocked.reason).to.equal("TRANSFER_IN_PROGRESS");
    c.tickAll(1);
    expect(c.raft(1).status().leadTransferee).to.equal(0);
    expect(c.leaders()).to.deep.equal([1]);
    expect(c.propose(1, "resumed").ok).to.equal(true);
    c.tickAll(1);
    for (const id of [1, 2]) expect(c.appliedData(id)).to.deep.equal(["x", "resumed"]);
    expect(deliveredOfType(c, T.MESSAGE_TYPE_TIMEOUT_NOW)).to.deep.equal([]);
  });

  it("§3.10 a learner is refused as a transfer target", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    c.addJoiningNode(4);
    c.changeConf(1, CC.CONF_CHANGE_TYPE_ADD_LEARNER, 4);
    c.tickAll(2);
    expect(c.raft(1).status().learners).to.deep.equal([4]);
    expect(c.raft(1).transferLeader(4)).to.deep.include({ ok: false, reason: "NOT_A_VOTER" });
    expect(c.raft(1).status().leadTransferee).to.equal(0);
    c.deliverAll();
    expect(c.leaders()).to.deep.equal([1]);
    expect(deliveredOfType(c, T.MESSAGE_TYPE_TIMEOUT_NOW)).to.deep.equal([]);
  });
});

describe("Thesis §6.4 linearizable reads (ReadIndex)", () => {
  it("§6.4 on the leader: a ReadState at the commit index only after a heartbeat round reaches a quorum", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    c.propose(1, "a");
    c.tickAll(1);
    const commit = c.raft(1).status().commit;
    const ctx = enc.encode("read-1");
    expect(c.raft(1).readIndex(ctx).ok).to.equal(true);
    c.process(1);
    expect(c.node(1).readStates).to.deep.equal([]);
    const beats = c.inflight.filter((m) => m.type === T.MESSAGE_TYPE_HEARTBEAT);
    expect(beats.map((m) => m.to).sort()).to.deep.equal([2, 3]);
    expect(beats.every((m) => new TextDecoder().decode(m.context) === "read-1")).to.equal(true);
    // Without any heartbeat answer, no read is served.
    c.take((m) => m.type === T.MESSAGE_TYPE_HEARTBEAT);
    expect(c.node(1).readStates).to.deep.equal([]);
    // A fresh round whose answers arrive confirms the leadership and serves the read.
    c.tick(1);
    c.deliverAll();
    expect(c.node(1).readStates).to.deep.equal([{ index: commit, context: ctx }]);
  });

  it("§6.4 the leader serves no read while cut off from the quorum", () => {
    const c = new TestCluster([1, 2, 3], { checkQuorum: false });
    c.elect(1);
    c.tickAll(1);
    c.isolate(1);
    c.raft(1).readIndex(enc.encode("stale?"));
    c.tickAll(5);
    expect(c.node(1).readStates).to.deep.equal([]);
    c.heal();
    c.tickAll(1);
    expect(c.node(1).readStates.map((r) => r.index)).to.deep.equal([c.raft(1).status().commit]);
  });

  it("§6.4 via a follower: forwarded to the leader, answered with READ_INDEX_RESPONSE at the leader's commit", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    c.propose(1, "a");
    const ctx = enc.encode("follower-read");
    expect(c.raft(2).readIndex(ctx)).to.deep.equal({ ok: true, forwardedTo: 1 });
    c.deliverAll();
    expect(deliveredOfType(c, T.MESSAGE_TYPE_READ_INDEX).map((m) => [m.from, m.to])).to.deep.equal([[2, 1]]);
    const answers = deliveredOfType(c, T.MESSAGE_TYPE_READ_INDEX_RESPONSE);
    expect(answers.map((m) => [m.from, m.to])).to.deep.equal([[1, 2]]);
    const leaderCommit = c.raft(1).status().commit;
    expect(c.node(2).readStates).to.deep.equal([{ index: leaderCommit, context: ctx }]);
    // The follower serves the read once it has applied that index.
    c.tickAll(1);
    expect(c.raft(2).status().applied).to.be.at.least(leaderCommit);
    expect(c.node(1).readStates).to.deep.equal([]);
  });

  it("§6.4 a new leader answers no read until it has committed an entry of its own term", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    c.propose(1, "a");
    c.tickAll(1);
    // Node 2 takes over, but its appends (with its term's first entry) are lost for now.
    c.drop((m) => m.type === T.MESSAGE_TYPE_APPEND && m.from === 2);
    c.raft(1).transferLeader(2);
    c.deliverAll();
    expect(c.leaders()).to.deep.equal([2]);
    const r2 = c.raft(2);
    expect(r2.log.term(r2.log.committed)).to.be.lessThan(r2.term);
    const ctx = enc.encode("early-read");
    expect(r2.readIndex(ctx).ok).to.equal(true);
    c.tickAll(1); // node 3 learns the new leader from its heartbeat
    const viaFollower = enc.encode("early-follower-read");
    expect(c.raft(3).readIndex(viaFollower)).to.deep.equal({ ok: true, forwardedTo: 2 });
    c.tickAll(3); // heartbeats flow and are answered: leadership is confirmed, but not the commit index
    expect(c.leaders()).to.deep.equal([2]);
    expect(c.node(2).readStates).to.deep.equal([]);
    expect(c.node(3).readStates).to.deep.equal([]);
    expect(deliveredOfType(c, T.MESSAGE_TYPE_READ_INDEX_RESPONSE)).to.deep.equal([]);

    c.heal();
    c.tickAll(2);
    const commit = c.raft(2).status().commit;
    expect(c.raft(2).log.term(commit)).to.equal(c.raft(2).term);
    expect(c.node(2).readStates).to.deep.equal([{ index: commit, context: ctx }]);
    expect(c.node(3).readStates).to.deep.equal([{ index: commit, context: viaFollower }]);
  });

  it("§6.4 control: with knob readIndexBeforeTermCommit the same new leader answers early, at a previous term's index", () => {
    const c = new TestCluster([1, 2, 3], { knobs: { readIndexBeforeTermCommit: true } });
    c.elect(1);
    c.propose(1, "a");
    c.tickAll(1);
    c.drop((m) => m.type === T.MESSAGE_TYPE_APPEND && m.from === 2);
    c.raft(1).transferLeader(2);
    c.deliverAll();
    expect(c.leaders()).to.deep.equal([2]);
    const ctx = enc.encode("early-read");
    c.raft(2).readIndex(ctx);
    c.tickAll(3);
    const r2 = c.raft(2);
    expect(c.node(2).readStates).to.deep.equal([{ index: r2.log.committed, context: ctx }]);
    expect(r2.log.term(r2.log.committed)).to.be.lessThan(r2.term);
  });
});
