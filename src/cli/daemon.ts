// `init`, `join` and `run`: the node daemon in the foreground until SIGTERM or SIGINT,
// then a graceful stop. The daemon's modules are imported here on demand, so admin
// commands never load them.

import { resolve } from "node:path";
import { MIN_NODE_CERT_LIFETIME_MS } from "../ca/profile.js";
import type { Logger } from "../log/logger.js";
import type { NodeDaemon } from "../node/daemon.js";
import { parseDurationMs } from "./duration.js";

export interface InitFlags {
  stateDir: string;
  listen: string;
  advertise?: string;
  certExpiry?: string;
  metrics?: string;
}

export interface JoinFlags {
  stateDir: string;
  token: string;
  listen?: string;
  advertise?: string;
  metrics?: string;
}

export interface RunFlags {
  stateDir: string;
  metrics?: string;
}

/** Test and demo knob: a shorter session heartbeat period (ms), from the environment. */
function heartbeatPeriodMs(): number | undefined {
  const value = Number(process.env.NODECTL_HEARTBEAT_MS);
  return Number.isInteger(value) && value >= 50 ? value : undefined;
}

/**
 * The daemon's logger, grpc-js's own messages included: they would otherwise go to stderr as
 * bare lines ("E No address added out of total 1 resolved") between the daemon's JSON lines.
 */
async function daemonLogger(): Promise<Logger> {
  const { createLogger } = await import("../log/logger.js");
  const grpc = await import("@grpc/grpc-js");
  const logger = createLogger();
  const grpcLog = logger.child({ component: "grpc-js" });
  const text = (args: unknown[]) => args.map(String).join(" ");
  grpc.setLogger({
    error: (...args: unknown[]) => grpcLog.warn(text(args)),
    info: (...args: unknown[]) => grpcLog.info(text(args)),
    debug: (...args: unknown[]) => grpcLog.debug(text(args)),
  });
  return logger;
}

/** Resolves with the exit status once the daemon stopped. */
export async function initCommand(flags: InitFlags): Promise<number> {
  const certExpiryMs =
    flags.certExpiry === undefined
      ? undefined
      : parseDurationMs("--cert-expiry", flags.certExpiry, MIN_NODE_CERT_LIFETIME_MS);
  const stateDir = resolve(flags.stateDir);
  const node = await import("../node/index.js");
  if (flags.metrics) node.parseHostPort("--metrics", flags.metrics);
  const logger = await daemonLogger();
  // Locked before init looks inside, so two of them cannot both write the directory.
  const lock = await node.lockStateDir(stateDir);
  const { config, storage } = await lock.guard(() =>
    node.initManager({ stateDir, listen: flags.listen, advertise: flags.advertise, certExpiryMs, logger }),
  );
  let daemon: NodeDaemon;
  try {
    daemon = await node.NodeDaemon.start({
      stateDir,
      config,
      storage,
      metricsAddress: flags.metrics,
      logger: logger.child({ self: config.nodeId }),
      heartbeatPeriodMs: heartbeatPeriodMs(),
      lock,
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
  return node.serveUntilSignal(daemon, logger);
}

export async function joinCommand(manager: string, flags: JoinFlags): Promise<number> {
  const stateDir = resolve(flags.stateDir);
  const node = await import("../node/index.js");
  if (flags.metrics) node.parseHostPort("--metrics", flags.metrics);
  const logger = await daemonLogger();
  // Locked before join looks inside: two joins on one directory cannot both be recorded.
  const lock = await node.lockStateDir(stateDir);
  const joined = await lock.guard(() =>
    node.joinNode({
      stateDir,
      token: flags.token,
      manager,
      listen: flags.listen,
      advertise: flags.advertise,
      logger,
    }),
  );
  const daemon = await node.NodeDaemon.start({
    stateDir,
    config: joined.config,
    storage: joined.storage,
    seeds: joined.seeds,
    metricsAddress: flags.metrics,
    logger: logger.child({ self: joined.config.nodeId }),
    heartbeatPeriodMs: heartbeatPeriodMs(),
    lock,
  });
  process.stdout.write(
    `Joined cluster ${joined.config.clusterId} as ${joined.config.role} ${joined.config.nodeId}.\n`,
  );
  return node.serveUntilSignal(daemon, logger);
}

export async function runCommand(flags: RunFlags): Promise<number> {
  const node = await import("../node/index.js");
  if (flags.metrics) node.parseHostPort("--metrics", flags.metrics);
  const logger = await daemonLogger();
  const daemon = await node.openNode({
    stateDir: resolve(flags.stateDir),
    metricsAddress: flags.metrics,
    logger,
    heartbeatPeriodMs: heartbeatPeriodMs(),
  });
  process.stdout.write(`Node ${daemon.nodeId} (${daemon.role}) of cluster ${daemon.clusterId} running.\n`);
  return node.serveUntilSignal(daemon, logger);
}

export async function leaveCommand(flags: { stateDir: string }): Promise<number> {
  const node = await import("../node/index.js");
  const { createLogger } = await import("../log/logger.js");
  const stateDir = resolve(flags.stateDir);
  const nodeId = await node.leaveCluster(stateDir, createLogger({}, { level: "warn" }));
  process.stdout.write(
    `Node ${nodeId} left the cluster: its session is closed and its certificates are refused. ` +
      `Its daemon stops on its own; ${stateDir} can be deleted.\n`,
  );
  return 0;
}
