// src/node: the node daemon, the one place a process is wired together (DESIGN.md
// "Layers"). `init` creates a cluster's first manager (root CA, node certificate, Raft
// bootstrap, the CreateCluster command proposed once it leads); `join` makes a worker
// or manager of an existing cluster with a token; `run` restarts either from its state
// dir. Every node keeps a session and renews; managers serve Raft, the CA service,
// sessions, health and the control API, until a signal stops them.
export { advertisedAddress, parseHostPort } from "./address.js";
export { NodeDaemon, type NodeDaemonOptions } from "./daemon.js";
export { NODE_ERROR_CODES, NodeError, type NodeErrorCode } from "./errors.js";
export { serveUntilSignal } from "./foreground.js";
export { discardInit, type InitializedManager, type InitOptions, initManager } from "./init.js";
export { type JoinedNodeState, type JoinOptions, joinNode } from "./join.js";
export { LeaveError, leaveCluster } from "./leave.js";
export { Manager, type ManagerOptions } from "./manager.js";
export { openNode } from "./run.js";
export { type NodeConfig, readNodeConfig, stateDirPaths } from "./state-dir.js";
export { lockStateDir, type StateDirLock } from "./state-lock.js";
