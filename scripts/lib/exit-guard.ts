// Notices every way a script that owns child processes can be asked to end, so it can
// stop them first: Ctrl-C (SIGINT), SIGTERM, a terminal that went away (SIGHUP), a
// reader that closed our output (`npm start | head -5` makes the next write fail with
// EPIPE), and the death of our parent (npm does not always pass its SIGTERM on to the
// script it runs; a parent killed with SIGKILL passes nothing). A SIGKILL of the script
// itself cannot be caught: the reaper of local-nodes.ts covers that case.

export type EndReason = "SIGINT" | "SIGTERM" | "SIGHUP" | "EPIPE" | "parent died";

/** The conventional exit status for each reason (128 + signal number for signals). */
export const EXIT_STATUS: Record<EndReason, number> = {
  SIGHUP: 129,
  SIGINT: 130,
  SIGTERM: 143,
  EPIPE: 141,
  "parent died": 129,
};

/**
 * Calls `onEnd(reason)` once, on the first of those events. Returns a function that
 * stops watching (the parent poll is unref'ed: it never keeps the process alive).
 */
export function watchForEnd(onEnd: (reason: EndReason) => void, parentPollMs = 250): () => void {
  let fired = false;
  const fire = (reason: EndReason) => {
    if (fired) return;
    fired = true;
    onEnd(reason);
  };
  const onSignal = (signal: NodeJS.Signals) => fire(signal as EndReason);
  let watching = true;
  // Stays registered after the watch ends: once the reader is gone, every later write
  // fails too, and an 'error' with no listener would crash the process mid-cleanup.
  const onOutputError = (err: NodeJS.ErrnoException) => {
    if (watching && err.code === "EPIPE") fire("EPIPE");
  };
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  for (const signal of signals) process.on(signal, onSignal);
  process.stdout.on("error", onOutputError);
  const parentPid = process.ppid;
  const poll = setInterval(() => {
    if (process.ppid !== parentPid) fire("parent died");
  }, parentPollMs);
  poll.unref();
  return () => {
    watching = false;
    for (const signal of signals) process.off(signal, onSignal);
    clearInterval(poll);
  };
}
