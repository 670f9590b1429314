// Which node an operator's ID names: the exact id, or (like docker) a prefix that names
// exactly one node, so `nodectl rm 3fk2` works on a 25-character id. A removed node is
// matched by its exact id only: a prefix never reaches into the removed list.
import type { ClusterState } from "../fsm/index.js";
import type { Node } from "../gen/fsm/v1/state.js";
import { ControlError } from "./errors.js";

/** Ambiguous candidates named in the refusal, at most. */
const MAX_CANDIDATES_SHOWN = 5;

export type NodeLookup = { kind: "node"; node: Node } | { kind: "removed"; id: string };

/** The node `id` names, or the removed node of that exact id; refuses an unknown or ambiguous id. */
export function lookupNode(state: ClusterState, id: string): NodeLookup {
  if (id.length === 0) throw new ControlError("INVALID_ARGUMENT", "a node id is required");
  const exact = state.node(id);
  if (exact) return { kind: "node", node: exact };
  if (state.removedNode(id)) return { kind: "removed", id };
  const candidates = state.nodes().filter((n) => n.id.startsWith(id));
  const [only] = candidates;
  if (only && candidates.length === 1) return { kind: "node", node: only };
  if (candidates.length > 1) {
    const shown = candidates.slice(0, MAX_CANDIDATES_SHOWN).map((n) => n.id);
    const more = candidates.length > shown.length ? `, and ${candidates.length - shown.length} more` : "";
    throw new ControlError(
      "AMBIGUOUS_NODE_ID",
      `"${id}" is the start of ${candidates.length} node ids (${shown.join(", ")}${more}); give more of the id`,
    );
  }
  throw new ControlError("NODE_NOT_FOUND", `no node ${id}; nodectl ls lists the nodes`);
}

/** The live node `id` names; a removed one is refused (NODE_REMOVED). */
export function requireLiveNode(state: ClusterState, id: string): Node {
  const found = lookupNode(state, id);
  if (found.kind === "node") return found.node;
  throw new ControlError(
    "REFUSED",
    `node ${id} was removed from the cluster; a removed node cannot come back: join a new node instead`,
    "NODE_REMOVED",
  );
}
