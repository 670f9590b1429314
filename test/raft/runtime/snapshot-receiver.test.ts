// SendSnapshot checks its sender on the first request, before holding any data,
// holds one reception per sender, and counts every refusal. (Second reading, F2.)
import * as grpc from "@grpc/grpc-js";
import { expect } from "chai";
import type { NodeTlsIdentity } from "../../../src/ca/tls/credential-holder.js";
import { type Message, MessageType } from "../../../src/gen/raft/v1/raft.js";
import { RaftTransportServiceClient, type SendSnapshotRequest } from "../../../src/gen/raft/v1/transport.js";
import {
  heartbeat,
  identity,
  type Member,
  membership,
  root,
  startMember,
  until,
} from "./transport-fixture.js";

function snapshotHeader(from: number, to: number): Message {
  return {
    ...heartbeat(from, to, 7),
    type: MessageType.MESSAGE_TYPE_SNAPSHOT,
    snapshot: {
      metadata: { index: 100, term: 7, confState: { voters: [from, to], learners: [] } },
      data: new Uint8Array(),
    },
  };
}

/** A snapshot stream held open by the test: `status` is set when the server answers. */
class SnapshotStream {
  status: grpc.ServiceError | null | undefined;
  private readonly call: grpc.ClientWritableStream<SendSnapshotRequest>;

  constructor(client: RaftTransportServiceClient) {
    this.call = client.sendSnapshot((err) => {
      this.status = err;
    });
  }
  write(req: SendSnapshotRequest): void {
    this.call.write(req);
  }
  async end(): Promise<grpc.ServiceError | null> {
    this.call.end();
    await until("the snapshot call's status", () => this.status !== undefined);
    return this.status ?? null;
  }
}

describe("raft transport: snapshot reception", function () {
  this.timeout(20_000);
  const started: Member[] = [];
  const clients: RaftTransportServiceClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await Promise.all(started.splice(0).map((m) => m.close()));
  });
  const base = {
    1: { nodeId: "member-1", address: "127.0.0.1:1" },
    2: { nodeId: "member-2", address: "127.0.0.1:1" },
  };
  async function one(maxSnapshotBytes?: number): Promise<Member> {
    const m = await startMember(1, identity("manager", "member-1"), membership(base), { maxSnapshotBytes });
    started.push(m);
    return m;
  }
  function stream(id: NodeTlsIdentity, address: string): SnapshotStream {
    const credentials = grpc.credentials.createSsl(
      Buffer.from(root.certificatePem),
      Buffer.from(id.privateKeyPem),
      Buffer.from(id.certificateChainPem),
    );
    const client = new RaftTransportServiceClient(address, credentials, {
      "grpc.ssl_target_name_override": "manager",
      "grpc.use_local_subchannel_pool": 1,
    });
    clients.push(client);
    return new SnapshotStream(client);
  }
  const chunk = new Uint8Array(64 * 1024);

  it("refuses a non-member's stream at its first request, while the stream is still open", async () => {
    const m = await one();
    const s = stream(identity("manager", "stranger"), m.address);
    s.write({ message: snapshotHeader(9, 1), data: chunk });
    s.write({ message: undefined, data: chunk });
    await until("a refusal before the stream ends", () => s.status !== undefined, 3_000);
    expect(s.status?.code).to.equal(grpc.status.PERMISSION_DENIED);
    expect(m.transport.stats().refusals.UNKNOWN_SENDER).to.equal(1);
    expect(m.delivered).to.deep.equal([]);
  });

  it("refuses a stream whose first request carries no header, at once, and counts it", async () => {
    const m = await one();
    const s = stream(identity("manager", "member-2"), m.address);
    s.write({ message: undefined, data: chunk });
    s.write({ message: snapshotHeader(2, 1), data: chunk });
    await until("a refusal before the stream ends", () => s.status !== undefined, 3_000);
    expect(s.status?.code).to.equal(grpc.status.INVALID_ARGUMENT);
    expect(m.transport.stats().refusals.SNAPSHOT_NO_HEADER).to.equal(1);
    expect(m.delivered).to.deep.equal([]);
  });

  it("holds one reception per sender, counts size refusals, and re-checks the sender at the end", async () => {
    const m = await one(256 * 1024);
    const member2 = identity("manager", "member-2");
    const first = stream(member2, m.address);
    first.write({ message: snapshotHeader(2, 1), data: chunk });
    await until("the first reception", () => m.transport.stats().receivingSnapshots === 1);
    const second = stream(member2, m.address);
    second.write({ message: snapshotHeader(2, 1), data: chunk });
    await until("the second stream's refusal", () => second.status !== undefined, 3_000);
    expect(second.status?.code).to.equal(grpc.status.RESOURCE_EXHAUSTED);
    expect(m.transport.stats().refusals.SNAPSHOT_BUSY).to.equal(1);
    expect(await first.end()).to.equal(null);
    expect(m.delivered.map((x) => [x.from, x.snapshot?.data.byteLength])).to.deep.equal([
      [2, chunk.byteLength],
    ]);

    const big = stream(member2, m.address);
    for (let i = 0; i < 5; i++)
      big.write({ message: i === 0 ? snapshotHeader(2, 1) : undefined, data: chunk });
    await until("the size refusal", () => big.status !== undefined, 3_000);
    expect(big.status?.code).to.equal(grpc.status.RESOURCE_EXHAUSTED);
    expect(m.transport.stats().refusals.SNAPSHOT_TOO_LARGE).to.equal(1);

    // Accepted at its header, then 2 is removed while the data streams: refused at the end.
    const late = stream(member2, m.address);
    late.write({ message: snapshotHeader(2, 1), data: chunk });
    await until("the reception", () => m.transport.stats().receivingSnapshots === 1);
    m.transport.setMembers(membership({ 1: base[1] }, [2]));
    expect((await late.end())?.code).to.equal(grpc.status.PERMISSION_DENIED);
    expect(m.delivered).to.have.length(1);
  });
});
