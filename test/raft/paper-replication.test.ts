// Log replication and safety (Raft paper §5.3, §5.4.2, Figures 7 and 8).
import { expect } from "chai";
import type { TestingKnobs } from "../../src/raft/core/types.js";
import { T, TestCluster, text } from "./harness.js";
import {
  clusterWithLogs,
  deliveredOfType,
  liveTerms,
  replicasOf,
  termsAfterBootstrap,
} from "./paper-helpers.js";

describe("Raft paper §5.3 log replication", () => {
  it("§5.3 proposals forwarded by followers are committed and applied everywhere in order", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    const r2 = c.propose(2, "from-2");
    const r3 = c.propose(3, "from-3");
    const r1 = c.propose(1, "from-1");
    expect(r2).to.deep.equal({ ok: true, forwardedTo: 1 });
    expect(r3).to.deep.equal({ ok: true, forwardedTo: 1 });
    expect(r1.ok).to.equal(true);
    expect(deliveredOfType(c, T.MESSAGE_TYPE_PROPOSE).map((m) => [m.from, m.to])).to.deep.equal([
      [2, 1],
      [3, 1],
    ]);
    c.tickAll(1);
    for (const id of [1, 2, 3]) expect(c.appliedData(id)).to.deep.equal(["from-2", "from-3", "from-1"]);
  });

  it("§5.3 proposals with no known leader are dropped with NO_LEADER (before any election and mid-election)", () => {
    const c = new TestCluster([1, 2, 3], { preVote: false, checkQuorum: false });
    const before = c.raft(2).propose(new TextEncoder().encode("x"));
    expect(before.ok).to.equal(false);
    if (!before.ok) expect(before.reason).to.equal("NO_LEADER");
    // A candidate knows no leader either.
    c.raft(1).campaign();
    const candidate = c.raft(1).propose(new TextEncoder().encode("y"));
    expect(candidate.ok === false && candidate.reason).to.equal("NO_LEADER");
    c.deliverAll();
    expect(c.leaders()).to.deep.equal([1]);
    c.tickAll(1);
    for (const id of [1, 2, 3]) expect(c.appliedData(id)).to.deep.equal([]);
    expect(deliveredOfType(c, T.MESSAGE_TYPE_PROPOSE)).to.deep.equal([]);
  });

  it("§5.3 a leader with a partitioned minority keeps committing; the minority commits nothing", () => {
    const c = new TestCluster([1, 2, 3, 4, 5]);
    c.elect(1);
    const term = c.raft(1).term;
    c.partition([1, 2, 3], [4, 5]);
    const minorityCommit = c.raft(4).status().commit;
    // A proposal made in the minority is forwarded to the leader over a cut link: lost.
    expect(c.propose(4, "minority")).to.deep.equal({ ok: true, forwardedTo: 1 });
    for (const v of ["m1", "m2", "m3"]) {
      expect(c.propose(1, v).ok).to.equal(true);
      c.tickAll(1);
    }
    for (const id of [1, 2, 3]) expect(c.appliedData(id)).to.deep.equal(["m1", "m2", "m3"]);
    // The minority, ticking through many election timeouts, neither commits nor elects.
    c.tickAll(50);
    for (const id of [4, 5]) {
      expect(c.appliedData(id)).to.deep.equal([]);
      expect(c.raft(id).status().commit).to.equal(minorityCommit);
      expect(c.raft(id).role).to.not.equal("leader");
    }
    expect(c.leaders()).to.deep.equal([1]);
    c.heal();
    c.tickAll(3);
    expect(liveTerms(c)).to.deep.equal([term, term, term, term, term]);
    for (const id of [1, 2, 3, 4, 5]) expect(c.appliedData(id)).to.deep.equal(["m1", "m2", "m3"]);
    // The minority's proposal never reached a leader: it is not applied anywhere.
    for (const id of [1, 2, 3, 4, 5]) expect(c.appliedData(id)).to.not.include("minority");
  });

  it("§5.3 an old leader returning after a partition steps down; its uncommitted entries are overwritten", () => {
    // CheckQuorum off, so the cut-off leader keeps accepting proposals it cannot commit.
    const c = new TestCluster([1, 2, 3, 4, 5], { checkQuorum: false });
    c.elect(1);
    c.propose(1, "before");
    c.tickAll(1);
    const oldTerm = c.raft(1).term;
    c.partition([1, 2], [3, 4, 5]);
    const o1 = c.propose(1, "old-1");
    const o2 = c.propose(1, "old-2");
    expect(o1.ok && o2.ok).to.equal(true);
    c.tick(1, 3);
    c.deliverAll();
    expect(c.raft(2).log.lastIndex()).to.equal(c.raft(1).log.lastIndex()); // replicated to 2 ...
    expect(c.appliedData(1)).to.deep.equal(["before"]); // ... but not committed
    expect(c.appliedData(2)).to.deep.equal(["before"]);

    c.elect(3);
    expect(c.raft(3).role).to.equal("leader");
    const newTerm = c.raft(3).term;
    expect(newTerm).to.be.greaterThan(oldTerm);
    c.propose(3, "new-1");
    c.propose(4, "new-2");
    c.tickAll(1);
    expect(c.leaders().sort()).to.deep.equal([1, 3]); // two leaders, of different terms
    for (const id of [3, 4, 5]) expect(c.appliedData(id)).to.deep.equal(["before", "new-1", "new-2"]);

    c.heal();
    c.tickAll(3);
    expect(c.leaders()).to.deep.equal([3]);
    expect(c.raft(1).role).to.equal("follower");
    expect(c.raft(1).status().lead).to.equal(3);
    expect(liveTerms(c)).to.deep.equal([newTerm, newTerm, newTerm, newTerm, newTerm]);
    const leaderLog = c.logTerms(3);
    for (const id of [1, 2, 4, 5]) expect(c.logTerms(id), `log of ${id}`).to.deep.equal(leaderLog);
    for (const id of [1, 2, 3, 4, 5]) {
      expect(c.appliedData(id), `applied on ${id}`).to.deep.equal(["before", "new-1", "new-2"]);
    }
    // The old leader's entries are gone from every log.
    for (const id of [1, 2]) {
      const r = c.raft(id);
      for (let i = r.log.firstIndex(); i <= r.log.lastIndex(); i++) {
        const e = r.log.entryAt(i)!;
        expect(text(e)).to.not.match(/^old-/);
      }
    }
  });
});

/**
 * Figure 8, with the paper's S1..S5 as nodes 1..5 and its index 2 as index 7
 * (the bootstrap entries take 1..5 and the first leader's no-op 6). Each append
 * carries one entry (maxMsgBytes: 1), so in (c) the term-2 entry can reach S3
 * without the new leader's term-4 entry.
 */
function figure8(knobs: TestingKnobs): { c: TestCluster; x: number } {
  const c = new TestCluster([1, 2, 3, 4, 5], { preVote: false, checkQuorum: false, maxMsgBytes: 1, knobs });
  // (a) S1 leads term 2 and replicates index 7 ("x", term 2) to S2 only.
  c.elect(1);
  c.tickAll(1);
  expect(c.raft(1).term).to.equal(2);
  c.partition([1, 2], [3, 4, 5]);
  const px = c.propose(1, "x");
  expect(px.ok).to.equal(true);
  const x = px.ok && "index" in px ? px.index : -1;
  expect(x).to.equal(7);
  expect(replicasOf(c, x, 2)).to.equal(2);

  // (b) S1 crashes; S5 is elected for term 3 by S3, S4, S5 and writes index 7 (its no-op, term 3)
  // to its own log only.
  c.crash(1);
  c.heal();
  c.cut(5, 2);
  c.drop((m) => m.from === 5 && m.type === T.MESSAGE_TYPE_APPEND);
  c.elect(5);
  expect(c.leaders()).to.deep.equal([5]);
  expect(c.raft(5).term).to.equal(3);
  expect(c.raft(5).log.term(x)).to.equal(3);
  expect(replicasOf(c, x, 3)).to.equal(1);

  // (c) S5 crashes; S1 restarts and is elected for term 4 (S1, S2, S3, S4 vote). It replicates its
  // term-2 entry at index 7 to S3, but its own term-4 entry (index 8) reaches only S2.
  c.crash(5);
  c.heal();
  c.restart(1);
  c.drop((m) => m.type === T.MESSAGE_TYPE_APPEND && (m.to === 4 || m.to === 5));
  // Once S3 holds index 7, appends carrying the term-4 entry no longer reach it.
  c.drop(
    (m) =>
      m.type === T.MESSAGE_TYPE_APPEND &&
      m.to === 3 &&
      m.entries.some((e) => e.term === 4) &&
      c.raft(3).log.term(x) === 2,
  );
  c.raft(1).campaign(); // term 3: S3 and S4 already voted for S5 in term 3
  c.deliverAll();
  if (c.raft(1).role !== "leader") c.elect(1); // term 4
  expect(c.leaders()).to.deep.equal([1]);
  expect(c.raft(1).term).to.equal(4);
  expect(c.raft(3).log.term(x)).to.equal(2);
  expect(c.raft(3).log.lastIndex()).to.equal(x);
  return { c, x };
}

describe("Raft paper §5.4.2 committing entries from previous terms (Figure 8)", () => {
  it("Figure 8: an old-term entry on a majority is not committed by counting replicas", () => {
    const { c, x } = figure8({});
    // Index 7 (term 2) is on S1, S2, S3: a majority of five ...
    expect(replicasOf(c, x, 2)).to.equal(3);
    // ... while the current term's entry (index 8, term 4) is only on S1 and S2.
    expect(replicasOf(c, x + 1, 4)).to.equal(2);
    c.tickAll(3);
    // ... and still nobody commits or applies it.
    for (const id of [1, 2, 3, 4]) {
      expect(c.raft(id).status().commit, `commit of ${id}`).to.be.lessThan(x);
      expect(c.appliedData(id)).to.deep.equal([]);
    }

    // (d) Why: S1 crashes, S5 restarts and wins term 5 with S3's and S4's votes (its last term 3
    // beats their 2), then overwrites index 7 everywhere it reaches.
    c.crash(1);
    c.heal();
    c.restart(5);
    c.cut(5, 2); // S2 (last term 4) would refuse S5 anyway
    c.raft(5).campaign();
    c.deliverAll();
    if (c.raft(5).role !== "leader") c.elect(5);
    expect(c.leaders()).to.deep.equal([5]);
    c.heal();
    c.tickAll(3);
    for (const id of [2, 3, 4, 5]) {
      expect(c.raft(id).log.term(x), `term at ${x} on ${id}`).to.equal(3);
      expect(c.logTerms(id)).to.deep.equal(c.logTerms(5));
      expect(c.appliedData(id)).to.deep.equal([]);
    }
  });

  it("Figure 8: the old-term entry commits once an entry of the current term is on a majority", () => {
    const { c, x } = figure8({});
    expect(c.raft(1).status().commit).to.be.lessThan(x);
    // Let the term-4 entry reach S3: now (index 8, term 4) is on a majority and commits index 7 with it.
    c.heal();
    c.drop((m) => m.type === T.MESSAGE_TYPE_APPEND && (m.to === 4 || m.to === 5));
    c.tickAll(2);
    expect(replicasOf(c, x + 1, 4)).to.equal(3);
    expect(c.raft(1).status().commit).to.equal(x + 1);
    for (const id of [1, 2, 3]) expect(c.appliedData(id)).to.deep.equal(["x"]);
  });

  it("Figure 8 control: with knob commitOldTermEntries the same script commits the old-term entry", () => {
    const { c, x } = figure8({ commitOldTermEntries: true });
    // Same replicas: term-2 entry on three nodes, term-4 entry on two ...
    expect(replicasOf(c, x, 2)).to.equal(3);
    expect(replicasOf(c, x + 1, 4)).to.equal(2);
    // ... but the buggy leader counted replicas of the old-term entry and committed it.
    expect(c.raft(1).status().commit).to.equal(x);
    expect(c.appliedData(1)).to.deep.equal(["x"]);
  });
});

describe("Raft paper §5.3 log matching repair (Figure 7)", () => {
  it("Figure 7: followers missing entries, with extra entries, and with conflicting entries all end with the leader's log", () => {
    // Figure 7's logs after 7 bootstrap entries; the leader (node 1) is at term 7 and wins term 8.
    const leader = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    const followers: Record<number, number[]> = {
      2: [1, 1, 1, 4, 4, 5, 5, 6, 6], // (a) missing one entry
      3: [1, 1, 1, 4], // (b) missing many
      4: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6], // (c) one extra uncommitted entry
      5: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7], // (d) extra entries of a later term
      6: [1, 1, 1, 4, 4, 4, 4], // (e) missing and conflicting (term 4 where the leader has 5)
      7: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3], // (f) conflicting entries from terms 2 and 3
    };
    const logs: Record<number, { terms: number[]; term?: number }> = { 1: { terms: leader, term: 7 } };
    for (const [id, terms] of Object.entries(followers)) logs[Number(id)] = { terms };
    const ids = [1, 2, 3, 4, 5, 6, 7];
    const c = clusterWithLogs(ids, logs);
    c.elect(1);
    expect(c.leaders()).to.deep.equal([1]);
    expect(c.raft(1).term).to.equal(8);
    // (c) and (d) refused their votes: their logs are more up to date than the leader's.
    const refusedBy = deliveredOfType(c, T.MESSAGE_TYPE_PRE_VOTE_RESPONSE, (m) => m.to === 1 && m.reject)
      .map((m) => m.from)
      .sort();
    expect(refusedBy).to.deep.equal([4, 5]);

    c.propose(1, "after-repair");
    c.tickAll(2);
    const expected = [...leader, 8, 8];
    for (const id of ids) {
      expect(termsAfterBootstrap(c, id, ids.length), `log of ${id}`).to.deep.equal(expected);
      expect(c.raft(id).status().commit).to.equal(ids.length + expected.length);
    }
    // Every node applied the leader's entries, and nothing else, in the same order.
    const applied = c.node(1).applied.map((e) => `${e.term}@${e.index}`);
    for (const id of ids)
      expect(c.node(id).applied.map((e) => `${e.term}@${e.index}`)).to.deep.equal(applied);
    expect(c.appliedData(5)).to.not.include("t7@18");
    expect(c.appliedData(7)).to.not.include("t3@17");
  });
});
