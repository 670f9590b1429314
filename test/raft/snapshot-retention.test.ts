// Keeping M entries behind a snapshot (DESIGN.md / issue 5: "snapshot every N
// entries, keep M entries after it"): a follower that is a little behind gets
// entries; one further behind gets the snapshot; restarts keep the retained log.
import { expect } from "chai";
import { data, T, TestCluster } from "./harness.js";

/** Leader 1 commits `n` proposals while node 3 is cut off, then snapshots keeping `keep` entries. */
function laggingFollower(n: number, keep: number): TestCluster {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.isolate(3);
  for (let i = 0; i < n; i++) c.propose(1, `p${i}`);
  const snap = c.raft(1).compact(data("state"), keep);
  c.node(1).storage.compact(snap, keep);
  return c;
}

const snapshotsTo = (c: TestCluster, to: number, from: number) =>
  c.delivered.slice(from).filter((m) => m.type === T.MESSAGE_TYPE_SNAPSHOT && m.to === to).length;

describe("raft: entries kept behind a snapshot", () => {
  it("compaction keeps the last M entries: the snapshot is at the applied index, the log starts M before it", () => {
    const c = laggingFollower(10, 4);
    const r = c.raft(1);
    expect(r.log.snapshotIndex()).to.equal(r.log.applied);
    expect(r.log.firstIndex()).to.equal(r.log.applied - 4 + 1);
    expect(r.log.term(r.log.firstIndex() - 1)).to.equal(2); // the offset's term is known
    expect(r.log.term(r.log.firstIndex() - 2)).to.equal(undefined);
  });

  it("a follower within the kept entries catches up with appends, not the snapshot", () => {
    const c = laggingFollower(6, 20);
    const mark = c.delivered.length;
    c.heal();
    c.tickAll(3);
    expect(snapshotsTo(c, 3, mark)).to.equal(0);
    expect(c.appliedData(3)).to.deep.equal(c.appliedData(1));
  });

  it("a follower behind the kept entries gets the snapshot", () => {
    const c = laggingFollower(12, 3);
    const mark = c.delivered.length;
    c.heal();
    c.tickAll(3);
    expect(snapshotsTo(c, 3, mark)).to.equal(1);
    expect(c.raft(3).log.snapshotIndex()).to.equal(c.raft(1).log.snapshotIndex());
    expect(c.raft(3).log.applied).to.equal(c.raft(1).log.applied);
  });

  it("a restart rebuilds the retained log from storage, offset term included", () => {
    const c = laggingFollower(10, 4);
    const before = c.logTerms(1);
    c.crash(1);
    c.restart(1);
    expect(c.logTerms(1)).to.deep.equal(before);
    expect(c.raft(1).log.snapshotIndex()).to.equal(before[before.length - 1].index);
  });

  it("keeping more entries than the log holds keeps them all", () => {
    const c = new TestCluster([1]);
    c.elect(1);
    c.propose(1, "x");
    const snap = c.raft(1).compact(data("s"), 1000);
    c.node(1).storage.compact(snap, 1000);
    expect(c.raft(1).log.firstIndex()).to.equal(1);
    expect(c.node(1).storage.load().entries[0].index).to.equal(1);
  });
});
