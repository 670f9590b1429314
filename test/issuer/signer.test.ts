// Which key signs and what a node is handed, from the replicated Cluster object alone:
// the root normally; during a root rotation the new root, served with the cross-signed
// intermediate so peers that trust only the old root still verify the chain.
import { X509Certificate } from "node:crypto";
import { expect } from "chai";
import {
  CheckedNewRoot,
  checkNodeCsr,
  createNodeCsr,
  parseNodeCertificate,
  RootCA,
} from "../../src/ca/index.js";
import type { Cluster } from "../../src/gen/fsm/v1/state.js";
import { RotationPhase } from "../../src/gen/fsm/v1/state.js";
import { ClusterSigner } from "../../src/issuer/signer.js";
import { opensslVerify, TempDir } from "../ca/helpers.js";

const enc = new TextEncoder();
const rootOf = (ca: RootCA) => ({
  certPem: enc.encode(ca.certificatePem),
  keyPem: enc.encode(ca.privateKeyPem()),
  keyId: ca.keyId,
});

function cluster(old: RootCA, next?: CheckedNewRoot): Cluster {
  return {
    id: old.clusterId,
    root: rootOf(old),
    rotation: next
      ? {
          newRoot: rootOf(next.root),
          crossSignedPem: enc.encode(old.crossSignRoot(next)),
          phase: RotationPhase.ROTATION_PHASE_RENEW,
          startedAtMs: 1,
          spreadWindowMs: 0,
          phaseStartedAtMs: 0,
        }
      : undefined,
    joinTokenSecrets: undefined,
    nodeCertLifetimeS: 3600,
    renewalGraceS: 0,
    createdAtMs: 1,
    nextRaftId: 0,
  };
}

describe("issuer: ClusterSigner", () => {
  it("signs with the root, or during a rotation with the new root and serves the cross-signed intermediate", async () => {
    const old = RootCA.create({ clusterId: "c-signer" });
    const checkedNext = CheckedNewRoot.generate({ clusterId: "c-signer" });
    const next = checkedNext.root;
    const signer = new ClusterSigner();
    const now = new Date();
    const request = () => ({
      csr: checkNodeCsr(createNodeCsr().csrPem),
      role: "worker" as const,
      nodeId: "n1",
      now,
    });

    const before = signer.issue(cluster(old), request());
    expect(before.issuerKeyId).to.equal(old.keyId);
    expect(before.notAfter.getTime() - now.getTime()).to.be.within(3_598_000, 3_600_000);

    const rotating = cluster(old, checkedNext);
    const during = signer.issue(rotating, request());
    expect(during.issuerKeyId).to.equal(next.keyId);
    const recorded = {
      serial: during.serialNumber,
      notAfterMs: during.notAfter.getTime(),
      issuerKeyId: during.issuerKeyId,
      der: new Uint8Array(new X509Certificate(during.certificatePem).raw),
    };
    const chain = signer.chainPem(rotating, recorded);
    expect(chain.startsWith(during.certificatePem)).to.equal(true);
    expect(chain).to.contain(new TextDecoder().decode(rotating.rotation?.crossSignedPem));
    expect(parseNodeCertificate(recorded.der).issuerKeyId).to.equal(next.keyId);
    // The renew phase keeps the old root as the only anchor (the cross-signed twin bridges).
    expect(signer.trustBundlePem(rotating).trim()).to.equal(old.certificatePem.trim());

    // A peer that trusts only the old root verifies the leaf through the cross-signed root.
    const dir = await TempDir.create();
    try {
      const intermediate = new TextDecoder().decode(rotating.rotation?.crossSignedPem);
      const verified = await opensslVerify(dir, {
        trusted: old.certificatePem,
        untrusted: intermediate,
        leaf: during.certificatePem,
      });
      expect(verified.code, verified.stderr).to.equal(0);
    } finally {
      await dir.remove();
    }
  });
});
