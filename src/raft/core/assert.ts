// Invariant assertions: cheap checked documentation that fails loudly.

export class RaftInvariantError extends Error {
  readonly code = "RAFT_INVARIANT";
}

export function assert(condition: boolean, what: string): asserts condition {
  if (!condition) throw new RaftInvariantError(`raft invariant violated: ${what}`);
}
