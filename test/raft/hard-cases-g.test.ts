// Hard cases G-J (22-30): durability, commit and votes, stale messages, reads of security state.
// See /work/shared/notes/raft-hard-cases.md for the list and its sources.
import { expect } from "chai";
import { EntryType, type Message } from "../../src/gen/raft/v1/raft.js";
import { RaftInvariantError } from "../../src/raft/core/assert.js";
import { bootstrapState } from "../../src/raft/core/bootstrap.js";
import { RaftLog } from "../../src/raft/core/log.js";
import { Raft } from "../../src/raft/core/raft.js";
import { SeededRng } from "../../src/raft/core/rand.js";
import type { TestingKnobs } from "../../src/raft/core/types.js";
import { deliverOnly, electUntil, is, makeMessage, seen, tickUntil } from "./hard-cases-helpers.js";
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

describe("raft hard cases I: duplicated, reordered, stale messages", () => {
  describe("hard case 27", () => {
    /** Nodes 1 and 2 hold stale1/stale2 (term 2, never committed); leader 3 (term 3) commits y, z on 3, 4, 5. */
    function staleTail(knobs: TestingKnobs): TestCluster {
      const c = new TestCluster([1, 2, 3, 4, 5], { ...manual, knobs });
      c.elect(1);
      c.drop((m) => is(T.MESSAGE_TYPE_APPEND, 1)(m) && m.to !== 2);
      c.drop(is(T.MESSAGE_TYPE_APPEND_RESPONSE, 2));
      c.propose(1, "stale1");
      c.propose(1, "stale2");
      c.heal();
      c.crash(1);
      c.drop(is(T.MESSAGE_TYPE_APPEND, undefined, 2)); // node 2 hears only heartbeats
      c.elect(3);
      c.propose(3, "y");
      c.propose(3, "z");
      expect(c.raft(3).log.committed).to.equal(9);
      expect(c.raft(2).log.lastIndex()).to.equal(8);
      c.tick(3); // a heartbeat carrying commit 9
      c.deliverAll();
      return c;
    }

    it("hard case 27: a follower commits no further than the current leader's appends verified", () => {
      const c = staleTail({});
      expect(seen(c, is(T.MESSAGE_TYPE_HEARTBEAT, 3, 2)).map((m) => m.commit)).to.include(9);
      expect(c.raft(2).verifiedIndex).to.equal(0);
      expect(c.raft(2).log.committed).to.equal(6);
      expect(c.appliedData(2)).to.deep.equal([]);
      c.heal();
      c.tick(3);
      c.deliverAll();
      expect(c.appliedData(2)).to.deep.equal(["y", "z"]);
    });

    it("hard case 27: with followerCommitBeyondVerified the follower applies entries the cluster never committed (the guard matters)", () => {
      const c = staleTail({ followerCommitBeyondVerified: true });
      expect(c.raft(2).log.committed).to.equal(8);
      expect(c.appliedData(2)).to.deep.equal(["stale1", "stale2"]);
      expect(c.appliedData(4)).to.deep.equal(["y", "z"]);
    });
  });

  describe("hard case 28", () => {
    it("hard case 28: a duplicated or reordered append never truncates", () => {
      const c = new TestCluster([1, 2, 3]);
      c.elect(1);
      c.propose(1, "a");
      c.drop(is(T.MESSAGE_TYPE_APPEND_RESPONSE)); // b, c stay uncommitted
      c.raft(1).propose(data("b"));
      c.process(1);
      const early = structuredClone(c.inflight.find(is(T.MESSAGE_TYPE_APPEND, 1, 2))!);
      expect(early.entries.map((e) => e.index)).to.deep.equal([6]);
      c.deliverAll();
      c.propose(1, "c");
      const before = c.logTerms(2);
      expect(before.at(-1)).to.deep.equal({ index: 7, term: 2 });
      const readies = c.node(2).readies.length;
      c.deliver(early); // arrives again, after a later append
      expect(c.logTerms(2)).to.deep.equal(before);
      expect(
        c
          .node(2)
          .readies.slice(readies)
          .flatMap((rd) => rd.entries),
      ).to.deep.equal([]);
      expect(c.node(2).storage.entries.at(-1)?.index).to.equal(7);
    });

    it("hard case 28: a conflict truncates from the first conflicting entry only", () => {
      const c = new TestCluster([1, 2, 3]);
      c.elect(1);
      c.drop(is(T.MESSAGE_TYPE_APPEND_RESPONSE));
      for (const s of ["a", "b", "c"]) c.propose(1, s); // 5..7, uncommitted
      expect(c.raft(2).log.committed).to.equal(4);
      const readies = c.node(2).readies.length;
      // A leader of term 3 holds "a" at 5 and its own noop at 6.
      const a = c.raft(1).log.entryAt(5)!;
      c.deliver(
        makeMessage({
          type: T.MESSAGE_TYPE_APPEND,
          from: 3,
          to: 2,
          term: 3,
          index: 4,
          logTerm: 2,
          commit: 4,
          entries: [a, { index: 6, term: 3, type: EntryType.ENTRY_TYPE_NORMAL, data: new Uint8Array() }],
        }),
      );
      expect(c.logTerms(2).slice(4)).to.deep.equal([
        { index: 5, term: 2 },
        { index: 6, term: 3 },
      ]);
      const written = c
        .node(2)
        .readies.slice(readies)
        .flatMap((rd) => rd.entries);
      expect(written.map((e) => [e.index, e.term])).to.deep.equal([[6, 3]]); // storage rewrites from 6, not 5
      expect(
        c
          .node(2)
          .storage.entries.map((e) => e.index)
          .at(-1),
      ).to.equal(6);
    });

    it("hard case 28: a conflict at or below the commit index never truncates: it is answered with the commit index, and is fatal in the log", () => {
      const c = new TestCluster([1, 2, 3]);
      c.elect(1);
      c.propose(1, "a");
      expect(c.raft(2).log.committed).to.equal(5);
      const forged = makeMessage({
        type: T.MESSAGE_TYPE_APPEND,
        from: 3,
        to: 2,
        term: 3,
        index: 4,
        logTerm: 2,
        commit: 4,
        entries: [{ index: 5, term: 3, type: EntryType.ENTRY_TYPE_NORMAL, data: data("forged") }],
      });
      c.deliver(forged);
      expect(text(c.raft(2).log.entryAt(5)!)).to.equal("a");
      expect(c.take(is(T.MESSAGE_TYPE_APPEND_RESPONSE, 2, 3)).map((m) => [m.index, m.reject])).to.deep.equal([
        [5, false],
      ]);
      // The log itself treats such a truncation as an invariant violation.
      const log = new RaftLog(c.node(2).storage.snapshot, c.node(2).storage.entries, 5, 5);
      expect(() => log.maybeAppend(4, 2, forged.entries)).to.throw(RaftInvariantError, /at or below commit/);
    });
  });

  describe("hard case 29", () => {
    it("hard case 29: an acknowledgement at or below match is ignored", () => {
      const c = new TestCluster([1, 2, 3]);
      c.elect(1);
      for (const s of ["a", "b", "c"]) c.propose(1, s);
      const old = seen(c, is(T.MESSAGE_TYPE_APPEND_RESPONSE, 2, 1)).find((m) => m.index === 5)!;
      const pr = c.raft(1).progress.get(2)!;
      expect(pr).to.deep.include({ state: "replicate", match: 7, next: 8 });
      const mark = c.inflight.length;
      c.deliver(structuredClone(old));
      expect(pr).to.deep.include({ state: "replicate", match: 7, next: 8 });
      expect(c.inflight.length).to.equal(mark);
    });

    it("hard case 29: a node removed and re-added in the same term cannot take old replies into its new progress", () => {
      const c = new TestCluster([1, 2, 3]);
      c.elect(1);
      c.propose(1, "a");
      c.propose(1, "b");
      const old: Message = structuredClone(
        seen(c, is(T.MESSAGE_TYPE_APPEND_RESPONSE, 3, 1)).find((m) => m.index === 6)!,
      );
      expect(c.changeConf(1, CC.CONF_CHANGE_TYPE_REMOVE_NODE, 3).ok).to.equal(true);
      expect(c.raft(1).progress.has(3)).to.equal(false);
      // Node 3 comes back with an empty disk under the same id.
      c.crash(3);
      c.addJoiningNode(3);
      const readd = c.raft(1).proposeConfChange({
        type: CC.CONF_CHANGE_TYPE_ADD_LEARNER,
        nodeId: 3,
        context: new Uint8Array(),
      });
      expect(readd).to.deep.equal({
        ok: false,
        reason: "INVALID_CONF_CHANGE",
        message: "node 3 was removed in this term; re-add it after a leader change",
      });
      // Under a new term the old reply (term 2) is stale and dropped, whatever its index.
      c.raft(1).transferLeader(2);
      c.deliverAll();
      expect(c.leaders()).to.deep.equal([2]);
      c.drop(is(T.MESSAGE_TYPE_APPEND, 2, 3)); // the new member has not answered anything yet
      expect(c.changeConf(2, CC.CONF_CHANGE_TYPE_ADD_LEARNER, 3).ok).to.equal(true);
      c.deliver({ ...structuredClone(old), to: 2 });
      expect(c.raft(2).progress.get(3)).to.deep.include({ state: "probe", match: 0 });
      c.heal();
      const leader = c.leaders()[0];
      tickUntil(c, () => c.raft(3).log.committed === c.raft(leader).log.committed, 20);
      expect(c.appliedData(3)).to.deep.equal(["a", "b"]);
      expect(c.raft(leader).progress.get(3)?.match).to.equal(c.raft(leader).log.lastIndex());
    });
  });
});

describe("raft hard cases J: Jepsen", () => {
  describe("hard case 30 (N/A: reads of replicated security state live above the core)", () => {
    it("hard case 30: N/A - a deposed leader serves no read; a read through the majority sees the revocation", () => {
      const c = new TestCluster([1, 2, 3]);
      c.elect(1);
      c.isolate(1);
      c.raft(1).readIndex(data("role?"));
      c.tickAll(1);
      tickUntil(c, () => c.leaders().some((id) => id !== 1));
      const leader = c.leaders().find((id) => id !== 1)!;
      const revoke = c.propose(leader, "revoke node 9");
      expect(revoke.ok).to.equal(true);
      const revokedAt = c.node(leader).applied.find((e) => text(e) === "revoke node 9")!.index;
      c.tickAll(c.raft(1).cfg.electionTimeoutTicks);
      expect(c.raft(1).role).to.equal("follower"); // CheckQuorum deposed it
      expect(c.node(1).readStates).to.deep.equal([]); // the stale read was never answered
      c.heal();
      c.tickAll(2);
      expect(c.node(1).readStates).to.deep.equal([]);
      expect(c.raft(1).readIndex(data("role? again"))).to.deep.include({ ok: true, forwardedTo: leader });
      c.tickAll(2);
      expect(c.node(1).readStates).to.have.length(1);
      expect(c.node(1).readStates[0].index).to.be.at.least(revokedAt);
      expect(c.appliedData(1)).to.include("revoke node 9");
    });
  });
});
