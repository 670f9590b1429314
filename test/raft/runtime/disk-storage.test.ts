import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { ClassicLevel } from "classic-level";
import { ConfChange, ConfChangeType, Entry, EntryType } from "../../../src/gen/raft/v1/raft.js";
import { bootstrapState } from "../../../src/raft/core/bootstrap.js";
import { firstStoredAfterCompaction } from "../../../src/raft/core/log.js";
import type { Ready } from "../../../src/raft/core/types.js";
import { DiskStorage } from "../../../src/raft/runtime/disk-storage.js";
import {
  encodeFrame,
  FRAME_HEADER_BYTES,
  frameAt,
  RECORD_HEADER_BYTES,
  SECTOR_BYTES,
} from "../../../src/raft/runtime/wal-frame.js";
import { entry, expectCode } from "./storage-helpers.js";

function ready(fields: Partial<Ready>): Ready {
  return {
    entries: [],
    committedEntries: [],
    messages: [],
    messagesAfterPersist: [],
    readStates: [],
    ...fields,
  };
}

/** Where the intact writes of a segment end, and the last one's sequence number. */
function writesIn(data: Buffer): { end: number; lastSeq: number } {
  let end = 0;
  let lastSeq = 0;
  for (let f = frameAt(data, 0); f; f = frameAt(data, end)) {
    end = f.end;
    lastSeq = f.seq;
  }
  return { end, lastSeq };
}

/** The write that would come next in a segment: one frame of log entries. */
function nextWrite(data: Buffer, entries: Entry[]): Buffer {
  const records = entries.map((e) => ({ type: 1, index: e.index, payload: Entry.encode(e).finish() }));
  return encodeFrame(writesIn(data).lastSeq + 1, records);
}

/**
 * A write interrupted by a crash at `at`: of `frame`'s sectors, only those for which
 * `landed` holds reached the disk; the others keep the zeros the segment was filled with.
 */
function tear(data: Buffer, at: number, frame: Buffer, landed: (sector: number) => boolean): void {
  for (let off = at; off < at + frame.length; off++) {
    if (landed(Math.floor(off / SECTOR_BYTES))) data[off] = frame[off - at];
  }
}

describe("raft runtime: disk storage", () => {
  let dir: string;
  beforeEach(() => {
    dir = join(mkdtempSync(join(tmpdir(), "raft-storage-")), "raft");
  });

  it("rebuilds exactly the persisted state on restart: entries, truncation, hard state", async () => {
    const s = await DiskStorage.create(dir, 1, bootstrapState([1, 2, 3]));
    await s.persist(
      ready({ entries: [entry(4, 2), entry(5, 2), entry(6, 2)], hardState: { term: 2, vote: 1, commit: 4 } }),
    );
    // A conflicting suffix from index 5 replaces 5..6 with one entry.
    await s.persist(ready({ entries: [entry(5, 3, "x")], hardState: { term: 3, vote: 2, commit: 5 } }));
    await s.close();
    const again = await DiskStorage.open(dir, 1);
    const st = again.load();
    expect(st.hardState).to.deep.equal({ term: 3, vote: 2, commit: 5 });
    expect(st.entries.map((e) => [e.index, e.term])).to.deep.equal([
      [1, 1],
      [2, 1],
      [3, 1],
      [4, 2],
      [5, 3],
    ]);
    await again.close();
  });

  it("keeps a compacted snapshot and the entries after it; a received snapshot replaces the log", async () => {
    const s = await DiskStorage.create(dir, 1, bootstrapState([1]));
    await s.persist(
      ready({
        entries: [entry(2, 1), entry(3, 1), entry(4, 1), entry(5, 1)],
        hardState: { term: 1, vote: 0, commit: 5 },
      }),
    );
    const confState = { voters: [1], learners: [] };
    await s.compact({ metadata: { index: 4, term: 1, confState }, data: new TextEncoder().encode("S4") });
    await s.close();
    const s2 = await DiskStorage.open(dir, 1);
    let st = s2.load();
    expect(st.snapshot.metadata!.index).to.equal(4);
    expect(st.entries.map((e) => e.index)).to.deep.equal([5]);
    await s2.persist(
      ready({
        snapshot: { metadata: { index: 9, term: 3, confState }, data: new TextEncoder().encode("S9") },
        hardState: { term: 3, vote: 0, commit: 9 },
      }),
    );
    await s2.close();
    const s3 = await DiskStorage.open(dir, 1);
    st = s3.load();
    expect(st.snapshot.metadata!.index).to.equal(9);
    expect(new TextDecoder().decode(st.snapshot.data)).to.equal("S9");
    expect(st.entries).to.deep.equal([]);
    expect(st.applied).to.equal(9);
    await s3.close();
  });

  it("refuses another member's directory, with what to do", async () => {
    const s = await DiskStorage.create(dir, 1, bootstrapState([1]));
    await s.close();
    const err = await expectCode(DiskStorage.open(dir, 2), "RAFT_STATE_FOREIGN");
    expect(err.message)
      .to.match(/member 1, not 2/)
      .and.to.match(/--state-dir/);
  });

  it("refuses a level directory that is not ours and changes nothing", async () => {
    const db = new ClassicLevel<string, string>(dir);
    await db.put("something", "else");
    await db.close();
    await expectCode(DiskStorage.create(dir, 1, bootstrapState([1])), "RAFT_STATE_FOREIGN");
    const again = new ClassicLevel<string, string>(dir);
    expect(await again.get("something")).to.equal("else");
    expect(await again.get("meta")).to.equal(undefined);
    await again.close();
  });

  it("detects a corrupt directory instead of resetting it", async () => {
    const s = await DiskStorage.create(dir, 1, bootstrapState([1, 2, 3]));
    await s.close();
    // Garbage where level keeps its manifest pointer.
    writeFileSync(join(dir, "CURRENT"), "garbage\n");
    await expectCode(DiskStorage.open(dir, 1), "RAFT_STATE_CORRUPT");
  });

  it("detects a commit index beyond the stored log (lost entries)", async () => {
    const s = await DiskStorage.create(dir, 1, bootstrapState([1, 2, 3]));
    await s.persist(ready({ hardState: { term: 1, vote: 0, commit: 9 } })); // written by close()
    await s.close();
    const err = await expectCode(DiskStorage.open(dir, 1), "RAFT_STATE_CORRUPT");
    expect(err.message).to.match(/commit index 9 beyond the last entry 3/);
  });

  it("refuses a directory another live process holds open", async () => {
    const s = await DiskStorage.create(dir, 1, bootstrapState([1]));
    try {
      const err = await expectCode(DiskStorage.open(dir, 1), "RAFT_STATE_LOCKED");
      expect(err.message).to.match(/in use by another process/);
    } finally {
      await s.close();
    }
  });

  it("detects a missing log segment, a missing log, and a bad record before the newest segment's end", async () => {
    const s = await DiskStorage.create(dir, 1, bootstrapState([1]), { segmentBytes: 4096 });
    for (let i = 2; i < 200; i++) await s.persist(ready({ entries: [entry(i, 1, "x".repeat(100))] }));
    expect(s.segmentCount()).to.be.greaterThan(3);
    await s.close();
    const segments = readdirSync(join(dir, "wal")).sort();
    // A flipped byte inside an older segment is corruption, not a torn tail.
    const second = join(dir, "wal", segments[1]);
    const bytes = readFileSync(second);
    bytes[40] ^= 0xff;
    writeFileSync(second, bytes);
    let err = await expectCode(DiskStorage.open(dir, 1), "RAFT_STATE_CORRUPT");
    expect(err.message).to.match(/bad record at byte/);
    bytes[40] ^= 0xff;
    writeFileSync(second, bytes);
    rmSync(second);
    err = await expectCode(DiskStorage.open(dir, 1), "RAFT_STATE_CORRUPT");
    expect(err.message).to.match(/segment 2 is missing/);
    rmSync(join(dir, "wal"), { recursive: true });
    err = await expectCode(DiskStorage.open(dir, 1), "RAFT_STATE_CORRUPT");
    expect(err.message).to.match(/write-ahead log \(wal\/\) is missing/);
  });

  it("a torn write is still cut off when the next segment was already zero-filled (crash before rollover)", async () => {
    const s = await DiskStorage.create(dir, 1, bootstrapState([1]), { segmentBytes: 4096 });
    let i = 2;
    while (!readdirSync(join(dir, "wal")).includes("0000000000000002.wal")) {
      await s.persist(ready({ entries: [entry(i, 1, "y".repeat(100))] }));
      i++;
    }
    expect(s.segmentCount()).to.equal(1);
    await s.close();
    const path = join(dir, "wal", "0000000000000001.wal");
    const data = readFileSync(path);
    // A further write torn by the crash: its first sector landed, the ones after it did not.
    const at = writesIn(data).end;
    const torn = nextWrite(
      data,
      [0, 1, 2].map((k) => entry(i + k, 1, "t".repeat(300))),
    );
    tear(data, at, torn, (sector) => sector === Math.floor(at / SECTOR_BYTES));
    writeFileSync(path, data);
    const again = await DiskStorage.open(dir, 1, { segmentBytes: 4096 });
    expect(again.load().entries.at(-1)!.index).to.equal(i - 1);
    for (let k = 0; k < 40; k++) await again.persist(ready({ entries: [entry(i + k, 1, "z".repeat(100))] }));
    await again.close();
    const third = await DiskStorage.open(dir, 1, { segmentBytes: 4096 });
    expect(third.load().entries.at(-1)!.index).to.equal(i + 39);
    await third.close();
  });

  it("cuts off a torn write at the log's end, and what it leaves behind never comes back", async () => {
    const s = await DiskStorage.create(dir, 1, bootstrapState([1]));
    await s.persist(
      ready({ entries: [entry(2, 1), entry(3, 1)], hardState: { term: 1, vote: 0, commit: 1 } }),
    );
    await s.close();
    // A torn write of entries 4..9: its first sector never landed, the sectors after it did.
    const [segment] = readdirSync(join(dir, "wal"));
    const path = join(dir, "wal", segment);
    const data = readFileSync(path);
    const at = writesIn(data).end;
    const torn = nextWrite(
      data,
      [4, 5, 6, 7, 8, 9].map((k) => entry(k, 1, "w".repeat(300))),
    );
    tear(data, at, torn, (sector) => sector !== Math.floor(at / SECTOR_BYTES));
    writeFileSync(path, data);
    const again = await DiskStorage.open(dir, 1);
    expect(again.load().entries.map((e) => e.index)).to.deep.equal([1, 2, 3]);
    await again.persist(ready({ entries: [entry(4, 1)] })); // shorter than the torn bytes
    await again.close();
    const third = await DiskStorage.open(dir, 1);
    expect(third.load().entries.map((e) => e.index)).to.deep.equal([1, 2, 3, 4]);
    await third.close();
  });
});

describe("raft runtime: disk storage fsync policy", () => {
  it("fsyncs entries, snapshots, term and vote; a commit-only change rides with the next write", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "raft-storage-")), "raft");
    const s = await DiskStorage.create(dir, 1, bootstrapState([1]));
    await s.persist(ready({ entries: [entry(2, 1)], hardState: { term: 1, vote: 0, commit: 1 } }));
    await s.persist(ready({ hardState: { term: 1, vote: 0, commit: 2 } })); // no I/O
    expect(s.writes).to.deep.equal({ batches: 1, synced: 1 });
    await s.persist(ready({ entries: [entry(3, 1)] })); // carries commit 2 along
    await s.persist(ready({ hardState: { term: 2, vote: 1, commit: 2 } }));
    expect(s.writes).to.deep.equal({ batches: 3, synced: 3 });
    await s.persist(ready({ hardState: { term: 2, vote: 1, commit: 3 } })); // deferred, flushed by close
    await s.close();
    const again = await DiskStorage.open(dir, 1);
    expect(again.load().hardState).to.deep.equal({ term: 2, vote: 1, commit: 3 });
    await again.close();
  });

  it("a crash loses at most a deferred commit index, never an acknowledged entry", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "raft-storage-")), "raft");
    const s = await DiskStorage.create(dir, 1, bootstrapState([1]));
    await s.persist(ready({ entries: [entry(2, 1)], hardState: { term: 1, vote: 0, commit: 1 } }));
    await s.persist(ready({ hardState: { term: 1, vote: 0, commit: 2 } }));
    // Simulate a crash: drop the handles without close() (the deferred commit is lost).
    const internals = s as unknown as { db: { close(): Promise<void> }; wal: { close(): Promise<void> } };
    await internals.wal.close();
    await internals.db.close();
    const again = await DiskStorage.open(dir, 1);
    const st = again.load();
    expect(st.hardState.commit).to.equal(1);
    expect(st.entries.map((e) => e.index)).to.deep.equal([1, 2]);
    await again.close();
  });
});

describe("raft runtime: disk storage keeps entries behind a snapshot", () => {
  it("compact(snapshot, M) keeps the last M entries before the snapshot across a restart", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "raft-storage-")), "raft");
    const s = await DiskStorage.create(dir, 1, bootstrapState([1]));
    const more = [2, 3, 4, 5, 6, 7, 8, 9, 10].map((i) => entry(i, 1));
    await s.persist(ready({ entries: more, hardState: { term: 1, vote: 0, commit: 10 } }));
    const confState = { voters: [1], learners: [] };
    await s.compact({ metadata: { index: 9, term: 1, confState }, data: new TextEncoder().encode("S9") }, 3);
    await s.close();
    const again = await DiskStorage.open(dir, 1);
    const st = again.load();
    expect(st.snapshot.metadata!.index).to.equal(9);
    expect(st.entries.map((e) => e.index)).to.deep.equal([6, 7, 8, 9, 10]);
    // A snapshot from the leader replaces everything, kept entries included.
    await again.persist(
      ready({
        snapshot: { metadata: { index: 20, term: 2, confState }, data: new Uint8Array() },
        hardState: { term: 2, vote: 0, commit: 20 },
      }),
    );
    await again.close();
    const third = await DiskStorage.open(dir, 1);
    expect(third.load().entries).to.deep.equal([]);
    await third.close();
  });
});

describe("raft runtime: disk storage against a model (seeded; reproduce with the printed seed)", () => {
  /** Small deterministic generator (mulberry32). */
  function rng(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  it("appends, conflicts, compactions, installed snapshots and reopenings replay exactly (40 seeds)", async function () {
    this.timeout(60_000);
    const confState = { voters: [1], learners: [] };
    for (let seed = 1; seed <= 40; seed++) {
      const rand = rng(seed);
      const int = (n: number) => Math.floor(rand() * n);
      const dir = join(mkdtempSync(join(tmpdir(), "raft-model-")), "raft");
      const options = { segmentBytes: 2048 };
      let s = await DiskStorage.create(dir, 1, bootstrapState([1]), options);
      // The model: what load() must return.
      let log: Entry[] = [...bootstrapState([1]).entries];
      let snap = { index: 0, term: 0 };
      let first = 1;
      let term = 1;
      let hs = { ...bootstrapState([1]).hardState };
      const last = () => (log.length > 0 ? log[log.length - 1].index : snap.index);
      try {
        for (let op = 0; op < 60; op++) {
          const roll = rand();
          if (roll < 0.55) {
            // Append, sometimes overwriting an uncommitted suffix in a new term.
            let from = last() + 1;
            if (rand() < 0.25 && last() > Math.max(hs.commit, snap.index)) {
              from = Math.max(hs.commit, snap.index) + 1 + int(last() - Math.max(hs.commit, snap.index));
              term++;
            }
            const batch = Array.from({ length: 1 + int(6) }, (_, i) =>
              entry(from + i, term, "p".repeat(int(200))),
            );
            log = [...log.filter((e) => e.index < from), ...batch];
            hs = { ...hs, term: Math.max(hs.term, term), commit: Math.max(hs.commit, from - 1 - int(2)) };
            hs.commit = Math.min(hs.commit, last());
            await s.persist(ready({ entries: batch, hardState: { ...hs } }));
          } else if (roll < 0.75 && hs.commit > snap.index) {
            const at = snap.index + 1 + int(hs.commit - snap.index);
            const keep = int(8);
            const atTerm = log.find((e) => e.index === at)!.term;
            await s.compact(
              { metadata: { index: at, term: atTerm, confState }, data: new Uint8Array() },
              keep,
            );
            snap = { index: at, term: atTerm };
            first = Math.max(first, firstStoredAfterCompaction(at, keep));
            log = log.filter((e) => e.index >= first);
          } else if (roll < 0.82) {
            // A snapshot from the leader, beyond our log, replaces it.
            term++;
            const at = last() + 1 + int(20);
            snap = { index: at, term };
            hs = { term, vote: 0, commit: at };
            log = [];
            first = at + 1;
            await s.persist(
              ready({
                snapshot: { metadata: { index: at, term, confState }, data: new Uint8Array() },
                hardState: { ...hs },
              }),
            );
          } else {
            await s.close();
            s = await DiskStorage.open(dir, 1, options);
          }
          const st = s.load();
          if (roll >= 0.82) {
            expect(
              st.entries.map((e) => [e.index, e.term]),
              `seed ${seed} op ${op}`,
            ).to.deep.equal(log.map((e) => [e.index, e.term]));
            expect(st.snapshot.metadata!.index, `seed ${seed} op ${op}`).to.equal(snap.index);
            expect(st.hardState, `seed ${seed} op ${op}`).to.deep.equal(hs);
          }
        }
      } finally {
        await s.close();
      }
    }
  });
});

describe("raft runtime: disk storage across unlucky crash points", () => {
  const confState = { voters: [1], learners: [] };
  const newDir = () => join(mkdtempSync(join(tmpdir(), "raft-crash-")), "raft");
  /** kill -9: the handles go, nothing more is written. */
  async function crash(s: DiskStorage): Promise<void> {
    const internals = s as unknown as { db: { close(): Promise<void> }; wal: { close(): Promise<void> } };
    await internals.wal.close();
    await internals.db.close();
  }
  /** Installs a leader's snapshot but dies after storing it, before its log mark is written. */
  async function installSnapshotAndDie(s: DiskStorage, index: number, term: number): Promise<void> {
    const wal = (s as unknown as { wal: { append: unknown } }).wal;
    wal.append = async () => {
      throw new Error("killed");
    };
    const snapshot = { metadata: { index, term, confState }, data: new Uint8Array() };
    await s.persist(ready({ snapshot, hardState: { term, vote: 0, commit: index } })).catch(() => undefined);
    delete wal.append;
    await crash(s);
  }
  const summary = (s: DiskStorage) => s.load().entries.map((e) => `${e.index}@${e.term}`);

  it("a snapshot stored but not yet marked in the log: the log it replaced never comes back", async () => {
    const dir = newDir();
    const s = await DiskStorage.create(dir, 1, bootstrapState([1]));
    await s.persist(
      ready({ entries: [2, 3, 4, 5].map((i) => entry(i, 1)), hardState: { term: 1, vote: 0, commit: 3 } }),
    );
    await installSnapshotAndDie(s, 20, 2);
    const s2 = await DiskStorage.open(dir, 1);
    expect(s2.load().snapshot.metadata!.index).to.equal(20);
    expect(summary(s2)).to.deep.equal([]);
    await s2.persist(
      ready({ entries: [entry(21, 2), entry(22, 2)], hardState: { term: 2, vote: 0, commit: 21 } }),
    );
    await crash(s2);
    const s3 = await DiskStorage.open(dir, 1); // no gap between the old entries and 21
    expect(summary(s3)).to.deep.equal(["21@2", "22@2"]);
    await s3.close();
  });

  it("a snapshot that conflicts with the log at its index drops the log's stale entries after it", async () => {
    const dir = newDir();
    const s = await DiskStorage.create(dir, 1, bootstrapState([1]));
    const log = [2, 3, 4, 5, 6, 7, 8, 9, 10].map((i) => entry(i, 1));
    await s.persist(ready({ entries: log, hardState: { term: 1, vote: 0, commit: 3 } }));
    await installSnapshotAndDie(s, 8, 3); // the leader's entry 8 is of term 3, ours of term 1
    const s2 = await DiskStorage.open(dir, 1);
    expect(summary(s2)).to.deep.equal([]);
    await s2.persist(ready({ entries: [entry(9, 3)], hardState: { term: 3, vote: 0, commit: 8 } }));
    await crash(s2);
    const s3 = await DiskStorage.open(dir, 1);
    expect(summary(s3)).to.deep.equal(["9@3"]);
    await s3.close();
  });

  it("a write cut short right after a new segment's opening hard state still opens", async () => {
    const dir = newDir();
    const options = { segmentBytes: 4096 };
    const s = await DiskStorage.create(dir, 1, bootstrapState([1]), options);
    let i = 2;
    for (; i < 17; i++) {
      await s.persist(
        ready({ entries: [entry(i, 1, "x".repeat(100))], hardState: { term: 1, vote: 0, commit: i - 1 } }),
      );
    }
    // A follower's append whose commit index is its own last entry, big enough to roll over.
    const batch = Array.from({ length: 20 }, (_, k) => entry(i + k, 1, "y".repeat(100)));
    await s.persist(ready({ entries: batch, hardState: { term: 1, vote: 0, commit: i + 19 } }));
    await crash(s);
    const segments = readdirSync(join(dir, "wal")).sort();
    expect(segments.length).to.be.at.least(2); // a third may be zero-filled ahead of need
    // Only the new segment's opening record and a few bytes more reached the disk.
    const path = join(dir, "wal", segments[1]);
    const data = readFileSync(path);
    data.fill(0, FRAME_HEADER_BYTES + RECORD_HEADER_BYTES + data.readUInt32LE(FRAME_HEADER_BYTES) + 40);
    writeFileSync(path, data);
    const again = await DiskStorage.open(dir, 1, options);
    expect(again.load().entries.at(-1)!.index).to.equal(i - 1);
    expect(again.load().hardState.commit).to.be.at.most(i - 1);
    await again.close();
  });

  it("sectors of an interrupted write that landed behind a lost one are cleared, never replayed later", async () => {
    const dir = newDir();
    const s = await DiskStorage.create(dir, 1, bootstrapState([1, 2, 3]));
    await s.persist(ready({ entries: [entry(2, 1)], hardState: { term: 1, vote: 0, commit: 1 } }));
    const segment = join(dir, "wal", readdirSync(join(dir, "wal"))[0]);
    const end = writesIn(readFileSync(segment)).end;
    // The write [entry 3, vote for 2 in term 1] is interrupted: its first bytes never land.
    await s.persist(ready({ entries: [entry(3, 1)], hardState: { term: 1, vote: 2, commit: 1 } }));
    await crash(s);
    const data = readFileSync(segment);
    data.fill(0, end, end + FRAME_HEADER_BYTES + 4);
    writeFileSync(segment, data);
    const s2 = await DiskStorage.open(dir, 1);
    expect(s2.load().hardState).to.deep.equal({ term: 1, vote: 0, commit: 1 });
    expect(
      readFileSync(segment)
        .subarray(end)
        .every((b) => b === 0),
    ).to.equal(true);
    await s2.persist(ready({ hardState: { term: 2, vote: 3, commit: 1 } }));
    await crash(s2);
    const s3 = await DiskStorage.open(dir, 1);
    expect(s3.load().hardState).to.deep.equal({ term: 2, vote: 3, commit: 1 });
    await s3.close();
  });

  it("a commit-only hard state that commits a configuration change is written at once, not deferred (second reading, F1)", async () => {
    const dir = newDir();
    const boot = bootstrapState([1, 2]);
    const s = await DiskStorage.create(dir, 1, boot);
    const last = boot.entries[boot.entries.length - 1].index;
    const removal: Entry = {
      term: 2,
      index: last + 1,
      type: EntryType.ENTRY_TYPE_CONF_CHANGE,
      data: ConfChange.encode({
        type: ConfChangeType.CONF_CHANGE_TYPE_REMOVE_NODE,
        nodeId: 2,
        context: new Uint8Array(),
      }).finish(),
    };
    await s.persist(ready({ entries: [removal], hardState: { term: 2, vote: 1, commit: last } }));
    await s.persist(
      ready({ committedEntries: [removal], hardState: { term: 2, vote: 1, commit: last + 1 } }),
    );
    await crash(s);
    const again = await DiskStorage.open(dir, 1);
    expect(again.load().hardState.commit).to.equal(removal.index);
    await again.close();
  });
});
