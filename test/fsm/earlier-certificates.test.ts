// A removed node's every unexpired certificate must reach the revocation lists, not only
// its latest: a node renews at 50-80 % of its certificate's life, so the one it renewed
// away from is still valid. These tests pin down what apply keeps, from the command's
// own time, and that it travels into RemovedNode and leaves with the pruned entry.
import { expect } from "chai";
import { type ClusterState, MAX_EARLIER_CERTIFICATES } from "../../src/fsm/index.js";
import { State } from "../../src/gen/fsm/v1/state.js";
import { type Command, cmd, createCluster, enc, join, newState } from "./helpers.js";

const DAY_MS = 86_400_000;
/** A point in time in tenths of a day: integers only, as the uint64 fields require. */
const tenths = (n: number): number => (n * DAY_MS) / 10;

function renew(nodeId: string, serial: string, atMs: number, lifetimeMs = DAY_MS): Command {
  return cmd({
    $case: "recordIssuance",
    value: {
      nodeId,
      role: 1,
      join: false,
      address: "",
      atMs,
      certificate: { serial, notAfterMs: atMs + lifetimeMs, issuerKeyId: "aa", der: enc.encode(serial) },
      joinSecretSha256: "",
    },
  });
}

function remove(nodeId: string, atMs: number): Command {
  return cmd({ $case: "removeNode", value: { nodeId, force: true, atMs } });
}

function applyOk(s: ClusterState, index: number, command: Command): void {
  const result = s.applyCommand(index, command);
  expect(result.ok, result.message).to.equal(true);
}

describe("fsm: earlier certificates of a node, for the revocation lists", () => {
  it("a renewal keeps the replaced certificate while it is valid and drops it once expired", () => {
    const s = newState(createCluster(), join("w1", 1, 0));
    expect(s.node("w1")!.earlierCertificates).to.deep.equal([]);
    // Renewed at 60 % of the first certificate's life: the first one is still valid.
    applyOk(s, 10, renew("w1", "s2", tenths(6)));
    expect(s.node("w1")!.earlierCertificates).to.deep.equal([{ serial: "s-w1-0", notAfterMs: DAY_MS }]);
    // Renewed again after the first expired: only the second is kept.
    applyOk(s, 11, renew("w1", "s3", tenths(12)));
    expect(s.node("w1")!.earlierCertificates).to.deep.equal([{ serial: "s2", notAfterMs: tenths(16) }]);
  });

  it("keeps at most MAX_EARLIER_CERTIFICATES, the newest, when told to renew many times in one life", () => {
    const s = newState(createCluster(), join("w1", 1, 0));
    for (let i = 1; i <= MAX_EARLIER_CERTIFICATES + 3; i++)
      applyOk(s, 10 + i, renew("w1", `r${i}`, i * 1_000));
    const earlier = s.node("w1")!.earlierCertificates.map((e) => e.serial);
    expect(earlier).to.have.length(MAX_EARLIER_CERTIFICATES);
    expect(earlier.at(-1)).to.equal(`r${MAX_EARLIER_CERTIFICATES + 2}`);
    expect(earlier).to.not.include("s-w1-0");
  });

  it("a re-issue of the same serial does not list it as an earlier certificate of itself", () => {
    const s = newState(createCluster(), join("w1", 1, 0));
    applyOk(s, 10, renew("w1", "s-w1-0", 1_000));
    expect(s.node("w1")!.earlierCertificates).to.deep.equal([]);
  });

  it("removal carries every unexpired certificate into RemovedNode, and the entry outlives them all", () => {
    const s = newState(createCluster(), join("w1", 1, 0));
    applyOk(s, 10, renew("w1", "s2", tenths(6)));
    // Renewed under a shorter lifetime: the earlier certificate outlives the current one.
    applyOk(s, 11, renew("w1", "s3", tenths(7), tenths(2)));
    applyOk(s, 12, remove("w1", tenths(8)));
    const removed = s.removedNode("w1")!;
    expect(removed.unexpiredCertificates).to.deep.equal([
      { serial: "s3", notAfterMs: tenths(9) },
      { serial: "s-w1-0", notAfterMs: DAY_MS },
      { serial: "s2", notAfterMs: tenths(16) },
    ]);
    expect(removed.certNotAfterMs).to.equal(tenths(16));
  });

  it("removal leaves out certificates already expired at the removal's own time", () => {
    const s = newState(createCluster(), join("w1", 1, 0));
    applyOk(s, 10, renew("w1", "s2", tenths(6)));
    applyOk(s, 11, remove("w1", tenths(11)));
    expect(s.removedNode("w1")!.unexpiredCertificates).to.deep.equal([
      { serial: "s2", notAfterMs: tenths(16) },
    ]);
  });

  it("survives snapshot/restore and leaves with the pruned entry", () => {
    const s = newState(createCluster(), join("w1", 1, 0));
    applyOk(s, 10, renew("w1", "s2", tenths(6)));
    applyOk(s, 11, remove("w1", tenths(7)));
    const decoded = State.decode(s.snapshot());
    expect(decoded.removedNodes[0]?.unexpiredCertificates.map((u) => u.serial)).to.deep.equal([
      "s2",
      "s-w1-0",
    ]);
    const grace = 7 * DAY_MS;
    applyOk(s, 12, cmd({ $case: "pruneRemovedNodes", value: { nowMs: tenths(16) + grace + 1 } }));
    expect(s.removedNode("w1")).to.equal(undefined);
  });
});
