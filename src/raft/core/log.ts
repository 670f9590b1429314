// The replicated log as the core sees it: the latest snapshot, the entries
// kept in memory (persisted and not yet persisted), and the commit and applied
// marks. The log starts after `offset`, which is the snapshot's position or,
// when entries are kept behind the snapshot for slow followers, an earlier one.
// Everything at or below `stableIndex` is durable; what lies above it is
// handed to storage by the next Ready.
import type { Entry, Snapshot } from "../../gen/raft/v1/raft.js";
import { assert } from "./assert.js";

export function entrySizeBytes(e: Entry): number {
  return e.data.byteLength + 24;
}

/**
 * The first entry storage keeps after compacting at `snapshotIndex` while keeping
 * `keepEntries` behind it. With kept entries the offset entry itself is stored too:
 * after a restart it marks where the log starts, with its term (see the constructor).
 */
export function firstStoredAfterCompaction(snapshotIndex: number, keepEntries: number): number {
  return keepEntries > 0 ? snapshotIndex - keepEntries : snapshotIndex + 1;
}

export class RaftLog {
  /** The latest snapshot (persisted, or pending persistence when `unstableSnapshot`). */
  snapshot: Snapshot;
  private entries: Entry[] = [];
  committed: number;
  applied: number;
  /** Entries up to here are durable. */
  stableIndex: number;
  /** A snapshot received from the leader and not yet persisted. */
  unstableSnapshot: Snapshot | undefined;
  /** The entry just before the first one kept: its index and term. */
  private offset: { index: number; term: number };

  constructor(snapshot: Snapshot, entries: Entry[], committed: number, applied: number) {
    this.snapshot = snapshot;
    const snapIndex = snapshot.metadata!.index;
    // Stored entries may reach back behind the snapshot (kept for slow followers):
    // the first of them then marks where the log starts, with its term known.
    const first = entries[0];
    if (first && first.index <= snapIndex && entries[entries.length - 1].index >= snapIndex) {
      this.offset = { index: first.index, term: first.term };
      this.entries = entries.slice(1);
    } else {
      this.offset = { index: snapIndex, term: snapshot.metadata!.term };
      for (const e of entries) if (e.index > snapIndex) this.entries.push(e);
    }
    for (let i = 0; i < this.entries.length; i++) {
      assert(this.entries[i].index === this.offset.index + 1 + i, "log entries are contiguous");
    }
    this.stableIndex = this.lastIndex();
    this.committed = Math.max(committed, snapIndex);
    assert(this.committed <= this.lastIndex(), "commit index within the log on restart");
    this.applied = Math.max(Math.min(applied, this.committed), snapIndex);
  }

  snapshotIndex(): number {
    return this.snapshot.metadata!.index;
  }

  snapshotTerm(): number {
    return this.snapshot.metadata!.term;
  }

  firstIndex(): number {
    return this.offset.index + 1;
  }

  lastIndex(): number {
    return this.offset.index + this.entries.length;
  }

  lastTerm(): number {
    return this.term(this.lastIndex())!;
  }

  /** The term at `index`, or undefined when it is compacted or beyond the log. */
  term(index: number): number | undefined {
    const offset = this.offset.index;
    if (index === offset) return this.offset.term;
    if (index < offset || index > this.lastIndex()) return undefined;
    return this.entries[index - offset - 1].term;
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  entryAt(index: number): Entry | undefined {
    if (index <= this.offset.index || index > this.lastIndex()) return undefined;
    return this.entries[index - this.offset.index - 1];
  }

  /** Raft §5.4.1: a candidate's log is at least as up to date as ours (hard case 26). */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /** Entries in [lo, hi), at most `maxBytes` (but at least one); undefined if compacted. */
  slice(lo: number, hi: number, maxBytes: number): Entry[] | undefined {
    if (lo < this.firstIndex()) return undefined;
    const out: Entry[] = [];
    let size = 0;
    for (let i = lo; i < hi && i <= this.lastIndex(); i++) {
      const e = this.entryAt(i)!;
      size += entrySizeBytes(e);
      if (out.length > 0 && size > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  /** Appends after truncating any entries from `ents[0].index` on. */
  append(ents: Entry[]): void {
    if (ents.length === 0) return;
    const after = ents[0].index - 1;
    assert(
      after >= this.committed,
      `truncating committed entries (after=${after}, commit=${this.committed})`,
    );
    assert(after <= this.lastIndex(), "appended entries leave a gap");
    assert(after >= this.offset.index, "appending below the start of the log");
    this.entries.length = after - this.offset.index;
    for (const e of ents) this.entries.push(e);
    if (this.stableIndex > after) this.stableIndex = after;
  }

  /** The first entry that is new or conflicts with ours (0 when all match). */
  private findConflict(ents: Entry[]): number {
    for (const e of ents) if (!this.matchTerm(e.index, e.term)) return e.index;
    return 0;
  }

  /**
   * A follower's append. Returns the last index the message verified, or
   * undefined when the log does not match at (prevIndex, prevTerm).
   * Truncates only at the first real conflict (hard case 28).
   */
  maybeAppend(prevIndex: number, prevTerm: number, ents: Entry[]): number | undefined {
    if (!this.matchTerm(prevIndex, prevTerm)) return undefined;
    const lastNew = prevIndex + ents.length;
    const conflict = this.findConflict(ents);
    if (conflict !== 0) {
      assert(conflict > this.committed, `conflict at ${conflict} at or below commit ${this.committed}`);
      this.append(ents.slice(conflict - ents[0].index));
    }
    return lastNew;
  }

  /**
   * The last index at or below `index` whose term is at or below `term`: where a
   * leader should probe next after a rejection (fast backtracking).
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    let i = Math.min(index, this.lastIndex());
    for (; i > this.offset.index; i--) {
      const t = this.term(i)!;
      if (t <= term) return { index: i, term: t };
    }
    return { index: i, term: this.term(i) ?? 0 };
  }

  commitTo(index: number): void {
    if (index <= this.committed) return;
    assert(index <= this.lastIndex(), `commit ${index} beyond last index ${this.lastIndex()}`);
    this.committed = index;
  }

  unstableEntries(): Entry[] {
    if (this.stableIndex >= this.lastIndex()) return [];
    return this.entries.slice(this.stableIndex - this.offset.index);
  }

  stableTo(index: number): void {
    if (index > this.stableIndex) this.stableIndex = Math.min(index, this.lastIndex());
  }

  /** Committed entries not yet applied (none while a snapshot waits to be applied). */
  nextCommittedEntries(maxBytes: number): Entry[] {
    if (this.unstableSnapshot) return [];
    return this.slice(this.applied + 1, this.committed + 1, maxBytes) ?? [];
  }

  appliedTo(index: number): void {
    assert(index <= this.committed, `applied ${index} beyond commit ${this.committed}`);
    if (index > this.applied) this.applied = index;
  }

  /** Replaces the whole log by a snapshot from the leader. */
  restore(snapshot: Snapshot): void {
    this.snapshot = snapshot;
    this.unstableSnapshot = snapshot;
    this.offset = { index: snapshot.metadata!.index, term: snapshot.metadata!.term };
    this.entries = [];
    this.committed = snapshot.metadata!.index;
    this.stableIndex = snapshot.metadata!.index;
  }

  /** The received snapshot is durable and applied. */
  snapshotApplied(): void {
    if (!this.unstableSnapshot) return;
    this.applied = Math.max(this.applied, this.unstableSnapshot.metadata!.index);
    this.unstableSnapshot = undefined;
  }

  /**
   * The state machine took a snapshot: drop the entries it covers, except the
   * last `keepEntries` of them, which slow followers can still be sent as entries.
   */
  compact(snapshot: Snapshot, keepEntries = 0): void {
    const index = snapshot.metadata!.index;
    assert(index <= this.applied, "compacting past the applied index");
    if (index <= this.snapshotIndex()) return;
    assert(this.term(index) === snapshot.metadata!.term, "snapshot term matches the log");
    this.snapshot = snapshot;
    const newOffset = Math.max(this.offset.index, index - Math.max(0, keepEntries));
    if (newOffset > this.offset.index) {
      const term = this.term(newOffset)!;
      this.entries = this.entries.slice(newOffset - this.offset.index);
      this.offset = { index: newOffset, term };
    }
    // The snapshot covers what it replaced, and the caller persists it.
    if (this.stableIndex < index) this.stableIndex = index;
  }

  /** Checked invariants (TigerBeetle style): cheap, and loud when broken. */
  checkInvariants(): void {
    assert(this.applied <= this.committed, "applied <= committed");
    assert(this.committed <= this.lastIndex(), "committed <= lastIndex");
    assert(
      this.snapshotIndex() <= this.applied || this.unstableSnapshot !== undefined,
      "snapshot <= applied",
    );
    assert(this.offset.index <= this.snapshotIndex(), "the log starts at or before the snapshot");
  }
}
