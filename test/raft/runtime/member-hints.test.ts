// Bindings learned outside the log (the Members lookup, member-hints.ts) fail
// closed: a majority of our voters must each list the identical binding, a
// removal anywhere vetoes it, the log's word ends it, and it expires unless
// re-confirmed. Members itself answers members only. (Second reading, F1 and F4.)
import * as grpc from "@grpc/grpc-js";
import { expect } from "chai";
import type { MemberBinding } from "../../../src/raft/runtime/members.js";
import {
  heartbeat,
  identity,
  type Member,
  membership,
  RawClient,
  startMember,
  until,
} from "./transport-fixture.js";

describe("raft transport: bindings learned from peers", function () {
  this.timeout(20_000);
  const started: Member[] = [];
  const clients: RawClient[] = [];
  const far = "127.0.0.1:1";
  const bind = (nodeId: string): MemberBinding => ({ nodeId, address: far });

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
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await Promise.all(started.splice(0).map((m) => m.close()));
  });

  /** Members 1 and 3 answering with `views`; member 2 (voters 1, 2, 3) asking them. */
  async function cluster(
    one: Record<number, MemberBinding>,
    three: Record<number, MemberBinding>,
    opts: { removed1?: string[]; removed3?: string[]; removed2?: string[]; hintTtlMs?: number } = {},
  ) {
    const base = { 1: bind("member-1"), 2: bind("member-2"), 3: bind("member-3") };
    const m1 = await member(
      1,
      identity("manager", "member-1"),
      membership({ ...base, ...one }, [], { removedNodeIds: opts.removed1 }),
    );
    const m3 = await member(
      3,
      identity("manager", "member-3"),
      membership({ ...base, ...three }, [], { removedNodeIds: opts.removed3 }),
    );
    const own = {
      ...base,
      1: { nodeId: "member-1", address: m1.address },
      3: { nodeId: "member-3", address: m3.address },
    };
    const m2 = await member(
      2,
      identity("manager", "member-2"),
      membership(own, [], { removedNodeIds: opts.removed2 }),
      {
        hintTtlMs: opts.hintTtlMs,
      },
    );
    return { m1, m2, m3, own };
  }

  /** Sends from `from` until member 2 finished a lookup round started after this call. */
  async function provokeLookup(m2: Member, c: RawClient, from: number): Promise<void> {
    const before = m2.transport.stats().lookups;
    await c.send([heartbeat(from, 2)]);
    await until("a lookup round", () => m2.transport.stats().lookups > before, 5_000);
  }

  it("counts a voter that does not list the binding as against it: one answer admits nobody", async () => {
    const { m2 } = await cluster({ 9: bind("stranger") }, {});
    const stranger = client(identity("manager", "stranger"), m2.address);
    await provokeLookup(m2, stranger, 9);
    expect(m2.transport.bindingOf(9)).to.equal(undefined);
    await stranger.send([heartbeat(9, 2, 99)]);
    expect(m2.delivered).to.deep.equal([]);
  });

  it("takes a binding a majority lists only if no answer and not our log names its node id removed", async () => {
    // Both voters list 9 -> member-5, but member 3 knows member-5 was removed (under another id).
    const vetoed = await cluster(
      { 9: bind("member-5") },
      { 9: bind("member-5") },
      { removed3: ["member-5"] },
    );
    await provokeLookup(vetoed.m2, client(identity("manager", "member-5"), vetoed.m2.address), 9);
    expect(vetoed.m2.transport.bindingOf(9)).to.equal(undefined);
    // Both list 9 -> member-6 cleanly, but our own log removed member-6.
    const ours = await cluster({ 9: bind("member-6") }, { 9: bind("member-6") }, { removed2: ["member-6"] });
    await provokeLookup(ours.m2, client(identity("manager", "member-6"), ours.m2.address), 9);
    expect(ours.m2.transport.bindingOf(9)).to.equal(undefined);
    expect(ours.m2.delivered).to.deep.equal([]);
  });

  it("drops a hint once the log binds its node id under another id, and never takes it back after that id's removal", async () => {
    const { m2, own } = await cluster({ 9: bind("member-4") }, { 9: bind("member-4") });
    const four = client(identity("manager", "member-4"), m2.address);
    await provokeLookup(m2, four, 9);
    expect(m2.transport.bindingOf(9)?.nodeId).to.equal("member-4");
    m2.transport.setMembers(membership({ ...own, 4: bind("member-4") }));
    expect(m2.transport.bindingOf(9)).to.equal(undefined);
    m2.transport.setMembers(membership(own, [4], { removedNodeIds: ["member-4"] }));
    await new Promise((r) => setTimeout(r, 600)); // past the lookup interval: the next message asks again
    await provokeLookup(m2, four, 9);
    expect(m2.transport.bindingOf(9)).to.equal(undefined);
    await four.send([heartbeat(9, 2)]);
    await four.send([heartbeat(4, 2)]);
    expect(m2.delivered).to.deep.equal([]);
  });

  it("a hint expires unless the voters re-confirm it while its member keeps talking", async () => {
    const { m1, m2, m3 } = await cluster(
      { 9: bind("member-9") },
      { 9: bind("member-9") },
      { hintTtlMs: 1_200 },
    );
    const nine = client(identity("manager", "member-9"), m2.address);
    await provokeLookup(m2, nine, 9);
    expect(m2.transport.bindingOf(9)?.nodeId).to.equal("member-9");
    // Re-confirmed: it keeps talking for twice the hint's life and is heard throughout.
    const until2Ttl = Date.now() + 2_400;
    let sent = 0;
    while (Date.now() < until2Ttl) {
      expect(await nine.send([heartbeat(9, 2)])).to.equal(null);
      sent++;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(m2.delivered).to.have.length(sent);
    // The voters stop listing it: the hint runs out within its life, however much 9 talks.
    const base = { 1: bind("member-1"), 2: bind("member-2"), 3: bind("member-3") };
    m1.transport.setMembers(membership(base));
    m3.transport.setMembers(membership(base));
    await until(
      "the hint to expire",
      () => {
        void nine.send([heartbeat(9, 2)]);
        return m2.transport.bindingOf(9) === undefined;
      },
      3_000,
      100,
    );
  });

  it("Members answers only a caller bound to a member, and counts the refusals", async () => {
    const m1 = await member(
      1,
      identity("manager", "member-1"),
      membership({ 1: bind("member-1"), 2: bind("member-2") }, [3], { removedNodeIds: ["member-3"] }),
    );
    for (const stranger of ["stranger", "member-3"]) {
      const res = await client(identity("manager", stranger), m1.address).members();
      expect((res as grpc.ServiceError).code, stranger).to.equal(grpc.status.PERMISSION_DENIED);
    }
    expect(m1.transport.stats().refusals.MEMBERS_NOT_A_MEMBER).to.equal(2);
    const ok = await client(identity("manager", "member-2"), m1.address).members();
    expect(ok).to.have.property("members").with.length(2);
    expect(ok).to.have.property("removedNodeIds").that.deep.equals(["member-3"]);
  });
});
