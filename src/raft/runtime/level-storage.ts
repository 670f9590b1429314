// Durable Raft state on level: hard state, log entries and the latest
// snapshot. Each Ready is written as one atomic batch with sync:true before any
// message that acknowledges it is sent (hard cases 22, 23).
import { ClassicLevel } from "classic-level";
import { Entry, HardState, Snapshot } from "../../gen/raft/v1/raft.js";
import { emptySnapshot } from "../core/bootstrap.js";
import { firstStoredAfterCompaction } from "../core/log.js";
import type { PersistentState, Ready } from "../core/types.js";
import { RaftStateCorruptError, RaftStateForeignError, RaftStateLockedError } from "./errors.js";

const FORMAT = "nodectl-raft/1";
const META = "meta";
const HARD_STATE = "hs";
const SNAPSHOT = "snap";
const ENTRY_PREFIX = "e:";

function entryKey(index: number): string {
  return ENTRY_PREFIX + index.toString(16).padStart(16, "0");
}

type Batch = { type: "put"; key: string; value: Uint8Array } | { type: "del"; key: string };

interface Meta {
  format: string;
  nodeId: number;
}

export class LevelStorage {
  private lastIndex = 0;
  private snapshotIndex = 0;
  /** Index of the first stored entry (entries may be kept behind the snapshot). */
  private firstIndex = 1;
  private persistedHardState: HardState;
  /** A commit-only hard state not written yet (see persist). */
  private deferredHardState: HardState | undefined;
  /** Batches written, and how many of them needed an fsync (for tests and metrics). */
  readonly writes = { batches: 0, synced: 0 };

  private constructor(
    private readonly db: ClassicLevel<string, Uint8Array>,
    readonly dir: string,
    private readonly state: PersistentState,
  ) {
    this.persistedHardState = state.hardState;
    this.snapshotIndex = state.snapshot.metadata!.index;
    this.firstIndex = state.entries.length > 0 ? state.entries[0].index : this.snapshotIndex + 1;
    this.lastIndex =
      state.entries.length > 0 ? state.entries[state.entries.length - 1].index : this.snapshotIndex;
  }

  /**
   * Opens (or, when `initial` is given and the directory is new, creates) a
   * member's raft directory and reads back exactly what was persisted.
   */
  static async open(dir: string, nodeId: number, initial?: PersistentState): Promise<LevelStorage> {
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
        return await LevelStorage.create(db, dir, nodeId, initial);
      }
      const meta = parseMeta(dir, metaRaw);
      if (meta.format !== FORMAT)
        throw new RaftStateForeignError(dir, `format ${meta.format}, expected ${FORMAT}`);
      if (meta.nodeId !== nodeId)
        throw new RaftStateForeignError(dir, `member ${meta.nodeId}, not ${nodeId}`);
      return new LevelStorage(db, dir, await readState(db, dir));
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
  ): Promise<LevelStorage> {
    const ops: Batch[] = [
      { type: "put", key: META, value: new TextEncoder().encode(JSON.stringify({ format: FORMAT, nodeId })) },
      { type: "put", key: HARD_STATE, value: HardState.encode(initial.hardState).finish() },
      { type: "put", key: SNAPSHOT, value: Snapshot.encode(initial.snapshot).finish() },
    ];
    for (const e of initial.entries)
      ops.push({ type: "put", key: entryKey(e.index), value: Entry.encode(e).finish() });
    await db.batch(ops, { sync: true });
    return new LevelStorage(db, dir, { ...initial, applied: initial.snapshot.metadata!.index });
  }

  /** What was persisted, as the core's constructor takes it. */
  load(): PersistentState {
    return this.state;
  }

  /**
   * Persists the durable part of a Ready as one atomic batch. It is fsynced when
   * it holds entries, a snapshot, or a new term or vote (what a response may
   * acknowledge); a batch that only moves the commit index is not: a restarted
   * member learns the commit index again from the leader (etcd's MustSync).
   */
  async persist(rd: Ready): Promise<void> {
    const ops: Batch[] = [];
    const hs = rd.hardState;
    const mustSync =
      rd.snapshot !== undefined ||
      rd.entries.length > 0 ||
      (hs !== undefined &&
        (hs.term !== this.persistedHardState.term || hs.vote !== this.persistedHardState.vote));
    if (rd.snapshot) {
      // The core replaced its whole log with the snapshot.
      for (let i = this.firstIndex; i <= this.lastIndex; i++) ops.push({ type: "del", key: entryKey(i) });
      ops.push({ type: "put", key: SNAPSHOT, value: Snapshot.encode(rd.snapshot).finish() });
      this.snapshotIndex = rd.snapshot.metadata!.index;
      this.lastIndex = this.snapshotIndex;
      this.firstIndex = this.snapshotIndex + 1;
    }
    if (rd.entries.length > 0) {
      const first = rd.entries[0].index;
      const last = rd.entries[rd.entries.length - 1].index;
      for (const e of rd.entries)
        ops.push({ type: "put", key: entryKey(e.index), value: Entry.encode(e).finish() });
      // A conflicting suffix beyond the new entries is truncated.
      for (let i = last + 1; i <= this.lastIndex; i++) ops.push({ type: "del", key: entryKey(i) });
      if (first <= this.lastIndex + 1) this.lastIndex = last;
    }
    if (hs && !mustSync && ops.length === 0) {
      // Only the commit index moved: carry it with the next write instead of paying a
      // level round trip on every commit (close() flushes it).
      this.deferredHardState = hs;
      return;
    }
    const latest = hs ?? this.deferredHardState;
    if (latest) {
      ops.push({ type: "put", key: HARD_STATE, value: HardState.encode(latest).finish() });
      this.persistedHardState = latest;
      this.deferredHardState = undefined;
    }
    if (ops.length === 0) return;
    await this.db.batch(ops, { sync: mustSync });
    this.writes.batches++;
    if (mustSync) this.writes.synced++;
  }

  /** Stores the state machine's snapshot and drops the entries it covers but the last `keepEntries`. */
  async compact(snapshot: Snapshot, keepEntries = 0): Promise<void> {
    const index = snapshot.metadata!.index;
    if (index <= this.snapshotIndex) return;
    const ops: Batch[] = [{ type: "put", key: SNAPSHOT, value: Snapshot.encode(snapshot).finish() }];
    const newFirst = Math.max(this.firstIndex, firstStoredAfterCompaction(index, keepEntries));
    for (let i = this.firstIndex; i < Math.min(newFirst, this.lastIndex + 1); i++) {
      ops.push({ type: "del", key: entryKey(i) });
    }
    await this.db.batch(ops, { sync: true });
    this.snapshotIndex = index;
    this.firstIndex = newFirst;
    if (this.lastIndex < index) this.lastIndex = index;
  }

  async close(): Promise<void> {
    if (this.deferredHardState) {
      await this.db.put(HARD_STATE, HardState.encode(this.deferredHardState).finish(), { sync: true });
      this.deferredHardState = undefined;
    }
    await this.db.close();
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

async function readState(db: ClassicLevel<string, Uint8Array>, dir: string): Promise<PersistentState> {
  const decode = <T>(what: string, raw: Uint8Array | undefined, fn: (b: Uint8Array) => T): T => {
    if (raw === undefined) throw new RaftStateCorruptError(dir, `missing ${what}`);
    try {
      return fn(raw);
    } catch {
      throw new RaftStateCorruptError(dir, `unreadable ${what}`);
    }
  };
  const hardState = decode("hard state", await db.get(HARD_STATE), (b) => HardState.decode(b));
  const snapshot = decode("snapshot", await db.get(SNAPSHOT), (b) => Snapshot.decode(b));
  if (!snapshot.metadata) snapshot.metadata = emptySnapshot().metadata;
  const entries: Entry[] = [];
  const snapIndex = snapshot.metadata!.index;
  // Entries are contiguous; they may start behind the snapshot (kept for slow
  // followers) but must reach it.
  let expected: number | undefined;
  for await (const [key, value] of db.iterator({ gte: ENTRY_PREFIX, lt: "e;" })) {
    const e = decode(`entry ${key}`, value, (b) => Entry.decode(b));
    expected ??= e.index;
    if (e.index !== expected || entryKey(e.index) !== key) {
      throw new RaftStateCorruptError(dir, `log gap or mismatch at index ${expected} (found ${e.index})`);
    }
    entries.push(e);
    expected++;
  }
  if (entries.length > 0 && entries[0].index > snapIndex + 1) {
    throw new RaftStateCorruptError(
      dir,
      `log starts at ${entries[0].index}, after the snapshot at ${snapIndex}`,
    );
  }
  if (entries.length > 0 && entries[entries.length - 1].index < snapIndex) entries.length = 0;
  const lastIndex = Math.max(snapIndex, entries.length > 0 ? entries[entries.length - 1].index : 0);
  if (hardState.commit > lastIndex) {
    throw new RaftStateCorruptError(
      dir,
      `commit index ${hardState.commit} beyond the last entry ${lastIndex}`,
    );
  }
  return { hardState, snapshot, entries, applied: snapshot.metadata!.index };
}
