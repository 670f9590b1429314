import { expect } from "chai";
import { data, T, TestCluster } from "./harness.js";

describe("raft: a batch of proposals is one append (group commit in the core)", () => {
  const commands = ["a", "b", "c", "d", "e"];

  it("the leader appends the whole batch and sends it to each follower in one message", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    const r = c.raft(1).proposeBatch(commands.map(data));
    expect(r.ok).to.equal(true);
    c.process(1);
    const appends = c.take((m) => m.type === T.MESSAGE_TYPE_APPEND && m.entries.length > 0);
    expect(appends.map((m) => m.to).sort()).to.deep.equal([2, 3]);
    for (const m of appends)
      expect(m.entries.map((e) => new TextDecoder().decode(e.data))).to.deep.equal(commands);
    for (const m of appends) c.deliver(m);
    c.deliverAll();
    for (const id of [1, 2, 3]) expect(c.appliedData(id)).to.deep.equal(commands);
  });

  it("a follower forwards the batch to the leader in one message, in order", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    expect(c.raft(3).proposeBatch(commands.map(data)).ok).to.equal(true);
    c.process(3);
    const forwarded = c.take((m) => m.type === T.MESSAGE_TYPE_PROPOSE);
    expect(forwarded).to.have.length(1);
    expect(forwarded[0].entries).to.have.length(commands.length);
    c.deliver(forwarded[0]);
    c.deliverAll();
    for (const id of [1, 2, 3]) expect(c.appliedData(id)).to.deep.equal(commands);
  });

  it("drops the whole batch, appending none of it, when the leader refuses it", () => {
    const c = new TestCluster([1, 2, 3], { maxUncommittedBytes: 8 });
    c.elect(1);
    c.isolate(1); // nothing commits, so the uncommitted budget fills
    expect(c.raft(1).proposeBatch([data("first")]).ok).to.equal(true);
    const before = c.raft(1).log.lastIndex();
    const r = c.raft(1).proposeBatch(commands.map(data));
    expect(r.ok).to.equal(false);
    expect(c.raft(1).log.lastIndex()).to.equal(before);
  });
});
