// The binding of Raft member ids to node ids (certificate CNs), as the applied
// membership configuration says. It is built from the log's configuration
// changes (their MemberContext) and carried in every snapshot the runtime takes
// (RuntimeSnapshot), so it is the same on every member at the same index and it
// survives restarts, compaction and snapshot installs. The transport delivers a
// message only from the member its sender's certificate is bound to.

import { MemberContext, RuntimeSnapshot } from "../../gen/raft/v1/membership.js";
import { ConfChangeType, type ConfState } from "../../gen/raft/v1/raft.js";

export interface MemberBinding {
  /** The CN of the certificate this member must present, as a string (never read as a number). */
  nodeId: string;
  /** host:port of its Raft transport. */
  address: string;
}

/** The whole membership as the transport needs it. */
export interface Membership {
  members: ReadonlyMap<number, MemberBinding>;
  /** Ids removed from the configuration: never accepted again unless the log adds them back. */
  removed: ReadonlySet<number>;
  /** The voters of the applied configuration (a binding learned outside the log needs a majority of them). */
  voters: ReadonlySet<number>;
  /** Node ids of removed members: never accepted under any id unless the log binds them again. */
  removedNodeIds: ReadonlySet<string>;
}

export function encodeMemberContext(context: Partial<MemberContext>): Uint8Array {
  return MemberContext.encode({
    requestId: context.requestId ?? new Uint8Array(),
    nodeId: context.nodeId ?? "",
    address: context.address ?? "",
  }).finish();
}

/** The context of a configuration change; undefined when it is not a MemberContext. */
export function decodeMemberContext(bytes: Uint8Array): MemberContext | undefined {
  try {
    return MemberContext.decode(bytes);
  } catch {
    return undefined;
  }
}

export class MemberRegistry {
  private readonly members = new Map<number, MemberBinding>();
  private readonly removed = new Set<number>();
  private readonly voters = new Set<number>();
  private readonly removedNodeIds = new Set<string>();

  /** Applies one committed configuration change; returns a complaint to log, if any. */
  apply(type: ConfChangeType, raftId: number, context: MemberContext | undefined): string | undefined {
    switch (type) {
      case ConfChangeType.CONF_CHANGE_TYPE_ADD_LEARNER:
      case ConfChangeType.CONF_CHANGE_TYPE_PROMOTE_VOTER: {
        // A promotion names nobody new (the learner is bound already), except in the
        // founding voters' bootstrap entries, which promote members straight in.
        if (!context?.nodeId) {
          if (!this.members.has(raftId)) return `member ${raftId} was added without a node id`;
          this.setVoter(raftId, type);
          return undefined;
        }
        const bound = this.members.get(raftId);
        // An id never changes node: re-binding would hand one member's place to another certificate.
        if (bound && bound.nodeId !== context.nodeId)
          return `member ${raftId} is bound to ${bound.nodeId}; ignored a change naming ${context.nodeId}`;
        const holder = this.raftIdOf(context.nodeId);
        if (holder !== undefined && holder !== raftId)
          return `node ${context.nodeId} is member ${holder} already; ignored it as member ${raftId}`;
        this.members.set(raftId, { nodeId: context.nodeId, address: context.address });
        this.removed.delete(raftId);
        this.removedNodeIds.delete(context.nodeId);
        this.setVoter(raftId, type);
        return undefined;
      }
      case ConfChangeType.CONF_CHANGE_TYPE_REMOVE_NODE: {
        const gone = this.members.get(raftId);
        if (gone) this.removedNodeIds.add(gone.nodeId);
        this.members.delete(raftId);
        this.voters.delete(raftId);
        this.removed.add(raftId);
        return undefined;
      }
      default:
        return undefined;
    }
  }

  /** A promotion makes a voter; adding as a learner makes (or keeps) a learner. */
  private setVoter(raftId: number, type: ConfChangeType): void {
    if (type === ConfChangeType.CONF_CHANGE_TYPE_PROMOTE_VOTER) this.voters.add(raftId);
    else this.voters.delete(raftId);
  }

  raftIdOf(nodeId: string): number | undefined {
    for (const [id, binding] of this.members) if (binding.nodeId === nodeId) return id;
    return undefined;
  }

  /** A copy: the transport keeps it while the registry moves on. */
  view(): Membership {
    return {
      members: new Map(this.members),
      removed: new Set(this.removed),
      voters: new Set(this.voters),
      removedNodeIds: new Set(this.removedNodeIds),
    };
  }

  /** Wraps the state machine's snapshot with the bindings at the same index. */
  wrapSnapshot(stateMachine: Uint8Array): Uint8Array {
    return RuntimeSnapshot.encode({
      members: [...this.members].map(([raftId, b]) => ({ raftId, nodeId: b.nodeId, address: b.address })),
      removed: [...this.removed],
      stateMachine,
      removedNodeIds: [...this.removedNodeIds],
    }).finish();
  }

  /**
   * Replaces the bindings with a snapshot's and returns the state machine's bytes.
   * An empty snapshot (a new member's, or a new cluster's) decodes to no bindings.
   * The voters come from the snapshot's own configuration.
   */
  restoreSnapshot(data: Uint8Array, confState: ConfState | undefined): Uint8Array {
    const snapshot = RuntimeSnapshot.decode(data);
    this.members.clear();
    this.removed.clear();
    this.voters.clear();
    this.removedNodeIds.clear();
    for (const m of snapshot.members) this.members.set(m.raftId, { nodeId: m.nodeId, address: m.address });
    for (const id of snapshot.removed) this.removed.add(id);
    for (const id of confState?.voters ?? []) this.voters.add(id);
    for (const nodeId of snapshot.removedNodeIds) this.removedNodeIds.add(nodeId);
    return snapshot.stateMachine;
  }
}
