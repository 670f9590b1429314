// Hard cases I-J (27-30): duplicated, reordered and stale messages; reads of security state.
// See /work/shared/notes/raft-hard-cases.md for the list and its sources.
import { expect } from "chai";
import { EntryType, type Message } from "../../src/gen/raft/v1/raft.js";
import { RaftInvariantError } from "../../src/raft/core/assert.js";
import { RaftLog } from "../../src/raft/core/log.js";
import type { TestingKnobs } from "../../src/raft/core/types.js";
import { is, makeMessage, seen, tickUntil } from "./hard-cases-helpers.js";
import { CC, data, T, TestCluster, text } from "./harness.js";

const manual = { preVote: false, checkQuorum: false };

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
      // The leader caps a heartbeat's commit index at what the follower acknowledged in
      // its term (as etcd does): node 2 acknowledged nothing, so it is told 0, not 9.
      const heartbeats = seen(c, is(T.MESSAGE_TYPE_HEARTBEAT, 3, 2));
      expect(heartbeats.length).to.be.greaterThan(0);
      expect(heartbeats.map((m) => m.commit).every((commit) => commit === 0)).to.equal(true);
      expect(c.raft(3).log.committed).to.equal(9);
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

    it("hard case 27: an append whose commit index is past the entries it verified commits only those", () => {
      for (const knobs of [{}, { followerCommitBeyondVerified: true }] as TestingKnobs[]) {
        const c = staleTail(knobs);
        // A delayed probe of leader 3: it matches at 6 and carries commit 9.
        c.deliver(
          makeMessage({
            type: T.MESSAGE_TYPE_APPEND,
            from: 3,
            to: 2,
            term: 3,
            index: 6,
            logTerm: 2,
            commit: 9,
          }),
        );
        const expected = knobs.followerCommitBeyondVerified ? 8 : 6; // 7 and 8 are the stale tail
        expect(c.raft(2).log.committed, JSON.stringify(knobs)).to.equal(expected);
      }
    });

    /**
     * Follower 2 holds and acknowledged "x", then is killed before it learned that "x"
     * committed (lazy commit, as in the runtime). No write follows.
     */
    function restartedHoldingCommitted(knobs: TestingKnobs): { c: TestCluster; index: number } {
      const c = new TestCluster([1, 2, 3], { lazyCommit: true, knobs });
      c.elect(1);
      const p = c.propose(1, "x");
      const index = p.ok && "index" in p ? p.index : 0;
      expect(c.appliedData(1)).to.deep.equal(["x"]);
      expect(c.raft(2).log.lastIndex()).to.equal(index);
      expect(c.appliedData(2)).to.deep.equal([]);
      c.crash(2);
      c.restart(2);
      expect(c.raft(2).log.committed).to.be.lessThan(index);
      expect(c.raft(1).progress.get(2)!.match).to.equal(c.raft(1).log.lastIndex()); // caught up: no append due
      return { c, index };
    }

    it("hard case 27: a restarted follower holding committed entries applies them from heartbeats, with no new write", () => {
      const { c, index } = restartedHoldingCommitted({});
      c.tickAll(2);
      expect(c.raft(2).log.committed).to.equal(index);
      expect(c.appliedData(2)).to.deep.equal(["x"]);
      // And a linearizable read on it is served without a write.
      c.raft(2).readIndex(data("read"));
      c.tickAll(2);
      expect(c.node(2).readStates.map((rs) => rs.index)).to.deep.equal([index]);
    });

    it("hard case 27: with heartbeatCommitCappedByVerified the restarted follower stays behind until a write (the fix matters)", () => {
      const { c, index } = restartedHoldingCommitted({ heartbeatCommitCappedByVerified: true });
      c.tickAll(50);
      expect(c.raft(2).log.committed).to.be.lessThan(index);
      expect(c.appliedData(2)).to.deep.equal([]);
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
