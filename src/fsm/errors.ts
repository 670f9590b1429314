// Why the replicated state refused a command. A refusal changes nothing; the code is
// stable (services map it to their own refusals and the CLI to its exit status).

export const FSM_ERROR_CODES = [
  "CLUSTER_EXISTS",
  "NO_CLUSTER",
  "NODE_EXISTS",
  "NODE_NOT_FOUND",
  "NODE_REMOVED",
  "NODE_IS_MANAGER",
  "NODE_UP",
  /** A demotion of the last node whose desired role is manager. */
  "LAST_MANAGER",
  /** A demotion that would leave the remaining voting managers without a ready majority. */
  "QUORUM_AT_RISK",
  "RAFT_ID_IN_USE",
  "INVALID_COMMAND",
  /** A join's token secret matches no current secret of its role (and was never rotated). */
  "TOKEN_INVALID",
  /** A join's token secret was replaced by `join-token --rotate` (possibly after the issuer checked it). */
  "TOKEN_ROTATED",
  /** A rotation command names no rotation in progress, or another one than the current. */
  "NO_ROTATION",
  /** A rotation cannot move on yet: some node has not renewed, or not confirmed the new root. */
  "ROTATION_PENDING",
] as const;

export type FsmErrorCode = (typeof FSM_ERROR_CODES)[number];

export class FsmRefusal extends Error {
  constructor(
    readonly code: FsmErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "FsmRefusal";
  }
}

export function isFsmErrorCode(code: string): code is FsmErrorCode {
  return (FSM_ERROR_CODES as readonly string[]).includes(code);
}
