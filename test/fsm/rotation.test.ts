import { expect } from "chai";
import { rotationProgress } from "../../src/fsm/index.js";
import { Role, RotationPhase } from "../../src/gen/fsm/v1/state.js";
import { cmd, createCluster, enc, expectRefused, join, newState, renew } from "./helpers.js";

const NEW = "bb";
const start = (keyId = NEW, atMs = 5_000) =>
  cmd({
    $case: "startRootRotation",
    value: {
      newRoot: { certPem: enc.encode(`cert-${keyId}`), keyPem: enc.encode(`key-${keyId}`), keyId },
      crossSignedPem: enc.encode(`cross-${keyId}`),
      atMs,
      spreadWindowMs: 2_000,
      nodeCertLifetimeS: 0,
    },
  });
const advance = (to: RotationPhase, keyId = NEW) =>
  cmd({ $case: "advanceRootRotation", value: { newKeyId: keyId, to, atMs: 6_000 } });
const trust = (nodeId: string, rootKeyId = NEW) =>
  cmd({ $case: "recordTrust", value: { confirmations: [{ nodeId, rootKeyId, heldIssuerKeyId: "" }] } });
const holds = (nodeId: string, heldIssuerKeyId = NEW) =>
  cmd({ $case: "recordTrust", value: { confirmations: [{ nodeId, rootKeyId: "", heldIssuerKeyId }] } });

describe("fsm: root rotation", () => {
  it("moves renew -> trust -> done only when every node renewed, then confirmed the new root", () => {
    const s = newState(createCluster(), join("w1"), start());
    expect(s.cluster()!.rotation?.phase).to.equal(RotationPhase.ROTATION_PHASE_RENEW);
    expectRefused(s, advance(RotationPhase.ROTATION_PHASE_TRUST), "ROTATION_PENDING");
    s.applyCommand(10, renew("m1", Role.ROLE_MANAGER, 5_100, NEW));
    // Recorded, but the node has not said it presents it (its call may have given up): not renewed yet.
    expect(rotationProgress(s.cluster()!, s.nodes())).to.deep.equal({ renewed: 0, trusted: 0, total: 2 });
    s.applyCommand(11, holds("m1"));
    expect(rotationProgress(s.cluster()!, s.nodes())).to.deep.equal({ renewed: 1, trusted: 0, total: 2 });
    expectRefused(s, advance(RotationPhase.ROTATION_PHASE_TRUST), "ROTATION_PENDING");
    s.applyCommand(12, renew("w1", Role.ROLE_WORKER, 5_200, NEW));
    expectRefused(s, advance(RotationPhase.ROTATION_PHASE_TRUST), "ROTATION_PENDING");
    s.applyCommand(13, holds("w1"));
    expect(s.applyCommand(14, advance(RotationPhase.ROTATION_PHASE_TRUST)).ok).to.equal(true);
    expect(s.cluster()!.rotation?.phase).to.equal(RotationPhase.ROTATION_PHASE_TRUST);
    expectRefused(s, advance(RotationPhase.ROTATION_PHASE_UNSPECIFIED), "ROTATION_PENDING");
    s.applyCommand(15, trust("m1"));
    s.applyCommand(16, trust("w1"));
    expect(s.node("w1")).to.include({ trustedRootKeyId: NEW, heldIssuerKeyId: NEW });
    expect(s.applyCommand(17, advance(RotationPhase.ROTATION_PHASE_UNSPECIFIED)).ok).to.equal(true);
    expect(s.cluster()!.rotation).to.equal(undefined);
    expect(s.cluster()!.root?.keyId).to.equal(NEW);
  });

  it("a second rotation replaces the pending root and restarts the renew phase; a stale advance is refused", () => {
    const s = newState(createCluster(), start(), renew("m1", Role.ROLE_MANAGER, 5_100, NEW), holds("m1"));
    s.applyCommand(10, advance(RotationPhase.ROTATION_PHASE_TRUST));
    s.applyCommand(11, start("cc", 7_000));
    expect(s.cluster()!.rotation).to.include({
      phase: RotationPhase.ROTATION_PHASE_RENEW,
      startedAtMs: 7_000,
    });
    expect(s.cluster()!.rotation?.newRoot?.keyId).to.equal("cc");
    expectRefused(s, advance(RotationPhase.ROTATION_PHASE_TRUST, NEW), "NO_ROTATION");
    expectRefused(s, advance(RotationPhase.ROTATION_PHASE_TRUST, "cc"), "ROTATION_PENDING");
  });

  it("refuses a rotation to the current key, an incomplete one, and a lifetime under a minute", () => {
    const s = newState(createCluster());
    expectRefused(s, start("aa"), "INVALID_COMMAND");
    expectRefused(
      s,
      cmd({
        $case: "startRootRotation",
        value: {
          newRoot: undefined,
          crossSignedPem: new Uint8Array(),
          atMs: 1,
          spreadWindowMs: 0,
          nodeCertLifetimeS: 0,
        },
      }),
      "INVALID_COMMAND",
    );
    const short = start();
    if (short.command?.$case === "startRootRotation") short.command.value.nodeCertLifetimeS = 30;
    expectRefused(s, short, "INVALID_COMMAND");
    expectRefused(s, advance(RotationPhase.ROTATION_PHASE_TRUST), "NO_ROTATION");
  });

  it("a removed pending node no longer holds the rotation; trust confirmations of unknown nodes are skipped", () => {
    const s = newState(
      createCluster(),
      join("w1"),
      start(),
      renew("m1", Role.ROLE_MANAGER, 5_100, NEW),
      holds("m1"),
    );
    expectRefused(s, advance(RotationPhase.ROTATION_PHASE_TRUST), "ROTATION_PENDING");
    s.applyCommand(10, cmd({ $case: "removeNode", value: { nodeId: "w1", force: true, atMs: 5_500 } }));
    expect(s.applyCommand(11, advance(RotationPhase.ROTATION_PHASE_TRUST)).ok).to.equal(true);
    expect(s.applyCommand(12, trust("ghost")).ok).to.equal(true);
    expect(s.node("ghost")).to.equal(undefined);
  });
});
