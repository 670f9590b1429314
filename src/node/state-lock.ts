// One process per state dir: two daemons on one directory would be one identity with two
// sessions, two renewal loops and two writers of node.json. A manager's Raft storage is
// locked by the storage itself; this lock covers every node, workers included. It is a
// Unix socket in Linux's abstract namespace named after the directory: the kernel frees it
// when the process dies however it dies, so a crash never leaves a stale lock behind, and
// binding it is atomic. Elsewhere (no abstract namespace) nothing is locked. The name is per
// network namespace: two containers sharing a volume are not locked against each other.
import { createHash } from "node:crypto";
import { mkdirSync, realpathSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { NodeError } from "./errors.js";

export interface StateDirLock {
  release(): Promise<void>;
}

const UNLOCKED: StateDirLock = { release: async () => {} };

/**
 * Takes the state dir's lock, or refuses with STATE_DIR_LOCKED. `create` makes the directory
 * first (init and join lock it before they look inside, so two of them cannot both write it).
 */
export async function lockStateDir(dir: string, options: { create?: boolean } = {}): Promise<StateDirLock> {
  if (options.create) mkdirSync(dir, { recursive: true });
  if (process.platform !== "linux") return UNLOCKED;
  const digest = createHash("sha256").update(realpathSync(dir)).digest("hex").slice(0, 40);
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
  return {
    release: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
