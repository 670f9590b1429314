// Hard cases A (1-7): PreVote, CheckQuorum and disruptive candidates.
// See /work/shared/notes/raft-hard-cases.md for the list and its sources.
import { expect } from "chai";
import type { TestingKnobs } from "../../src/raft/core/types.js";
import { deliverOnly, is, makeMessage, seen, tickUntil } from "./hard-cases-helpers.js";
import { CC, T, TestCluster } from "./harness.js";

describe("raft hard cases A: PreVote, CheckQuorum, leases", () => {
  describe("hard case 1", () => {
    it("hard case 1: a rejoining node with an inflated term does not depose a healthy leader", () => {
      // With PreVote, an isolated node never inflates its term in the first place.
      const c = new TestCluster([1, 2, 3]);
      c.elect(1);
      c.isolate(3);
      c.tickAll(60);
      expect(c.raft(3).term).to.equal(2);
      expect(seen(c, is(T.MESSAGE_TYPE_PRE_VOTE, 3)).length).to.be.greaterThan(0);
      expect(seen(c, is(T.MESSAGE_TYPE_VOTE, 3))).to.deep.equal([]);
      c.heal();
      c.tickAll(5);
      expect(c.leaders()).to.deep.equal([1]);
      expect(c.raft(1).term).to.equal(2);
      expect(c.raft(3).lead).to.equal(1);
    });

    it("hard case 1: with CheckQuorum a higher-term (pre)vote is ignored while the leader is heard, unless it is a transfer", () => {
      const c = new TestCluster([1, 2, 3]);
      c.elect(1);
      // Node 3 restarts without PreVote and inflates its term with no one listening.
      c.crash(3);
      c.restart(3, { preVote: false });
      c.tick(3, 60);
      const votes = c.take((m) => m.from === 3);
      const term3 = c.raft(3).term;
      expect(term3).to.be.greaterThan(3);
      const latest = votes.filter((m) => m.type === T.MESSAGE_TYPE_VOTE && m.term === term3);
      expect(latest.map((m) => m.to).sort()).to.deep.equal([1, 2]);
      for (const m of latest) c.deliver(m);
      // Leader and follower are in lease: nothing changes, nothing is answered.
      expect(c.raft(1).role).to.equal("leader");
      expect([c.raft(1).term, c.raft(2).term]).to.deep.equal([2, 2]);
      expect(c.inflight.filter((m) => m.to === 3)).to.deep.equal([]);
      // A disruptive pre-vote in lease is ignored too.
      c.deliver(
        makeMessage({
          type: T.MESSAGE_TYPE_PRE_VOTE,
          from: 3,
          to: 2,
          term: term3 + 1,
          index: 99,
          logTerm: 99,
        }),
      );
      expect(c.raft(2).term).to.equal(2);
      expect(c.inflight.filter((m) => m.to === 3)).to.deep.equal([]);
      // A vote request marked as a leadership transfer passes the lease.
      c.deliver({ ...latest.find((m) => m.to === 2)!, transfer: true });
      expect(c.raft(2).term).to.equal(term3);
    });

    it("hard case 1: without CheckQuorum and PreVote the same vote request deposes the leader (the guard matters)", () => {
      const c = new TestCluster([1, 2, 3], { preVote: false, checkQuorum: false });
      c.elect(1);
      c.tick(3, 60);
      const term3 = c.raft(3).term;
      const latest = c
        .take((m) => m.from === 3)
        .filter((m) => m.type === T.MESSAGE_TYPE_VOTE && m.term === term3);
      for (const m of latest) c.deliver(m);
      expect(c.raft(1).role).to.equal("follower");
      expect(c.raft(1).term).to.equal(term3);
    });
  });

  it("hard case 2: a node stuck at a higher term rejoins: a lower-term append gets an empty response at its term", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    c.isolate(3);
    c.crash(3);
    c.restart(3, { preVote: false });
    c.tickAll(40); // node 3 campaigns alone, term after term
    c.take(() => true);
    const stuck = c.raft(3).term;
    expect(stuck).to.be.greaterThan(c.raft(1).term);
    c.heal();
    c.tick(1); // a heartbeat at the old term
    deliverOnly(c, is(T.MESSAGE_TYPE_HEARTBEAT, 1, 3));
    const answer = c.inflight.filter((m) => m.from === 3 && m.to === 1);
    expect(answer).to.have.length(1);
    expect(answer[0].type).to.equal(T.MESSAGE_TYPE_APPEND_RESPONSE);
    expect(answer[0].term).to.equal(stuck);
    expect(answer[0].entries).to.deep.equal([]);
    expect(answer[0].reject).to.equal(false);
    c.deliverAll();
    // The cluster moves past the stuck term and node 3 is back in it.
    tickUntil(c, () => c.leaders().length === 1 && c.raft(3).lead !== 0);
    const leader = c.leaders()[0];
    expect(c.raft(leader).term).to.be.greaterThan(stuck);
    expect(c.propose(leader, "after").ok).to.equal(true);
    expect(c.appliedData(3)).to.include("after");
  });

  describe("hard case 3", () => {
    it("hard case 3: a granted pre-vote carries the request's term; the voter keeps its own", () => {
      const c = new TestCluster([1, 2, 3]);
      c.raft(1).campaign();
      c.process(1);
      deliverOnly(c, is(T.MESSAGE_TYPE_PRE_VOTE, 1, 2));
      const grant = c.inflight.filter(is(T.MESSAGE_TYPE_PRE_VOTE_RESPONSE, 2, 1));
      expect(grant).to.have.length(1);
      expect(grant[0].reject).to.equal(false);
      expect(grant[0].term).to.equal(2); // the pre-vote's term
      expect(c.raft(2).term).to.equal(1); // not adopted
      expect(c.raft(2).vote).to.equal(0);
      c.deliverAll();
      expect(c.leaders()).to.deep.equal([1]);
      expect(c.raft(1).term).to.equal(2);
    });

    it("hard case 3: a lower-term pre-vote is rejected at the local term, so the pre-candidate catches up", () => {
      const c = new TestCluster([1, 2, 3]);
      c.elect(1);
      c.crash(3);
      // The cluster moves on two terms while node 3 is down.
      c.raft(1).transferLeader(2);
      c.deliverAll();
      c.raft(2).transferLeader(1);
      c.deliverAll();
      expect(c.leaders()).to.deep.equal([1]);
      expect(c.raft(1).term).to.equal(4);
      c.restart(3);
      expect(c.raft(3).term).to.equal(2);
      for (let i = 0; i < 40 && c.raft(3).role !== "preCandidate"; i++) c.tick(3);
      const pv = c.take(is(T.MESSAGE_TYPE_PRE_VOTE, 3));
      expect(pv.map((m) => m.term)).to.deep.equal([3, 3]);
      for (const m of pv) c.deliver(m);
      const rejections = c.inflight.filter(is(T.MESSAGE_TYPE_PRE_VOTE_RESPONSE, undefined, 3));
      expect(rejections.map((m) => [m.from, m.term, m.reject]).sort()).to.deep.equal([
        [1, 4, true],
        [2, 4, true],
      ]);
      c.deliverAll();
      expect(c.raft(3).term).to.equal(4);
      expect(c.raft(3).role).to.equal("follower");
      expect(c.leaders()).to.deep.equal([1]);
    });
  });

  it("hard case 4: after the leader dies, a pre-candidate forgets it so the others' pre-votes can win", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    c.crash(1);
    // Node 2 times out first; node 3 still heard the leader recently and ignores its pre-vote.
    for (let i = 0; i < 40 && c.raft(2).role !== "preCandidate"; i++) c.tick(2);
    expect(c.raft(2).role).to.equal("preCandidate");
    expect(c.raft(2).lead).to.equal(0); // forgot the old leader
    deliverOnly(c, is(T.MESSAGE_TYPE_PRE_VOTE, 2, 3));
    expect(c.inflight.filter((m) => m.from === 3)).to.deep.equal([]); // in lease: ignored
    c.take(() => true);
    // Node 3 times out next; node 2 (a pre-candidate, fresh election timer) must grant it.
    for (let i = 0; i < 40 && c.raft(3).role !== "preCandidate"; i++) c.tick(3);
    expect(c.raft(2).electionElapsed).to.be.lessThan(c.raft(2).cfg.electionTimeoutTicks);
    c.deliverAll();
    expect(c.leaders()).to.deep.equal([3]);
    expect(c.raft(3).term).to.equal(3);
    expect(seen(c, is(T.MESSAGE_TYPE_PRE_VOTE_RESPONSE, 2, 3)).map((m) => m.reject)).to.deep.equal([false]);
  });

  describe("hard case 5", () => {
    it("hard case 5: a node that knows the current leader grants no vote", () => {
      const c = new TestCluster([1, 2, 3, 4, 5]);
      c.drop(is(T.MESSAGE_TYPE_VOTE, 1, 5)); // node 5 learns the leader from its appends only
      c.elect(1);
      c.heal();
      expect(c.raft(5).lead).to.equal(1);
      expect(c.raft(5).vote).to.equal(0);
      c.deliver(makeMessage({ type: T.MESSAGE_TYPE_VOTE, from: 4, to: 5, term: 2, index: 99, logTerm: 2 }));
      const answer = c.inflight.filter(is(T.MESSAGE_TYPE_VOTE_RESPONSE, 5, 4));
      expect(answer.map((m) => [m.term, m.reject])).to.deep.equal([[2, true]]);
      expect(c.raft(5).vote).to.equal(0);
    });

    it("hard case 5: granting a pre-vote neither records a vote nor resets the election timer; a real vote does both", () => {
      const c = new TestCluster([1, 2, 3]);
      c.tick(2, 5);
      expect(c.raft(2).electionElapsed).to.equal(5);
      c.raft(1).campaign();
      c.process(1);
      deliverOnly(c, is(T.MESSAGE_TYPE_PRE_VOTE, 1, 2));
      expect(
        c.inflight.filter(is(T.MESSAGE_TYPE_PRE_VOTE_RESPONSE, 2, 1)).map((m) => m.reject),
      ).to.deep.equal([false]);
      expect(c.raft(2).vote).to.equal(0);
      expect(c.raft(2).electionElapsed).to.equal(5);
      deliverOnly(c, is(T.MESSAGE_TYPE_PRE_VOTE_RESPONSE, 2, 1)); // node 1 now runs the real election
      deliverOnly(c, is(T.MESSAGE_TYPE_VOTE, 1, 2));
      expect(c.raft(2).vote).to.equal(1);
      expect(c.raft(2).electionElapsed).to.equal(0);
    });
  });

  it("hard case 6: a stale pre-vote response is not counted as a vote", () => {
    const c = new TestCluster([1, 2, 3, 4, 5]);
    c.raft(1).campaign();
    c.process(1);
    deliverOnly(c, is(T.MESSAGE_TYPE_PRE_VOTE, 1));
    const grants = c.take(is(T.MESSAGE_TYPE_PRE_VOTE_RESPONSE, undefined, 1));
    expect(grants.filter((m) => !m.reject)).to.have.length(4);
    for (const m of grants.filter((g) => g.from === 2 || g.from === 3)) c.deliver(m);
    expect(c.raft(1).role).to.equal("candidate");
    expect(c.raft(1).term).to.equal(2);
    c.take(is(T.MESSAGE_TYPE_VOTE, 1)); // the real vote requests are lost
    // The late pre-vote grants are at the candidate's term but are not votes.
    for (const m of grants.filter((g) => g.from === 4 || g.from === 5)) c.deliver(m);
    expect(c.raft(1).role).to.equal("candidate");
    expect([...c.raft(1).votes.entries()]).to.deep.equal([[1, true]]);
  });

  // Hard case 7 in the form that cannot stall a cluster: a candidate is refused for
  // its membership only when the voter has applied the candidate's whole log and that
  // log's latest configuration does not list it (see vote.ts). Judging a candidate by
  // the voter's own applied configuration instead left clusters that never elect
  // again (the two shapes below, issue 9).
  it("hard case 7: a node outside the latest configuration does not disrupt elections", () => {
    const c = new TestCluster([1, 2, 3, 4]);
    c.elect(1);
    // Node 4 is removed; it receives the entry but never learns that it committed.
    c.raft(1).proposeConfChange({
      type: CC.CONF_CHANGE_TYPE_REMOVE_NODE,
      nodeId: 4,
      context: new Uint8Array(),
    });
    c.process(1);
    deliverOnly(c, is(T.MESSAGE_TYPE_APPEND, 1));
    c.isolate(4);
    c.deliverAll();
    expect(c.raft(1).status().voters).to.deep.equal([1, 2, 3]);
    expect(c.raft(4).status().voters).to.deep.equal([1, 2, 3, 4]);
    expect(c.raft(4).log.lastIndex()).to.equal(c.raft(2).log.lastIndex()); // as up to date as anyone
    c.crash(1);
    c.heal();
    // Node 2 and 3 lose their leader; node 4 campaigns too.
    c.tick(2, c.raft(2).cfg.electionTimeoutTicks);
    c.take(() => true);
    const stranger = makeMessage({
      type: T.MESSAGE_TYPE_PRE_VOTE,
      from: 4,
      to: 2,
      term: c.raft(2).term + 1,
      index: c.raft(4).log.lastIndex(),
      logTerm: c.raft(4).log.lastTerm(),
    });
    c.deliver(stranger);
    expect(c.inflight.filter(is(T.MESSAGE_TYPE_PRE_VOTE_RESPONSE, 2, 4)).map((m) => m.reject)).to.deep.equal([
      true,
    ]);
    // The same request from a member (node 3, same log) is granted: membership alone decided.
    c.deliver({ ...stranger, from: 3 });
    expect(c.inflight.filter(is(T.MESSAGE_TYPE_PRE_VOTE_RESPONSE, 2, 3)).map((m) => m.reject)).to.deep.equal([
      false,
    ]);
    c.take(() => true);
    tickUntil(c, () => c.leaders().length === 1);
    const leader = c.leaders()[0];
    expect([2, 3]).to.include(leader);
    const term = c.raft(leader).term;
    c.tickAll(100);
    expect(c.leaders()).to.deep.equal([leader]);
    expect(c.raft(leader).term).to.equal(term);
    expect(c.node(4).readies.some((rd) => rd.softState?.role === "candidate")).to.equal(false);
    expect(seen(c, is(T.MESSAGE_TYPE_PRE_VOTE_RESPONSE, undefined, 4)).every((m) => m.reject)).to.equal(true);
  });

  describe("hard case 7: no permanent stall from a lagging configuration", () => {
    /** Grows a one-voter cluster: learner 2 is promoted before it received anything. */
    function promotedBlind(knobs: TestingKnobs): TestCluster {
      const c = new TestCluster([1], { knobs: { promoteLaggingLearners: true, ...knobs } });
      c.elect(1);
      c.addJoiningNode(2);
      c.cut(1, 2);
      expect(c.changeConf(1, CC.CONF_CHANGE_TYPE_ADD_LEARNER, 2).ok).to.equal(true);
      expect(c.changeConf(1, CC.CONF_CHANGE_TYPE_PROMOTE_VOTER, 2).ok).to.equal(true);
      expect(c.raft(1).status().voters).to.deep.equal([1, 2]);
      expect(c.raft(2).status().voters).to.deep.equal([]);
      expect(c.raft(2).log.lastIndex()).to.equal(0);
      // CheckQuorum: 1 hears nothing from its new quorum and steps down. Then the link
      // comes back; every node is up from now on.
      c.tick(1, 2 * c.raft(1).cfg.electionTimeoutTicks);
      expect(c.raft(1).role).to.equal("follower");
      c.take(() => true);
      c.heal();
      return c;
    }

    it("hard case 7: a voter promoted before it heard anything (empty log and configuration) votes for the leader that stepped down", () => {
      const c = promotedBlind({});
      tickUntil(c, () => c.leaders().length === 1, 100);
      expect(c.leaders()).to.deep.equal([1]);
      expect(c.propose(1, "after").ok).to.equal(true);
      c.tickAll(2);
      expect(c.appliedData(2)).to.deep.equal(["after"]);
      expect(c.raft(2).status().voters).to.deep.equal([1, 2]);
    });

    it("hard case 7: with voteOnlyForConfiguredVoters the same cluster never elects again (the fix matters)", () => {
      const c = promotedBlind({ voteOnlyForConfiguredVoters: true });
      c.tickAll(300);
      expect(c.leaders()).to.deep.equal([]);
      const answers = seen(c, is(T.MESSAGE_TYPE_PRE_VOTE_RESPONSE, 2, 1));
      expect(answers.length).to.be.greaterThan(5);
      expect(answers.every((m) => m.reject)).to.equal(true);
    });

    /**
     * {1, 2} promote learner 3; 1 and 3 apply the promotion, 2 has the entry but has not
     * learned that it committed (lazy commit); then 1 dies.
     */
    function promotionUnappliedOn2(knobs: TestingKnobs): TestCluster {
      const c = new TestCluster([1, 2], { lazyCommit: true, knobs });
      c.elect(1);
      c.addJoiningNode(3);
      expect(c.changeConf(1, CC.CONF_CHANGE_TYPE_ADD_LEARNER, 3).ok).to.equal(true);
      c.tickAll(2);
      expect(c.changeConf(1, CC.CONF_CHANGE_TYPE_PROMOTE_VOTER, 3).ok).to.equal(true);
      c.tick(1); // the heartbeat that tells the commit index reaches 3 only
      deliverOnly(c, is(T.MESSAGE_TYPE_HEARTBEAT, 1, 3));
      c.take(() => true);
      c.crash(1);
      c.take(() => true);
      expect(c.raft(3).status().voters).to.deep.equal([1, 2, 3]);
      expect(c.raft(2).status().voters).to.deep.equal([1, 2]);
      expect(c.raft(2).log.lastIndex()).to.equal(c.raft(3).log.lastIndex());
      return c;
    }

    it("hard case 7: a voter that has not applied a promotion votes for the promoted node, so {2, 3} elect after 1 dies", () => {
      const c = promotionUnappliedOn2({});
      tickUntil(c, () => c.leaders().length === 1, 100);
      expect(c.leaders()).to.deep.equal([3]);
      expect(c.propose(3, "after").ok).to.equal(true);
      c.tickAll(2);
      for (const id of [2, 3]) expect(c.appliedData(id)).to.deep.equal(["after"]);
      expect(c.raft(2).status().voters).to.deep.equal([1, 2, 3]);
    });

    it("hard case 7: with voteOnlyForConfiguredVoters {2, 3} never elect after 1 dies (the fix matters)", () => {
      const c = promotionUnappliedOn2({ voteOnlyForConfiguredVoters: true });
      c.tickAll(300);
      expect(c.leaders()).to.deep.equal([]);
    });
  });
});
