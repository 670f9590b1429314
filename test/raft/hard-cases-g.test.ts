// Hard cases G-H (22-26): durability, commit and votes.
// See /work/shared/notes/raft-hard-cases.md for the list and its sources.
import { expect } from "chai";
import { RaftInvariantError } from "../../src/raft/core/assert.js";
import { bootstrapState } from "../../src/raft/core/bootstrap.js";
import { Raft } from "../../src/raft/core/raft.js";
import { SeededRng } from "../../src/raft/core/rand.js";
import type { TestingKnobs } from "../../src/raft/core/types.js";
import { deliverOnly, electUntil, is, seen, tickUntil } from "./hard-cases-helpers.js";
import { CC, data, T, TestCluster, text } from "./harness.js";

const manual = { preVote: false, checkQuorum: false };

function appliedAt(c: TestCluster, id: number, index: number) {
  return c.node(id).applied.find((e) => e.index === index);
}

describe("raft hard cases G: durability", () => {
  describe("hard case 22", () => {
    /** Node 2 gets "x", sends what it sends before persisting, and dies before persisting. */
    function ackThenCrash(knobs: TestingKnobs): TestCluster {
      const c = new TestCluster([1, 2, 3], { knobs });
      c.elect(1);
      c.raft(1).propose(data("x"));
      c.process(1);
      const [app] = c.take(is(T.MESSAGE_TYPE_APPEND, 1, 2));
      c.take(() => true); // node 3 never hears of "x"
      const r2 = c.raft(2);
      r2.step(app);
      const rd = r2.ready();
      expect(rd.entries.map((e) => e.index)).to.deep.equal([5]);
      c.inflight.push(...rd.messages); // sent before the write
      c.crash(2); // the write never happens; messagesAfterPersist never leave
      c.cut(1, 3);
      c.deliverAll();
      c.restart(2);
      c.heal();
      expect(c.raft(2).log.lastIndex()).to.equal(4);
      return c;
    }

    it("hard case 22: a follower's append acknowledgement leaves only after the entries are durable", () => {
      const c = new TestCluster([1, 2, 3]);
      c.elect(1);
      c.raft(1).propose(data("x"));
      c.process(1);
      deliverOnly(c, is(T.MESSAGE_TYPE_APPEND, 1, 2));
      const rd = c.node(2).readies.find((r) => r.entries.some((e) => e.index === 5))!;
      expect(rd.messages.filter(is(T.MESSAGE_TYPE_APPEND_RESPONSE))).to.deep.equal([]);
      expect(rd.messagesAfterPersist.map((m) => [m.type, m.index])).to.deep.equal([
        [T.MESSAGE_TYPE_APPEND_RESPONSE, 5],
      ]);
    });

    it("hard case 22: a crash before the write loses no acknowledged entry", () => {
      const c = ackThenCrash({});
      expect(c.raft(1).log.committed).to.equal(4);
      expect(c.appliedData(1)).to.deep.equal([]);
      expect(seen(c, is(T.MESSAGE_TYPE_APPEND_RESPONSE, 2, 1)).filter((m) => m.index === 5)).to.deep.equal(
        [],
      );
    });

    it("hard case 22: with ackBeforePersist an entry commits on a lost write and is later overwritten (the guard matters)", () => {
      const c = ackThenCrash({ ackBeforePersist: true });
      expect(c.raft(1).log.committed).to.equal(5);
      expect(c.appliedData(1)).to.deep.equal(["x"]); // applied and acknowledged to the client
      c.crash(1);
      tickUntil(c, () => c.leaders().length === 1);
      const leader = c.leaders()[0];
      c.propose(leader, "y");
      expect(c.appliedData(2)).to.deep.equal(["y"]);
      // State-machine safety is gone: node 1 applied "x" at 5, the survivors something else.
      expect(text(appliedAt(c, 1, 5)!)).to.equal("x");
      expect(appliedAt(c, 2, 5)!.term).to.equal(c.raft(leader).term);
    });

    it("hard case 22: a leader counts itself toward commit only after advance() (its write is durable)", () => {
      const c = new TestCluster([1]);
      c.elect(1);
      const r = c.raft(1);
      const at = r.log.lastIndex() + 1;
      expect(r.propose(data("x"))).to.deep.include({ ok: true, index: at });
      expect(r.progress.get(1)?.match).to.equal(at - 1);
      expect(r.log.committed).to.equal(at - 1);
      const rd = r.ready();
      expect(rd.entries.map((e) => e.index)).to.deep.equal([at]);
      expect(rd.committedEntries.map((e) => e.index)).to.not.include(at);
      c.node(1).storage.persist(rd);
      r.advance();
      expect(r.progress.get(1)?.match).to.equal(at);
      expect(r.log.committed).to.equal(at);
      c.process(1);
      expect(c.appliedData(1)).to.deep.equal(["x"]);
    });
  });

  describe("hard case 23", () => {
    /** Nodes 1 and 3 both campaign in term 2; node 2 votes for 1, restarts, then hears node 3. */
    function voteRestartVote(knobs: TestingKnobs): TestCluster {
      const c = new TestCluster([1, 2, 3], { ...manual, knobs });
      c.raft(1).campaign();
      c.raft(3).campaign();
      c.processAll();
      const requests = c.take(() => true);
      c.deliver(requests.find(is(T.MESSAGE_TYPE_VOTE, 1, 2))!);
      deliverOnly(c, is(T.MESSAGE_TYPE_VOTE_RESPONSE, 2, 1));
      expect(c.raft(1).role).to.equal("leader");
      c.take(() => true);
      c.crash(2);
      c.restart(2);
      c.deliver(requests.find(is(T.MESSAGE_TYPE_VOTE, 3, 2))!);
      deliverOnly(c, is(T.MESSAGE_TYPE_VOTE_RESPONSE, 2, 3));
      return c;
    }

    it("hard case 23: the vote is in the persisted hard state of the Ready whose messagesAfterPersist grant it", () => {
      const c = new TestCluster([1, 2, 3]);
      c.elect(1);
      const rd = c.node(2).readies.find((r) => r.hardState?.vote === 1)!;
      expect(rd.hardState).to.deep.include({ term: 2, vote: 1 });
      expect(rd.messages.filter(is(T.MESSAGE_TYPE_VOTE_RESPONSE))).to.deep.equal([]);
      expect(rd.messagesAfterPersist.map((m) => [m.type, m.to, m.reject])).to.deep.equal([
        [T.MESSAGE_TYPE_VOTE_RESPONSE, 1, false],
      ]);
      expect(c.node(2).storage.hardState).to.deep.include({ term: 2, vote: 1 });
    });

    it("hard case 23: a restarted voter remembers its vote and refuses a second candidate in the same term", () => {
      const c = voteRestartVote({});
      expect(c.raft(2)).to.deep.include({ term: 2, vote: 1 });
      expect(seen(c, is(T.MESSAGE_TYPE_VOTE_RESPONSE, 2, 3)).map((m) => [m.term, m.reject])).to.deep.equal([
        [2, true],
      ]);
      expect(c.leaders()).to.deep.equal([1]);
    });

    it("hard case 23: with forgetVoteOnRestart two leaders share a term (the guard matters)", () => {
      const c = voteRestartVote({ forgetVoteOnRestart: true });
      expect(c.node(2).storage.hardState.vote).to.equal(0);
      expect(c.leaders()).to.deep.equal([1, 3]);
      expect([c.raft(1).term, c.raft(3).term]).to.deep.equal([2, 2]);
    });
  });

  describe("hard case 23: a single voter's own vote", () => {
    /** A single voter with a caught-up learner restarts: it must elect itself again. */
    function singleVoterWithLearner(knobs: TestingKnobs): TestCluster {
      const c = new TestCluster([1], { knobs });
      c.elect(1);
      c.addJoiningNode(2);
      expect(c.changeConf(1, CC.CONF_CHANGE_TYPE_ADD_LEARNER, 2).ok).to.equal(true);
      c.tickAll(2);
      c.propose(1, "x"); // its write makes the commit index covering the learner durable
      c.crash(1);
      c.restart(1);
      expect(c.raft(1).status().learners).to.deep.equal([2]);
      return c;
    }

    /** Drives node 1 one Ready at a time (ticking when it has none) until it leads. */
    function untilLeader(c: TestCluster): void {
      const r = c.raft(1);
      for (let i = 0; i < 100 && r.role !== "leader"; i++) if (!c.processOnce(1)) r.tick();
      expect(r.role).to.equal("leader");
    }

    it("hard case 23: a single voter sends nothing at a new term before that term and its vote are durable", () => {
      const c = singleVoterWithLearner({});
      const node = c.node(1);
      let durableTerm = node.storage.hardState.term;
      const from = node.readies.length;
      untilLeader(c);
      c.process(1);
      const readies = node.readies.slice(from);
      expect(readies.some((rd) => rd.messages.some((m) => m.type === T.MESSAGE_TYPE_APPEND))).to.equal(true);
      for (const rd of readies) {
        // rd.messages leave before rd is persisted: only terms already durable may appear.
        for (const m of rd.messages) expect(m.term, `message type ${m.type}`).to.be.at.most(durableTerm);
        if (rd.hardState) durableTerm = rd.hardState.term;
      }
      expect(durableTerm).to.equal(c.raft(1).term);
    });

    it("hard case 23: with selfVoteBeforePersist a single voter's appends at a new term leave before it is durable, and a crash makes it lead that term twice (the fix matters)", () => {
      const c = singleVoterWithLearner({ selfVoteBeforePersist: true });
      untilLeader(c);
      const r = c.raft(1);
      const term = r.term;
      expect(c.node(1).storage.hardState.term).to.be.lessThan(term); // leading a term not yet durable
      const rd = r.ready();
      expect(rd.hardState?.term).to.equal(term);
      const early = rd.messages.filter((m) => m.type === T.MESSAGE_TYPE_APPEND && m.term === term);
      expect(early.map((m) => m.to)).to.deep.equal([2]); // sent before the write, which never completes
      c.inflight.push(...rd.messages);
      c.crash(1);
      c.deliverAll();
      expect(c.raft(2).term).to.equal(term);
      c.restart(1);
      expect(c.raft(1).term).to.be.lessThan(term);
      untilLeader(c);
      expect(c.raft(1).term).to.equal(term); // the same node leads the same term a second time
    });
  });

  describe("hard case 24 (N/A: torn tails are the storage runtime's job)", () => {
    it("hard case 24: N/A - the core refuses a restart state whose commit index lies past a (truncated) log tail", () => {
      const boot = bootstrapState([1, 2, 3]);
      const torn = { ...boot, hardState: { ...boot.hardState, commit: 5 } };
      expect(() => new Raft({ id: 1, rng: new SeededRng(1) }, torn)).to.throw(
        RaftInvariantError,
        /commit index/,
      );
    });

    it("hard case 24: N/A - the core resumes from the persisted applied index: no re-delivery, its changes active", () => {
      const r = new Raft({ id: 1, rng: new SeededRng(1) }, { ...bootstrapState([1, 2, 3]), applied: 2 });
      expect(r.status()).to.deep.include({ applied: 2, voters: [1, 2] });
      const rd = r.ready();
      expect(rd.committedEntries.map((e) => e.index)).to.deep.equal([3]);
      r.advance();
      expect(r.status()).to.deep.include({ applied: 3, voters: [1, 2, 3] });
    });
  });
});

describe("raft hard cases H: commit and votes", () => {
  describe("hard case 25", () => {
    /**
     * Raft Figure 8 with 5 nodes: S1 (term 2) puts "a" at 7 on S2 only; S5 (term 3) puts its own
     * entry at 7 on itself only; S1 (term 4) then replicates "a" to a majority, its noop at 8 to no one.
     */
    function figure8(knobs: TestingKnobs): TestCluster {
      const c = new TestCluster([1, 2, 3, 4, 5], { ...manual, maxMsgBytes: 1, knobs });
      c.elect(1);
      c.raft(1).propose(data("a"));
      c.process(1);
      deliverOnly(c, is(T.MESSAGE_TYPE_APPEND, 1, 2));
      c.take(() => true);
      c.crash(1);
      c.drop(is(T.MESSAGE_TYPE_APPEND, 5));
      c.elect(5);
      expect(c.leaders()).to.deep.equal([5]);
      expect(c.raft(5).log.term(7)).to.equal(3);
      c.crash(5);
      c.heal();
      c.restart(1);
      // S1's noop (8) reaches no one who already holds "a"; a probe may still be refused.
      c.drop(
        (m) =>
          is(T.MESSAGE_TYPE_APPEND)(m) &&
          m.entries.some((e) => e.index === 8) &&
          c.raft(m.to).log.term(7) === 2,
      );
      electUntil(c, 1);
      expect(c.raft(1).term).to.equal(4);
      expect([2, 3, 4].map((id) => c.raft(id).log.term(7))).to.deep.equal([2, 2, 2]);
      return c;
    }

    it("hard case 25: an old-term entry on a majority is not committed by counting replicas (Figure 8)", () => {
      const c = figure8({});
      expect(c.raft(1).log.committed).to.equal(6);
      expect(c.appliedData(1)).to.deep.equal([]);
      c.heal();
      // The term-4 noop reaches a majority: now "a" commits with it.
      tickUntil(c, () => [1, 2, 3, 4].every((id) => c.raft(id).log.applied === 8), 5);
      expect(c.raft(1).log.committed).to.equal(8);
      for (const id of [1, 2, 3, 4]) expect(c.appliedData(id)).to.deep.equal(["a"]);
    });

    it("hard case 25: with commitOldTermEntries a committed entry is later overwritten (the guard matters)", () => {
      const c = figure8({ commitOldTermEntries: true });
      expect(c.raft(1).log.committed).to.equal(7);
      expect(c.appliedData(1)).to.deep.equal(["a"]);
      c.crash(1);
      c.heal();
      c.restart(5);
      electUntil(c, 5); // S5's last term (3) beats "a"'s (2)
      c.tickAll(1);
      for (const id of [2, 3, 4]) expect(appliedAt(c, id, 7)?.term).to.equal(3);
      expect(text(appliedAt(c, 1, 7)!)).to.equal("a");
    });
  });

  describe("hard case 26", () => {
    /** Node 1 has a longer log of term 2; nodes 2 and 3 committed "x" in term 3. Node 2 is down. */
    function divergedLogs(knobs: TestingKnobs): TestCluster {
      const c = new TestCluster([1, 2, 3], { ...manual, knobs });
      c.elect(1);
      c.isolate(1);
      for (const s of ["s1", "s2", "s3"]) c.propose(1, s);
      c.elect(2);
      c.propose(2, "x");
      expect(c.raft(3).log.committed).to.equal(6);
      c.crash(2);
      c.crash(1); // node 1 restarts as a follower (it still led term 2, unaware)
      c.restart(1);
      c.heal();
      expect([c.raft(1).log.lastIndex(), c.raft(1).log.lastTerm()]).to.deep.equal([7, 2]);
      expect([c.raft(3).log.lastIndex(), c.raft(3).log.lastTerm()]).to.deep.equal([6, 3]);
      return c;
    }

    function campaignVotesOnly(c: TestCluster, id: number, rounds: number): void {
      for (let i = 0; i < rounds && c.raft(id).role !== "leader"; i++) {
        c.raft(id).campaign();
        c.process(id);
        deliverOnly(c, is(T.MESSAGE_TYPE_VOTE, id));
        deliverOnly(c, is(T.MESSAGE_TYPE_VOTE_RESPONSE, undefined, id));
      }
    }

    it("hard case 26: the up-to-date check compares last terms first: a longer log with an older last term loses", () => {
      const c = divergedLogs({});
      campaignVotesOnly(c, 1, 3);
      expect(c.raft(1).role).to.not.equal("leader");
      const answers = seen(c, is(T.MESSAGE_TYPE_VOTE_RESPONSE, 3, 1)).filter((m) => m.term >= 4);
      expect(answers.length).to.be.greaterThan(0);
      expect(answers.every((m) => m.reject)).to.equal(true);
      c.take(() => true);
      // The shorter log with the newer last term wins, and "x" survives.
      electUntil(c, 3);
      expect(c.appliedData(1)).to.deep.equal(["x"]);
      expect(c.raft(1).log.lastIndex()).to.equal(c.raft(3).log.lastIndex());
    });

    it("hard case 26: with voteWithoutUpToDateCheck a leader lacking a committed entry is elected (the guard matters)", () => {
      const c = divergedLogs({ voteWithoutUpToDateCheck: true });
      campaignVotesOnly(c, 1, 3);
      expect(c.raft(1).role).to.equal("leader");
      // Leader completeness is broken: node 3 committed "x" at 6, the new leader holds "s2" there.
      expect(text(c.raft(3).log.entryAt(6)!)).to.equal("x");
      expect(c.raft(3).log.committed).to.equal(6);
      expect(text(c.raft(1).log.entryAt(6)!)).to.equal("s2");
    });
  });
});

describe("raft hard cases G: durability of a configuration's commit (second reading, F1)", () => {
  it("a single voter left by a shrink elects itself again after kill -9 on an idle cluster", () => {
    // {1, 2} shrinks to {1}; 2 is then decommissioned. The commit index covering the
    // removal used to ride in a deferred commit-only hard state, lost at the crash, and
    // the restarted voter rebuilt {1, 2} and waited forever for 2's vote.
    const c = new TestCluster([1, 2]);
    c.elect(1);
    c.tickAll(2);
    expect(c.changeConf(1, CC.CONF_CHANGE_TYPE_REMOVE_NODE, 2).ok).to.equal(true);
    c.tickAll(3);
    expect(c.raft(1).status().voters).to.deep.equal([1]);
    const removal = c.raft(1).log.applied;
    c.crash(2);
    c.crash(1);
    expect(c.node(1).storage.hardState.commit, "the removal's commit is durable").to.be.at.least(removal);
    c.restart(1);
    expect(c.raft(1).status().voters).to.deep.equal([1]);
    c.tickAll(100);
    expect(c.leaders()).to.deep.equal([1]);
  });
});
