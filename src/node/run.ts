// `nodectl run`: restarts a node from its state dir. Everything is checked before
// anything is written: node.json, the certificates against it, then (managers) the
// Raft state (DiskStorage.open refuses a missing, foreign, corrupt or locked directory
// and says what to do).
import type { Logger } from "../log/logger.js";
import { DiskStorage } from "../raft/runtime/disk-storage.js";
import { NodeDaemon } from "./daemon.js";
import { readNodeConfig, stateDirPaths } from "./state-dir.js";
import { lockStateDir } from "./state-lock.js";

export interface OpenNodeOptions {
  stateDir: string;
  metricsAddress?: string;
  logger: Logger;
  heartbeatPeriodMs?: number;
}

export async function openNode(options: OpenNodeOptions): Promise<NodeDaemon> {
  const config = readNodeConfig(options.stateDir);
  const logger = options.logger.child({ self: config.nodeId });
  // The directory's lock first: a second process on it is refused before it opens anything.
  const lock = await lockStateDir(options.stateDir);
  const storage =
    config.role === "manager"
      ? await lock.guard(() =>
          DiskStorage.open(stateDirPaths(options.stateDir).raft, config.raftId, { logger }),
        )
      : undefined;
  return NodeDaemon.start({
    stateDir: options.stateDir,
    config,
    storage,
    metricsAddress: options.metricsAddress,
    logger,
    heartbeatPeriodMs: options.heartbeatPeriodMs,
    lock,
  });
}
