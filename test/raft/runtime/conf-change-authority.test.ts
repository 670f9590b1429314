// Membership changes are proposed on the leader only: a forwarded proposal that
// carries one is refused by the leader (any member, a learner included, could
// otherwise bind a stranger's certificate), and a follower refuses at once with a
// clear reason. (Second reading, F7.)
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import {
  ConfChange,
  ConfChangeType,
  EntryType,
  type Message,
  MessageType,
} from "../../../src/gen/raft/v1/raft.js";
import { PutRequest } from "../../../src/gen/testbed/kv/v1/kv.js";
import { silentLogger } from "../../../src/log/logger.js";
import { bootstrapState } from "../../../src/raft/core/bootstrap.js";
import { DiskStorage } from "../../../src/raft/runtime/disk-storage.js";
import { encodeMemberContext } from "../../../src/raft/runtime/members.js";
import { RaftNode } from "../../../src/raft/runtime/node.js";
import { KVStateMachine } from "../../../src/testbed/kv-state-machine.js";
import { LoopbackTransport } from "../../helpers/loopback-transport.js";
import { CC, confChange, TestCluster } from "../harness.js";
import { heartbeat, until } from "./transport-fixture.js";

const put = (k: string) => PutRequest.encode({ key: k, value: new TextEncoder().encode(k) }).finish();

describe("raft: membership changes are proposed on the leader only", function () {
  this.timeout(20_000);
  let dir: string;
  let node: RaftNode | undefined;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "conf-authority-"));
  });
  afterEach(async () => {
    await node?.stop();
    node = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it("the leader refuses a forwarded proposal carrying a configuration change (from a learner)", async () => {
    const contexts = new Map([[1, encodeMemberContext({ nodeId: "member-1", address: "a1" })]]);
    const storage = await DiskStorage.create(join(dir, "m1"), 1, bootstrapState([1], contexts));
    node = new RaftNode({
      id: 1,
      storage,
      stateMachine: new KVStateMachine(),
      logger: silentLogger(),
      tickMs: 10,
    });
    const transport = new LoopbackTransport(1, new Map());
    node.start(transport);
    await until("lead", () => node?.leaderId() === 1);
    // Its term's first entry applied: until then a new leader takes no membership change
    // (CONF_CHANGE_PENDING; a busy machine made this race show).
    await node.propose(put("leading"));
    await node.addLearner(2, { nodeId: "member-2", address: "a2" });
    const cc = ConfChange.encode({
      type: ConfChangeType.CONF_CHANGE_TYPE_ADD_LEARNER,
      nodeId: 7,
      context: encodeMemberContext({ nodeId: "stranger", address: "evil:1" }),
    }).finish();
    // What learner 2 (bound, so the transport delivers it) may forward: term 0, from 2.
    node.onMessage({
      ...heartbeat(2, 1, 0),
      type: MessageType.MESSAGE_TYPE_PROPOSE,
      entries: [{ term: 0, index: 0, type: EntryType.ENTRY_TYPE_CONF_CHANGE, data: cc }],
    });
    // A write after it: once it is applied, the forwarded change would have been too.
    const after = await node.propose(put("after"));
    expect(transport.views.some((v) => v.members.has(7))).to.equal(false);
    expect(node.status().learners).to.deep.equal([2]);
    // Normal entries forwarded by a member are still taken.
    node.onMessage({
      ...heartbeat(2, 1, 0),
      type: MessageType.MESSAGE_TYPE_PROPOSE,
      entries: [{ term: 0, index: 0, type: EntryType.ENTRY_TYPE_NORMAL, data: put("forwarded") }],
    });
    await until("the forwarded write", () => node!.status().commit > after.index);
  });

  it("a follower refuses a membership change at once, naming the leader", () => {
    const c = new TestCluster([1, 2, 3]);
    c.elect(1);
    const result = c.raft(2).proposeConfChange(confChange(CC.CONF_CHANGE_TYPE_ADD_LEARNER, 4));
    expect(result).to.deep.equal({
      ok: false,
      reason: "INVALID_CONF_CHANGE",
      message: "propose membership changes on the leader (member 1)",
    });
    expect(c.raft(2).hasReady() && c.raft(2).ready().messages).to.satisfy(
      (ms: Message[] | false) => !ms || ms.every((m) => m.type !== MessageType.MESSAGE_TYPE_PROPOSE),
    );
  });
});
