// How a node picks a manager and how long it waits before trying again.

export interface WeightedManager {
  nodeId: string;
  address: string;
  weight: number;
}

/**
 * Picks a manager with probability proportional to its weight, avoiding `avoid` (the
 * one that just failed) when any other is left. `random` is in [0, 1).
 */
export function pickManager<T extends WeightedManager>(
  managers: readonly T[],
  random: () => number,
  avoid?: string,
): T | undefined {
  const others = managers.filter((m) => m.nodeId !== avoid);
  const candidates = others.length > 0 ? others : managers;
  const total = candidates.reduce((sum, m) => sum + Math.max(0, m.weight), 0);
  if (candidates.length === 0) return undefined;
  if (total === 0) return candidates[Math.floor(random() * candidates.length)];
  let point = random() * total;
  for (const m of candidates) {
    point -= Math.max(0, m.weight);
    if (point < 0) return m;
  }
  return candidates[candidates.length - 1];
}

/**
 * Exponential backoff with full jitter (a uniform wait in [0, min(max, base * 2^attempt))):
 * when a manager dies, its nodes come back spread out instead of in one wave.
 */
export function fullJitterDelayMs(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random: () => number,
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}
