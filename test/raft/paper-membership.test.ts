// Membership changes (Raft paper §6, thesis §4: one server at a time, learners,
// removing the leader) and log compaction with snapshots (paper §7).
import { expect } from "chai";
import { EntryType } from "../../src/gen/raft/v1/raft.js";
import { CC, confChange, data, T, TestCluster } from "./harness.js";
import { deliveredOfType, tickUntilLeader } from "./paper-helpers.js";

/** Every live node's configuration, as "voters|learners". */
function configs(c: TestCluster): Record<number, string> {
  const out: Record<number, string> = {};
  for (const n of c.nodes.values()) {
    if (!n.raft) continue;
    const s = n.raft.status();
    out[n.id] = `${s.voters.join(",")}|${s.learners.join(",")}`;
  }
  return out;
}

/** Every member's configuration is `expected` (nodes waiting to join know none yet). */
function sameEverywhere(c: TestCluster, expected: string, ids = [1, 2, 3, 4]): void {
  const all = configs(c);
  for (const id of ids) expect(all[id], `configuration of node ${id}`).to.equal(expected);
}

describe("Raft paper §6 / thesis §4 membership changes", () => {
  it("§4.1 a membership change while another is pending is refused with CONF_CHANGE_PENDING", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    c.tickAll(1);
    c.addJoiningNode(4);
    c.addJoiningNode(5);
    const first = c.raft(1).proposeConfChange(confChange(CC.CONF_CHANGE_TYPE_ADD_LEARNER, 4));
    expect(first.ok).to.equal(true);
    const second = c.raft(1).proposeConfChange(confChange(CC.CONF_CHANGE_TYPE_ADD_LEARNER, 5));
    expect(second.ok === false && second.reason).to.equal("CONF_CHANGE_PENDING");
    // Normal proposals are not blocked.
    expect(c.raft(1).propose(data("normal")).ok).to.equal(true);
    c.deliverAll();
    c.tickAll(2);
    sameEverywhere(c, "1,2,3|4");
    expect(configs(c)[5]).to.equal("|"); // node 5 was never added
    // Once the first is applied, the next change is accepted.
    expect(c.changeConf(1, CC.CONF_CHANGE_TYPE_ADD_LEARNER, 5).ok).to.equal(true);
    c.tickAll(2);
    sameEverywhere(c, "1,2,3|4,5", [1, 2, 3, 4, 5]);
  });

  it("§4.1 a new leader accepts no membership change until an entry of its term is committed", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    c.tickAll(1);
    c.drop((m) => m.type === T.MESSAGE_TYPE_APPEND && m.from === 2);
    c.raft(1).transferLeader(2);
    c.deliverAll();
    expect(c.leaders()).to.deep.equal([2]);
    c.addJoiningNode(4);
    const early = c.raft(2).proposeConfChange(confChange(CC.CONF_CHANGE_TYPE_ADD_LEARNER, 4));
    expect(early.ok === false && early.reason).to.equal("CONF_CHANGE_PENDING");
    c.heal();
    c.tickAll(2);
    expect(c.changeConf(2, CC.CONF_CHANGE_TYPE_ADD_LEARNER, 4).ok).to.equal(true);
    c.tickAll(2);
    sameEverywhere(c, "1,2,3|4");
  });

  it("§4.2.2 removing the leader: it steps down once the change applies; the rest elect a leader and keep committing", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    c.propose(1, "before");
    c.tickAll(1);
    expect(c.changeConf(1, CC.CONF_CHANGE_TYPE_REMOVE_NODE, 1).ok).to.equal(true);
    c.tickAll(1);
    expect(c.raft(1).role).to.equal("follower");
    expect(c.raft(1).status().voters).to.deep.equal([2, 3]);
    const leader = tickUntilLeader(c);
    expect([2, 3]).to.include(leader);
    expect(c.raft(leader).term).to.be.greaterThan(2);
    c.propose(leader, "after");
    c.tickAll(2);
    for (const id of [2, 3]) {
      expect(c.appliedData(id)).to.deep.equal(["before", "after"]);
      expect(c.raft(id).status().voters).to.deep.equal([2, 3]);
    }
    // The removed node never campaigns again, and the quorum is now 2 of {2, 3}.
    const campaignsBy1 = () =>
      c.delivered.filter(
        (m) => m.from === 1 && (m.type === T.MESSAGE_TYPE_VOTE || m.type === T.MESSAGE_TYPE_PRE_VOTE),
      ).length;
    const before = campaignsBy1();
    c.tickAll(50);
    expect(campaignsBy1()).to.equal(before);
    expect(c.leaders()).to.deep.equal([leader]);
    const other = leader === 2 ? 3 : 2;
    c.crash(1);
    c.propose(other, "two-voters");
    c.tickAll(1);
    expect(c.appliedData(leader)).to.deep.equal(["before", "after", "two-voters"]);
  });

  it("§4.2.1 / §7 a learner catches up by snapshot, does not vote or count for quorum, then is promoted", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    for (const v of ["a", "b", "c"]) c.propose(1, v);
    c.tickAll(1);
    // The state machine snapshots at its applied index; the log before it is gone.
    const leader = c.raft(1);
    const snap = leader.compact(data("state:a,b,c"));
    c.node(1).storage.compact(snap);
    expect(snap.metadata!.index).to.equal(leader.status().applied);
    expect(leader.log.firstIndex()).to.equal(snap.metadata!.index + 1);

    c.addJoiningNode(4);
    expect(c.changeConf(1, CC.CONF_CHANGE_TYPE_ADD_LEARNER, 4).ok).to.equal(true);
    c.tickAll(2);
    const snapshots = deliveredOfType(c, T.MESSAGE_TYPE_SNAPSHOT, (m) => m.to === 4);
    expect(snapshots).to.have.length(1);
    expect(snapshots[0].snapshot!.metadata!.index).to.equal(snap.metadata!.index);
    // The learner restored the snapshot (state and configuration) and then took the entries after it.
    const learner = c.raft(4);
    expect(learner.log.snapshotIndex()).to.equal(snap.metadata!.index);
    expect(new TextDecoder().decode(c.node(4).storage.snapshot.data)).to.equal("state:a,b,c");
    expect(c.node(4).readies.some((rd) => rd.snapshot?.metadata?.index === snap.metadata!.index)).to.equal(
      true,
    );
    expect(c.logTerms(4)).to.deep.equal(c.logTerms(1).filter((e) => e.index > snap.metadata!.index));
    expect(learner.status().commit).to.equal(leader.status().commit);
    expect(learner.role).to.equal("follower");
    sameEverywhere(c, "1,2,3|4");
    c.propose(1, "d");
    c.tickAll(1);
    expect(c.appliedData(4)).to.deep.equal(["d"]); // a, b, c came in the snapshot

    // A learner neither campaigns nor is asked for votes.
    c.tick(4, 100);
    c.deliverAll();
    c.crash(1);
    tickUntilLeader(c);
    const votesInvolving4 = c.delivered.filter(
      (m) =>
        (m.from === 4 || m.to === 4) &&
        [
          T.MESSAGE_TYPE_VOTE,
          T.MESSAGE_TYPE_PRE_VOTE,
          T.MESSAGE_TYPE_VOTE_RESPONSE,
          T.MESSAGE_TYPE_PRE_VOTE_RESPONSE,
        ].includes(m.type),
    );
    expect(votesInvolving4).to.deep.equal([]);
    const newLeader = c.leaders()[0];
    expect([2, 3]).to.include(newLeader);
    c.restart(1);
    c.tickAll(2);

    // A learner's ack does not count: with the other voters cut off, nothing commits.
    const commit = c.raft(newLeader).status().commit;
    for (const id of [1, 2, 3]) if (id !== newLeader) c.cut(newLeader, id);
    const lonely = c.propose(newLeader, "learner-only");
    expect(lonely.ok).to.equal(true);
    expect(c.raft(4).log.lastIndex()).to.equal(c.raft(newLeader).log.lastIndex()); // replicated to 4 ...
    expect(c.raft(newLeader).status().commit).to.equal(commit); // ... not committed
    expect(c.appliedData(4)).to.not.include("learner-only");
    c.heal();
    c.tickAll(2);
    for (const id of [1, 2, 3, 4]) expect(c.appliedData(id)).to.include("learner-only");

    // Promotion: node 4 becomes a voter and can even lead.
    expect(c.changeConf(newLeader, CC.CONF_CHANGE_TYPE_PROMOTE_VOTER, 4).ok).to.equal(true);
    c.tickAll(2);
    sameEverywhere(c, "1,2,3,4|");
    c.raft(newLeader).transferLeader(4);
    c.deliverAll();
    expect(c.leaders()).to.deep.equal([4]);
    c.propose(4, "led-by-4");
    c.tickAll(1);
    for (const id of [1, 2, 3, 4]) expect(c.appliedData(id)).to.include("led-by-4");
  });
});

describe("Thesis §4.2.1 learners catch up before they vote", () => {
  it("§4.2.1 a learner is promoted only once it holds every committed entry: LEARNER_NOT_READY before", () => {
    const c = new TestCluster([1]);
    c.elect(1);
    c.addJoiningNode(2);
    c.cut(1, 2);
    expect(c.changeConf(1, CC.CONF_CHANGE_TYPE_ADD_LEARNER, 2).ok).to.equal(true);
    const early = c.raft(1).proposeConfChange(confChange(CC.CONF_CHANGE_TYPE_PROMOTE_VOTER, 2));
    expect(early.ok === false && early.reason).to.equal("LEARNER_NOT_READY");
    expect(early.ok === false && early.message).to.match(
      /learner 2 .* retry the promotion once it has caught up/,
    );
    c.deliverAll();
    expect(c.raft(1).status().voters).to.deep.equal([1]);
    // Partly caught up is not enough: it must hold every committed entry.
    c.heal();
    c.tickAll(2);
    c.cut(1, 2);
    c.propose(1, "a");
    const match = c.raft(1).progress.get(2)!.match;
    expect(match).to.be.greaterThan(0).and.lessThan(c.raft(1).log.committed);
    const partly = c.raft(1).proposeConfChange(confChange(CC.CONF_CHANGE_TYPE_PROMOTE_VOTER, 2));
    expect(partly.ok === false && partly.reason).to.equal("LEARNER_NOT_READY");
    c.heal();
    c.tickAll(2);
    expect(c.changeConf(1, CC.CONF_CHANGE_TYPE_PROMOTE_VOTER, 2).ok).to.equal(true);
    c.tickAll(2);
    sameEverywhere(c, "1,2|", [1, 2]);
    expect(c.appliedData(2)).to.deep.equal(["a"]);
  });

  it("§4.2.1 control: with knob promoteLaggingLearners a learner that holds nothing is promoted", () => {
    const c = new TestCluster([1], { knobs: { promoteLaggingLearners: true } });
    c.elect(1);
    c.addJoiningNode(2);
    c.cut(1, 2);
    expect(c.changeConf(1, CC.CONF_CHANGE_TYPE_ADD_LEARNER, 2).ok).to.equal(true);
    expect(c.changeConf(1, CC.CONF_CHANGE_TYPE_PROMOTE_VOTER, 2).ok).to.equal(true);
    expect(c.raft(1).status().voters).to.deep.equal([1, 2]);
    expect(c.raft(2).log.lastIndex()).to.equal(0);
  });
});

describe("Raft paper §6 membership change when the leader fails mid-change", () => {
  type Reach = "nobody" | "one follower";
  for (const change of ["ADD_LEARNER", "PROMOTE_VOTER"] as const) {
    for (const reach of ["nobody", "one follower"] as Reach[]) {
      it(`§6 leader proposes ${change} 4, its entry reaches ${reach}, it crashes: one configuration everywhere, still committing`, () => {
        const c = new TestCluster([1, 2, 3]);
        c.elect(1);
        c.tickAll(1);
        c.addJoiningNode(4);
        if (change === "PROMOTE_VOTER") {
          c.changeConf(1, CC.CONF_CHANGE_TYPE_ADD_LEARNER, 4);
          c.tickAll(2);
          sameEverywhere(c, "1,2,3|4");
        }
        const type =
          change === "ADD_LEARNER" ? CC.CONF_CHANGE_TYPE_ADD_LEARNER : CC.CONF_CHANGE_TYPE_PROMOTE_VOTER;
        const before = configs(c)[1];
        const p = c.raft(1).proposeConfChange(confChange(type, 4));
        expect(p.ok).to.equal(true);
        const index = p.ok && "index" in p ? p.index : -1;
        c.process(1);
        // The change reaches node 2 at most; the leader crashes before hearing any answer.
        const appends = c.take((m) => m.from === 1);
        if (reach === "one follower") {
          for (const m of appends) if (m.to === 2) c.deliver(m);
          expect(c.raft(2).log.entryAt(index)?.type).to.equal(EntryType.ENTRY_TYPE_CONF_CHANGE);
        }
        c.crash(1);
        c.take((m) => m.to === 1);
        expect(c.raft(2).status().commit).to.be.lessThan(index);

        const leader = tickUntilLeader(c);
        const hasIt = c.raft(leader).log.entryAt(index)?.type === EntryType.ENTRY_TYPE_CONF_CHANGE;
        // Node 3 lacks the entry; when node 2 has it, only node 2 can win (§5.4.1).
        expect(hasIt).to.equal(reach === "one follower");
        if (hasIt) expect(leader).to.equal(2);
        c.tickAll(2);
        c.restart(1);
        const after = tickUntilLeader(c);
        c.tickAll(3);
        const expected = hasIt ? (change === "ADD_LEARNER" ? "1,2,3|4" : "1,2,3,4|") : before;
        const members = expected
          .split(/[|,]/)
          .filter((x) => x !== "")
          .map(Number);
        expect(members).to.include.members([1, 2, 3]);
        sameEverywhere(c, expected, members);
        // Logs converge: the old leader's uncommitted entry is kept, or overwritten, alike everywhere.
        for (const id of members) expect(c.logTerms(id), `log of ${id}`).to.deep.equal(c.logTerms(after));
        expect(c.propose(after, "still-committing").ok).to.equal(true);
        c.tickAll(2);
        for (const id of members) expect(c.appliedData(id)).to.deep.equal(["still-committing"]);
        // And the cluster accepts the next membership change.
        const next = hasIt ? CC.CONF_CHANGE_TYPE_REMOVE_NODE : type;
        expect(c.changeConf(after, next, 4).ok).to.equal(true);
        c.tickAll(3);
        const final = hasIt ? "1,2,3|" : change === "ADD_LEARNER" ? "1,2,3|4" : "1,2,3,4|";
        for (const id of [1, 2, 3]) expect(configs(c)[id], `final configuration of ${id}`).to.equal(final);
      });
    }
  }
});
