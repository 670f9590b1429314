// The pure Raft core: a deterministic state machine with no I/O, no clock and
// no randomness of its own (see README "Raft core"). The runtime drives it with
// ticks, messages and the Ready/advance cycle.
export { RaftInvariantError } from "./assert.js";
export { bootstrapState, emptySnapshot, joiningState } from "./bootstrap.js";
export { Raft } from "./raft.js";
export { type Rng, SeededRng } from "./rand.js";
export type * from "./types.js";
export { NONE } from "./util.js";
