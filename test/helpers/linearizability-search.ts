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
//
// Unanswered writes are optional: they stay out of the event list and are tried only
// when the walk reaches a return, after every answered call that could go first. Among
// them, unanswered fresh writes are interchangeable but for their invocation times, so
// they take effect in invocation order only (the caller chains them with `after`), and
// configurations count how many did: a configuration that used more of them than one
// already explored with the same rest is dominated (it has fewer options left) and is
// skipped. Exploring optional writes last makes the cheaper configuration come first.
import { callEntry, EventList, isCallEntry, opOfEntry } from "./linearizability-events.js";
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
  /** `stuckAt`: the operation whose return no configuration got past, the latest such in time. */
  | { readonly kind: "not-linearizable"; readonly stuckAt: number }
  | { readonly kind: "budget-exceeded"; readonly states: number };

class BudgetExceeded {}

interface Frame {
  readonly op: number;
  readonly valueBefore: number;
  readonly unreadBefore: boolean;
  /** For an optional write: where the walk resumes (its position among the optional ones, the return entry). */
  readonly optional: { readonly index: number; readonly atReturn: number } | undefined;
  /**
   * A read of the value already there (no fresh value bound), linearized as soon as the
   * walk met it. Any order that works from the configuration before it still works with
   * it moved first (it changes nothing, and everything that must precede it is already
   * linearized), so when it fails nothing else is tried there: the walk backs off further.
   * Without this, every subset of the concurrent reads was a configuration of its own.
   */
  readonly settlesConfiguration: boolean;
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
  private readonly events: EventList;
  /** Unanswered writes, by invocation time. */
  private readonly optional: readonly number[];
  private readonly isChained: Uint8Array;
  private readonly linearized: Uint16Array;
  /** The linearized set without the chained fresh writes, which `chainedUsed` counts instead. */
  private readonly keyBits: Uint16Array;
  private chainedUsed = 0;
  private readonly seen: ConfigurationSet;
  private readonly zobrist: { lo: Int32Array; hi: Int32Array };
  private hashLo = 0;
  private hashHi = 0;
  private readonly stack: Frame[] = [];
  private value: number;
  /**
   * The value came from an unanswered write and no read has seen it yet. Such a write
   * may not be overwritten: leaving it out instead changes nothing anyone saw, and the
   * configurations where it took effect unseen would multiply the search by 2 per call.
   */
  private unreadOptionalWrite = false;
  private requiredLeft: number;
  /** The latest return entry the walk had to back off from: where the history stops being explainable. */
  private furthestReturn: number | undefined;
  /** The read just tried would settle this configuration and was explored from it before, in vain. */
  private settledReadSeen = false;

  constructor(private readonly problem: SearchProblem) {
    const ops = problem.operations;
    this.ops = ops;
    this.isFreshValue = new Uint8Array(problem.valueCount);
    for (const value of problem.freshValues) this.isFreshValue[value] = 1;
    this.readsOf = new Int32Array(problem.valueCount);
    this.events = new EventList(
      ops.map(({ invokedAt, completedAt }) =>
        completedAt === undefined ? undefined : { invokedAt, completedAt },
      ),
    );
    this.optional = ops
      .flatMap((op, i) => (op.completedAt === undefined ? [i] : []))
      .sort((a, b) => ops[a].invokedAt - ops[b].invokedAt || a - b);
    this.isChained = new Uint8Array(ops.length);
    for (const i of this.optional) if (ops[i].step.kind === "freshWrite") this.isChained[i] = 1;
    this.linearized = new Uint16Array(Math.ceil(ops.length / 16));
    this.keyBits = new Uint16Array(this.linearized.length);
    this.seen = new ConfigurationSet(this.linearized.length);
    this.zobrist = zobristWords(ops.length);
    this.value = problem.initialValue;
    this.requiredLeft = ops.length - this.optional.length;
  }

  run(): SearchOutcome {
    let entry = this.events.first();
    let optionalFrom = 0;
    for (;;) {
      if (this.requiredLeft === 0) return { kind: "linearizable", order: this.witness() };
      // Every answered operation left has a return entry ahead, so the walk meets one
      // before running off the end.
      if (entry === undefined) throw new Error("linearizability search: walked past the last event");
      if (isCallEntry(entry)) {
        if (this.tryLinearize(opOfEntry(entry), undefined)) {
          entry = this.events.first();
          continue;
        }
        if (!this.settledReadSeen) {
          entry = this.events.after(entry);
          continue;
        }
        // A read that settles this configuration was explored from here before, in vain.
        this.settledReadSeen = false;
      } else {
        if (this.tryOptionalBefore(entry, optionalFrom)) {
          entry = this.events.first();
          optionalFrom = 0;
          continue;
        }
        // This return passed without its operation linearized.
        const position = this.events.positionOf(entry);
        if (this.furthestReturn === undefined || position > this.events.positionOf(this.furthestReturn)) {
          this.furthestReturn = entry;
        }
      }
      const resume = this.backtrack();
      if (resume === undefined) {
        return { kind: "not-linearizable", stuckAt: opOfEntry(this.furthestReturn ?? entry) };
      }
      ({ entry, optionalFrom } = resume);
    }
  }

  /** Undoes steps until one leaves alternatives to try; undefined when none is left. */
  private backtrack(): { entry: number | undefined; optionalFrom: number } | undefined {
    for (;;) {
      const last = this.stack.pop();
      if (last === undefined) return undefined;
      this.undo(last);
      if (last.settlesConfiguration) continue;
      if (last.optional === undefined)
        return { entry: this.events.after(callEntry(last.op)), optionalFrom: 0 };
      return { entry: last.optional.atReturn, optionalFrom: last.optional.index + 1 };
    }
  }

  /** Tries the unanswered writes invoked before `returnEntry`, from position `from` on. */
  private tryOptionalBefore(returnEntry: number, from: number): boolean {
    const limit = this.events.timeOf(returnEntry);
    for (let index = from; index < this.optional.length; index++) {
      const op = this.optional[index];
      if (this.ops[op].invokedAt > limit) return false;
      if (!this.isLinearized(op) && this.tryLinearize(op, { index, atReturn: returnEntry })) return true;
    }
    return false;
  }

  private tryLinearize(op: number, optional: Frame["optional"]): boolean {
    const { step, after } = this.ops[op];
    if (after !== undefined && !this.isLinearized(after)) return false;
    if (step.kind !== "read" && this.unreadOptionalWrite) return false;
    if (step.kind === "write") return this.commit(op, step.value, optional);
    if (step.kind === "freshWrite") return this.commit(op, FRESH, optional);
    if (this.value === step.value) return this.commit(op, step.value, optional, true);
    const bindsFresh =
      this.value === FRESH && this.isFreshValue[step.value] === 1 && this.readsOf[step.value] === 0;
    return bindsFresh && this.commit(op, step.value, optional);
  }

  private commit(op: number, valueAfter: number, optional: Frame["optional"], settles = false): boolean {
    this.setLinearized(op, true);
    const unreadAfter = optional !== undefined;
    const extra = (valueAfter + 1) * 2 + (unreadAfter ? 1 : 0);
    if (!this.seen.add(this.keyBits, this.hashLo, this.hashHi, extra, this.chainedUsed)) {
      this.setLinearized(op, false);
      this.settledReadSeen = settles;
      return false;
    }
    if (this.seen.size > this.problem.maxStates) throw new BudgetExceeded();
    this.stack.push({
      op,
      valueBefore: this.value,
      unreadBefore: this.unreadOptionalWrite,
      optional,
      settlesConfiguration: settles,
    });
    this.value = valueAfter;
    this.unreadOptionalWrite = unreadAfter;
    const { step } = this.ops[op];
    if (step.kind === "read") this.readsOf[step.value]++;
    if (optional === undefined) {
      this.requiredLeft--;
      this.events.lift(op);
    }
    return true;
  }

  private undo({ op, valueBefore, unreadBefore, optional }: Frame): void {
    if (optional === undefined) {
      this.events.unlift(op);
      this.requiredLeft++;
    }
    const { step } = this.ops[op];
    if (step.kind === "read") this.readsOf[step.value]--;
    this.unreadOptionalWrite = unreadBefore;
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
      current = step.kind === "freshWrite" ? FRESH : step.value;
      if (step.kind !== "read") lastWrite = i;
      point.valueAfter = current;
    });
    return order;
  }

  private isLinearized(op: number): boolean {
    return (this.linearized[op >> 4] & (1 << (op & 15))) !== 0;
  }

  /** Toggles `op`'s bit; a chained fresh write counts instead of entering the key and its hash. */
  private setLinearized(op: number, on: boolean): void {
    const word = op >> 4;
    const bit = 1 << (op & 15);
    if (on) this.linearized[word] |= bit;
    else this.linearized[word] &= ~bit;
    if (this.isChained[op] === 1) {
      this.chainedUsed += on ? 1 : -1;
      return;
    }
    if (on) this.keyBits[word] |= bit;
    else this.keyBits[word] &= ~bit;
    this.hashLo ^= this.zobrist.lo[op];
    this.hashHi ^= this.zobrist.hi[op];
  }
}
