// The state directory (DESIGN.md "State directory"): node.json (who this node is),
// certificates/ (node.key 0600, node.crt with its chain, ca.crt), raft/ (managers),
// control.sock (managers). node.json is written last by init, so a directory without
// it is an init that did not finish, never a node.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../ca/index.js";
import { NodeError } from "./errors.js";

export const NODE_CONFIG_VERSION = 1;

export interface ManagerAddress {
  nodeId: string;
  address: string;
  /** The weight the last session push gave it (relative chance of being picked). */
  weight?: number;
}

/** node.json. */
export interface NodeConfig {
  version: number;
  nodeId: string;
  clusterId: string;
  role: "manager" | "worker";
  /** Managers: this node's Raft member id. */
  raftId: number;
  /** Where this node serves (managers: Raft, CA, sessions); "" for a worker joined without --listen. */
  listen: string;
  /** Where other nodes dial it ("" when it does not serve). */
  advertise: string;
  /** The managers this node knows, for reconnecting (workers) and as a seed list. */
  managers: ManagerAddress[];
}

export function stateDirPaths(dir: string) {
  const certificates = join(dir, "certificates");
  return {
    dir,
    nodeJson: join(dir, "node.json"),
    certificates,
    nodeKey: join(certificates, "node.key"),
    nodeCert: join(certificates, "node.crt"),
    caCert: join(certificates, "ca.crt"),
    raft: join(dir, "raft"),
    controlSocket: join(dir, "control.sock"),
    /** The CreateCluster command (holds the root key) until the log has applied it; mode 0600. */
    pendingCluster: join(dir, "pending-cluster.bin"),
  };
}

export type StateDirPaths = ReturnType<typeof stateDirPaths>;

/** init/join: the directory must be new or empty. */
export function requireFreshStateDir(dir: string): void {
  if (!existsSync(dir)) return;
  const entries = readdirSync(dir);
  if (entries.length === 0) return;
  const paths = stateDirPaths(dir);
  if (existsSync(paths.nodeJson))
    throw new NodeError(
      "STATE_DIR_EXISTS",
      `${dir} already holds a node (node.json); nothing was changed. Restart it with ` +
        `nodectl run --state-dir ${dir}, or give a new, empty directory`,
    );
  throw new NodeError(
    "STATE_DIR_EXISTS",
    `${dir} is not empty and holds no node (no node.json: another program's files, or an init that ` +
      "did not finish); nothing was changed. Give a new, empty directory, or remove this one if it is a failed init",
  );
}

export async function writeNodeConfig(paths: StateDirPaths, config: NodeConfig): Promise<void> {
  await writeFileAtomic(paths.nodeJson, `${JSON.stringify(config, null, 2)}\n`, 0o644);
}

export function readNodeConfig(dir: string): NodeConfig {
  const paths = stateDirPaths(dir);
  if (!existsSync(dir))
    throw new NodeError(
      "STATE_DIR_MISSING",
      `state dir ${dir} does not exist; nothing was created. Give the directory this node was created in ` +
        "(nodectl init or nodectl join made it)",
    );
  if (!existsSync(paths.nodeJson))
    throw new NodeError(
      "STATE_DIR_MISSING",
      `${dir} holds no node (no node.json); nothing was changed. Give the directory nodectl init or ` +
        "nodectl join made, or create a node with one of them",
    );
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(paths.nodeJson, "utf8"));
  } catch (cause) {
    throw corrupt(paths.nodeJson, "it is not JSON", cause);
  }
  return validateConfig(paths.nodeJson, parsed);
}

function validateConfig(path: string, value: unknown): NodeConfig {
  if (typeof value !== "object" || value === null) throw corrupt(path, "it is not an object");
  const c = value as Record<string, unknown>;
  if (c.version !== NODE_CONFIG_VERSION)
    throw new NodeError(
      "STATE_DIR_FOREIGN",
      `${path} has version ${String(c.version)}, not ${NODE_CONFIG_VERSION}: it was written by another ` +
        "version of nodectl; run that version",
    );
  for (const key of ["nodeId", "clusterId"] as const)
    if (typeof c[key] !== "string" || c[key] === "") throw corrupt(path, `"${key}" is missing`);
  // A worker joined without --listen serves nothing: both empty.
  for (const key of ["listen", "advertise"] as const)
    if (typeof c[key] !== "string") throw corrupt(path, `"${key}" is missing`);
  if (c.role !== "manager" && c.role !== "worker") throw corrupt(path, `"role" is not manager or worker`);
  if (typeof c.raftId !== "number" || !Number.isInteger(c.raftId) || c.raftId < 0)
    throw corrupt(path, `"raftId" is not a member id`);
  if (!Array.isArray(c.managers)) throw corrupt(path, `"managers" is not a list`);
  return value as NodeConfig;
}

function corrupt(path: string, detail: string, cause?: unknown): NodeError {
  return new NodeError(
    "STATE_DIR_CORRUPT",
    `${path} is unusable (${detail}); nothing was changed. Restore the state dir from a backup, or remove ` +
      "this node from the cluster and join it again",
    { cause },
  );
}
