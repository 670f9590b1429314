// Leader election (Raft paper §5.2, §5.4.1; thesis §9.6 PreVote, §6.2 CheckQuorum).
import { expect } from "chai";
import { T, TestCluster } from "./harness.js";
import {
  clusterWithLogs,
  deliveredOfType,
  liveTerms,
  termsAfterBootstrap,
  tickUntilLeader,
} from "./paper-helpers.js";

describe("Raft paper §5.2 leader election", () => {
  for (const size of [3, 5]) {
    it(`§5.2 elects one leader among ${size} nodes; every follower knows it and agrees on the term`, () => {
      const ids = Array.from({ length: size }, (_, i) => i + 1);
      const c = new TestCluster(ids);
      const termBefore = c.raft(1).term;
      c.elect(1);
      expect(c.leaders()).to.deep.equal([1]);
      for (const id of ids) {
        const s = c.raft(id).status();
        expect(s.term, `term of ${id}`).to.equal(termBefore + 1);
        expect(s.lead, `leader known by ${id}`).to.equal(1);
        expect(s.role).to.equal(id === 1 ? "leader" : "follower");
      }
      // The leader's first entry of its term commits everywhere by the next heartbeat (§5.4.2 no-op).
      c.tickAll(1);
      for (const id of ids) expect(c.raft(id).status().commit).to.equal(size + 1);
    });

    it(`§5.2 elects one leader among ${size} nodes by election timeouts alone`, () => {
      const ids = Array.from({ length: size }, (_, i) => i + 1);
      const c = new TestCluster(ids);
      const leader = tickUntilLeader(c);
      c.tickAll(3);
      expect(c.leaders()).to.deep.equal([leader]);
      const term = c.raft(leader).term;
      for (const id of ids) {
        expect(c.raft(id).status().lead).to.equal(leader);
        expect(c.raft(id).term).to.equal(term);
      }
    });
  }

  it("§5.2 split vote: three simultaneous candidates all fail, then randomized timeouts elect exactly one", () => {
    const c = new TestCluster([1, 2, 3], { preVote: false, checkQuorum: false });
    for (const id of [1, 2, 3]) c.raft(id).campaign();
    c.deliverAll();
    // Everyone voted for itself in term 2 and refused the others: nobody has a majority.
    expect(c.leaders()).to.deep.equal([]);
    for (const id of [1, 2, 3]) {
      expect(c.raft(id).term).to.equal(2);
      expect(c.raft(id).vote).to.equal(id);
    }
    const grants = deliveredOfType(c, T.MESSAGE_TYPE_VOTE_RESPONSE, (m) => !m.reject);
    expect(grants).to.deep.equal([]);
    const leader = tickUntilLeader(c);
    c.tickAll(5);
    expect(c.leaders()).to.deep.equal([leader]);
    const term = c.raft(leader).term;
    expect(term).to.be.greaterThan(2);
    expect(liveTerms(c)).to.deep.equal([term, term, term]);
  });

  it("§5.2 split vote: 4 nodes split 2-2, no leader in that term; a later term elects exactly one", () => {
    const c = new TestCluster([1, 2, 3, 4], { preVote: false, checkQuorum: false });
    // Node 2 hears only 1's request, node 4 only 3's.
    c.drop(
      (m) => m.type === T.MESSAGE_TYPE_VOTE && ((m.from === 1 && m.to === 4) || (m.from === 3 && m.to === 2)),
    );
    c.raft(1).campaign();
    c.raft(3).campaign();
    c.deliverAll();
    expect(c.leaders()).to.deep.equal([]);
    expect(c.raft(2).vote).to.equal(1);
    expect(c.raft(4).vote).to.equal(3);
    expect(c.raft(1).role).to.equal("candidate");
    expect(c.raft(3).role).to.equal("candidate");
    c.heal();
    const leader = tickUntilLeader(c);
    c.tickAll(5);
    expect(c.leaders()).to.deep.equal([leader]);
    expect(c.raft(leader).term).to.be.greaterThan(2);
    for (const id of [1, 2, 3, 4]) expect(c.raft(id).status().lead).to.equal(leader);
  });
});

describe("Raft paper §5.4.1 election restriction", () => {
  it("§5.4.1 a candidate with a stale log is refused, even at a higher term", () => {
    const c = new TestCluster([1, 2, 3], { preVote: false, checkQuorum: false });
    c.elect(1);
    c.isolate(3);
    c.propose(1, "a");
    c.propose(1, "b");
    expect(c.appliedData(2)).to.deep.equal(["a", "b"]);
    c.crash(1);
    c.heal();
    // Node 3 missed "a" and "b": node 2 refuses it although 3's term is higher.
    c.raft(3).campaign();
    c.raft(3).campaign(); // term 4, higher than anything node 2 has seen
    c.deliverAll();
    expect(c.raft(3).role).to.not.equal("leader");
    const refusals = deliveredOfType(c, T.MESSAGE_TYPE_VOTE_RESPONSE, (m) => m.from === 2 && m.to === 3);
    expect(refusals.length).to.be.greaterThan(0);
    expect(refusals.every((m) => m.reject)).to.equal(true);
    expect(c.raft(2).vote).to.not.equal(3);
    // Node 2, whose log is complete, wins; node 3 votes for it.
    c.raft(2).campaign();
    c.deliverAll();
    expect(c.leaders()).to.deep.equal([2]);
    c.propose(2, "c");
    expect(c.appliedData(3)).to.deep.equal(["a", "b", "c"]);
  });

  it("§5.4.1 up-to-date compares last term first: a longer log with an older last term is refused", () => {
    // Node 1: three entries of term 2. Node 2: one entry of term 3. Node 3 is down.
    const c = clusterWithLogs(
      [1, 2, 3],
      { 1: { terms: [2, 2, 2] }, 2: { terms: [3] }, 3: { terms: [] } },
      { preVote: false, checkQuorum: false },
    );
    c.crash(3);
    c.raft(1).campaign();
    c.deliverAll();
    const toOne = deliveredOfType(c, T.MESSAGE_TYPE_VOTE_RESPONSE, (m) => m.from === 2 && m.to === 1);
    expect(toOne.map((m) => m.reject)).to.deep.equal([true]);
    expect(c.raft(1).role).to.not.equal("leader");

    c.raft(2).campaign();
    c.deliverAll();
    const toTwo = deliveredOfType(c, T.MESSAGE_TYPE_VOTE_RESPONSE, (m) => m.from === 1 && m.to === 2);
    expect(toTwo.map((m) => m.reject)).to.deep.equal([false]);
    expect(c.leaders()).to.deep.equal([2]);
    // The shorter, newer log wins: node 1's term-2 entries are overwritten.
    expect(termsAfterBootstrap(c, 1, 3)).to.deep.equal(termsAfterBootstrap(c, 2, 3));
    expect(termsAfterBootstrap(c, 1, 3)).to.not.include(2);
  });

  it("§5.4.1 up-to-date compares index second: with equal last terms the shorter log is refused", () => {
    const c = clusterWithLogs(
      [1, 2, 3],
      { 1: { terms: [2, 2] }, 2: { terms: [2] }, 3: { terms: [] } },
      { preVote: false, checkQuorum: false },
    );
    c.crash(3);
    c.raft(2).campaign();
    c.deliverAll();
    const toTwo = deliveredOfType(c, T.MESSAGE_TYPE_VOTE_RESPONSE, (m) => m.from === 1 && m.to === 2);
    expect(toTwo.map((m) => m.reject)).to.deep.equal([true]);
    expect(c.raft(2).role).to.not.equal("leader");

    c.raft(1).campaign();
    c.deliverAll();
    const toOne = deliveredOfType(c, T.MESSAGE_TYPE_VOTE_RESPONSE, (m) => m.from === 2 && m.to === 1);
    expect(toOne.map((m) => m.reject)).to.deep.equal([false]);
    expect(c.leaders()).to.deep.equal([1]);
  });

  it("§5.4.1 control: with knob voteWithoutUpToDateCheck the stale candidate wins and overwrites the newer log", () => {
    const c = clusterWithLogs(
      [1, 2, 3],
      { 1: { terms: [2, 2, 2] }, 2: { terms: [3] }, 3: { terms: [] } },
      { preVote: false, checkQuorum: false, knobs: { voteWithoutUpToDateCheck: true } },
    );
    c.crash(3);
    c.raft(1).campaign();
    c.deliverAll();
    expect(c.leaders()).to.deep.equal([1]);
    // Node 2's newer entry (index 4, term 3) was overwritten by the stale leader's term-2 entries.
    c.tickAll(1);
    expect(c.raft(2).log.term(4)).to.equal(2);
    expect(termsAfterBootstrap(c, 2, 3)).to.deep.equal(termsAfterBootstrap(c, 1, 3));
  });

  it("§5.4.1 with PreVote the stale candidate is refused at the pre-vote and its term does not move", () => {
    const c = clusterWithLogs([1, 2, 3], { 1: { terms: [2] }, 2: { terms: [2, 2] }, 3: { terms: [] } });
    c.crash(3);
    const term = c.raft(1).term;
    c.raft(1).campaign();
    c.deliverAll();
    const pre = deliveredOfType(c, T.MESSAGE_TYPE_PRE_VOTE_RESPONSE, (m) => m.from === 2 && m.to === 1);
    expect(pre.map((m) => m.reject)).to.deep.equal([true]);
    expect(deliveredOfType(c, T.MESSAGE_TYPE_VOTE)).to.deep.equal([]);
    expect(c.raft(1).term).to.equal(term);
    expect(c.raft(2).term).to.equal(term);
  });
});

describe("Thesis §9.6 PreVote and §6.2 CheckQuorum", () => {
  it("§9.6 PreVote: a partitioned node rejoining does not disrupt the stable leader (term and leader unchanged)", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    const term = c.raft(1).term;
    c.isolate(3);
    c.tick(3, 60); // many election timeouts alone
    c.propose(1, "while-3-away");
    expect(c.raft(3).term).to.equal(term);
    c.heal();
    const votesBefore = deliveredOfType(c, T.MESSAGE_TYPE_VOTE).length;
    c.tickAll(40);
    expect(c.leaders()).to.deep.equal([1]);
    expect(liveTerms(c)).to.deep.equal([term, term, term]);
    expect(c.raft(3).status().lead).to.equal(1);
    expect(c.appliedData(3)).to.deep.equal(["while-3-away"]);
    // Node 3 did campaign: its pre-votes just never changed anyone's term.
    expect(deliveredOfType(c, T.MESSAGE_TYPE_PRE_VOTE, (m) => m.from === 3).length).to.be.greaterThan(0);
    expect(deliveredOfType(c, T.MESSAGE_TYPE_VOTE).length).to.equal(votesBefore);
  });

  it("§9.6 control: without PreVote and CheckQuorum the same rejoining node deposes the leader", () => {
    const c = new TestCluster([1, 2, 3], { preVote: false, checkQuorum: false });
    c.elect(1);
    const term = c.raft(1).term;
    c.isolate(3);
    c.tick(3, 60);
    c.propose(1, "while-3-away");
    expect(c.raft(3).term).to.be.greaterThan(term);
    c.heal();
    // Node 3's next election timeout sends vote requests at a term above the leader's.
    const t3 = c.raft(3).term;
    while (c.raft(3).term === t3) c.tick(3);
    c.deliverAll();
    expect(c.raft(1).role).to.equal("follower");
    expect(c.raft(1).term).to.equal(t3 + 1);
    const leader = tickUntilLeader(c);
    c.tickAll(3);
    const after = c.raft(leader).term;
    expect(after).to.be.greaterThan(term);
    // Node 1's leadership of `term` ended: it was a follower at a higher term at some point.
    const steppedDown = c
      .node(1)
      .readies.some((rd) => rd.softState?.role === "follower" && (rd.hardState?.term ?? 0) > term);
    expect(steppedDown).to.equal(true);
    expect(c.leaders()).to.deep.equal([leader]);
    expect(liveTerms(c)).to.deep.equal([after, after, after]);
  });

  it("§6.2 CheckQuorum: an isolated leader steps down within an election timeout", () => {
    const electionTimeoutTicks = 10;
    const c = new TestCluster([1, 2, 3], { electionTimeoutTicks });
    c.elect(1);
    c.tickAll(electionTimeoutTicks - 1);
    c.isolate(1);
    // This tick runs a quorum check (the followers answered within the last
    // timeout) and sends a heartbeat that is lost: from here on, silence.
    c.tick(1);
    expect(c.raft(1).role).to.equal("leader");
    c.tick(1, electionTimeoutTicks - 1);
    expect(c.raft(1).role).to.equal("leader");
    c.tick(1);
    expect(c.raft(1).role).to.equal("follower");
    expect(c.raft(1).status().lead).to.equal(0);
  });

  it("§6.2 CheckQuorum: isolated at any moment, a leader steps down within two election timeouts", () => {
    const electionTimeoutTicks = 10;
    for (let offset = 0; offset < electionTimeoutTicks; offset++) {
      const c = new TestCluster([1, 2, 3], { electionTimeoutTicks });
      c.elect(1);
      c.tickAll(offset);
      c.isolate(1);
      let ticks = 0;
      while (c.raft(1).role === "leader" && ticks < 3 * electionTimeoutTicks) {
        c.tick(1);
        ticks++;
      }
      expect(c.raft(1).role, `offset ${offset}`).to.equal("follower");
      expect(ticks).to.be.at.most(2 * electionTimeoutTicks);
      // The majority side elects a new leader.
      c.tick(2, 3 * electionTimeoutTicks);
      c.tick(3, 3 * electionTimeoutTicks);
      c.deliverAll();
      const majorityLeaders = c.leaders().filter((id) => id !== 1);
      expect(majorityLeaders.length).to.be.at.most(1);
    }
  });
});
