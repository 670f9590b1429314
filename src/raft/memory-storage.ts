// Durable-state model kept in memory: what survives a crash in the simulator
// and in unit tests. It follows the Ready contract exactly as the level-backed
// storage does.
import type { Entry, HardState, Snapshot } from "../gen/raft/v1/raft.js";
import { emptySnapshot } from "./core/bootstrap.js";
import { firstStoredAfterCompaction } from "./core/log.js";
import type { PersistentState, Ready } from "./core/types.js";

export class MemoryStorage {
  hardState: HardState;
  snapshot: Snapshot;
  entries: Entry[];

  constructor(initial: PersistentState) {
    this.hardState = { ...initial.hardState };
    this.snapshot = initial.snapshot ?? emptySnapshot();
    this.entries = [...initial.entries];
  }

  /** Persists one Ready's durable part, atomically. */
  persist(rd: Ready): void {
    if (rd.snapshot) {
      this.snapshot = rd.snapshot;
      this.entries = [];
    }
    if (rd.entries.length > 0) {
      // Entries are contiguous: truncate by position, then append.
      const firstStored = this.entries[0]?.index ?? this.snapshot.metadata!.index + 1;
      const keep = rd.entries[0].index - firstStored;
      if (keep < this.entries.length) this.entries.length = Math.max(0, keep);
      for (const e of rd.entries) this.entries.push(e);
    }
    if (rd.hardState) this.hardState = { ...rd.hardState };
  }

  /** The state machine took a snapshot: drop the entries it covers but the last `keepEntries`. */
  compact(snapshot: Snapshot, keepEntries = 0): void {
    if (snapshot.metadata!.index <= this.snapshot.metadata!.index) return;
    this.snapshot = snapshot;
    const from = firstStoredAfterCompaction(snapshot.metadata!.index, keepEntries);
    this.entries = this.entries.filter((e) => e.index >= from);
  }

  load(): PersistentState {
    return {
      hardState: { ...this.hardState },
      snapshot: this.snapshot,
      entries: [...this.entries],
      applied: this.snapshot.metadata!.index,
    };
  }
}
