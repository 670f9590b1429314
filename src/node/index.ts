// src/node: the node daemon, the one place a process is wired together (DESIGN.md
// "Layers"). This step runs managers: `init` creates a cluster's first manager (root
// CA, node certificate, Raft bootstrap, the CreateCluster command proposed once it
// leads), `run` restarts one from its state dir; both serve Raft and health over mTLS,
// the control API on control.sock and optional metrics, until a signal stops them.
export { advertisedAddress, parseHostPort } from "./address.js";
export { NODE_ERROR_CODES, NodeError, type NodeErrorCode } from "./errors.js";
export { serveUntilSignal } from "./foreground.js";
export { discardInit, type InitializedManager, type InitOptions, initManager } from "./init.js";
export { Manager, type ManagerOptions } from "./manager.js";
export { openManager } from "./run.js";
export { type NodeConfig, readNodeConfig, stateDirPaths } from "./state-dir.js";
