// Small helpers of the process driver (local-nodes.ts re-exports them): its error
// class, free ports, deadline-bounded waits, Prometheus text, bounded concurrency.
import { createServer } from "node:net";

export type LocalNodesErrorCode =
  /** A wait passed its deadline. */
  | "DEADLINE"
  /** A daemon exited before it said it was up. */
  | "NODE_EXITED"
  /** A nodectl command exited non-zero or printed something unreadable. */
  | "COMMAND_FAILED";

export class LocalNodesError extends Error {
  constructor(
    readonly code: LocalNodesErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "LocalNodesError";
  }
}

/** A port the OS had free a moment ago (listen on port 0, then close). */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== "object" || address === null) throw new Error("the OS gave no port");
  return address.port;
}

/**
 * Polls `probe` (every `intervalMs`) until it returns a value other than undefined, and
 * returns it; past `deadlineMs` throws a DEADLINE error naming `what` and the last error.
 */
export async function waitFor<T>(
  what: string,
  deadlineMs: number,
  probe: () => Promise<T | undefined> | T | undefined,
  intervalMs = 100,
  /** An error the wait must not retry (a process it waits on died): thrown at once. */
  isFatal: (err: unknown) => boolean = () => false,
): Promise<T> {
  const until = Date.now() + deadlineMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      if (isFatal(err)) throw err;
      last = err;
    }
    if (Date.now() >= until) {
      const why = last instanceof Error ? `; last error: ${last.message}` : "";
      throw new LocalNodesError("DEADLINE", `timed out after ${deadlineMs} ms waiting for ${what}${why}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Parses Prometheus text: series (name plus labels, as written) → value. */
export function parseMetrics(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    if (space > 0) values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return values;
}

/** Runs `fn` over `items` with at most `limit` calls in flight; results in input order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}
