// A member's raft directory is created only when asked for, and its entries are made
// durable: a lost directory is never silently replaced by a fresh one.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { expect } from "chai";
import { ClassicLevel } from "classic-level";
import { type Entry, EntryType } from "../../../src/gen/raft/v1/raft.js";
import { bootstrapState, joiningState } from "../../../src/raft/core/bootstrap.js";
import type { Ready } from "../../../src/raft/core/types.js";
import { DiskStorage } from "../../../src/raft/runtime/disk-storage.js";
import { fsyncDirectory } from "../../../src/raft/runtime/durable-dir.js";
import { expectCode } from "./storage-helpers.js";

const entry = (index: number): Entry => ({
  index,
  term: 1,
  type: EntryType.ENTRY_TYPE_NORMAL,
  data: new TextEncoder().encode("e".repeat(100)),
});
const ready = (entries: Entry[], commit: number): Ready => ({
  entries,
  hardState: { term: 1, vote: 1, commit },
  committedEntries: [],
  messages: [],
  messagesAfterPersist: [],
  readStates: [],
});

describe("raft runtime: disk storage is created only when asked for", () => {
  let base: string;
  let dir: string;
  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), "raft-create-"));
    dir = join(base, "raft");
  });

  it("refuses a missing or empty directory (a lost one) instead of starting afresh, and creates nothing", async () => {
    let err = await expectCode(DiskStorage.open(dir, 1), "RAFT_STATE_MISSING");
    expect(err.message)
      .to.contain(dir)
      .and.to.match(/does not exist/);
    expect(err.message)
      .to.match(/lost its log and votes/)
      .and.to.match(/backup/);
    expect(err.message).to.match(/remove it from the cluster and add it again as a new member/);
    expect(existsSync(dir)).to.equal(false);
    // A member that ran, whose directory was then emptied.
    const s = await DiskStorage.create(dir, 1, bootstrapState([1, 2, 3]));
    await s.close();
    rmSync(dir, { recursive: true });
    mkdirSync(dir);
    err = await expectCode(DiskStorage.open(dir, 1), "RAFT_STATE_MISSING");
    expect(err.message).to.match(/is empty/);
    expect(readdirSync(dir)).to.deep.equal([]);
  });

  it("creates a founding voter's or a joining member's state once; creating it again is refused", async () => {
    const s = await DiskStorage.create(dir, 1, bootstrapState([1, 2, 3]));
    await s.persist(ready([entry(4)], 3));
    await s.close();
    const err = await expectCode(DiskStorage.create(dir, 1, bootstrapState([1])), "RAFT_STATE_EXISTS");
    expect(err.message)
      .to.contain(dir)
      .and.to.match(/member 1/)
      .and.to.match(/without asking to bootstrap/);
    await expectCode(DiskStorage.create(dir, 1, joiningState()), "RAFT_STATE_EXISTS");
    const again = await DiskStorage.open(dir, 1);
    expect(again.load().entries.map((e) => e.index)).to.deep.equal([1, 2, 3, 4]);
    await again.close();
    // A non-empty directory that is no raft state is not taken over either.
    const other = join(base, "other");
    mkdirSync(other);
    mkdirSync(join(other, "photos"));
    await expectCode(DiskStorage.create(other, 1, joiningState()), "RAFT_STATE_FOREIGN");
    expect(readdirSync(other)).to.deep.equal(["photos"]);
  });

  it("a creation that never finished (no header) is refused by open and started over by create", async () => {
    const s = await DiskStorage.create(dir, 2, joiningState());
    await s.close();
    // The crash window: the log was written, the header (with the snapshot) was not.
    const db = new ClassicLevel<string, Uint8Array>(dir, { valueEncoding: "view" });
    await db.batch([
      { type: "del", key: "meta" },
      { type: "del", key: "snap" },
      { type: "del", key: "first" },
    ]);
    await db.close();
    const err = await expectCode(DiskStorage.open(dir, 2), "RAFT_STATE_MISSING");
    expect(err.message).to.match(/creation never finished/);
    const created = await DiskStorage.create(dir, 2, bootstrapState([2]));
    expect(created.load().entries.map((e) => e.index)).to.deep.equal([1]);
    await created.close();
    const reopened = await DiskStorage.open(dir, 2);
    expect(reopened.load().entries.map((e) => e.index)).to.deep.equal([1]);
    await reopened.close();
  });
});

describe("raft runtime: disk storage syncs the directories whose entries recovery needs", () => {
  it("the raft directory and each new parent at creation, the log directory per segment, the raft directory before pruning", async () => {
    const base = resolve(mkdtempSync(join(tmpdir(), "raft-dirsync-")));
    const dir = join(base, "member", "raft");
    const wal = join(dir, "wal");
    const synced: string[] = [];
    const syncDirectory = (d: string) => {
      synced.push(resolve(d));
      fsyncDirectory(d); // the real sync still runs: this only watches it
    };
    const options = { segmentBytes: 4096, syncDirectory };
    const s = await DiskStorage.create(dir, 1, bootstrapState([1]), options);
    // Two directories were created: "member" in base, "raft" in "member"; then wal/,
    // the first segment, and level's files inside the raft directory.
    expect(synced).to.include.members([base, join(base, "member"), dir, wal]);
    synced.length = 0;
    let last = 1;
    while (s.segmentCount() < 3) {
      last++;
      await s.persist(ready([entry(last)], last - 1));
    }
    expect(synced.filter((d) => d === wal).length).to.be.at.least(2); // each new segment's name
    synced.length = 0;
    const confState = { voters: [1], learners: [] };
    await s.compact({ metadata: { index: last, term: 1, confState }, data: new Uint8Array() });
    expect(s.segmentCount()).to.equal(1);
    // The snapshot's level file name first, then the log directory once segments are deleted.
    expect(synced).to.deep.equal([dir, wal]);
    await s.close();
    synced.length = 0;
    const again = await DiskStorage.open(dir, 1, options);
    expect(synced).to.include(dir); // level's new log file at every open
    await again.close();
  });
});
