// After a restart the transport's first view of the membership includes every
// configuration change of the durable log known committed, not only the
// snapshot's: a member removed after the last snapshot is refused from the first
// message on. (Second reading, F5.)
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { PutRequest } from "../../../src/gen/testbed/kv/v1/kv.js";
import { silentLogger } from "../../../src/log/logger.js";
import { bootstrapState } from "../../../src/raft/core/bootstrap.js";
import { DiskStorage } from "../../../src/raft/runtime/disk-storage.js";
import { InboundGuard } from "../../../src/raft/runtime/inbound-guard.js";
import { encodeMemberContext } from "../../../src/raft/runtime/members.js";
import { RaftNode } from "../../../src/raft/runtime/node.js";
import { KVStateMachine } from "../../../src/testbed/kv-state-machine.js";
import { LoopbackTransport } from "../../helpers/loopback-transport.js";
import { heartbeat, until } from "./transport-fixture.js";

const put = (k: string) => PutRequest.encode({ key: k, value: new TextEncoder().encode(k) }).finish();

describe("raft runtime: the membership a restarted member starts with", function () {
  this.timeout(20_000);
  let base: string;
  const nodes: RaftNode[] = [];
  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), "restart-members-"));
  });
  afterEach(async () => {
    for (const n of nodes.splice(0)) await n.stop();
    rmSync(base, { recursive: true, force: true });
  });

  async function open(restart: boolean, snapshotEveryEntries: number): Promise<RaftNode> {
    const dir = join(base, "m1");
    const contexts = new Map([[1, encodeMemberContext({ nodeId: "member-1", address: "a1" })]]);
    const storage = restart
      ? await DiskStorage.open(dir, 1)
      : await DiskStorage.create(dir, 1, bootstrapState([1], contexts));
    const node = new RaftNode({
      id: 1,
      storage,
      stateMachine: new KVStateMachine(),
      logger: silentLogger(),
      tickMs: 10,
      snapshotEveryEntries,
      keepEntriesAfterSnapshot: 0,
    });
    nodes.push(node);
    return node;
  }

  it("knows a member removed after the last snapshot is removed before its first round", async () => {
    const first = await open(false, 5);
    first.start(new LoopbackTransport(1, new Map()));
    await until("lead", () => first.leaderId() === 1);
    await first.propose(put("x"));
    await first.addLearner(2, { nodeId: "member-2", address: "a2" });
    for (let i = 0; i < 6; i++) await first.propose(put(`k${i}`)); // a snapshot binding member 2
    await first.remove(2); // logged after the snapshot
    await first.stop();
    nodes.splice(0);

    const again = await open(true, 100_000);
    const transport = new LoopbackTransport(1, new Map());
    again.start(transport);
    const view0 = transport.views[0]!;
    expect(view0.members.has(2)).to.equal(false);
    expect(view0.removed.has(2)).to.equal(true);
    expect(view0.removedNodeIds.has("member-2")).to.equal(true);
    const guard = new InboundGuard(1, (id) => view0.members.get(id), silentLogger());
    expect(guard.check(heartbeat(2, 1, 99), "member-2")).to.equal("UNKNOWN_SENDER");
    // Applying the replayed entries again never brings member 2 back, not even for a moment.
    await until(
      "the replayed entries applied",
      () => again.status().applied >= again.status().commit && again.status().commit > 0,
    );
    expect(transport.views.every((v) => !v.members.has(2))).to.equal(true);
  });
});
