// `init` and `run`: the node daemon in the foreground until SIGTERM or SIGINT, then a
// graceful stop. The daemon's modules are imported here on demand, so admin commands
// never load them.

import { resolve } from "node:path";
import { MIN_NODE_CERT_LIFETIME_MS } from "../ca/profile.js";
import type { Manager } from "../node/manager.js";
import { parseDurationMs } from "./duration.js";

export interface InitFlags {
  stateDir: string;
  listen: string;
  advertise?: string;
  certExpiry?: string;
  metrics?: string;
}

export interface RunFlags {
  stateDir: string;
  metrics?: string;
}

/** Resolves with the exit status once the daemon stopped. */
export async function initCommand(flags: InitFlags): Promise<number> {
  const certExpiryMs =
    flags.certExpiry === undefined
      ? undefined
      : parseDurationMs("--cert-expiry", flags.certExpiry, MIN_NODE_CERT_LIFETIME_MS);
  const stateDir = resolve(flags.stateDir);
  const node = await import("../node/index.js");
  const { createLogger } = await import("../log/logger.js");
  if (flags.metrics) node.parseHostPort("--metrics", flags.metrics);
  const logger = createLogger();
  const { config, storage } = await node.initManager({
    stateDir,
    listen: flags.listen,
    advertise: flags.advertise,
    certExpiryMs,
    logger,
  });
  let manager: Manager;
  try {
    manager = await node.Manager.start({
      stateDir,
      config,
      storage,
      metricsAddress: flags.metrics,
      logger: logger.child({ nodeId: config.nodeId }),
    });
  } catch (err) {
    // The manager never ran: leave the directory as init found it, so the same init can be retried.
    node.discardInit(stateDir);
    throw err;
  }
  process.stdout.write(
    `Cluster ${config.clusterId} created; this manager is node ${config.nodeId}, listening on ${config.listen}.\n` +
      `Admin commands: nodectl ls --state-dir ${stateDir}; ` +
      `join tokens: nodectl join-token worker --state-dir ${stateDir}\n`,
  );
  return node.serveUntilSignal(manager, logger);
}

export async function runCommand(flags: RunFlags): Promise<number> {
  const node = await import("../node/index.js");
  const { createLogger } = await import("../log/logger.js");
  if (flags.metrics) node.parseHostPort("--metrics", flags.metrics);
  const logger = createLogger();
  const manager: Manager = await node.openManager({
    stateDir: resolve(flags.stateDir),
    metricsAddress: flags.metrics,
    logger,
  });
  process.stdout.write(`Manager ${manager.nodeId} of cluster ${manager.clusterId} running.\n`);
  return node.serveUntilSignal(manager, logger);
}
