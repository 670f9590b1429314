// The Raft transport bound to the membership (issue 9, section 2): a message is
// delivered only from the member its caller's certificate is bound to, addressed
// to this member; a client talks only to the member it dialled. Real gRPC over
// mutual TLS in one process, behind the test bed's authorization policy.
import * as grpc from "@grpc/grpc-js";
import { expect } from "chai";
import { refusalReasonOf } from "../../../src/ca/tls/authorization.js";
import {
  heartbeat,
  identity,
  type Member,
  membership,
  RawClient,
  startMember,
  until,
} from "./transport-fixture.js";

describe("raft transport: messages bound to members (mTLS, in process)", function () {
  this.timeout(20_000);
  const m1 = identity("manager", "member-1");
  const m2 = identity("manager", "member-2");
  const m3 = identity("manager", "member-3");
  const started: Member[] = [];
  const clients: RawClient[] = [];

  async function member(...args: Parameters<typeof startMember>): Promise<Member> {
    const m = await startMember(...args);
    started.push(m);
    return m;
  }
  function client(...args: ConstructorParameters<typeof RawClient>): RawClient {
    const c = new RawClient(...args);
    clients.push(c);
    return c;
  }
  /** Member 1 of a three-member cluster whose members are bound to member-1..3 (2 and 3 not running). */
  function memberOne(): Promise<Member> {
    return member(
      1,
      m1,
      membership({
        1: { nodeId: "member-1", address: "127.0.0.1:1" },
        2: { nodeId: "member-2", address: "127.0.0.1:1" },
        3: { nodeId: "member-3", address: "127.0.0.1:1" },
      }),
    );
  }

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await Promise.all(started.splice(0).map((m) => m.close()));
  });

  it("delivers a message from the member the caller's certificate is bound to (control)", async () => {
    const one = await memberOne();
    expect(await client(m2, one.address).send([heartbeat(2, 1)])).to.equal(null);
    expect(one.delivered.map((m) => m.from)).to.deep.equal([2]);
  });

  it("refuses a manager certificate that is no member, whatever `from` it claims", async () => {
    const one = await memberOne();
    const stranger = client(identity("manager", "member-9"), one.address);
    await stranger.send([heartbeat(9, 1, 99), heartbeat(2, 1, 99), heartbeat(3, 1, 99)]);
    expect(one.delivered).to.deep.equal([]);
    const { refusals } = one.transport.stats();
    expect(refusals.UNKNOWN_SENDER).to.equal(1);
    expect(refusals.SENDER_MISMATCH).to.equal(2);
  });

  it("refuses a member's certificate sending as another member (CN member-2, from: 3)", async () => {
    const one = await memberOne();
    await client(m2, one.address).send([heartbeat(3, 1)]);
    expect(one.delivered).to.deep.equal([]);
    expect(one.transport.stats().refusals.SENDER_MISMATCH).to.equal(1);
  });

  it('compares node ids as strings: CNs 2.0, 0x2, 02 are not the member bound to "2"', async () => {
    const one = await member(
      1,
      m1,
      membership({ 1: { nodeId: "1", address: "127.0.0.1:1" }, 2: { nodeId: "2", address: "127.0.0.1:1" } }),
    );
    // Valid node ids that a Number() would read as 2: the binding refuses them.
    for (const cn of ["0x2", "02"])
      await client(identity("manager", cn), one.address).send([heartbeat(2, 1)]);
    expect(one.transport.stats().refusals.SENDER_MISMATCH).to.equal(2);
    // CNs our CA never issues: the authorizer refuses the call before the transport sees it.
    for (const cn of ["2.0", " 2", "2 "]) {
      const err = await client(identity("manager", cn, true), one.address).send([heartbeat(2, 1)]);
      expect(err?.code, cn).to.equal(grpc.status.UNAUTHENTICATED);
      expect(refusalReasonOf(err!), cn).to.equal("CERT_INVALID");
    }
    expect(one.delivered).to.deep.equal([]);
    expect(await client(identity("manager", "2"), one.address).send([heartbeat(2, 1)])).to.equal(null);
    expect(one.delivered.map((m) => m.from)).to.deep.equal([2]);
  });

  it("drops a message whose `to` is another member", async () => {
    const one = await memberOne();
    await client(m2, one.address).send([heartbeat(2, 3), heartbeat(2, 0)]);
    expect(one.delivered).to.deep.equal([]);
    expect(one.transport.stats().refusals.NOT_ADDRESSED_HERE).to.equal(2);
  });

  it("stops accepting a removed member at once, on the stream it already has open", async () => {
    const one = await memberOne();
    const stream = client(m2, one.address).open();
    stream.write(heartbeat(2, 1));
    await until("the first heartbeat", () => one.delivered.length === 1);
    one.transport.setMembers(
      membership(
        {
          1: { nodeId: "member-1", address: "127.0.0.1:1" },
          3: { nodeId: "member-3", address: "127.0.0.1:1" },
        },
        [2],
      ),
    );
    stream.write(heartbeat(2, 1));
    await stream.end();
    expect(one.delivered).to.have.length(1);
    expect(one.transport.stats().refusals.UNKNOWN_SENDER).to.equal(1);
  });

  it("the operator's identity (worker role) cannot call the Raft service at all", async () => {
    const one = await memberOne();
    const operator = client(identity("worker", "operator"), one.address);
    const err = await operator.send([heartbeat(2, 1)]);
    expect(err?.code).to.equal(grpc.status.PERMISSION_DENIED);
    expect(refusalReasonOf(err!)).to.equal("WRONG_ROLE");
    const members = await operator.members();
    expect(refusalReasonOf(members as grpc.ServiceError)).to.equal("WRONG_ROLE");
    expect(one.delivered).to.deep.equal([]);
  });

  it("a client dialling member 2 refuses a server that presents member 3's certificate", async () => {
    // The impostor is set up so that, were the client to talk to it, it would deliver.
    const impostor = await member(2, m3, membership({ 1: { nodeId: "member-1", address: "127.0.0.1:1" } }));
    const genuine = await member(2, m2, membership({ 1: { nodeId: "member-1", address: "127.0.0.1:1" } }));
    const dialler = await member(1, m1, membership({ 1: { nodeId: "member-1", address: "127.0.0.1:1" } }));
    dialler.transport.setMembers(
      membership({
        1: { nodeId: "member-1", address: "127.0.0.1:1" },
        2: { nodeId: "member-2", address: impostor.address },
      }),
    );
    dialler.transport.send([heartbeat(1, 2)]);
    // The handshake fails on the client's check (WRONG_NODE), so the channel never becomes ready.
    await until(
      "the dial to be refused",
      () => dialler.transport.stats().peers.get(2)?.channel === "TRANSIENT_FAILURE",
    );
    await new Promise((r) => setTimeout(r, 300)); // give a (wrongly) accepted stream time to deliver
    expect(impostor.delivered).to.deep.equal([]);
    // Control: the same dialler reaches member 2 at its real address.
    dialler.transport.setMembers(
      membership({
        1: { nodeId: "member-1", address: "127.0.0.1:1" },
        2: { nodeId: "member-2", address: genuine.address },
      }),
    );
    dialler.transport.send([heartbeat(1, 2)]);
    await until("the genuine member 2 to get it", () => genuine.delivered.length === 1);
    expect(impostor.delivered).to.deep.equal([]);
  });

  it("a member that missed the change adding a member learns the binding from a majority of its voters", async () => {
    const m4 = identity("manager", "member-4");
    const known = {
      1: { nodeId: "member-1", address: "127.0.0.1:1" },
      2: { nodeId: "member-2", address: "127.0.0.1:1" },
      3: { nodeId: "member-3", address: "127.0.0.1:1" },
      4: { nodeId: "member-4", address: "127.0.0.1:1" },
    };
    // Members 1 and 3 (a majority of 2's voters 1, 2, 3) applied the change adding 4 (and
    // removed 5); member 2 (lagging) did not.
    const one = await member(1, m1, membership(known, [5]));
    const three = await member(3, m3, membership(known, [5]));
    const two = await member(
      2,
      m2,
      membership({
        1: { nodeId: "member-1", address: one.address },
        2: { nodeId: "member-2", address: "127.0.0.1:1" },
        3: { nodeId: "member-3", address: three.address },
      }),
    );
    const fromFour = client(m4, two.address);
    await fromFour.send([heartbeat(4, 2)]);
    expect(two.delivered).to.deep.equal([]);
    expect(two.transport.stats().refusals.UNKNOWN_SENDER).to.equal(1);
    await until("member 2 to learn member 4", () => two.transport.bindingOf(4)?.nodeId === "member-4");
    expect(await fromFour.send([heartbeat(4, 2)])).to.equal(null);
    expect(two.delivered.map((m) => m.from)).to.deep.equal([4]);
    // What no member binds is never learned: a stranger stays refused.
    await client(identity("manager", "member-9"), two.address).send([heartbeat(9, 2)]);
    await new Promise((r) => setTimeout(r, 600)); // past one lookup interval
    expect(two.transport.bindingOf(9)).to.equal(undefined);
    // The log has the last word: once 2 applies the removal of 4, the learned binding is gone.
    two.transport.setMembers(
      membership(
        {
          1: { nodeId: "member-1", address: one.address },
          2: { nodeId: "member-2", address: "127.0.0.1:1" },
          3: { nodeId: "member-3", address: three.address },
        },
        [4],
      ),
    );
    expect(two.transport.bindingOf(4)).to.equal(undefined);
    await fromFour.send([heartbeat(4, 2)]);
    expect(two.delivered).to.have.length(1);
  });
});
