// The roots a node of this cluster trusts now, from the replicated state alone: the
// one place both the CA service (answers to joins and renewals) and the sessions
// (pushes) take it from, so a node is never told two different things.
import { type Cluster, RotationPhase } from "../gen/fsm/v1/state.js";

/**
 * The roots a node must trust. During a root rotation's renew phase, certificates
 * signed by the new key are served with the cross-signed intermediate, so the old root
 * still verifies them and stays the only anchor; in the trust phase every node is
 * handed the new root instead (DESIGN.md "Root rotation").
 */
export function trustBundleOf(cluster: Cluster): string {
  const decoder = new TextDecoder();
  const rotation = cluster.rotation;
  if (rotation?.newRoot && rotation.phase === RotationPhase.ROTATION_PHASE_TRUST)
    return decoder.decode(rotation.newRoot.certPem);
  return decoder.decode(cluster.root?.certPem ?? new Uint8Array());
}
