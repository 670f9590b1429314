// Durable Raft state of one member, in its raft directory:
// - `wal/`: the write-ahead log (wal.ts) of log entries and hard states, one durable
//   write per Ready, before any message that acknowledges it is sent (hard cases 22, 23);
// - level (the directory itself): the header (format, member id) and the latest
//   snapshot, which are written rarely and read whole.
// Replaying the log in order (wal-replay.ts) rebuilds exactly what was persisted.
// A directory is created only when asked for (create); open refuses a missing or empty
// one, so a member that lost its state never comes back with no memory of its votes.
import * as fs from "node:fs";
import { ClassicLevel } from "classic-level";
import { Entry, HardState, Snapshot } from "../../gen/raft/v1/raft.js";
import type { Logger } from "../../log/logger.js";
import { silentLogger } from "../../log/logger.js";
import { emptySnapshot } from "../core/bootstrap.js";
import { firstStoredAfterCompaction } from "../core/log.js";
import { mustPersistCommit, type PersistentState, type Ready } from "../core/types.js";
import { fsyncDirectory, makeDirectoryDurably, type SyncDirectory } from "./durable-dir.js";
import {
  RaftStateCorruptError,
  RaftStateExistsError,
  RaftStateForeignError,
  RaftStateLockedError,
  RaftStateMissingError,
} from "./errors.js";
import type { RaftStorage } from "./types.js";
import { Wal, type WalRecord } from "./wal.js";
import { decode, RecordType, Replay } from "./wal-replay.js";

/** 3: the log is written in frames, one per write (wal-frame.ts); 2 had a CRC per record. */
const FORMAT = "nodectl-raft/3";
const META = "meta";
const SNAPSHOT = "snap";
/** The first log index kept (entries before it are compacted away, even where their segment remains). */
const FIRST_INDEX = "first";

interface Meta {
  format: string;
  nodeId: number;
}

export interface DiskStorageOptions {
  logger?: Logger;
  /** Preallocated bytes per write-ahead log segment (default 16 MiB). */
  segmentBytes?: number;
  /** Syncs a directory's entries (tests watch it; fsync by default). */
  syncDirectory?: SyncDirectory;
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
  private readonly syncDirectory: SyncDirectory;
  /** Durable writes to the log (for tests and metrics); every one is synced. */
  readonly writes = { batches: 0, synced: 0 };

  private constructor(
    private readonly db: ClassicLevel<string, Uint8Array>,
    readonly dir: string,
    private readonly state: PersistentState,
    firstIndex: number,
    options: DiskStorageOptions,
  ) {
    this.syncDirectory = options.syncDirectory ?? fsyncDirectory;
    this.persistedHardState = state.hardState;
    this.snapshotIndex = state.snapshot.metadata!.index;
    this.firstIndex = firstIndex;
  }

  /**
   * Opens a member's existing raft directory and reads back exactly what was persisted.
   * A missing or empty directory is refused (RAFT_STATE_MISSING), never taken as new:
   * a member that lost its directory has lost its votes, and starting it afresh could
   * let it vote twice in a term. New members come from create().
   */
  static async open(dir: string, nodeId: number, options: DiskStorageOptions = {}): Promise<DiskStorage> {
    const entries = listDirectory(dir);
    if (entries === undefined) throw new RaftStateMissingError(dir, "the directory does not exist");
    if (entries.length === 0) throw new RaftStateMissingError(dir, "the directory is empty");
    // Before level is opened (which rewrites its own files): a refusal changes no byte.
    if (entries.includes("wal")) Wal.verify(walDir(dir), dir);
    const db = await openLevel(dir, false);
    try {
      // Level starts a new log file at every open: make its name durable.
      (options.syncDirectory ?? fsyncDirectory)(dir);
      const metaRaw = await db.get(META);
      if (metaRaw === undefined) {
        const anyKey = await db.keys({ limit: 1 }).all();
        if (anyKey.length > 0) throw new RaftStateForeignError(dir, "it has data but no nodectl header");
        throw new RaftStateMissingError(dir, "its creation never finished (no header)");
      }
      checkMeta(dir, metaRaw, nodeId);
      return await DiskStorage.load(db, dir, options);
    } catch (err) {
      await db.close();
      throw err;
    }
  }

  /**
   * Creates a new member's raft directory holding `initial` (a founding voter's
   * bootstrap state, or the empty state of a member that will join). Refuses a
   * directory that already holds a member's state (RAFT_STATE_EXISTS) or other data.
   */
  static async create(
    dir: string,
    nodeId: number,
    initial: PersistentState,
    options: DiskStorageOptions = {},
  ): Promise<DiskStorage> {
    const syncDirectory = options.syncDirectory ?? fsyncDirectory;
    const entries = listDirectory(dir);
    const fresh = entries === undefined || entries.length === 0;
    if (!fresh && !entries.includes("CURRENT"))
      throw new RaftStateForeignError(dir, "it is not empty and holds no raft state");
    if (entries === undefined) makeDirectoryDurably(dir, syncDirectory);
    const db = await openLevel(dir, fresh);
    try {
      const metaRaw = await db.get(META);
      if (metaRaw !== undefined) {
        const meta = parseMeta(dir, metaRaw);
        throw new RaftStateExistsError(dir, `member ${meta.nodeId}, ${meta.format}`);
      }
      if ((await db.keys({ limit: 1 }).all()).length > 0)
        throw new RaftStateForeignError(dir, "it has data but no nodectl header");
      // A creation that never finished (no header): nothing was ever acknowledged from it.
      fs.rmSync(walDir(dir), { recursive: true, force: true });
      const storage = await DiskStorage.initialize(db, dir, nodeId, initial, options);
      syncDirectory(dir);
      return storage;
    } catch (err) {
      await db.close();
      throw err;
    }
  }

  private static async load(
    db: ClassicLevel<string, Uint8Array>,
    dir: string,
    options: DiskStorageOptions,
  ): Promise<DiskStorage> {
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
      storage = new DiskStorage(db, dir, state, firstIndex, options);
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
  }

  private static async initialize(
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
      options,
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
      this.syncDirectory(this.dir); // level may have put the batch in a new file
      this.snapshotIndex = meta.index;
      this.firstIndex = meta.index + 1;
      records.push(snapshotMark(rd.snapshot));
    }
    for (const e of rd.entries) records.push(entryRecord(e));
    const voteChanged =
      hs !== undefined &&
      (hs.term !== this.persistedHardState.term || hs.vote !== this.persistedHardState.vote);
    if (hs && !voteChanged && records.length === 0 && !mustPersistCommit(rd)) {
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
    // Level may have put the batch in a new file: its name must be durable before the
    // log segments the snapshot replaces are deleted.
    this.syncDirectory(this.dir);
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

function walOptions(options: DiskStorageOptions) {
  return {
    logger: options.logger ?? silentLogger(),
    segmentBytes: options.segmentBytes,
    syncDirectory: options.syncDirectory,
  };
}

/** The directory's entries, or undefined if it does not exist. */
function listDirectory(dir: string): string[] | undefined {
  try {
    return fs.readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

async function openLevel(dir: string, createIfMissing: boolean): Promise<ClassicLevel<string, Uint8Array>> {
  const db = new ClassicLevel<string, Uint8Array>(dir, {
    keyEncoding: "utf8",
    valueEncoding: "view",
    createIfMissing,
  });
  try {
    await db.open();
  } catch (err) {
    const cause = String((err as Error).cause ?? (err as Error).message);
    if (/LOCK.*already held|lock/i.test(cause)) throw new RaftStateLockedError(dir);
    throw new RaftStateCorruptError(dir, `level cannot open it: ${cause}`);
  }
  return db;
}

function checkMeta(dir: string, raw: Uint8Array, nodeId: number): void {
  const meta = parseMeta(dir, raw);
  if (meta.format !== FORMAT)
    throw new RaftStateForeignError(dir, `format ${meta.format}, expected ${FORMAT}`);
  if (meta.nodeId !== nodeId) throw new RaftStateForeignError(dir, `member ${meta.nodeId}, not ${nodeId}`);
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
