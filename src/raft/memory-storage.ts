// Durable-state model kept in memory: what survives a crash in the simulator and in
// unit tests. It persists a Ready the way DiskStorage (runtime/disk-storage.ts) does,
// so a crash loses what a kill -9 of a real member loses:
// - a Ready that only moves the commit index writes nothing; its hard state rides
//   with the next write (etcd's MustSync), and a crash before that loses it;
// - a write is a sequence of durable parts: the snapshot (its own synced write), then
//   the log records in order (a snapshot mark, the entries, the hard state last). A
//   crash in the middle of a write keeps a prefix of them (`persistPrefix`).
import type { Entry, HardState, Snapshot } from "../gen/raft/v1/raft.js";
import { emptySnapshot } from "./core/bootstrap.js";
import { firstStoredAfterCompaction } from "./core/log.js";
import { mustPersistCommit, type PersistentState, type Ready } from "./core/types.js";

/** One durable part of a write, in the order DiskStorage makes them durable. */
type Part =
  | { kind: "snapshot"; snapshot: Snapshot }
  | { kind: "mark" }
  | { kind: "entry"; entry: Entry }
  | { kind: "hardState"; hardState: HardState };

export interface MemoryStorageOptions {
  /**
   * Write a commit-only hard state at once instead of with the next write (the
   * runtime defers it): for tests that want the older, stronger model.
   */
  syncCommitOnly?: boolean;
}

export class MemoryStorage {
  /** The durable hard state. */
  hardState: HardState;
  snapshot: Snapshot;
  entries: Entry[];
  /** A commit-only hard state not written yet: lost at a crash. */
  private deferred: HardState | undefined;

  constructor(
    initial: PersistentState,
    private readonly options: MemoryStorageOptions = {},
  ) {
    this.hardState = { ...initial.hardState };
    this.snapshot = initial.snapshot ?? emptySnapshot();
    this.entries = [...initial.entries];
  }

  /** Persists one Ready's durable part completely. */
  persist(rd: Ready): void {
    this.persistPrefix(rd, Number.POSITIVE_INFINITY);
  }

  /** How many durable parts persisting `rd` writes (0: nothing, e.g. commit only). */
  partCount(rd: Ready): number {
    return this.parts(rd).length;
  }

  /**
   * Persists the first `count` durable parts of a Ready: what a crash in the middle of
   * its write leaves. Call it once per Ready, before any later Ready.
   */
  persistPrefix(rd: Ready, count: number): void {
    const parts = this.parts(rd);
    if (parts.length === 0 && rd.hardState) this.deferred = { ...rd.hardState };
    if (parts.length > 0 && count >= parts.length) this.deferred = undefined;
    for (const part of parts.slice(0, count)) this.write(part);
  }

  /** The process died: what was only in memory is gone. */
  crash(): void {
    this.deferred = undefined;
  }

  /** The state machine took a snapshot: drop the entries it covers but the last `keepEntries`. */
  compact(snapshot: Snapshot, keepEntries = 0): void {
    if (snapshot.metadata!.index <= this.snapshot.metadata!.index) return;
    this.snapshot = snapshot;
    const from = firstStoredAfterCompaction(snapshot.metadata!.index, keepEntries);
    this.entries = this.entries.filter((e) => e.index >= from);
  }

  /** What a restart reads back: the durable state only. */
  load(): PersistentState {
    return {
      hardState: { ...this.hardState },
      snapshot: this.snapshot,
      entries: [...this.entries],
      applied: this.snapshot.metadata!.index,
    };
  }

  private parts(rd: Ready): Part[] {
    const parts: Part[] = [];
    if (rd.snapshot) parts.push({ kind: "snapshot", snapshot: rd.snapshot }, { kind: "mark" });
    for (const entry of rd.entries) parts.push({ kind: "entry", entry });
    const hs = rd.hardState;
    const voteChanged =
      hs !== undefined && (hs.term !== this.hardState.term || hs.vote !== this.hardState.vote);
    const latest = hs ?? this.deferred;
    const write =
      parts.length > 0 ||
      voteChanged ||
      mustPersistCommit(rd) ||
      (hs !== undefined && this.options.syncCommitOnly);
    if (write && latest) parts.push({ kind: "hardState", hardState: { ...latest } });
    return parts;
  }

  private write(part: Part): void {
    switch (part.kind) {
      case "snapshot": {
        // Stored before its mark: without the mark, entries that agree with the
        // snapshot survive after it and the rest go (DiskStorage's replay).
        const meta = part.snapshot.metadata!;
        this.snapshot = part.snapshot;
        const agrees = this.entries.some((e) => e.index === meta.index && e.term === meta.term);
        this.entries = agrees ? this.entries.filter((e) => e.index > meta.index) : [];
        return;
      }
      case "mark":
        this.entries = [];
        return;
      case "entry": {
        // Entries are contiguous: truncate by position, then append.
        const e = part.entry;
        const firstStored = this.entries[0]?.index ?? this.snapshot.metadata!.index + 1;
        const keep = e.index - firstStored;
        if (keep < this.entries.length) this.entries.length = Math.max(0, keep);
        this.entries.push(e);
        return;
      }
      case "hardState":
        this.hardState = part.hardState;
        return;
    }
  }
}
