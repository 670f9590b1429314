// The search configurations already explored (Lowe's memoization). A configuration is
// the linearized set, as bit words, one small integer (the register value and a flag)
// and how many interchangeable optional writes it used; the same configuration with
// fewer of them used has every option this one has, so only the fewest is kept. Lookups cost a hash the search keeps up to date
// incrementally (Zobrist: one random word pair per operation, XORed in and out) and an
// exact comparison on a hit, never a string or an allocation: building string keys
// dominated the search's time. Stored bit words live in one growing arena.

const INITIAL_CAPACITY = 1024;

/** Deterministic per-operation random words, so a search is reproducible run to run. */
export function zobristWords(count: number): { lo: Int32Array; hi: Int32Array } {
  let x = 0x2545f491;
  const nextWord = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x | 0;
  };
  const lo = new Int32Array(count);
  const hi = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    lo[i] = nextWord();
    hi[i] = nextWord();
  }
  return { lo, hi };
}

export class ConfigurationSet {
  private arena: Uint16Array;
  private extras: Int32Array;
  private optionalUsed: Int32Array;
  private capacity = INITIAL_CAPACITY;
  private readonly buckets = new Map<number, number | number[]>();
  size = 0;

  constructor(private readonly words: number) {
    this.arena = new Uint16Array(this.capacity * words);
    this.extras = new Int32Array(this.capacity);
    this.optionalUsed = new Int32Array(this.capacity);
  }

  /** Adds the configuration; false if it, or one with fewer optional writes used, was there already. */
  add(bits: Uint16Array, hashLo: number, hashHi: number, extra: number, used: number): boolean {
    const lo = (hashLo ^ Math.imul(extra + 1, 0x9e3779b1)) >>> 0;
    const hi = (hashHi ^ Math.imul(extra + 1, 0x85ebca77)) & 0x1fffff;
    const key = hi * 0x1_0000_0000 + lo; // 53 bits: an exact Map key
    const bucket = this.buckets.get(key);
    if (bucket === undefined) {
      this.buckets.set(key, this.store(bits, extra, used));
      return true;
    }
    const states = typeof bucket === "number" ? [bucket] : bucket;
    const same = states.find((state) => this.equals(state, bits, extra));
    if (same !== undefined) {
      if (this.optionalUsed[same] <= used) return false;
      this.optionalUsed[same] = used;
      return true;
    }
    const state = this.store(bits, extra, used);
    if (typeof bucket === "number") this.buckets.set(key, [bucket, state]);
    else bucket.push(state);
    return true;
  }

  private equals(state: number, bits: Uint16Array, extra: number): boolean {
    if (this.extras[state] !== extra) return false;
    const base = state * this.words;
    for (let w = 0; w < this.words; w++) if (this.arena[base + w] !== bits[w]) return false;
    return true;
  }

  private store(bits: Uint16Array, extra: number, used: number): number {
    if (this.size === this.capacity) this.grow();
    const state = this.size++;
    this.arena.set(bits, state * this.words);
    this.extras[state] = extra;
    this.optionalUsed[state] = used;
    return state;
  }

  private grow(): void {
    this.capacity *= 2;
    const arena = new Uint16Array(this.capacity * this.words);
    arena.set(this.arena);
    this.arena = arena;
    const extras = new Int32Array(this.capacity);
    extras.set(this.extras);
    this.extras = extras;
    const optionalUsed = new Int32Array(this.capacity);
    optionalUsed.set(this.optionalUsed);
    this.optionalUsed = optionalUsed;
  }
}
