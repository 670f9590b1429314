import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { ClassicLevel } from "classic-level";
import { type Entry, EntryType, HardState } from "../../../src/gen/raft/v1/raft.js";
import { bootstrapState } from "../../../src/raft/core/bootstrap.js";
import type { Ready } from "../../../src/raft/core/types.js";
import { RaftRuntimeError } from "../../../src/raft/runtime/errors.js";
import { LevelStorage } from "../../../src/raft/runtime/level-storage.js";

const entry = (index: number, term: number, s = `v${index}`): Entry => ({
  index,
  term,
  type: EntryType.ENTRY_TYPE_NORMAL,
  data: new TextEncoder().encode(s),
});

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

async function expectCode(p: Promise<unknown>, code: string): Promise<RaftRuntimeError> {
  try {
    await p;
  } catch (err) {
    expect(err).to.be.instanceOf(RaftRuntimeError);
    expect((err as RaftRuntimeError).code).to.equal(code);
    return err as RaftRuntimeError;
  }
  throw new Error(`expected ${code}`);
}

describe("raft runtime: level storage", () => {
  let dir: string;
  beforeEach(() => {
    dir = join(mkdtempSync(join(tmpdir(), "raft-storage-")), "raft");
  });

  it("rebuilds exactly the persisted state on restart: entries, truncation, hard state", async () => {
    const s = await LevelStorage.open(dir, 1, bootstrapState([1, 2, 3]));
    await s.persist(
      ready({ entries: [entry(4, 2), entry(5, 2), entry(6, 2)], hardState: { term: 2, vote: 1, commit: 4 } }),
    );
    // A conflicting suffix from index 5 replaces 5..6 with one entry.
    await s.persist(ready({ entries: [entry(5, 3, "x")], hardState: { term: 3, vote: 2, commit: 5 } }));
    await s.close();
    const again = await LevelStorage.open(dir, 1);
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
    const s = await LevelStorage.open(dir, 1, bootstrapState([1]));
    await s.persist(
      ready({
        entries: [entry(2, 1), entry(3, 1), entry(4, 1), entry(5, 1)],
        hardState: { term: 1, vote: 0, commit: 5 },
      }),
    );
    const confState = { voters: [1], learners: [] };
    await s.compact({ metadata: { index: 4, term: 1, confState }, data: new TextEncoder().encode("S4") });
    await s.close();
    const s2 = await LevelStorage.open(dir, 1);
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
    const s3 = await LevelStorage.open(dir, 1);
    st = s3.load();
    expect(st.snapshot.metadata!.index).to.equal(9);
    expect(new TextDecoder().decode(st.snapshot.data)).to.equal("S9");
    expect(st.entries).to.deep.equal([]);
    expect(st.applied).to.equal(9);
    await s3.close();
  });

  it("refuses another member's directory, with what to do", async () => {
    const s = await LevelStorage.open(dir, 1, bootstrapState([1]));
    await s.close();
    const err = await expectCode(LevelStorage.open(dir, 2), "RAFT_STATE_FOREIGN");
    expect(err.message)
      .to.match(/member 1, not 2/)
      .and.to.match(/--state-dir/);
  });

  it("refuses a level directory that is not ours and changes nothing", async () => {
    const db = new ClassicLevel<string, string>(dir);
    await db.put("something", "else");
    await db.close();
    await expectCode(LevelStorage.open(dir, 1, bootstrapState([1])), "RAFT_STATE_FOREIGN");
    const again = new ClassicLevel<string, string>(dir);
    expect(await again.get("something")).to.equal("else");
    expect(await again.get("meta")).to.equal(undefined);
    await again.close();
  });

  it("detects a corrupt directory instead of resetting it", async () => {
    const s = await LevelStorage.open(dir, 1, bootstrapState([1, 2, 3]));
    await s.close();
    // Garbage where level keeps its manifest pointer.
    writeFileSync(join(dir, "CURRENT"), "garbage\n");
    await expectCode(LevelStorage.open(dir, 1), "RAFT_STATE_CORRUPT");
  });

  it("detects a commit index beyond the stored log (lost entries)", async () => {
    const s = await LevelStorage.open(dir, 1, bootstrapState([1, 2, 3]));
    await s.close();
    const db = new ClassicLevel<string, Uint8Array>(dir, { valueEncoding: "view" });
    await db.put("hs", HardState.encode({ term: 1, vote: 0, commit: 9 }).finish());
    await db.close();
    const err = await expectCode(LevelStorage.open(dir, 1), "RAFT_STATE_CORRUPT");
    expect(err.message).to.match(/commit index 9 beyond the last entry 3/);
  });

  it("refuses a directory another live process holds open", async () => {
    const s = await LevelStorage.open(dir, 1, bootstrapState([1]));
    try {
      const err = await expectCode(LevelStorage.open(dir, 1), "RAFT_STATE_LOCKED");
      expect(err.message).to.match(/in use by another process/);
    } finally {
      await s.close();
    }
  });

  it("detects a gap in the log", async () => {
    const s = await LevelStorage.open(dir, 1, bootstrapState([1, 2, 3]));
    await s.close();
    const db = new ClassicLevel<string, Uint8Array>(dir, { valueEncoding: "view" });
    await db.del(`e:${(2).toString(16).padStart(16, "0")}`);
    await db.close();
    await expectCode(LevelStorage.open(dir, 1), "RAFT_STATE_CORRUPT");
  });
});

describe("raft runtime: level storage fsync policy", () => {
  it("fsyncs entries, snapshots, term and vote; a commit-only change rides with the next write", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "raft-storage-")), "raft");
    const s = await LevelStorage.open(dir, 1, bootstrapState([1]));
    await s.persist(ready({ entries: [entry(2, 1)], hardState: { term: 1, vote: 0, commit: 1 } }));
    await s.persist(ready({ hardState: { term: 1, vote: 0, commit: 2 } })); // no I/O
    expect(s.writes).to.deep.equal({ batches: 1, synced: 1 });
    await s.persist(ready({ entries: [entry(3, 1)] })); // carries commit 2 along
    await s.persist(ready({ hardState: { term: 2, vote: 1, commit: 2 } }));
    expect(s.writes).to.deep.equal({ batches: 3, synced: 3 });
    await s.persist(ready({ hardState: { term: 2, vote: 1, commit: 3 } })); // deferred, flushed by close
    await s.close();
    const again = await LevelStorage.open(dir, 1);
    expect(again.load().hardState).to.deep.equal({ term: 2, vote: 1, commit: 3 });
    await again.close();
  });

  it("a crash loses at most a deferred commit index, never an acknowledged entry", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "raft-storage-")), "raft");
    const s = await LevelStorage.open(dir, 1, bootstrapState([1]));
    await s.persist(ready({ entries: [entry(2, 1)], hardState: { term: 1, vote: 0, commit: 1 } }));
    await s.persist(ready({ hardState: { term: 1, vote: 0, commit: 2 } }));
    // Simulate a crash: drop the handle without close() (the deferred commit is lost).
    await (s as unknown as { db: { close(): Promise<void> } }).db.close();
    const again = await LevelStorage.open(dir, 1);
    const st = again.load();
    expect(st.hardState.commit).to.equal(1);
    expect(st.entries.map((e) => e.index)).to.deep.equal([1, 2]);
    await again.close();
  });
});

describe("raft runtime: level storage keeps entries behind a snapshot", () => {
  it("compact(snapshot, M) keeps the last M entries before the snapshot across a restart", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "raft-storage-")), "raft");
    const s = await LevelStorage.open(dir, 1, bootstrapState([1]));
    const more = [2, 3, 4, 5, 6, 7, 8, 9, 10].map((i) => entry(i, 1));
    await s.persist(ready({ entries: more, hardState: { term: 1, vote: 0, commit: 10 } }));
    const confState = { voters: [1], learners: [] };
    await s.compact({ metadata: { index: 9, term: 1, confState }, data: new TextEncoder().encode("S9") }, 3);
    await s.close();
    const again = await LevelStorage.open(dir, 1);
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
    const third = await LevelStorage.open(dir, 1);
    expect(third.load().entries).to.deep.equal([]);
    await third.close();
  });
});
