// Why the node daemon refused to start, to join, or to go on. One class, a closed
// list of stable codes; the CLI maps every NodeError to exit status 1 and prints its
// message, which says what to do. Nothing was changed when one is thrown.

export const NODE_ERROR_CODES = [
  /** init/join was given a directory that already holds a node, or other files. */
  "STATE_DIR_EXISTS",
  /** run was given a directory that does not exist or holds no node. */
  "STATE_DIR_MISSING",
  /** The directory holds something that is not a node's state (or another cluster's). */
  "STATE_DIR_FOREIGN",
  /** node.json or the certificates are unreadable or inconsistent. */
  "STATE_DIR_CORRUPT",
  /** Another process runs on this state dir. */
  "STATE_DIR_LOCKED",
  /** An address flag is malformed or unusable. */
  "ADDRESS_INVALID",
  /** An address is well formed but cannot be listened on (in use, not local). */
  "ADDRESS_UNAVAILABLE",
  /** The node cannot take that role (promoted without a listen address). */
  "NOT_SUPPORTED",
  /** The cluster removed this node: its state dir cannot come back. */
  "NODE_REMOVED",
] as const;

export type NodeErrorCode = (typeof NODE_ERROR_CODES)[number];

export class NodeError extends Error {
  constructor(
    readonly code: NodeErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "NodeError";
  }
}
