// Change events: what an applied command changed, handed to watchers (the dispatcher,
// the issuer's reconcilers, the authorizer) after the state reflects it.
import type { Cluster, Node, RemovedNode } from "../gen/fsm/v1/state.js";

export type ChangeEvent =
  | { kind: "cluster"; index: number; cluster: Cluster; previous: Cluster | undefined }
  | { kind: "node"; index: number; node: Node; previous: Node | undefined }
  | { kind: "nodeRemoved"; index: number; removed: RemovedNode; previous: Node }
  | { kind: "removedPruned"; index: number; id: string }
  /** The whole state was replaced (snapshot installed): watchers reread what they need. */
  | { kind: "restored"; index: number };

export type ChangeListener = (events: readonly ChangeEvent[]) => void;
