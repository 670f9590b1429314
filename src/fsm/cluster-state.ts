// The replicated state machine of a cluster: the CA (root, rotation, join-token
// secrets), every node and the removed nodes. Managers apply the same commands in log
// order and get the same state; snapshot/restore carry all of it with a schema version;
// watchers get change events after each apply.
import { Command, CommandResult } from "../gen/fsm/v1/commands.js";
import { type Cluster, type Node, type RemovedNode, State } from "../gen/fsm/v1/state.js";
import * as apply from "./apply.js";
import { FsmRefusal } from "./errors.js";
import type { ChangeEvent, ChangeListener } from "./events.js";
import * as rotation from "./rotation.js";
import type { MutableState } from "./state-data.js";

/** The snapshot format this code writes; restore refuses any other. */
export const SCHEMA_VERSION = 1;

export class SnapshotSchemaError extends Error {
  readonly code = "SNAPSHOT_SCHEMA";
  constructor(found: number) {
    super(
      `snapshot schema version ${found} is not ${SCHEMA_VERSION}: this manager runs a different ` +
        "version of nodectl than the one that wrote it; run the same version on every manager",
    );
    this.name = "SnapshotSchemaError";
  }
}

export class ClusterState {
  private state: MutableState = { cluster: undefined, nodes: new Map(), removed: new Map() };
  private readonly listeners = new Set<ChangeListener>();
  private appliedIndex = 0;

  // ---- the StateMachine seam (src/raft/runtime/types.ts) ----------------------

  /** Applies an encoded `Command`; answers an encoded `CommandResult`. */
  apply(index: number, command: Uint8Array): Uint8Array {
    let decoded: Command;
    try {
      decoded = Command.decode(command);
    } catch {
      return CommandResult.encode(
        refused("INVALID_COMMAND", "the command is not a valid fsm.v1.Command"),
      ).finish();
    }
    return CommandResult.encode(this.applyCommand(index, decoded)).finish();
  }

  snapshot(): Uint8Array {
    return State.encode({
      schemaVersion: SCHEMA_VERSION,
      cluster: this.state.cluster,
      nodes: sortedById(this.state.nodes),
      removedNodes: sortedById(this.state.removed),
    }).finish();
  }

  /** Replaces the whole state; empty data is the state before `CreateCluster`. */
  restore(data: Uint8Array): void {
    const next: MutableState = { cluster: undefined, nodes: new Map(), removed: new Map() };
    if (data.byteLength > 0) {
      const decoded = State.decode(data);
      if (decoded.schemaVersion !== SCHEMA_VERSION) throw new SnapshotSchemaError(decoded.schemaVersion);
      next.cluster = decoded.cluster;
      for (const n of decoded.nodes) next.nodes.set(n.id, n);
      for (const r of decoded.removedNodes) next.removed.set(r.id, r);
    }
    this.state = next;
    this.emit([{ kind: "restored", index: this.appliedIndex }]);
  }

  // ---- typed API ---------------------------------------------------------------

  applyCommand(index: number, command: Command): CommandResult {
    this.appliedIndex = index;
    const changes: ChangeEvent[] = [];
    try {
      this.dispatch(index, command, changes);
    } catch (err) {
      if (err instanceof FsmRefusal) return refused(err.code, err.message);
      throw err;
    }
    this.emit(changes);
    return { ok: true, code: "", message: "" };
  }

  /** Calls `listener` with the events of every apply from now on; returns the unsubscribe. */
  watch(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  cluster(): Cluster | undefined {
    return this.state.cluster;
  }

  node(id: string): Node | undefined {
    return this.state.nodes.get(id);
  }

  nodes(): Node[] {
    return sortedById(this.state.nodes);
  }

  get nodeCount(): number {
    return this.state.nodes.size;
  }

  /** Every node in no particular order, without a copy: for scans that stop early or count. */
  unorderedNodes(): Iterable<Node> {
    return this.state.nodes.values();
  }

  removedNode(id: string): RemovedNode | undefined {
    return this.state.removed.get(id);
  }

  removedNodes(): RemovedNode[] {
    return sortedById(this.state.removed);
  }

  /** The node bound to a Raft member id, if any. */
  nodeByRaftId(raftId: number): Node | undefined {
    if (raftId === 0) return undefined;
    for (const n of this.state.nodes.values()) if (n.raftId === raftId) return n;
    return undefined;
  }

  // ---- private -------------------------------------------------------------------

  private dispatch(index: number, command: Command, out: ChangeEvent[]): void {
    const c = command.command;
    if (!c) throw new FsmRefusal("INVALID_COMMAND", "the command names no operation");
    const handler = HANDLERS[c.$case] as Handler<typeof c.value>;
    handler(this.state, index, c.value, out);
  }

  private emit(events: readonly ChangeEvent[]): void {
    if (events.length === 0) return;
    for (const listener of this.listeners) listener(events);
  }
}

type Operation = NonNullable<Command["command"]>;
type Handler<T> = (s: MutableState, index: number, command: T, out: ChangeEvent[]) => void;

/** One apply function per command (apply.ts); a new command without one fails to compile. */
const HANDLERS: { [K in Operation["$case"]]: Handler<Extract<Operation, { $case: K }>["value"]> } = {
  createCluster: apply.createCluster,
  recordIssuance: apply.recordIssuance,
  setDesiredRole: apply.setDesiredRole,
  removeNode: apply.removeNode,
  rotateJoinToken: apply.rotateJoinToken,
  recordSessions: apply.recordSessions,
  setRaftMembership: apply.setRaftMembership,
  pruneRemovedNodes: apply.pruneRemovedNodes,
  setNodeCertLifetime: apply.setNodeCertLifetime,
  startRootRotation: rotation.startRootRotation,
  advanceRootRotation: rotation.advanceRootRotation,
  recordTrust: rotation.recordTrust,
};

function refused(code: string, message: string): CommandResult {
  return { ok: false, code, message };
}

function sortedById<T extends { id: string }>(map: ReadonlyMap<string, T>): T[] {
  return [...map.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
