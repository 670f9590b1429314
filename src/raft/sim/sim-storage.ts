// RaftStorage for the runtime simulator, with DiskStorage's contract and habits: one
// write per Ready (a snapshot, then entries, then the hard state), a commit-only hard
// state deferred to the next write or close(), every operation done after a seeded
// sync delay in virtual time. A crash loses whatever had not finished: the write in
// flight is lost whole, lands in part (a prefix of its entries, never the hard state
// after them) or lands whole without the process hearing so; a deferred hard state
// is simply gone.
import type { Entry, HardState, Snapshot } from "../../gen/raft/v1/raft.js";
import { assert } from "../core/assert.js";
import { firstStoredAfterCompaction } from "../core/log.js";
import { mustPersistCommit, type PersistentState, type Ready } from "../core/types.js";
import type { RaftStorage } from "../runtime/types.js";
import type { SimProcess } from "./sim-clock.js";

export interface SimStorageOptions {
  syncMinMs: number;
  syncMaxMs: number;
  /** Share of operations that stall (a busy disk) for up to `slowSyncMaxMs`, until faults heal. */
  slowSyncRate: number;
  slowSyncMaxMs: number;
}

/** What survives a crash: one member's disk. */
export class SimDisk {
  hardState: HardState;
  snapshot: Snapshot;
  entries: Entry[];

  constructor(initial: PersistentState) {
    this.hardState = { ...initial.hardState };
    this.snapshot = initial.snapshot;
    this.entries = [...initial.entries];
  }

  load(): PersistentState {
    return {
      hardState: { ...this.hardState },
      snapshot: this.snapshot,
      entries: [...this.entries],
      applied: this.snapshot.metadata!.index,
    };
  }

  /** A snapshot from the leader replaces the log (DiskStorage's snapshot mark). */
  installSnapshot(snapshot: Snapshot): void {
    this.snapshot = snapshot;
    this.entries = [];
  }

  /** Entries overwrite the log from their first index on (a conflict truncates there). */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const firstStored = this.entries[0]?.index ?? this.snapshot.metadata!.index + 1;
    const keep = entries[0].index - firstStored;
    assert(keep <= this.entries.length, "a write leaves no gap in the stored log");
    if (keep < this.entries.length) this.entries.length = Math.max(0, keep);
    for (const e of entries) this.entries.push(e);
  }

  /** Whether `entry` is durable here: in the stored log, or covered by the stored snapshot. */
  holds(entry: Entry): boolean {
    if (entry.index <= this.snapshot.metadata!.index) return true;
    const first = this.entries[0]?.index;
    const stored = first === undefined ? undefined : this.entries[entry.index - first];
    return stored !== undefined && stored.term === entry.term && sameBytes(stored.data, entry.data);
  }

  compact(snapshot: Snapshot, keepEntries: number): void {
    if (snapshot.metadata!.index <= this.snapshot.metadata!.index) return;
    this.snapshot = snapshot;
    const from = firstStoredAfterCompaction(snapshot.metadata!.index, keepEntries);
    this.entries = this.entries.filter((e) => e.index >= from);
  }
}

type Operation =
  | { kind: "write"; snapshot?: Snapshot; entries: Entry[]; hardState?: HardState }
  | { kind: "compact"; snapshot: Snapshot; keepEntries: number };

export class SimStorage implements RaftStorage {
  private inFlight: Operation | undefined;
  private deferred: HardState | undefined;
  /** The last hard state written, for the deferral rule (DiskStorage's persistedHardState). */
  private written: HardState;
  private closed = false;

  /**
   * `faults.healed` ends stalls; `onOperation` hears of each operation and how long it
   * takes (the simulator may crash the process before it finishes).
   */
  constructor(
    private readonly disk: SimDisk,
    private readonly proc: SimProcess,
    private readonly opts: SimStorageOptions,
    private readonly faults: { healed: boolean },
    private readonly onOperation: (ms: number) => void = () => undefined,
  ) {
    this.written = { ...disk.hardState };
  }

  load(): PersistentState {
    return this.disk.load();
  }

  persist(rd: Ready): Promise<void> {
    const hs = rd.hardState;
    const voteChanged = hs !== undefined && (hs.term !== this.written.term || hs.vote !== this.written.vote);
    if (hs && !voteChanged && !rd.snapshot && rd.entries.length === 0 && !mustPersistCommit(rd)) {
      this.deferred = hs; // rides with the next write, as in DiskStorage
      return Promise.resolve();
    }
    const hardState = hs ?? this.deferred;
    if (!rd.snapshot && rd.entries.length === 0 && !hardState) return Promise.resolve();
    return this.start({ kind: "write", snapshot: rd.snapshot, entries: [...rd.entries], hardState });
  }

  compact(snapshot: Snapshot, keepEntries: number): Promise<void> {
    return this.start({ kind: "compact", snapshot, keepEntries });
  }

  close(): Promise<void> {
    const hardState = this.deferred;
    const flushed = hardState ? this.start({ kind: "write", entries: [], hardState }) : Promise.resolve();
    this.closed = true;
    return flushed;
  }

  /** The process died: what was not finished is lost, or lands in part, or whole unheard. */
  crash(): void {
    const op = this.inFlight;
    this.inFlight = undefined;
    this.deferred = undefined;
    if (!op) return;
    const roll = this.proc.sched.rng.intn(3);
    if (roll === 0) return;
    if (op.kind === "write" && roll === 1) {
      const survived = this.proc.sched.rng.intn(op.entries.length + 1);
      this.land({ kind: "write", snapshot: op.snapshot, entries: op.entries.slice(0, survived) });
      return;
    }
    this.land(op);
  }

  private start(op: Operation): Promise<void> {
    assert(!this.closed, "no storage operation after close()");
    assert(this.inFlight === undefined, "RaftNode runs one storage operation at a time");
    if (op.kind === "write") this.deferred = undefined;
    this.inFlight = op;
    const ms = this.latency();
    this.onOperation(ms);
    return new Promise<void>((resolve) => {
      // A dead process never hears back; a paused one hears when it resumes.
      this.proc.at(this.proc.sched.now + ms, () => {
        if (this.inFlight !== op) return;
        this.inFlight = undefined;
        this.land(op);
        resolve();
      });
    });
  }

  private land(op: Operation): void {
    if (op.kind === "compact") {
      this.disk.compact(op.snapshot, op.keepEntries);
      return;
    }
    if (op.snapshot) this.disk.installSnapshot(op.snapshot);
    this.disk.append(op.entries);
    if (op.hardState) {
      this.disk.hardState = { ...op.hardState };
      this.written = op.hardState;
    }
  }

  private latency(): number {
    const { rng } = this.proc.sched;
    const o = this.opts;
    if (!this.faults.healed && rng.next() < o.slowSyncRate) return o.syncMaxMs + rng.intn(o.slowSyncMaxMs);
    return o.syncMinMs + rng.intn(o.syncMaxMs - o.syncMinMs + 1);
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}
