// Reconnecting to a peer that comes back (issue 9, section 6): one backoff, the
// channel's, cut short when the peer is heard from. Real gRPC over mutual TLS.
import { expect } from "chai";
import { freePort } from "../../../src/testbed/local-cluster.js";
import { heartbeat, identity, type Member, membership, startMember, until } from "./transport-fixture.js";

describe("raft transport: reconnecting to a peer that comes back", function () {
  this.timeout(20_000);

  it("retries at once when the peer is heard from, instead of waiting out the backoff", async () => {
    const m1 = identity("manager", "member-1");
    const m2 = identity("manager", "member-2");
    const address2 = `127.0.0.1:${await freePort()}`;
    // A long reconnect backoff: without the reset the next attempt would come 4-6 s after the failure.
    const one = await startMember(
      1,
      m1,
      membership({ 1: { nodeId: "member-1", address: "" }, 2: { nodeId: "member-2", address: address2 } }),
      { minBackoffMs: 5_000, maxBackoffMs: 5_000 },
    );
    let two: Member | undefined;
    try {
      await until(
        "the dial to fail (member 2 is down)",
        () => one.transport.stats().peers.get(2)?.channel === "TRANSIENT_FAILURE",
      );
      two = await startMember(
        2,
        m2,
        membership({
          1: { nodeId: "member-1", address: one.address },
          2: { nodeId: "member-2", address: "" },
        }),
        { address: address2 },
      );
      const upAt = Date.now();
      // Member 2 opens its stream to 1 as soon as it starts: 1 hears it and reconnects now.
      // Meanwhile 1 sends a heartbeat every 50 ms, as its Raft would every tick.
      await until(
        "member 2 to get a heartbeat",
        () => {
          one.transport.send([heartbeat(1, 2)]);
          return two!.delivered.length > 0;
        },
        2_000,
        50,
      );
      expect(Date.now() - upAt).to.be.below(2_000);
    } finally {
      await two?.close();
      await one.close();
    }
  });
});
