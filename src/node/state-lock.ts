// One process per state dir: two daemons on one directory would be one identity with two
// sessions, two renewal loops and two writers of node.json. A manager's Raft storage is
// locked by the storage itself; this lock covers every node, workers included. It is a
// Unix socket in Linux's abstract namespace named after the directory: the kernel frees it
// when the process dies however it dies, so a crash never leaves a stale lock behind, and
// binding it is atomic. Elsewhere (no abstract namespace) nothing is locked. The name is per
// network namespace: two containers sharing a volume are not locked against each other.
import { createHash } from "node:crypto";
import { realpathSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { basename, dirname, resolve } from "node:path";
import { NodeError } from "./errors.js";

export interface StateDirLock {
  release(): Promise<void>;
  /** Runs the steps before the daemon takes the lock over; if they fail, the lock is released. */
  guard<T>(steps: () => Promise<T>): Promise<T>;
}

function stateDirLock(release: () => Promise<void>): StateDirLock {
  return {
    release,
    guard: async (steps) => {
      try {
        return await steps();
      } catch (err) {
        await release();
        throw err;
      }
    },
  };
}

const UNLOCKED = stateDirLock(async () => {});

/**
 * Takes the state dir's lock, or refuses with STATE_DIR_LOCKED. The directory need not exist
 * yet: init and join lock it before they create or look inside it, so two of them cannot both
 * write it.
 */
export async function lockStateDir(dir: string): Promise<StateDirLock> {
  if (process.platform !== "linux") return UNLOCKED;
  const digest = createHash("sha256").update(canonicalPath(dir)).digest("hex").slice(0, 40);
  const server: Server = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        err.code === "EADDRINUSE"
          ? new NodeError(
              "STATE_DIR_LOCKED",
              `another nodectl process runs on the state dir ${dir}: one process per state dir; ` +
                "stop that one first (or use it: nodectl ls --state-dir on a manager)",
            )
          : err,
      ),
    );
    server.listen(`\0nodectl-state-dir-${digest}`, () => resolve());
  });
  server.unref();
  return stateDirLock(() => new Promise<void>((resolve) => server.close(() => resolve())));
}

/** The directory's path with symbolic links resolved, as far as it exists. */
function canonicalPath(dir: string): string {
  const absolute = resolve(dir);
  try {
    return realpathSync(absolute);
  } catch {
    try {
      return `${realpathSync(dirname(absolute))}/${basename(absolute)}`;
    } catch {
      return absolute;
    }
  }
}
