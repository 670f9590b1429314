// The replicated state's in-memory shape, shared by apply and the state machine.
import type { Cluster, Node, RemovedNode } from "../gen/fsm/v1/state.js";

/** Objects in the maps are replaced, never mutated: a change event's `previous` stays valid. */
export interface MutableState {
  cluster: Cluster | undefined;
  nodes: Map<string, Node>;
  removed: Map<string, RemovedNode>;
}
