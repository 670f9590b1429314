// Small helpers shared by the hard-case scenario tests (hard-cases-*.test.ts).
import type { Message } from "../../src/gen/raft/v1/raft.js";
import { makeMessage } from "../../src/raft/core/util.js";
import { type MessageFilter, T, type TestCluster } from "./harness.js";

export { makeMessage };

/** Messages matching `pick` that were delivered (or dropped at delivery) so far. */
export function seen(c: TestCluster, pick: MessageFilter): Message[] {
  return c.delivered.filter(pick);
}

/** Messages matching `pick` still waiting in flight. */
export function pending(c: TestCluster, pick: MessageFilter): Message[] {
  return c.inflight.filter(pick);
}

/** Takes the in-flight messages matching `pick` and delivers them (and only them) once. */
export function deliverOnly(c: TestCluster, pick: MessageFilter): Message[] {
  const msgs = c.take(pick);
  for (const m of msgs) c.deliver(m);
  return msgs;
}

/** Campaigns (repeatedly: a stale term may cost a round) until `id` leads. */
export function electUntil(c: TestCluster, id: number, rounds = 4): void {
  for (let i = 0; i < rounds && c.raft(id).role !== "leader"; i++) c.elect(id);
  if (c.raft(id).role !== "leader") throw new Error(`node ${id} did not become leader`);
}

/** Ticks every live node until `done()` holds, at most `max` rounds; returns the rounds used. */
export function tickUntil(c: TestCluster, done: () => boolean, max = 200): number {
  for (let i = 0; i < max; i++) {
    if (done()) return i;
    c.tickAll(1);
  }
  if (!done()) throw new Error(`condition not reached within ${max} rounds`);
  return max;
}

export const is =
  (type: number, from?: number, to?: number): MessageFilter =>
  (m) =>
    m.type === type && (from === undefined || m.from === from) && (to === undefined || m.to === to);

export { T };
