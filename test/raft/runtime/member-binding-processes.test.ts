// The member-bound Raft transport against real processes on loopback (issue 9,
// section 2): forged Raft messages from certificates that are not members change
// nothing, and a member that missed the addition of the current leader still
// catches up (it asks the members it knows who the newcomer is).
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { expect } from "chai";
import { refusalReasonOf } from "../../../src/ca/tls/authorization.js";
import { EntryType, type Message, MessageType } from "../../../src/gen/raft/v1/raft.js";
import { RaftTransportServiceClient } from "../../../src/gen/raft/v1/transport.js";
import { PutRequest } from "../../../src/gen/testbed/kv/v1/kv.js";
import { silentLogger } from "../../../src/log/logger.js";
import { wrap } from "../../../src/raft/runtime/envelope.js";
import { loadCredentialHolder } from "../../../src/testbed/dev-pki.js";
import { LocalCluster, waitFor } from "../../../src/testbed/local-cluster.js";
import { heartbeat } from "./transport-fixture.js";

/** Sends Raft messages to a member the way a peer would, holding the certificates in `certDir`. */
async function forge(
  c: LocalCluster,
  certDir: string,
  to: number,
  messages: Message[],
): Promise<grpc.ServiceError | null> {
  const credentials = loadCredentialHolder(certDir, silentLogger()).channelCredentials({
    clusterId: c.clusterId,
    expectedServerRole: "manager",
  });
  const client = new RaftTransportServiceClient(c.members.get(to)!.address, credentials, {
    "grpc.ssl_target_name_override": "manager",
    "grpc.use_local_subchannel_pool": 1,
  });
  try {
    return await new Promise((resolve) => {
      const call = client.send((err) => resolve(err));
      call.write({ messages });
      call.end();
    });
  } finally {
    client.close();
  }
}

function forgedAppend(from: number, to: number, term: number, lastIndex: number): Message {
  const data = wrap(
    randomBytes(16),
    PutRequest.encode({ key: "forged", value: Buffer.from("evil") }).finish(),
  );
  return {
    ...heartbeat(from, to, term),
    type: MessageType.MESSAGE_TYPE_APPEND,
    logTerm: term,
    index: lastIndex,
    entries: [{ term, index: lastIndex + 1, type: EntryType.ENTRY_TYPE_NORMAL, data }],
    commit: lastIndex + 1,
  };
}

describe("raft runtime: the member-bound transport between real processes", function () {
  this.timeout(90_000);
  let cluster: LocalCluster | undefined;

  afterEach(async () => {
    await cluster?.close();
    cluster = undefined;
  });

  it("forged heartbeats and appends from the operator's or a non-member manager's certificate change nothing", async () => {
    const baseDir = mkdtempSync(join(tmpdir(), "raft-forged-"));
    const c = await LocalCluster.start({ size: 3, baseDir });
    cluster = c;
    const leader = await waitFor("a leader", 15_000, () => c.agreedLeader());
    for (let i = 0; i < 10; i++) await c.put(leader, `k${i}`, `v${i}`);
    const before = await c.status(leader);
    const [f1, f2] = [1, 2, 3].filter((id) => id !== leader) as [number, number];
    const stranger = join(baseDir, "stranger");
    await c.writeIdentity({ role: "manager", nodeId: "member-9" }, stranger);

    for (const [who, dir] of [
      ["operator", c.operatorDir],
      ["non-member manager", stranger],
    ] as const) {
      const attempts: [number, Message[]][] = [
        // A heartbeat of a higher term would make the leader follow the sender.
        [leader, [heartbeat(9, leader, before.term + 1), heartbeat(f1, leader, before.term + 1)]],
        // An append in the leader's name would put an entry the leader never wrote at f1's next index.
        [f1, [forgedAppend(leader, f1, before.term, before.lastIndex)]],
        [f2, [forgedAppend(9, f2, before.term + 1, before.lastIndex)]],
      ];
      for (const [to, messages] of attempts) {
        const err = await forge(c, dir, to, messages);
        if (who === "operator") {
          expect(err?.code, who).to.equal(grpc.status.PERMISSION_DENIED);
          expect(refusalReasonOf(err!), who).to.equal("WRONG_ROLE");
        } else {
          expect(err, who).to.equal(null); // the stream is taken; its messages are dropped
        }
      }
    }

    // A real write after the forgeries: every member must apply it, and nothing else.
    const { index } = await c.put(leader, "after", "real");
    for (const id of [1, 2, 3]) {
      await waitFor(`member ${id} to apply the real write`, 10_000, async () =>
        (await c.status(id)).applied >= index ? true : undefined,
      );
    }
    const statuses = await Promise.all([1, 2, 3].map((id) => c.status(id)));
    for (const s of statuses) {
      expect(s.lead, `member ${s.id}'s leader`).to.equal(leader);
      expect(s.term, `member ${s.id}'s term`).to.equal(before.term);
    }
    for (const id of [1, 2, 3]) {
      expect(await c.get(id, "forged"), `member ${id}`).to.deep.include({ found: false });
      expect(await c.get(id, "after"), `member ${id}`).to.deep.equal({ found: true, value: "real", index });
      expect(await c.get(id, "k9"), `member ${id}`).to.deep.include({ found: true, value: "v9" });
    }
    expect(c.logOf(leader)).to.contain("SENDER_MISMATCH").and.to.contain("UNKNOWN_SENDER");
    expect(c.logOf(f1)).to.contain("SENDER_MISMATCH");
  });

  it("a member that was down while a newcomer joined and took over as leader catches up when it restarts", async () => {
    const c = await LocalCluster.start({
      size: 3,
      baseDir: mkdtempSync(join(tmpdir(), "raft-missed-")),
      tickMs: 50,
    });
    cluster = c;
    const leader = await waitFor("a leader", 15_000, () => c.agreedLeader());
    const [down, other] = [1, 2, 3].filter((id) => id !== leader) as [number, number];
    const acked: { key: string; value: string; index: number }[] = [];
    const write = async (via: number, key: string) =>
      acked.push({ key, value: key, ...(await c.put(via, key, key)) });
    for (let i = 0; i < 5; i++) await write(leader, `before-${i}`);

    await c.kill(down);
    await c.define(4, true);
    await c.startMember(4);
    const four = c.members.get(4)!;
    await c.call(leader, (k) => k.addLearner, { id: 4, nodeId: four.nodeId, address: four.address });
    await waitFor("member 4 to catch up", 15_000, async () => {
      const [s, l] = await Promise.all([c.status(4), c.status(leader)]);
      return s.applied >= l.commit ? true : undefined;
    });
    await c.call(leader, (k) => k.promoteMember, { id: 4 });
    // A TimeoutNow reaching 4 before it applied its own promotion is ignored (as in etcd): wait for it.
    await waitFor("member 4 to see itself a voter", 10_000, async () =>
      (await c.status(4)).voters.includes(4) ? true : undefined,
    );
    await c.call(leader, (k) => k.transferLeadership, { id: 4 });
    await waitFor("member 4 to lead", 15_000, async () =>
      (await c.status(4)).role === "leader" ? true : undefined,
    );
    for (let i = 0; i < 5; i++) await write(4, `after-${i}`);

    // Its log has no entry naming member 4: it must learn who 4 is from the members it knows.
    await c.startMember(down);
    await waitFor(`member ${down} to follow member 4 and catch up`, 15_000, async () => {
      const [s, l] = await Promise.all([c.status(down), c.status(4)]);
      return s.lead === 4 && s.applied >= l.commit ? true : undefined;
    });
    expect(c.logOf(down)).to.contain("learned a member from its peers");
    for (const a of acked)
      expect(await c.get(down, a.key)).to.deep.equal({ found: true, value: a.value, index: a.index });
    expect((await c.status(other)).lead).to.equal(4);
  });
});
