// The search behind checkRegisterHistory: Wing & Gong's depth-first search over
// linearization points with Lowe's memoization, walked the way Porcupine does it.
// Call and return events sit in one time-ordered doubly linked list; linearizing an
// operation lifts both of its events out of the list, so the walk from the head only
// ever sees operations that are not linearized yet. Reaching a return event means
// that operation's completion passed without a linearization point: undo the last
// one. A configuration (linearized set, register value) seen before is never explored
// twice, which keeps the search polynomial in practice for bounded concurrency.
//
// Fresh writes (a rotate whose token the client never learned) write FRESH, a value
// bound lazily: the first read that finds FRESH names it, if that value is one only a
// fresh write can explain and no read has named it before (fresh values are unique).
// Binding at the first read is the same as choosing at the write, since nothing else
// can observe the value in between, and it spares the search one branch per candidate
// value. Which fresh values are taken follows from the linearized reads, so the
// configuration needs nothing more. Values are small integers; the caller interns them.
import { ConfigurationSet, zobristWords } from "./linearizability-memo.js";

/** The register after a fresh write whose value no linearized read has named yet. */
export const FRESH = -1;

export type SearchStep =
  | { readonly kind: "read"; readonly value: number }
  | { readonly kind: "write"; readonly value: number }
  | { readonly kind: "freshWrite" };

export interface SearchOperation {
  readonly step: SearchStep;
  readonly invokedAt: number;
  /** undefined: the call never answered, so the step may also never happen. */
  readonly completedAt: number | undefined;
  /** A search operation that must be linearized before this one (a rotate's write before its read). */
  readonly after: number | undefined;
}

export interface SearchProblem {
  readonly operations: readonly SearchOperation[];
  readonly initialValue: number;
  /** Observed values that only a fresh write can explain. */
  readonly freshValues: readonly number[];
  /** One more than the largest value id. */
  readonly valueCount: number;
  readonly maxStates: number;
}

export type SearchOutcome =
  | { readonly kind: "linearizable"; readonly order: readonly { op: number; valueAfter: number }[] }
  | { readonly kind: "not-linearizable" }
  | { readonly kind: "budget-exceeded"; readonly states: number };

const NIL = -1;
const HEAD = 0;

class BudgetExceeded {}

const callEntry = (op: number): number => 2 * op + 1;
const returnEntry = (op: number): number => 2 * op + 2;
const opOfEntry = (entry: number): number => (entry - 1) >> 1;
const isCallEntry = (entry: number): boolean => entry % 2 === 1;

/** Entries ordered by time; at equal times calls come first, so touching intervals count as concurrent. */
function buildEventList(ops: readonly SearchOperation[]): { next: Int32Array; prev: Int32Array } {
  const entries: { entry: number; time: number }[] = [];
  ops.forEach((op, i) => {
    entries.push({ entry: callEntry(i), time: op.invokedAt });
    if (op.completedAt !== undefined) entries.push({ entry: returnEntry(i), time: op.completedAt });
  });
  entries.sort((a, b) => {
    if (a.time !== b.time) return a.time - b.time;
    const aReturn = isCallEntry(a.entry) ? 0 : 1;
    const bReturn = isCallEntry(b.entry) ? 0 : 1;
    return aReturn - bReturn || a.entry - b.entry;
  });
  const next = new Int32Array(2 * ops.length + 1).fill(NIL);
  const prev = new Int32Array(2 * ops.length + 1).fill(NIL);
  let last = HEAD;
  for (const { entry } of entries) {
    next[last] = entry;
    prev[entry] = last;
    last = entry;
  }
  return { next, prev };
}

export function searchLinearization(problem: SearchProblem): SearchOutcome {
  try {
    return new Search(problem).run();
  } catch (error) {
    if (error instanceof BudgetExceeded) return { kind: "budget-exceeded", states: problem.maxStates };
    throw error;
  }
}

class Search {
  private readonly ops: readonly SearchOperation[];
  private readonly isFreshValue: Uint8Array;
  /** Linearized reads per value: a fresh value is taken once a read has named it. */
  private readonly readsOf: Int32Array;
  private readonly next: Int32Array;
  private readonly prev: Int32Array;
  private readonly linearized: Uint16Array;
  private readonly seen: ConfigurationSet;
  private readonly zobrist: { lo: Int32Array; hi: Int32Array };
  private hashLo = 0;
  private hashHi = 0;
  private readonly stack: {
    readonly op: number;
    readonly valueBefore: number;
    readonly unreadBefore: boolean;
  }[] = [];
  private value: number;
  /**
   * The value came from an unanswered write and no read has seen it yet. Such a write
   * may not be overwritten: leaving it out instead changes nothing anyone saw, and the
   * configurations where it took effect unseen would multiply the search by 2 per call.
   */
  private unreadOptionalWrite = false;
  private requiredLeft: number;

  constructor(private readonly problem: SearchProblem) {
    this.ops = problem.operations;
    this.isFreshValue = new Uint8Array(problem.valueCount);
    for (const value of problem.freshValues) this.isFreshValue[value] = 1;
    this.readsOf = new Int32Array(problem.valueCount);
    ({ next: this.next, prev: this.prev } = buildEventList(this.ops));
    this.linearized = new Uint16Array(Math.ceil(this.ops.length / 16));
    this.seen = new ConfigurationSet(this.linearized.length);
    this.zobrist = zobristWords(this.ops.length);
    this.value = problem.initialValue;
    this.requiredLeft = this.ops.filter((op) => op.completedAt !== undefined).length;
  }

  run(): SearchOutcome {
    let entry = this.next[HEAD];
    for (;;) {
      if (this.requiredLeft === 0) return { kind: "linearizable", order: this.witness() };
      // Every answered operation still in the list has a return entry ahead, so the walk
      // meets one before running off the end.
      if (entry === NIL) throw new Error("linearizability search: walked past the last event");
      if (isCallEntry(entry)) {
        const op = opOfEntry(entry);
        entry = this.tryLinearize(op) ? this.next[HEAD] : this.next[entry];
        continue;
      }
      const last = this.stack.pop();
      if (last === undefined) return { kind: "not-linearizable" };
      this.undo(last);
      entry = this.next[callEntry(last.op)];
    }
  }

  private tryLinearize(op: number): boolean {
    const { step, after } = this.ops[op];
    if (after !== undefined && !this.isLinearized(after)) return false;
    if (step.kind !== "read" && this.unreadOptionalWrite) return false;
    if (step.kind === "write") return this.commit(op, step.value);
    if (step.kind === "freshWrite") return this.commit(op, FRESH);
    if (this.value === step.value) return this.commit(op, step.value);
    const bindsFresh =
      this.value === FRESH && this.isFreshValue[step.value] === 1 && this.readsOf[step.value] === 0;
    return bindsFresh && this.commit(op, step.value);
  }

  private commit(op: number, valueAfter: number): boolean {
    this.setLinearized(op, true);
    const { step, completedAt } = this.ops[op];
    const unreadAfter = step.kind !== "read" && completedAt === undefined;
    const extra = (valueAfter + 1) * 2 + (unreadAfter ? 1 : 0);
    if (!this.seen.add(this.linearized, this.hashLo, this.hashHi, extra)) {
      this.setLinearized(op, false);
      return false;
    }
    if (this.seen.size > this.problem.maxStates) throw new BudgetExceeded();
    this.stack.push({ op, valueBefore: this.value, unreadBefore: this.unreadOptionalWrite });
    this.value = valueAfter;
    this.unreadOptionalWrite = unreadAfter;
    if (step.kind === "read") this.readsOf[step.value]++;
    if (completedAt !== undefined) this.requiredLeft--;
    this.lift(op);
    return true;
  }

  private undo({ op, valueBefore, unreadBefore }: (typeof this.stack)[number]): void {
    this.unlift(op);
    this.unreadOptionalWrite = unreadBefore;
    const { step, completedAt } = this.ops[op];
    if (completedAt !== undefined) this.requiredLeft++;
    if (step.kind === "read") this.readsOf[step.value]--;
    this.value = valueBefore;
    this.setLinearized(op, false);
  }

  /** The linearized order with each fresh write's value filled in from the read that bound it. */
  private witness(): { op: number; valueAfter: number }[] {
    const order = this.stack.map(({ op }) => ({ op, valueAfter: FRESH }));
    let current = this.problem.initialValue;
    let lastWrite = -1;
    order.forEach((point, i) => {
      const { step } = this.ops[point.op];
      if (step.kind === "read" && current === FRESH) {
        for (let j = lastWrite; j < i; j++) order[j].valueAfter = step.value;
      }
      if (step.kind !== "freshWrite") current = step.value;
      else current = FRESH;
      if (step.kind !== "read") lastWrite = i;
      point.valueAfter = current;
    });
    return order;
  }

  private lift(op: number): void {
    this.unlink(callEntry(op));
    if (this.ops[op].completedAt !== undefined) this.unlink(returnEntry(op));
  }

  /** Reverse order of lift: dancing links restore exactly what the lift removed. */
  private unlift(op: number): void {
    if (this.ops[op].completedAt !== undefined) this.relink(returnEntry(op));
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

  private isLinearized(op: number): boolean {
    return (this.linearized[op >> 4] & (1 << (op & 15))) !== 0;
  }

  /** Toggles `op`'s bit and its share of the configuration hash (it is never set twice). */
  private setLinearized(op: number, on: boolean): void {
    if (on) this.linearized[op >> 4] |= 1 << (op & 15);
    else this.linearized[op >> 4] &= ~(1 << (op & 15));
    this.hashLo ^= this.zobrist.lo[op];
    this.hashHi ^= this.zobrist.hi[op];
  }
}
