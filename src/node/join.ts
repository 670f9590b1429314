// `nodectl join`: a new node of an existing cluster. The node makes its key (it never
// leaves the node) and a CSR, and asks the manager given on the command line: the
// root is fetched without trusting it and checked against the token's digest (a
// mismatch sends nothing else and creates nothing), then the CSR goes with the token
// over TLS verified against that root; the cluster picks the node id and the role the
// token admits, and hands the certificate out once the log recorded it. Only then is
// the state dir written, node.json last (a crash before it leaves a directory `run`
// refuses and `join` asks to remove).
import { mkdirSync } from "node:fs";
import { createNodeCsr, writeCertificateFile, writePrivateKeyFile } from "../ca/index.js";
import { IssuerCallError, joinCluster } from "../issuer/index.js";
import type { Logger } from "../log/logger.js";
import { joiningState } from "../raft/core/bootstrap.js";
import { DiskStorage } from "../raft/runtime/disk-storage.js";
import type { MemberBinding } from "../raft/runtime/members.js";
import { advertisedAddress, parseHostPort } from "./address.js";
import { NodeError } from "./errors.js";
import {
  NODE_CONFIG_VERSION,
  type NodeConfig,
  requireFreshStateDir,
  stateDirPaths,
  writeNodeConfig,
} from "./state-dir.js";

export interface JoinOptions {
  stateDir: string;
  token: string;
  /** The manager to ask: HOST:PORT. */
  manager: string;
  /** Where this node serves: required for a manager, and for a worker that may be promoted. */
  listen?: string;
  advertise?: string;
  logger: Logger;
  timeoutMs?: number;
}

export interface JoinedNodeState {
  config: NodeConfig;
  /** A manager's (empty) Raft state, to be added as a learner; absent for a worker. */
  storage?: DiskStorage;
  seeds?: Map<number, MemberBinding>;
}

export async function joinNode(options: JoinOptions): Promise<JoinedNodeState> {
  const { stateDir, logger } = options;
  requireFreshStateDir(stateDir);
  parseHostPort("manager address", options.manager);
  const advertise = options.listen ? advertisedAddress(options.listen, options.advertise) : "";
  const { privateKeyPem, csrDer } = createNodeCsr();
  const joined = await joinCluster({
    managerAddress: options.manager,
    token: options.token,
    csrDer,
    address: advertise,
    timeoutMs: options.timeoutMs,
  }).catch((error: unknown) => {
    if (error instanceof IssuerCallError) throw joinRefusal(error, options.manager);
    throw error;
  });
  if (joined.role === "manager" && !options.listen)
    throw new NodeError(
      "ADDRESS_INVALID",
      `the token admits a manager, which must serve: give --listen HOST:PORT. Node ${joined.nodeId} was ` +
        "recorded but has no state dir; remove it (nodectl rm) and join again",
    );
  const paths = stateDirPaths(stateDir);
  mkdirSync(paths.certificates, { recursive: true });
  await writePrivateKeyFile(paths.nodeKey, privateKeyPem);
  await writeCertificateFile(paths.nodeCert, joined.certificateChainPem);
  await writeCertificateFile(paths.caCert, joined.trustBundlePem);
  const raftId = joined.role === "manager" ? Number(joined.raft?.raftId ?? 0) : 0;
  let storage: DiskStorage | undefined;
  if (joined.role === "manager")
    storage = await DiskStorage.create(paths.raft, raftId, joiningState(), { logger });
  const config: NodeConfig = {
    version: NODE_CONFIG_VERSION,
    nodeId: joined.nodeId,
    clusterId: joined.clusterId,
    role: joined.role,
    raftId,
    listen: options.listen ?? "",
    advertise,
    managers: [{ nodeId: joined.managerNodeId, address: options.manager, weight: 1 }],
  };
  try {
    await writeNodeConfig(paths, config);
  } catch (err) {
    await storage?.close();
    throw err;
  }
  logger.info(
    { nodeId: joined.nodeId, role: joined.role, clusterId: joined.clusterId },
    "joined the cluster",
  );
  const seeds = joined.raft
    ? new Map(joined.raft.peers.map((p) => [Number(p.raftId), { nodeId: p.nodeId, address: p.address }]))
    : undefined;
  return { config, storage, seeds };
}

/** The cluster's refusal with what to do; the manager's reason code stays the code. */
function joinRefusal(error: IssuerCallError, manager: string): IssuerCallError {
  // The manager's own messages for the token and address refusals say what to do already.
  const hints: Record<string, string> = {
    OVERLOADED: "the manager is busy; retry in a moment",
    UNAVAILABLE: `check that a manager listens on ${manager} and the cluster has a leader, then retry`,
  };
  const hint = hints[error.code];
  return new IssuerCallError(
    error.code,
    `${error.message.replace(/[.;\s]+$/, "")}${hint ? `; ${hint}` : ""}. Nothing was created`,
    error.grpcStatus,
    error.retryAfterMs,
  );
}
