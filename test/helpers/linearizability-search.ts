// The search behind checkRegisterHistory: Wing & Gong's depth-first search over
// linearization points with Lowe's memoization, walked the way Porcupine does it.
// Call and return events sit in one time-ordered doubly linked list; linearizing an
// operation lifts both of its events out of the list, so the walk from the head only
// ever sees operations that are not linearized yet. Reaching a return event means
// that operation's completion passed without a linearization point: undo the last
// choice. A configuration (linearized set, register value, fresh values used) seen
// before is never explored twice, which keeps the search polynomial in practice for
// bounded concurrency. Values are small integers here; the caller interns them.

/** The register's value after a fresh write that no completed call ever observed. */
export const UNSEEN = -1;

export type SearchStep =
  | { readonly kind: "read"; readonly value: number }
  | { readonly kind: "write"; readonly value: number }
  /** Writes a value nobody recorded: UNSEEN, or one of the problem's `freshValues`, each at most once. */
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
  /** Observed values that only a fresh write can explain; fresh values are unique. */
  readonly freshValues: readonly number[];
  readonly maxStates: number;
}

export type SearchOutcome =
  | { readonly kind: "linearizable"; readonly order: readonly { op: number; valueAfter: number }[] }
  | { readonly kind: "not-linearizable" }
  | { readonly kind: "budget-exceeded"; readonly states: number };

const NIL = -1;
const HEAD = 0;

class BudgetExceeded {}

interface Frame {
  readonly op: number;
  readonly choice: number;
  readonly valueBefore: number;
}

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
    const aReturn = isCallEntry(a.entry) ? 1 : 0;
    const bReturn = isCallEntry(b.entry) ? 1 : 0;
    return bReturn - aReturn || a.entry - b.entry;
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
  private readonly fresh: readonly number[];
  private readonly next: Int32Array;
  private readonly prev: Int32Array;
  private readonly linearized: Uint16Array;
  private readonly freshUsed: Uint16Array;
  private readonly seen = new Set<string>();
  private readonly stack: Frame[] = [];
  private value: number;
  private requiredLeft: number;

  constructor(private readonly problem: SearchProblem) {
    this.ops = problem.operations;
    this.fresh = problem.freshValues;
    ({ next: this.next, prev: this.prev } = buildEventList(this.ops));
    this.linearized = new Uint16Array(Math.ceil(this.ops.length / 16));
    this.freshUsed = new Uint16Array(Math.ceil(this.fresh.length / 16));
    this.value = problem.initialValue;
    this.requiredLeft = this.ops.filter((op) => op.completedAt !== undefined).length;
  }

  run(): SearchOutcome {
    let entry = this.next[HEAD];
    for (;;) {
      if (this.requiredLeft === 0) {
        return {
          kind: "linearizable",
          order: this.stack.map(({ op }, i) => ({ op, valueAfter: this.valueAfter(i) })),
        };
      }
      // Every completed operation still in the list has a return entry ahead, so the walk
      // meets one before running off the end.
      if (entry === NIL) throw new Error("linearizability search: walked past the last event");
      if (isCallEntry(entry)) {
        entry = this.tryLinearize(opOfEntry(entry), 0) ? this.next[HEAD] : this.next[entry];
        continue;
      }
      const frame = this.stack.pop();
      if (frame === undefined) return { kind: "not-linearizable" };
      this.undo(frame);
      entry = this.tryLinearize(frame.op, frame.choice + 1)
        ? this.next[HEAD]
        : this.next[callEntry(frame.op)];
    }
  }

  private valueAfter(stackIndex: number): number {
    const later = this.stack[stackIndex + 1];
    return later === undefined ? this.value : later.valueBefore;
  }

  /** Linearizes `op` now with the first legal, unexplored choice from `fromChoice` on. */
  private tryLinearize(op: number, fromChoice: number): boolean {
    const { step, after } = this.ops[op];
    if (after !== undefined && !this.isLinearized(after)) return false;
    if (step.kind === "read")
      return fromChoice === 0 && this.value === step.value && this.commit(op, 0, this.value);
    if (step.kind === "write") return fromChoice === 0 && this.commit(op, 0, step.value);
    // Choice i < fresh.length writes fresh value i; choice fresh.length writes UNSEEN. An
    // unanswered fresh write of UNSEEN is the same as never happening: no read can return it.
    const required = this.ops[op].completedAt !== undefined;
    const lastChoice = required ? this.fresh.length : this.fresh.length - 1;
    for (let choice = fromChoice; choice <= lastChoice; choice++) {
      if (choice === this.fresh.length) return this.commit(op, choice, UNSEEN);
      if (this.isFreshUsed(choice)) continue;
      this.setFreshUsed(choice, true);
      if (this.commit(op, choice, this.fresh[choice])) return true;
      this.setFreshUsed(choice, false);
    }
    return false;
  }

  private commit(op: number, choice: number, valueAfter: number): boolean {
    this.setLinearized(op, true);
    const key = this.configurationKey(valueAfter);
    if (this.seen.has(key)) {
      this.setLinearized(op, false);
      return false;
    }
    if (this.seen.size >= this.problem.maxStates) throw new BudgetExceeded();
    this.seen.add(key);
    this.stack.push({ op, choice, valueBefore: this.value });
    this.value = valueAfter;
    if (this.ops[op].completedAt !== undefined) this.requiredLeft--;
    this.lift(op);
    return true;
  }

  private undo(frame: Frame): void {
    const { op, choice } = frame;
    this.unlift(op);
    if (this.ops[op].completedAt !== undefined) this.requiredLeft++;
    this.value = frame.valueBefore;
    this.setLinearized(op, false);
    if (this.ops[op].step.kind === "freshWrite" && choice < this.fresh.length)
      this.setFreshUsed(choice, false);
  }

  private configurationKey(valueAfter: number): string {
    // Fixed-width parts, so concatenation is unambiguous.
    return (
      String.fromCharCode(...this.linearized) +
      String.fromCharCode(...this.freshUsed) +
      String.fromCharCode((valueAfter + 1) & 0xffff, (valueAfter + 1) >>> 16)
    );
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

  private setLinearized(op: number, on: boolean): void {
    if (on) this.linearized[op >> 4] |= 1 << (op & 15);
    else this.linearized[op >> 4] &= ~(1 << (op & 15));
  }

  private isFreshUsed(i: number): boolean {
    return (this.freshUsed[i >> 4] & (1 << (i & 15))) !== 0;
  }

  private setFreshUsed(i: number, on: boolean): void {
    if (on) this.freshUsed[i >> 4] |= 1 << (i & 15);
    else this.freshUsed[i >> 4] &= ~(1 << (i & 15));
  }
}
