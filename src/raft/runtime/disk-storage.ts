// Durable Raft state of one member, in its raft directory:
// - `wal/`: the write-ahead log (wal.ts) of log entries and hard states, one durable
//   write per Ready, before any message that acknowledges it is sent (hard cases 22, 23);
// - level (the directory itself): the header (format, member id) and the latest
//   snapshot, which are written rarely and read whole.
// Replaying the log in order rebuilds exactly what was persisted: a later entry at an
// index already present truncates the conflicting suffix there, the last hard state
// wins, and a snapshot mark (a snapshot installed from the leader) drops what came before.
import { ClassicLevel } from "classic-level";
import { Entry, HardState, Snapshot } from "../../gen/raft/v1/raft.js";
import type { Logger } from "../../log/logger.js";
import { silentLogger } from "../../log/logger.js";
import { emptySnapshot } from "../core/bootstrap.js";
import { firstStoredAfterCompaction } from "../core/log.js";
import type { PersistentState, Ready } from "../core/types.js";
import { RaftStateCorruptError, RaftStateForeignError, RaftStateLockedError } from "./errors.js";
import type { RaftStorage } from "./types.js";
import { Wal, type WalRecord } from "./wal.js";

const FORMAT = "nodectl-raft/2";
const META = "meta";
const SNAPSHOT = "snap";
/** The first log index kept (entries before it are compacted away, even where their segment remains). */
const FIRST_INDEX = "first";

enum RecordType {
  Entry = 1,
  HardState = 2,
  /** A snapshot from the leader replaced the log: everything before is gone. Payload: snapshot metadata. */
  SnapshotMark = 3,
}

interface Meta {
  format: string;
  nodeId: number;
}

export interface DiskStorageOptions {
  logger?: Logger;
  /** Preallocated bytes per write-ahead log segment (default 16 MiB). */
  segmentBytes?: number;
}

const entryRecord = (e: Entry): WalRecord => ({
  type: RecordType.Entry,
  index: e.index,
  payload: Entry.encode(e).finish(),
});
const hardStateRecord = (hs: HardState): WalRecord => ({
  type: RecordType.HardState,
  index: 0,
  payload: HardState.encode(hs).finish(),
});

export class DiskStorage implements RaftStorage {
  private snapshotIndex: number;
  /** Entries before it are compacted away (see FIRST_INDEX). */
  private firstIndex: number;
  private persistedHardState: HardState;
  /** A commit-only hard state not written yet (see persist). */
  private deferredHardState: HardState | undefined;
  private wal!: Wal;
  /** Durable writes to the log (for tests and metrics); every one is synced. */
  readonly writes = { batches: 0, synced: 0 };

  private constructor(
    private readonly db: ClassicLevel<string, Uint8Array>,
    readonly dir: string,
    private readonly state: PersistentState,
    firstIndex: number,
  ) {
    this.persistedHardState = state.hardState;
    this.snapshotIndex = state.snapshot.metadata!.index;
    this.firstIndex = firstIndex;
  }

  /**
   * Opens (or, when `initial` is given and the directory is new, creates) a
   * member's raft directory and reads back exactly what was persisted.
   */
  static async open(
    dir: string,
    nodeId: number,
    initial?: PersistentState,
    options: DiskStorageOptions = {},
  ): Promise<DiskStorage> {
    const db = new ClassicLevel<string, Uint8Array>(dir, { keyEncoding: "utf8", valueEncoding: "view" });
    try {
      await db.open();
    } catch (err) {
      const cause = String((err as Error).cause ?? (err as Error).message);
      if (/LOCK.*already held|lock/i.test(cause)) throw new RaftStateLockedError(dir);
      throw new RaftStateCorruptError(dir, `level cannot open it: ${cause}`);
    }
    try {
      const metaRaw = await db.get(META);
      if (metaRaw === undefined) {
        const anyKey = await db.keys({ limit: 1 }).all();
        if (anyKey.length > 0) throw new RaftStateForeignError(dir, "it has data but no nodectl header");
        if (!initial) throw new RaftStateCorruptError(dir, "it is empty and no initial state was given");
        return await DiskStorage.create(db, dir, nodeId, initial, options);
      }
      const meta = parseMeta(dir, metaRaw);
      if (meta.format !== FORMAT)
        throw new RaftStateForeignError(dir, `format ${meta.format}, expected ${FORMAT}`);
      if (meta.nodeId !== nodeId)
        throw new RaftStateForeignError(dir, `member ${meta.nodeId}, not ${nodeId}`);
      const snapshot = decode(dir, "snapshot", await db.get(SNAPSHOT), (b) => Snapshot.decode(b));
      if (!snapshot.metadata) snapshot.metadata = emptySnapshot().metadata;
      const firstIndex = decode(dir, "first index", await db.get(FIRST_INDEX), decodeIndex);
      const replay = new Replay(dir);
      let storage: DiskStorage | undefined;
      const wal = await Wal.open(
        walDir(dir),
        dir,
        {
          ...walOptions(options),
          preamble: () => {
            const hs = storage?.persistedHardState ?? replay.hardState;
            return hs ? [hardStateRecord(hs)] : [];
          },
        },
        (r) => replay.add(r),
      );
      try {
        const { state, markSnapshot } = replay.finish(snapshot, firstIndex);
        storage = new DiskStorage(db, dir, state, firstIndex);
        storage.wal = wal;
        // The process died between storing a snapshot from the leader and marking it in
        // the log: mark it now, so the entries it replaced never come back and the
        // entries after it follow without a gap.
        if (markSnapshot) await wal.append([snapshotMark(snapshot), hardStateRecord(state.hardState)]);
      } catch (err) {
        await wal.close();
        throw err;
      }
      return storage;
    } catch (err) {
      await db.close();
      throw err;
    }
  }

  private static async create(
    db: ClassicLevel<string, Uint8Array>,
    dir: string,
    nodeId: number,
    initial: PersistentState,
    options: DiskStorageOptions,
  ): Promise<DiskStorage> {
    const firstIndex = initial.entries[0]?.index ?? initial.snapshot.metadata!.index + 1;
    const storage = new DiskStorage(
      db,
      dir,
      { ...initial, applied: initial.snapshot.metadata!.index },
      firstIndex,
    );
    // The log first: a header without a log is reported as corrupt, never taken as new.
    storage.wal = await Wal.create(
      walDir(dir),
      { ...walOptions(options), preamble: () => [hardStateRecord(storage.persistedHardState)] },
      [hardStateRecord(initial.hardState), ...initial.entries.map(entryRecord)],
    );
    await db.batch(
      [
        ...snapshotOps(initial.snapshot, firstIndex),
        {
          type: "put",
          key: META,
          value: new TextEncoder().encode(JSON.stringify({ format: FORMAT, nodeId })),
        },
      ],
      { sync: true },
    );
    return storage;
  }

  /** What was persisted, as the core's constructor takes it. */
  load(): PersistentState {
    return this.state;
  }

  /**
   * Persists the durable part of a Ready with one synced log write. A Ready that
   * only moves the commit index writes nothing: its hard state rides with the next
   * write (a restarted member learns the commit index again from the leader; etcd's
   * MustSync), and close() flushes it.
   */
  async persist(rd: Ready): Promise<void> {
    const records: WalRecord[] = [];
    const hs = rd.hardState;
    if (rd.snapshot) {
      // The snapshot first: a mark without its snapshot would leave a gap before the log.
      const meta = rd.snapshot.metadata!;
      await this.db.batch(snapshotOps(rd.snapshot, meta.index + 1), { sync: true });
      this.snapshotIndex = meta.index;
      this.firstIndex = meta.index + 1;
      records.push(snapshotMark(rd.snapshot));
    }
    for (const e of rd.entries) records.push(entryRecord(e));
    const voteChanged =
      hs !== undefined &&
      (hs.term !== this.persistedHardState.term || hs.vote !== this.persistedHardState.vote);
    if (hs && !voteChanged && records.length === 0) {
      this.deferredHardState = hs;
      return;
    }
    const latest = hs ?? this.deferredHardState;
    // After the entries: a replayed commit index never points past the replayed log.
    if (latest) records.push(hardStateRecord(latest));
    if (records.length === 0) return;
    // A new segment opens with persistedHardState: it must still be the durable one
    // while this write is in flight (its commit may point into this write's entries).
    await this.wal.append(records);
    if (latest) this.persistedHardState = latest;
    this.deferredHardState = undefined;
    this.writes.batches++;
    this.writes.synced++;
  }

  /** Stores the state machine's snapshot and drops the log segments it covers, keeping the last `keepEntries`. */
  async compact(snapshot: Snapshot, keepEntries = 0): Promise<void> {
    const index = snapshot.metadata!.index;
    if (index <= this.snapshotIndex) return;
    // Never below an earlier compaction: what it dropped is gone from the core's log too.
    const first = Math.max(this.firstIndex, firstStoredAfterCompaction(index, keepEntries));
    await this.db.batch(snapshotOps(snapshot, first), { sync: true });
    this.snapshotIndex = index;
    this.firstIndex = first;
    this.wal.prune(first);
  }

  /** Write-ahead log segment files in use (for tests and metrics). */
  segmentCount(): number {
    return this.wal.segmentCount();
  }

  async close(): Promise<void> {
    if (this.deferredHardState) {
      await this.wal.append([hardStateRecord(this.deferredHardState)]);
      this.persistedHardState = this.deferredHardState;
      this.deferredHardState = undefined;
    }
    await this.wal.close();
    await this.db.close();
  }
}

function snapshotMark(snapshot: Snapshot): WalRecord {
  const metadata = snapshot.metadata!;
  return {
    type: RecordType.SnapshotMark,
    index: metadata.index,
    payload: Snapshot.encode({ metadata, data: new Uint8Array() }).finish(),
  };
}

function snapshotOps(snapshot: Snapshot, firstIndex: number) {
  return [
    { type: "put" as const, key: SNAPSHOT, value: Snapshot.encode(snapshot).finish() },
    { type: "put" as const, key: FIRST_INDEX, value: new TextEncoder().encode(String(firstIndex)) },
  ];
}

function decodeIndex(raw: Uint8Array): number {
  const n = Number(new TextDecoder().decode(raw));
  if (!Number.isSafeInteger(n)) throw new Error("not an index");
  return n;
}

function walDir(dir: string): string {
  return `${dir}/wal`;
}

function walOptions(options: DiskStorageOptions): { logger: Logger; segmentBytes?: number } {
  return { logger: options.logger ?? silentLogger(), segmentBytes: options.segmentBytes };
}

function decode<T>(dir: string, what: string, raw: Uint8Array | undefined, fn: (b: Uint8Array) => T): T {
  if (raw === undefined) throw new RaftStateCorruptError(dir, `missing ${what}`);
  try {
    return fn(raw);
  } catch {
    throw new RaftStateCorruptError(dir, `unreadable ${what}`);
  }
}

function parseMeta(dir: string, raw: Uint8Array): Meta {
  try {
    const meta = JSON.parse(new TextDecoder().decode(raw)) as Meta;
    if (typeof meta.format !== "string" || typeof meta.nodeId !== "number") throw new Error("fields");
    return meta;
  } catch {
    throw new RaftStateCorruptError(dir, "unreadable header");
  }
}

/** Rebuilds the log and hard state from the records, oldest first. */
class Replay {
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
