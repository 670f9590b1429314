// Rebuilding a member's log and hard state from the write-ahead log's records, oldest
// first: a later entry at an index already present truncates the conflicting suffix
// there, the last hard state wins, and a snapshot mark (a snapshot installed from the
// leader) drops what came before.
import { Entry, HardState, type Snapshot } from "../../gen/raft/v1/raft.js";
import type { PersistentState } from "../core/types.js";
import { RaftStateCorruptError } from "./errors.js";
import type { WalRecord } from "./wal-frame.js";

export enum RecordType {
  Entry = 1,
  HardState = 2,
  /** A snapshot from the leader replaced the log: everything before is gone. Payload: snapshot metadata. */
  SnapshotMark = 3,
}

export function decode<T>(
  dir: string,
  what: string,
  raw: Uint8Array | undefined,
  fn: (b: Uint8Array) => T,
): T {
  if (raw === undefined) throw new RaftStateCorruptError(dir, `missing ${what}`);
  try {
    return fn(raw);
  } catch {
    throw new RaftStateCorruptError(dir, `unreadable ${what}`);
  }
}

/** Rebuilds the log and hard state from the records, oldest first. */
export class Replay {
  entries: Entry[] = [];
  hardState: HardState | undefined;
  /** The index the next entry must have when the log is empty after a mark (undefined: any). */
  private expectedNext: number | undefined;
  /** The index of the last snapshot mark, if any. */
  private markIndex: number | undefined;

  constructor(private readonly dir: string) {}

  add(r: WalRecord): void {
    switch (r.type) {
      case RecordType.Entry: {
        const e = decode(this.dir, `log entry ${r.index}`, r.payload, (b) => Entry.decode(b));
        if (e.index !== r.index)
          throw new RaftStateCorruptError(this.dir, `log entry ${e.index} filed as ${r.index}`);
        const first = this.entries.length > 0 ? this.entries[0].index : (this.expectedNext ?? e.index);
        const next = first + this.entries.length;
        if (e.index > next) {
          throw new RaftStateCorruptError(this.dir, `log gap: entry ${e.index} follows ${next - 1}`);
        }
        // An entry at an index already present replaces it and everything after (a conflict).
        if (e.index < first) this.entries = [];
        else this.entries.length = e.index - first;
        if (this.entries.length === 0) this.expectedNext = e.index;
        this.entries.push(e);
        return;
      }
      case RecordType.HardState:
        this.hardState = decode(this.dir, "hard state", r.payload, (b) => HardState.decode(b));
        return;
      case RecordType.SnapshotMark:
        this.entries = [];
        this.expectedNext = r.index + 1;
        this.markIndex = r.index;
        return;
      default:
        throw new RaftStateCorruptError(this.dir, `unknown log record type ${r.type}`);
    }
  }

  /**
   * The state to start from, and whether the level snapshot still has to be marked in
   * the log. A snapshot from the leader is stored before its mark is written: if the
   * process died in between, the log still holds what the snapshot replaced.
   */
  finish(snapshot: Snapshot, firstIndex: number): { state: PersistentState; markSnapshot: boolean } {
    if (!this.hardState) throw new RaftStateCorruptError(this.dir, "no hard state in the log");
    const snap = snapshot.metadata!;
    let entries = this.entries;
    const last = entries.length > 0 ? entries[entries.length - 1].index : 0;
    if (entries.length > 0 && entries[0].index > snap.index + 1) {
      throw new RaftStateCorruptError(
        this.dir,
        `log starts at ${entries[0].index}, after the snapshot at ${snap.index}`,
      );
    }
    // The log agrees with the snapshot when it was marked, or holds the snapshot's
    // entry with its term (log matching), or starts right after it (entries at or
    // below the commit index, the only ones compaction removes, never conflict).
    const atSnapshot = entries.find((e) => e.index === snap.index);
    const agrees =
      this.markIndex === snap.index ||
      snap.index === 0 ||
      (atSnapshot
        ? atSnapshot.term === snap.term
        : entries.length > 0 && entries[0].index === snap.index + 1);
    const markSnapshot = !agrees && (last > 0 || this.markIndex !== undefined);
    if (!agrees || last < snap.index) entries = [];
    // Compacted away, though still in a segment that holds entries kept.
    const drop =
      entries.length > 0 ? Math.min(entries.length, Math.max(0, firstIndex - entries[0].index)) : 0;
    if (drop > 0) entries = entries.slice(drop);
    const lastIndex = Math.max(snap.index, entries.length > 0 ? entries[entries.length - 1].index : 0);
    if (this.hardState.commit > lastIndex) {
      throw new RaftStateCorruptError(
        this.dir,
        `commit index ${this.hardState.commit} beyond the last entry ${lastIndex}`,
      );
    }
    return { state: { hardState: this.hardState, snapshot, entries, applied: snap.index }, markSnapshot };
  }
}
