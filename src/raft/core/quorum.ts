// Quorum arithmetic: pure functions over a set of voters.

export type VoteResult = "won" | "lost" | "pending";

export function majority(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

/** The largest index that a majority of voters have durably matched. */
export function quorumMatchedIndex(voters: Iterable<number>, matchOf: (id: number) => number): number {
  const matches: number[] = [];
  for (const id of voters) matches.push(matchOf(id));
  if (matches.length === 0) return 0;
  matches.sort((a, b) => b - a);
  return matches[majority(matches.length) - 1];
}

export function voteResult(voters: ReadonlySet<number>, votes: ReadonlyMap<number, boolean>): VoteResult {
  let granted = 0;
  let rejected = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === true) granted++;
    else if (v === false) rejected++;
  }
  const q = majority(voters.size);
  if (granted >= q) return "won";
  if (rejected > voters.size - q) return "lost";
  return "pending";
}

export function hasQuorum(voters: ReadonlySet<number>, ids: ReadonlySet<number>): boolean {
  let n = 0;
  for (const id of voters) if (ids.has(id)) n++;
  return n >= majority(voters.size);
}
