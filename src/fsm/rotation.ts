// Root rotation in the replicated state (DESIGN.md "Root rotation"). Apply only checks
// and records: the new root, its key and the cross-signed twin are made (and checked)
// by the manager that took `ca rotate`; the phases move when the leader's reconciler
// proposes it, and apply refuses a move whose condition does not hold at its own log
// position (a node that joined or fell back since the reconciler looked).
import type { AdvanceRootRotation, RecordTrust, StartRootRotation } from "../gen/fsm/v1/commands.js";
import { type Cluster, type Node, RotationPhase } from "../gen/fsm/v1/state.js";
import { putCluster, putNode, requireCluster } from "./apply.js";
import { FsmRefusal } from "./errors.js";
import type { ChangeEvent } from "./events.js";
import type { MutableState } from "./state-data.js";

type Changes = ChangeEvent[];

export function startRootRotation(s: MutableState, index: number, c: StartRootRotation, out: Changes): void {
  const cluster = requireCluster(s);
  const newRoot = c.newRoot;
  if (
    !newRoot?.keyId ||
    newRoot.certPem.length === 0 ||
    newRoot.keyPem.length === 0 ||
    c.crossSignedPem.length === 0
  )
    throw new FsmRefusal(
      "INVALID_COMMAND",
      "a rotation needs the new root, its key and the cross-signed certificate",
    );
  if (newRoot.keyId === cluster.root?.keyId)
    throw new FsmRefusal(
      "INVALID_COMMAND",
      "the new root has the current root's key; make or import another",
    );
  if (c.nodeCertLifetimeS !== 0 && c.nodeCertLifetimeS < 60)
    throw new FsmRefusal("INVALID_COMMAND", "node certificates must live at least 1 minute");
  putCluster(
    s,
    index,
    {
      ...cluster,
      nodeCertLifetimeS: c.nodeCertLifetimeS || cluster.nodeCertLifetimeS,
      rotation: {
        newRoot,
        crossSignedPem: c.crossSignedPem,
        phase: RotationPhase.ROTATION_PHASE_RENEW,
        startedAtMs: c.atMs,
        spreadWindowMs: c.spreadWindowMs,
        phaseStartedAtMs: c.atMs,
      },
    },
    out,
  );
}

export function advanceRootRotation(
  s: MutableState,
  index: number,
  c: AdvanceRootRotation,
  out: Changes,
): void {
  const cluster = requireCluster(s);
  const rotation = cluster.rotation;
  const keyId = rotation?.newRoot?.keyId;
  if (!rotation?.newRoot || keyId !== c.newKeyId)
    throw new FsmRefusal("NO_ROTATION", `no rotation to root ${c.newKeyId} is in progress`);
  const nodes = [...s.nodes.values()];
  if (c.to === RotationPhase.ROTATION_PHASE_TRUST) {
    if (rotation.phase !== RotationPhase.ROTATION_PHASE_RENEW)
      throw new FsmRefusal("INVALID_COMMAND", "the rotation is not in its renew phase");
    const pending = nodes.filter((n) => !renewedFor(n, keyId));
    if (pending.length > 0) throw pendingRefusal("renewed", pending);
    putCluster(
      s,
      index,
      {
        ...cluster,
        rotation: { ...rotation, phase: RotationPhase.ROTATION_PHASE_TRUST, phaseStartedAtMs: c.atMs },
      },
      out,
    );
    return;
  }
  if (c.to !== RotationPhase.ROTATION_PHASE_UNSPECIFIED)
    throw new FsmRefusal("INVALID_COMMAND", "a rotation moves to its trust phase or to its end");
  if (rotation.phase !== RotationPhase.ROTATION_PHASE_TRUST)
    throw new FsmRefusal("INVALID_COMMAND", "the rotation is not in its trust phase");
  const pending = nodes.filter((n) => !trustsOnly(n, keyId) || !renewedFor(n, keyId));
  if (pending.length > 0) throw pendingRefusal("confirmed the new root", pending);
  // The new root is the root: tokens' digests change with it, their secrets do not.
  putCluster(s, index, { ...cluster, root: rotation.newRoot, rotation: undefined }, out);
}

/** Confirmations of unknown or removed nodes are skipped; an empty field keeps what is recorded. */
export function recordTrust(s: MutableState, index: number, c: RecordTrust, out: Changes): void {
  requireCluster(s);
  for (const t of c.confirmations) {
    const node = s.nodes.get(t.nodeId);
    if (!node) continue;
    const trustedRootKeyId = t.rootKeyId || node.trustedRootKeyId;
    const heldIssuerKeyId = t.heldIssuerKeyId || node.heldIssuerKeyId;
    if (trustedRootKeyId === node.trustedRootKeyId && heldIssuerKeyId === node.heldIssuerKeyId) continue;
    putNode(s, index, { ...node, trustedRootKeyId, heldIssuerKeyId }, out);
  }
}

/**
 * The node holds a certificate signed by the new key: one is recorded AND the node said
 * it presents one (an issuance recorded after the node's call gave up does not count).
 */
export function renewedFor(node: Node, newKeyId: string): boolean {
  return node.certificate?.issuerKeyId === newKeyId && node.heldIssuerKeyId === newKeyId;
}

/** The node confirmed the new root as the only root it trusts. */
export function trustsOnly(node: Node, newKeyId: string): boolean {
  return node.trustedRootKeyId === newKeyId;
}

/** Progress of a rotation: counts over the nodes on record. */
export function rotationProgress(
  cluster: Cluster,
  nodes: readonly Node[],
): { renewed: number; trusted: number; total: number } | undefined {
  const keyId = cluster.rotation?.newRoot?.keyId;
  if (!keyId) return undefined;
  return {
    renewed: nodes.filter((n) => renewedFor(n, keyId)).length,
    trusted: nodes.filter((n) => trustsOnly(n, keyId)).length,
    total: nodes.length,
  };
}

function pendingRefusal(what: string, pending: Node[]): FsmRefusal {
  const names = pending
    .slice(0, 5)
    .map((n) => n.id)
    .join(", ");
  const more = pending.length > 5 ? ` and ${pending.length - 5} more` : "";
  return new FsmRefusal(
    "ROTATION_PENDING",
    `${pending.length} node(s) have not ${what} yet: ${names}${more}`,
  );
}
