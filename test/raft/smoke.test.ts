import { expect } from "chai";
import { TestCluster } from "./harness.js";

describe("raft harness smoke (§5.2 leader election, §5.3 log replication)", () => {
  it("elects a leader among 3 and replicates a proposal to all", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    expect(c.leaders()).to.deep.equal([1]);
    const r = c.propose(2, "x"); // forwarded by a follower
    expect(r.ok).to.equal(true);
    for (const id of [1, 2, 3]) expect(c.appliedData(id)).to.deep.equal(["x"]);
  });

  it("elects a leader by ticking alone", () => {
    const c = new TestCluster([1, 2, 3, 4, 5]);
    c.tickAll(30);
    expect(c.leaders()).to.have.length(1);
  });
});
