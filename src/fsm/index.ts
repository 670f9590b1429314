// src/fsm: the replicated state of a cluster (CA, nodes, removed nodes) as a
// deterministic state machine. It knows nothing of gRPC or of the Raft runtime: it
// offers the runtime the StateMachine shape (apply/snapshot/restore) and its watchers
// change events.
export { ClusterState, SCHEMA_VERSION, SnapshotSchemaError } from "./cluster-state.js";
export { demotionRefusal } from "./demotion.js";
export { MAX_EARLIER_CERTIFICATES } from "./earlier-certificates.js";
export { FSM_ERROR_CODES, type FsmErrorCode, FsmRefusal, isFsmErrorCode } from "./errors.js";
export type { ChangeEvent, ChangeListener } from "./events.js";
export { joinSecretSha256, MAX_ROTATED_SECRETS } from "./join-secret.js";
export { type CommandLog, encodeCommand, type Operation, proposeCommand } from "./propose.js";
export { ReconcileLoop, type ReconcileLoopOptions } from "./reconcile-loop.js";
export { renewedFor, rotationProgress, trustsOnly } from "./rotation.js";
