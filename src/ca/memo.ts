// A small bounded memo for pure functions of certificate material: a process sees few
// distinct trust bundles and CA certificates (the root, then old+new and the
// cross-signed twin during a rotation, then the new root), yet parses them on every
// renewal, push and heartbeat. The oldest entry goes first once the bound is reached.
// Only for results that are never mutated; a throw caches nothing (bad input is refused
// again, every time).

/** `keep` decides which results are kept (default: all); the others are computed every time. */
export function memoizeBy<A, T>(
  keyOf: (input: A) => string,
  fn: (input: A) => T,
  maxEntries = 8,
  keep: (value: T) => boolean = () => true,
) {
  const cache = new Map<string, T>();
  return (input: A): T => {
    const key = keyOf(input);
    if (cache.has(key)) return cache.get(key) as T;
    const value = fn(input);
    if (!keep(value)) return value;
    if (cache.size >= maxEntries) {
      const oldest = cache.keys().next().value;
      if (oldest !== undefined) cache.delete(oldest);
    }
    cache.set(key, value);
    return value;
  };
}

export function memoizeByString<T>(fn: (input: string) => T, maxEntries = 8): (input: string) => T {
  return memoizeBy((input: string) => input, fn, maxEntries);
}
