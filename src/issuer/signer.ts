// The cluster's signing key as any manager holds it: parsed from the replicated
// Cluster object (root, or the new root during a rotation, served with the
// cross-signed intermediate) and cached by key id, since parsing a key per CSR would
// cost more than signing. Also turns a recorded certificate back into the chain and
// trust bundle handed to its node.
import { X509Certificate } from "node:crypto";
import { type CheckedCsr, type IssuedNodeCertificate, type NodeRole, RootCA } from "../ca/index.js";
import type { Certificate, Cluster } from "../gen/fsm/v1/state.js";
import { trustBundleOf } from "./trust.js";

const decoder = new TextDecoder();
// The current root and a rotation's new root; a few more once rotations replace them.
const MAX_CACHED_ROOTS = 4;

export class ClusterSigner {
  private readonly roots = new Map<string, { root: RootCA; intermediatesPem: string }>();

  /** Signs a node certificate with the key that signs now (a rotation's new root, else the root). */
  issue(
    cluster: Cluster,
    request: { csr: CheckedCsr; role: NodeRole; nodeId: string; now: Date },
  ): IssuedNodeCertificate {
    return this.signerFor(cluster).issueNodeCertificate({
      ...request,
      lifetimeMs: cluster.nodeCertLifetimeS * 1000,
    });
  }

  /** The roots a node of this cluster trusts now (trust.ts). */
  trustBundlePem(cluster: Cluster): string {
    return withNewline(trustBundleOf(cluster));
  }

  /** A recorded certificate as its node serves it: the leaf, then the cross-signed root if the new key signed it. */
  chainPem(cluster: Cluster, certificate: Certificate): string {
    const leaf = new X509Certificate(certificate.der).toString();
    const rotation = cluster.rotation;
    const crossSigned =
      rotation?.newRoot && certificate.issuerKeyId === rotation.newRoot.keyId
        ? decoder.decode(rotation.crossSignedPem)
        : "";
    return withNewline(leaf) + withNewline(crossSigned);
  }

  private signerFor(cluster: Cluster): RootCA {
    const rotation = cluster.rotation;
    const source = rotation?.newRoot ?? cluster.root;
    if (!source) throw new Error(`cluster ${cluster.id} has no root CA`);
    const intermediatesPem = rotation?.newRoot ? decoder.decode(rotation.crossSignedPem) : "";
    const cached = this.roots.get(source.keyId);
    if (cached?.intermediatesPem === intermediatesPem) return cached.root;
    const root = RootCA.fromPem({
      clusterId: cluster.id,
      certificatePem: decoder.decode(source.certPem),
      privateKeyPem: decoder.decode(source.keyPem),
      intermediatesPem,
    });
    if (this.roots.size >= MAX_CACHED_ROOTS) this.roots.clear();
    this.roots.set(source.keyId, { root, intermediatesPem });
    return root;
  }
}

function withNewline(pem: string): string {
  return pem === "" || pem.endsWith("\n") ? pem : `${pem}\n`;
}
