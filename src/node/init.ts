// `nodectl init`: a new cluster's first manager. Everything random is drawn here
// (cluster id, node id, root key, node key, join secrets, serials) and travels in the
// CreateCluster command, which the manager proposes once it leads (cluster-creation.ts):
// the replicated state machine draws and signs nothing itself.
import { mkdirSync, rmSync } from "node:fs";
import {
  checkNodeCsr,
  createNodeCsr,
  DEFAULT_NODE_CERT_LIFETIME_MS,
  generateJoinSecret,
  RootCA,
  writeCertificateFile,
  writeFileAtomic,
  writePrivateKeyFile,
} from "../ca/index.js";
import { encodeCommand } from "../fsm/index.js";
import type { CreateCluster } from "../gen/fsm/v1/commands.js";
import { NodeStatus, RaftMembership, Role } from "../gen/fsm/v1/state.js";
import type { Logger } from "../log/logger.js";
import { bootstrapState } from "../raft/core/bootstrap.js";
import { DiskStorage } from "../raft/runtime/disk-storage.js";
import { encodeMemberContext } from "../raft/runtime/members.js";
import { advertisedAddress } from "./address.js";
import { randomId } from "./ids.js";
import {
  NODE_CONFIG_VERSION,
  type NodeConfig,
  requireFreshStateDir,
  stateDirPaths,
  writeNodeConfig,
} from "./state-dir.js";

/** The first manager is Raft member 1 (the only founding voter). */
export const FIRST_MANAGER_RAFT_ID = 1;
/** How long after expiry a node may still renew its certificate (DESIGN.md "Day-2 operations"). */
export const DEFAULT_RENEWAL_GRACE_S = 7 * 24 * 60 * 60;

export interface InitOptions {
  stateDir: string;
  listen: string;
  advertise?: string;
  certExpiryMs?: number;
  logger: Logger;
}

export interface InitializedManager {
  config: NodeConfig;
  storage: DiskStorage;
}

/**
 * Creates the state dir of a new cluster's first manager. node.json is written last:
 * a crash before it leaves a directory that `run` refuses and `init` asks to remove.
 */
export async function initManager(options: InitOptions): Promise<InitializedManager> {
  const { stateDir, logger } = options;
  requireFreshStateDir(stateDir);
  const advertise = advertisedAddress(options.listen, options.advertise);
  const paths = stateDirPaths(stateDir);
  const clusterId = randomId();
  const nodeId = randomId();
  const lifetimeMs = options.certExpiryMs ?? DEFAULT_NODE_CERT_LIFETIME_MS;
  const now = new Date();

  const root = RootCA.create({ clusterId, now });
  const { privateKeyPem, csrPem } = createNodeCsr();
  const issued = root.issueNodeCertificate({
    csr: checkNodeCsr(csrPem),
    role: "manager",
    nodeId,
    lifetimeMs,
    now,
  });

  mkdirSync(paths.certificates, { recursive: true });
  await writePrivateKeyFile(paths.nodeKey, privateKeyPem);
  await writeCertificateFile(paths.nodeCert, issued.chainPem);
  await writeCertificateFile(paths.caCert, root.certificatePem);

  const creation: CreateCluster = {
    cluster: {
      id: clusterId,
      root: {
        certPem: Buffer.from(root.certificatePem),
        keyPem: Buffer.from(root.privateKeyPem()),
        keyId: root.keyId,
      },
      rotation: undefined,
      joinTokenSecrets: { worker: generateJoinSecret(), manager: generateJoinSecret(), rotatedSha256: [] },
      nodeCertLifetimeS: Math.ceil(lifetimeMs / 1000),
      renewalGraceS: DEFAULT_RENEWAL_GRACE_S,
      createdAtMs: now.getTime(),
      nextRaftId: 0,
    },
    firstNode: {
      id: nodeId,
      role: Role.ROLE_MANAGER,
      desiredRole: Role.ROLE_MANAGER,
      raftId: FIRST_MANAGER_RAFT_ID,
      membership: RaftMembership.RAFT_MEMBERSHIP_VOTER,
      // The first manager is the process creating the cluster: ready by construction.
      status: NodeStatus.NODE_STATUS_READY,
      statusChangedAtMs: now.getTime(),
      address: advertise,
      certificate: {
        serial: issued.serialNumber,
        notAfterMs: issued.notAfter.getTime(),
        issuerKeyId: issued.issuerKeyId,
        der: issued.certificateDer,
      },
      session: undefined,
      joinedAtMs: now.getTime(),
      earlierCertificates: [],
      trustedRootKeyId: "",
      heldIssuerKeyId: "",
    },
  };
  // Holds the root key until the log has it; mode 0600 like every key, removed once applied.
  await writeFileAtomic(
    paths.pendingCluster,
    encodeCommand({ $case: "createCluster", value: creation }),
    0o600,
  );

  const contexts = new Map([[FIRST_MANAGER_RAFT_ID, encodeMemberContext({ nodeId, address: advertise })]]);
  const storage = await DiskStorage.create(
    paths.raft,
    FIRST_MANAGER_RAFT_ID,
    bootstrapState([FIRST_MANAGER_RAFT_ID], contexts),
    { logger },
  );
  const config: NodeConfig = {
    version: NODE_CONFIG_VERSION,
    nodeId,
    clusterId,
    role: "manager",
    raftId: FIRST_MANAGER_RAFT_ID,
    listen: options.listen,
    advertise,
    managers: [{ nodeId, address: advertise }],
  };
  try {
    await writeNodeConfig(paths, config);
  } catch (err) {
    await storage.close();
    throw err;
  }
  logger.info({ clusterId, nodeId, stateDir }, "cluster state dir created");
  return { config, storage };
}

/**
 * Undoes an init whose manager could not start (its port was taken, say): the state dir
 * is left empty, as init found it, so the same command can simply be run again.
 */
export function discardInit(stateDir: string): void {
  const paths = stateDirPaths(stateDir);
  for (const path of [
    paths.nodeJson,
    paths.pendingCluster,
    paths.controlSocket,
    paths.raft,
    paths.certificates,
  ])
    rmSync(path, { recursive: true, force: true });
}
