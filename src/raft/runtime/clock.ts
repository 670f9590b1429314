// The runtime's only way to wait: a seam, so the simulator runs RaftNode in virtual
// time (src/raft/sim/sim-clock.ts) while production uses the process's timers.

/** A scheduled callback; cancelling one that already ran is harmless. */
export interface Timer {
  cancel(): void;
}

export interface RuntimeClock {
  /** Calls `fn` every `ms` until cancelled (the Raft tick). */
  every(ms: number, fn: () => void): Timer;
  /** Calls `fn` once after `ms` unless cancelled (request timeouts). */
  after(ms: number, fn: () => void): Timer;
  /**
   * Calls `fn` once the event loop has handled what is already queued (I/O, the
   * replies and messages the last round produced): setImmediate in production.
   */
  nextTurn(fn: () => void): void;
}

/** The process's own timers. */
export const systemClock: RuntimeClock = {
  every(ms, fn) {
    const t = setInterval(fn, ms);
    return { cancel: () => clearInterval(t) };
  },
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(t) };
  },
  nextTurn(fn) {
    setImmediate(fn);
  },
};
