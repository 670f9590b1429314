// Keeps this manager's TLS server refusing removed nodes' certificates in the handshake
// (DESIGN.md "Role changes and removal": handshakes from a removed node are refused at
// once on every manager). Every manager builds its own revocation lists from the
// replicated removed-node list, signs them with the cluster's root key(s) from the same
// state, and loads them into its own credential holder: nothing is published or
// fetched, so all managers agree as soon as they applied the removal.
//
// One list per root a client chain can pass through (the root, and a rotation's new
// root), each naming every unexpired certificate of every removed node: Node loads CRLs
// with CRL_CHECK_ALL, so each issuer in a chain needs its own list (see
// TlsCredentialHolder.servedRevocationLists).
// Regenerated on start and after each applied batch that can change them (a removal, a
// prune, a snapshot install, a new root); never on a timer, as the lists' nextUpdate is
// their root's own expiry (src/ca/revocation-list.ts).
import { type RevokedSerial, RootCA, rootKeyIdsOf, type TlsCredentialHolder } from "../ca/index.js";
import type { ChangeEvent, ClusterState } from "../fsm/index.js";
import type { Cluster, RemovedNode, RootCA as StoredRoot } from "../gen/fsm/v1/state.js";
import type { Logger } from "../log/logger.js";

const decoder = new TextDecoder();

/** Starts keeping `credentials`' revocation lists in line with `state`; returns the stop. */
export function keepRevocationListsCurrent(
  state: ClusterState,
  credentials: TlsCredentialHolder,
  logger: Logger,
  now: () => Date = () => new Date(),
): () => void {
  const log = logger.child({ component: "revocation" });
  const roots = new Map<string, RootCA>();
  const publish = (): void => {
    // Runs inside apply's change notification: never throw into it.
    try {
      const cluster = state.cluster();
      if (!cluster?.root) return; // no cluster yet: nothing to revoke, and no key to sign with
      const stored = storedRoots(cluster);
      // A manager replaying the log from before a root rotation (it joined later, or restarts)
      // holds a trust bundle newer than the state it has applied so far: lists signed with
      // those old roots would be refused. They come once the state reaches a root it trusts.
      const trusted = new Set(rootKeyIdsOf(credentials.currentTrustBundlePem));
      if (!stored.some((root) => trusted.has(root.keyId))) {
        log.debug(
          { roots: stored.map((r) => r.keyId) },
          "state behind this node's trust: revocation lists wait",
        );
        return;
      }
      const at = now();
      const revoked = revokedSerials(state.removedNodes(), at);
      const lists = stored.map((root) => rootFor(roots, cluster.id, root).createRevocationList(revoked, at));
      credentials.replaceRevocationList(lists.join(""));
    } catch (err) {
      log.error(
        { err, code: (err as { code?: string }).code ?? "REVOCATION_LIST_FAILED" },
        "could not update the revocation lists; the previous ones stay loaded",
      );
    }
  };
  publish();
  return state.watch((events) => {
    if (events.some(changesRevocation)) publish();
  });
}

function changesRevocation(event: ChangeEvent): boolean {
  switch (event.kind) {
    case "nodeRemoved":
    case "removedPruned":
    case "restored":
      return true;
    case "cluster":
      return (
        event.previous?.root?.keyId !== event.cluster.root?.keyId ||
        event.previous?.rotation?.newRoot?.keyId !== event.cluster.rotation?.newRoot?.keyId
      );
    case "node":
      return false;
  }
}

/** The certificates to refuse: every removed node's certificates still valid now. */
function revokedSerials(removed: readonly RemovedNode[], at: Date): RevokedSerial[] {
  const out: RevokedSerial[] = [];
  for (const node of removed)
    for (const certificate of node.unexpiredCertificates)
      if (certificate.notAfterMs > at.getTime())
        out.push({ serial: certificate.serial, revokedAt: new Date(node.removedAtMs) });
  return out;
}

function storedRoots(cluster: Cluster): StoredRoot[] {
  const next = cluster.rotation?.newRoot;
  return cluster.root ? [cluster.root, ...(next ? [next] : [])] : [];
}

/** Parsed once per key: the root and a rotation's new one, a few more across rotations. */
function rootFor(cache: Map<string, RootCA>, clusterId: string, stored: StoredRoot): RootCA {
  const cached = cache.get(stored.keyId);
  if (cached) return cached;
  const root = RootCA.fromPem({
    clusterId,
    certificatePem: decoder.decode(stored.certPem),
    privateKeyPem: decoder.decode(stored.keyPem),
  });
  if (cache.size >= 4) cache.clear();
  cache.set(stored.keyId, root);
  return root;
}
