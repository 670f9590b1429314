// The time-ordered call/return list the search walks (Porcupine's layout). Linearizing
// an operation lifts its two entries out; undoing it puts them back (dancing links), so
// the walk from the head only ever meets operations not linearized yet.

const NIL = -1;
const HEAD = 0;

export const callEntry = (op: number): number => 2 * op + 1;
const returnEntry = (op: number): number => 2 * op + 2;
export const opOfEntry = (entry: number): number => (entry - 1) >> 1;
export const isCallEntry = (entry: number): boolean => entry % 2 === 1;

export class EventList {
  private readonly next: Int32Array;
  private readonly prev: Int32Array;
  private readonly time: Float64Array;
  private readonly position: Int32Array;

  /** `intervals[op]` is undefined for an operation kept out of the list. */
  constructor(intervals: readonly ({ invokedAt: number; completedAt: number } | undefined)[]) {
    const size = 2 * intervals.length + 1;
    this.next = new Int32Array(size).fill(NIL);
    this.prev = new Int32Array(size).fill(NIL);
    this.time = new Float64Array(size);
    this.position = new Int32Array(size);
    const entries: number[] = [];
    intervals.forEach((interval, op) => {
      if (interval === undefined) return;
      this.time[callEntry(op)] = interval.invokedAt;
      this.time[returnEntry(op)] = interval.completedAt;
      entries.push(callEntry(op), returnEntry(op));
    });
    // By time; at equal times calls first, so touching intervals count as concurrent.
    const rank = (entry: number): number => (isCallEntry(entry) ? 0 : 1);
    entries.sort((a, b) => this.time[a] - this.time[b] || rank(a) - rank(b) || a - b);
    let last = HEAD;
    entries.forEach((entry, i) => {
      this.position[entry] = i;
    });
    for (const entry of entries) {
      this.next[last] = entry;
      this.prev[entry] = last;
      last = entry;
    }
  }

  /** The earliest entry left, or undefined when the list is empty. */
  first(): number | undefined {
    return this.after(HEAD);
  }

  after(entry: number): number | undefined {
    const next = this.next[entry];
    return next === NIL ? undefined : next;
  }

  /** Rank in the original order, which lifting does not change. */
  positionOf(entry: number): number {
    return this.position[entry];
  }

  timeOf(entry: number): number {
    return this.time[entry];
  }

  lift(op: number): void {
    this.unlink(callEntry(op));
    this.unlink(returnEntry(op));
  }

  /** Exactly the reverse of lift, as the search undoes in stack order. */
  unlift(op: number): void {
    this.relink(returnEntry(op));
    this.relink(callEntry(op));
  }

  private unlink(entry: number): void {
    const before = this.prev[entry];
    const after = this.next[entry];
    this.next[before] = after;
    if (after !== NIL) this.prev[after] = before;
  }

  private relink(entry: number): void {
    const after = this.next[entry];
    this.next[this.prev[entry]] = entry;
    if (after !== NIL) this.prev[after] = entry;
  }
}
