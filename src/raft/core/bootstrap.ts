// Initial persistent states: a brand-new cluster, and a node that will join one.
import { ConfChange, ConfChangeType, type Entry, EntryType, type Snapshot } from "../../gen/raft/v1/raft.js";
import type { PersistentState } from "./types.js";

export function emptySnapshot(): Snapshot {
  return { metadata: { index: 0, term: 0, confState: { voters: [], learners: [] } }, data: new Uint8Array() };
}

/**
 * A new cluster's first log: one committed entry per founding voter (term 1),
 * so a member that joins later replays the same configuration history.
 * `contexts` (opaque to Raft) become the entries' ConfChange contexts: the
 * runtime puts each founding voter's identity there.
 */
export function bootstrapState(
  voters: number[],
  contexts: ReadonlyMap<number, Uint8Array> = new Map(),
): PersistentState {
  const entries: Entry[] = voters.map((nodeId, i) => ({
    term: 1,
    index: i + 1,
    type: EntryType.ENTRY_TYPE_CONF_CHANGE,
    data: ConfChange.encode({
      type: ConfChangeType.CONF_CHANGE_TYPE_PROMOTE_VOTER,
      nodeId,
      context: contexts.get(nodeId) ?? new Uint8Array(),
    }).finish(),
  }));
  return { hardState: { term: 1, vote: 0, commit: entries.length }, snapshot: emptySnapshot(), entries };
}

/** A node that was added as a learner: it learns everything from the leader. */
export function joiningState(): PersistentState {
  return { hardState: { term: 0, vote: 0, commit: 0 }, snapshot: emptySnapshot(), entries: [] };
}
