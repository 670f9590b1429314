// The node's TLS identity from its state dir, checked against node.json: a
// certificate for another node or cluster means the directory was mixed up.
import { readFileSync } from "node:fs";
import { TlsCredentialHolder } from "../ca/index.js";
import type { Logger } from "../log/logger.js";
import { NodeError } from "./errors.js";
import type { NodeConfig, StateDirPaths } from "./state-dir.js";

export function loadNodeCredentials(
  paths: StateDirPaths,
  config: NodeConfig,
  logger: Logger,
): TlsCredentialHolder {
  let holder: TlsCredentialHolder;
  try {
    const read = (path: string) => readFileSync(path, "utf8");
    holder = new TlsCredentialHolder({
      identity: { privateKeyPem: read(paths.nodeKey), certificateChainPem: read(paths.nodeCert) },
      trustBundlePem: read(paths.caCert),
      logger,
    });
  } catch (cause) {
    throw new NodeError(
      "STATE_DIR_CORRUPT",
      `the certificates in ${paths.certificates} are missing or unusable (${(cause as Error).message}); ` +
        "nothing was changed. Restore them from a backup, or remove this node from the cluster and join it again",
      { cause },
    );
  }
  const id = holder.currentIdentity;
  // The role may differ: a crash between a role change's renewal and node.json; the daemon finishes it.
  if (id.nodeId !== config.nodeId || id.clusterId !== config.clusterId)
    throw new NodeError(
      "STATE_DIR_FOREIGN",
      `${paths.nodeCert} is node ${id.nodeId} of cluster ${id.clusterId}, but node.json says ` +
        `${config.nodeId} of ${config.clusterId}; nothing was changed. Put this node's own ` +
        "certificates back",
    );
  return holder;
}
