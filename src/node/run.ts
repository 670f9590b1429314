// `nodectl run`: restarts a node from its state dir. Everything is checked before
// anything is written: node.json, the certificates against it, then the Raft state
// (DiskStorage.open refuses a missing, foreign, corrupt or locked directory and says
// what to do).
import type { Logger } from "../log/logger.js";
import { DiskStorage } from "../raft/runtime/disk-storage.js";
import { NodeError } from "./errors.js";
import { Manager } from "./manager.js";
import { readNodeConfig, stateDirPaths } from "./state-dir.js";

export interface OpenManagerOptions {
  stateDir: string;
  metricsAddress?: string;
  logger: Logger;
}

export async function openManager(options: OpenManagerOptions): Promise<Manager> {
  const config = readNodeConfig(options.stateDir);
  if (config.role !== "manager")
    throw new NodeError(
      "NOT_SUPPORTED",
      `${options.stateDir} holds a worker; this build runs managers only (worker sessions come next)`,
    );
  const logger = options.logger.child({ nodeId: config.nodeId });
  const storage = await DiskStorage.open(stateDirPaths(options.stateDir).raft, config.raftId, { logger });
  return Manager.start({
    stateDir: options.stateDir,
    config,
    storage,
    metricsAddress: options.metricsAddress,
    logger,
  });
}
