// Background loops for tests. Each iteration returns to the event loop (setImmediate)
// before the next, so a body that fails at once (no target left, a closed cluster)
// cannot starve timers, mocha's timeout included; `stop()` belongs in a `finally`.
import { setImmediate as yieldToEventLoop } from "node:timers/promises";

export interface BackgroundLoop {
  /** Iterations run so far. */
  readonly iterations: number;
  /** Asks the loop to end and waits for the iteration in flight. */
  stop(): Promise<void>;
}

/**
 * Runs `body(i)` for i = 0, 1, ... until stopped. The body handles its own expected
 * errors; an unexpected one ends the loop and is rethrown by `stop()`.
 */
export function startLoop(body: (i: number) => Promise<void>): BackgroundLoop {
  let stopped = false;
  let iterations = 0;
  let failure: { error: unknown } | undefined;
  const done = (async () => {
    while (!stopped) {
      await body(iterations++);
      await yieldToEventLoop();
    }
  })().catch((error: unknown) => {
    failure = { error }; // kept for stop(): not an unhandled rejection meanwhile
  });
  return {
    get iterations() {
      return iterations;
    },
    async stop() {
      stopped = true;
      await done;
      if (failure) throw failure.error;
    },
  };
}
