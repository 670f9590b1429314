// `ca rotate` and the rotation part of `ca status`. The manager that takes the request
// makes the new root (or checks the imported one) and cross-signs it with the current
// root, both from the replicated state it holds, then proposes StartRootRotation; the
// leader's reconciler (src/issuer) drives the phases. Progress and the pending nodes
// come from the replicated state, read linearizably.
import { CaError, CheckedNewRoot, checkNewRoot, RootCA } from "../ca/index.js";
import { type ClusterState, proposeCommand, renewedFor, trustsOnly } from "../fsm/index.js";
import type { RotateRootRequest, RotateRootResponse, RotationView } from "../gen/control/v1/messages.js";
import { type Cluster, type Node, NodeStatus, RotationPhase } from "../gen/fsm/v1/state.js";
import type { Logger } from "../log/logger.js";
import type { RaftService } from "../raft/runtime/seam.js";
import { ClusterNotReadyError, ControlError } from "./errors.js";

const decoder = new TextDecoder();
const MAX_PENDING_LISTED = 100;
/** Renewals of a rotation are spread over this much per node, within these bounds. */
const SPREAD_PER_NODE_MS = 4;
const MIN_SPREAD_MS = 500;
const MAX_SPREAD_MS = 10 * 60_000;

export class RootRotationControl {
  constructor(
    private readonly raft: RaftService,
    private readonly state: ClusterState,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  async rotate(request: RotateRootRequest): Promise<RotateRootResponse> {
    const { cluster, nodes } = await this.raft.read(() => ({
      cluster: this.state.cluster(),
      nodes: this.state.nodes().length,
    }));
    if (!cluster?.root) throw new ClusterNotReadyError();
    if (request.certExpiryS !== 0 && request.certExpiryS < 60)
      throw new ControlError("INVALID_ARGUMENT", "--cert-expiry must be at least 1 minute");
    const { newRoot, crossSignedPem } = this.prepare(cluster, request);
    const spreadWindowMs = Math.min(MAX_SPREAD_MS, Math.max(MIN_SPREAD_MS, nodes * SPREAD_PER_NODE_MS));
    await proposeCommand(this.raft, {
      $case: "startRootRotation",
      value: {
        newRoot: {
          certPem: new TextEncoder().encode(newRoot.certificatePem),
          keyPem: new TextEncoder().encode(newRoot.privateKeyPem()),
          keyId: newRoot.keyId,
        },
        crossSignedPem: new TextEncoder().encode(crossSignedPem),
        atMs: this.now(),
        spreadWindowMs,
        nodeCertLifetimeS: request.certExpiryS,
      },
    });
    this.log.info(
      { newRootKeyId: newRoot.keyId, replaced: cluster.rotation !== undefined, nodes, spreadWindowMs },
      "root rotation started",
    );
    return { newRootKeyId: newRoot.keyId, replaced: cluster.rotation !== undefined, nodes, spreadWindowMs };
  }

  /** The new root (made here, or the imported one, checked) and its cross-signed twin. */
  private prepare(cluster: Cluster, request: RotateRootRequest): { newRoot: RootCA; crossSignedPem: string } {
    const current = cluster.root;
    if (!current) throw new ClusterNotReadyError();
    const imported = request.caCertPem.length > 0 || request.caKeyPem.length > 0;
    if (imported && (request.caCertPem.length === 0 || request.caKeyPem.length === 0))
      throw new ControlError("INVALID_ARGUMENT", "--ca-cert and --ca-key go together: give both, or neither");
    try {
      // Checked either way: a CA certificate, its key held, self-signed, of this cluster, sanely valid.
      const checked = imported
        ? checkNewRoot({
            certificatePem: decoder.decode(request.caCertPem),
            privateKeyPem: decoder.decode(request.caKeyPem),
            clusterId: cluster.id,
            nodeCertLifetimeMs: (request.certExpiryS || cluster.nodeCertLifetimeS) * 1000,
          })
        : CheckedNewRoot.generate({ clusterId: cluster.id });
      const newRoot = checked.root;
      if (newRoot.keyId === current.keyId)
        throw new ControlError("INVALID_ARGUMENT", "the imported root is the current root; give a new one");
      const signer = RootCA.fromPem({
        clusterId: cluster.id,
        certificatePem: decoder.decode(current.certPem),
        privateKeyPem: decoder.decode(current.keyPem),
      });
      return { newRoot, crossSignedPem: signer.crossSignRoot(checked) };
    } catch (error) {
      if (error instanceof CaError) throw new ControlError("INVALID_ARGUMENT", error.message, error.code);
      throw error;
    }
  }
}

/** The rotation in progress as `ca status` shows it, or undefined. */
export function rotationViewOf(
  cluster: Cluster,
  nodes: readonly Node[],
  /** The last renewal this manager refused to a node, if it did. */
  renewalRefusal?: (nodeId: string) => { code: string; atMs: number } | undefined,
): RotationView | undefined {
  const rotation = cluster.rotation;
  const keyId = rotation?.newRoot?.keyId;
  if (!rotation || !keyId) return undefined;
  const trustPhase = rotation.phase === RotationPhase.ROTATION_PHASE_TRUST;
  const pending = nodes
    .filter((n) => !renewedFor(n, keyId) || (trustPhase && !trustsOnly(n, keyId)))
    .map((n) => ({ id: n.id, reason: pendingReason(n, keyId, renewalRefusal?.(n.id)) }));
  return {
    phase: trustPhase ? "trust" : "renew",
    newRootKeyId: keyId,
    renewed: nodes.filter((n) => renewedFor(n, keyId)).length,
    trusted: nodes.filter((n) => trustsOnly(n, keyId)).length,
    total: nodes.length,
    pending: pending.slice(0, MAX_PENDING_LISTED),
    startedAtMs: rotation.startedAtMs,
    phaseStartedAtMs: rotation.phaseStartedAtMs,
  };
}

function pendingReason(
  node: Node,
  keyId: string,
  refusal: { code: string; atMs: number } | undefined,
): string {
  const since = new Date(node.statusChangedAtMs).toISOString();
  if (node.status === NodeStatus.NODE_STATUS_DOWN) return `down since ${since}`;
  if (refusal && !renewedFor(node, keyId))
    return `renewal refused with ${refusal.code} at ${new Date(refusal.atMs).toISOString()} (by this manager)`;
  if (!node.session) return "no session: it cannot be told to renew until it connects";
  if (!renewedFor(node, keyId))
    return `told to renew over its session on ${node.session.managerId}; not renewed yet`;
  return "renewed; has not confirmed the new root as its only trust anchor yet";
}
