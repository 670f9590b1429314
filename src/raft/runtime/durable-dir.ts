// Directory entries survive a crash only once their directory is synced (a file's own
// fsync does not cover its name): creating, renaming and deleting files that
// recovery depends on is followed by a sync of the directory holding them.
import * as fs from "node:fs";
import { dirname, resolve } from "node:path";

/** Syncs a directory's entries; a seam so tests can see which directories are synced. */
export type SyncDirectory = (dir: string) => void;

export const fsyncDirectory: SyncDirectory = (dir) => {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
};

/** Creates `dir` and any missing parents, syncing the parent of each so the new entries are durable. */
export function makeDirectoryDurably(dir: string, syncDirectory: SyncDirectory = fsyncDirectory): void {
  const created: string[] = [];
  for (let d = resolve(dir); !fs.existsSync(d); d = dirname(d)) created.unshift(d);
  fs.mkdirSync(dir, { recursive: true });
  for (const d of created) syncDirectory(dirname(d));
}
