// RaftNode's member registry: raft id -> node id, carried by the membership
// configuration (bootstrap entries, conf change contexts) and by every snapshot,
// so it survives compaction, restarts and snapshot installs. Real RaftNodes on
// disk, wired by an in-process transport that records what the node tells it.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { Message, MessageType } from "../../../src/gen/raft/v1/raft.js";
import { PutRequest } from "../../../src/gen/testbed/kv/v1/kv.js";
import { silentLogger } from "../../../src/log/logger.js";
import { bootstrapState, joiningState } from "../../../src/raft/core/bootstrap.js";
import { DiskStorage } from "../../../src/raft/runtime/disk-storage.js";
import { ProposalDroppedError } from "../../../src/raft/runtime/errors.js";
import { encodeMemberContext, type Membership } from "../../../src/raft/runtime/members.js";
import { RaftNode } from "../../../src/raft/runtime/node.js";
import { KVStateMachine } from "../../../src/testbed/kv-state-machine.js";
import { LoopbackTransport } from "../../helpers/loopback-transport.js";
import { until } from "./transport-fixture.js";

const put = (key: string, value: string) =>
  PutRequest.encode({ key, value: new TextEncoder().encode(value) }).finish();

/** Waits for a node to lead and to have applied its term's first entry (no conf change before that). */
async function leading(node: RaftNode): Promise<void> {
  await until("member 1 to lead", () => node.leaderId() === 1);
  await node.propose(put("leading", "yes"));
}

const bindings = (m: Membership) => Object.fromEntries([...m.members].map(([id, b]) => [id, b.nodeId]));

describe("raft runtime: the member registry (raft id -> node id) travels with the configuration", function () {
  this.timeout(20_000);
  let base: string;
  const net = new Map<number, RaftNode>();

  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), "raft-members-"));
  });
  afterEach(async () => {
    for (const node of net.values()) await node.stop();
    net.clear();
    rmSync(base, { recursive: true, force: true });
  });

  async function startNode(
    id: number,
    opts: { founding?: boolean; restart?: boolean; snapshotEvery?: number } = {},
  ): Promise<{ node: RaftNode; transport: LoopbackTransport; kv: KVStateMachine }> {
    const initial = opts.founding
      ? bootstrapState(
          [id],
          new Map([[id, encodeMemberContext({ nodeId: `member-${id}`, address: `a${id}` })]]),
        )
      : joiningState();
    const dir = join(base, `m${id}`);
    const storage = opts.restart
      ? await DiskStorage.open(dir, id)
      : await DiskStorage.create(dir, id, initial);
    const kv = new KVStateMachine();
    const node = new RaftNode({
      id,
      storage,
      stateMachine: kv,
      logger: silentLogger(),
      tickMs: 10,
      snapshotEveryEntries: opts.snapshotEvery ?? 100_000,
      keepEntriesAfterSnapshot: 0,
    });
    const transport = new LoopbackTransport(id, net);
    net.set(id, node);
    node.start(transport);
    return { node, transport, kv };
  }

  it("binds founding voters from their bootstrap entries, a learner from its change, and unbinds on removal", async () => {
    const { node, transport } = await startNode(1, { founding: true });
    await leading(node);
    expect(bindings(transport.current)).to.deep.equal({ 1: "member-1" });
    expect(transport.current.members.get(1)?.address).to.equal("a1");

    await node.addLearner(2, { nodeId: "member-2", address: "a2" });
    expect(bindings(transport.current)).to.deep.equal({ 1: "member-1", 2: "member-2" });
    // One node is one member: a second raft id for member-2's certificate stays unbound (fails closed).
    await node.addLearner(3, { nodeId: "member-2", address: "a3" });
    expect(bindings(transport.current)).to.deep.equal({ 1: "member-1", 2: "member-2" });
    // A member without a node id is refused before it reaches the log.
    try {
      await node.addLearner(4, { nodeId: "", address: "a4" });
      expect.fail("a learner without a node id was accepted");
    } catch (err) {
      expect(err).to.be.instanceOf(ProposalDroppedError);
    }

    await node.remove(2);
    expect(bindings(transport.current)).to.deep.equal({ 1: "member-1" });
    expect([...transport.current.removed]).to.deep.equal([2]);
  });

  it("keeps the bindings in its snapshots: restarted after compaction, it knows every member before replaying", async () => {
    const first = await startNode(1, { founding: true, snapshotEvery: 5 });
    await leading(first.node);
    await first.node.addLearner(2, { nodeId: "member-2", address: "a2" });
    for (let i = 0; i < 12; i++) await first.node.propose(put(`k${i}`, `v${i}`));
    await first.node.stop();
    net.delete(1);

    const restarted = await startNode(1, { restart: true });
    // The first view is handed over at start, before any entry is applied: it comes from the snapshot.
    expect(bindings(restarted.transport.views[0]!)).to.deep.equal({ 1: "member-1", 2: "member-2" });
    await until("the restarted member to replay the log", () => restarted.kv.get("k11") !== undefined);
    expect(restarted.kv.get("k11")?.value).to.deep.equal(new TextEncoder().encode("v11"));
  });

  it("a new member that installs a snapshot gets the bindings with it", async () => {
    const leader = await startNode(1, { founding: true, snapshotEvery: 5 });
    await leading(leader.node);
    for (let i = 0; i < 12; i++) await leader.node.propose(put(`k${i}`, `v${i}`));
    const joiner = await startNode(2);
    await leader.node.addLearner(2, { nodeId: "member-2", address: "a2" });
    await until("member 2 to install the snapshot", () => joiner.kv.get("k11") !== undefined);
    expect(joiner.transport.views.some((v) => v.members.get(1)?.nodeId === "member-1")).to.equal(true);
    await until("member 2 to apply its own addition", () => joiner.transport.current.members.has(2));
    expect(bindings(joiner.transport.current)).to.deep.equal({ 1: "member-1", 2: "member-2" });
    expect(joiner.kv.get("k0")?.value).to.deep.equal(new TextEncoder().encode("v0"));
  });

  it("tells whom it heard from lately: a member answering the leader, not one that stopped or never spoke", async () => {
    const leader = await startNode(1, { founding: true });
    await leading(leader.node);
    const joiner = await startNode(2);
    await leader.node.addLearner(2, { nodeId: "member-2", address: "a2" });
    await until("member 2 to have answered the leader", () => leader.node.heardFrom(2, 100));
    expect(leader.node.heardFrom(3, 1_000_000), "a member never heard").to.equal(false);
    await joiner.node.stop();
    net.delete(2);
    // Ticks of 10 ms: silent for more than 100 ms, it is no longer heard lately (still heard at all).
    await until("member 2 to fall silent", () => !leader.node.heardFrom(2, 100));
    expect(leader.node.heardFrom(2, 1_000_000)).to.equal(true);
    // A member that can send but not receive only campaigns: its pre-votes are not answers.
    leader.node.onMessage(
      Message.fromPartial({ type: MessageType.MESSAGE_TYPE_PRE_VOTE, from: 2, to: 1, term: 1_000 }),
    );
    expect(leader.node.heardFrom(2, 100), "a pre-vote is not an answer").to.equal(false);
  });
});
