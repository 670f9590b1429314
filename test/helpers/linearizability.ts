// A linearizability checker for one register (a join token, say), for process tests
// that record what concurrent CLI calls saw. Model: the register holds one value;
// `read` returns it; `write` sets a value the client knows; `rotate` sets a fresh value
// and then, at once or later but before it answers, reads the register and returns what
// it read, which may be a newer value written by an overlapping call. A rotate's written
// value may be unknown to the client (`nodectl join-token --rotate` prints only what it
// read). Fresh values are unique: never the initial value, never a value any call of
// the history says it wrote, never another rotate's.
//
// Real time: an operation precedes another only if it completed strictly before the
// other was invoked (equal times count as concurrent). An operation without completedAt
// never answered (timeout, killed CLI, crashed manager, or an error that does not prove
// the call had no effect): it may have taken effect at any point after its invocation,
// or never, and it carries no returned value. A call refused before it could have any
// effect can be left out of the history.
//
// Recording from CLI calls, with one monotonic clock (performance.now()) in the test:
//   const invokedAt = performance.now();
//   const run = await runNodectl(["join-token", "worker", "--rotate", "--quiet"]);
//   history.push(run.ok
//     ? { kind: "rotate", process: "m2-rotate", invokedAt, completedAt: performance.now(), returned: run.token }
//     : { kind: "rotate", process: "m2-rotate", invokedAt });      // no answer: may or may not have applied
//   ...
//   const result = checkRegisterHistory(history, tokenBeforeTheRun);
//   expect(result.ok, result.ok ? "" : result.explanation).to.equal(true);
//
// checkRegisterHistory answers {ok: true} with one witness order, or {ok: false} with
// the smallest prefix of the history (in call/return events) that no order explains,
// rendered for a test failure message. The search is in linearizability-search.ts.

import { renderFailingPrefix } from "./linearizability-render.js";
import {
  FRESH,
  type SearchOperation,
  type SearchProblem,
  searchLinearization,
} from "./linearizability-search.js";

export type RegisterValue = string | number;

interface OperationTiming {
  /** Who issued the call, for explanations only (e.g. "m2-rotate"). */
  readonly process: string;
  /** When the call was issued, on the test's monotonic clock. */
  readonly invokedAt: number;
  /** When its answer arrived; undefined if it never did. */
  readonly completedAt?: number;
}

export interface ReadOperation<V extends RegisterValue> extends OperationTiming {
  readonly kind: "read";
  /** The value returned: present exactly when completedAt is. */
  readonly value?: V;
}

export interface WriteOperation<V extends RegisterValue> extends OperationTiming {
  readonly kind: "write";
  readonly value: V;
}

export interface RotateOperation<V extends RegisterValue> extends OperationTiming {
  readonly kind: "rotate";
  /** The fresh value it wrote, if the client learned it; omit when unknown. */
  readonly written?: V;
  /** The value it read after its write: present exactly when completedAt is. */
  readonly returned?: V;
}

export type RegisterOperation<V extends RegisterValue> =
  | ReadOperation<V>
  | WriteOperation<V>
  | RotateOperation<V>;

/** One linearization point of a witness order; a rotate has two (its write, then its read). */
export interface LinearizationPoint<V extends RegisterValue> {
  /** Index of the operation in the checked history. */
  readonly operation: number;
  readonly part: "read" | "write";
  /** The register after this point; undefined for a fresh value nobody observed. */
  readonly valueAfter: V | undefined;
}

export type RegisterCheckResult<V extends RegisterValue> =
  | { readonly ok: true; readonly linearization: readonly LinearizationPoint<V>[] }
  | {
      readonly ok: false;
      /** Index of the operation whose completion no order of the earlier events explains. */
      readonly culprit: number;
      /** How many call/return events the smallest failing prefix holds. */
      readonly prefixEvents: number;
      readonly explanation: string;
    };

export interface RegisterCheckOptions<V extends RegisterValue> {
  /** Histories longer than this are refused before any search (default 1000). */
  readonly maxOperations?: number;
  /** Configurations one search may store before giving up (default 500,000: about 200 MB at 1,000 calls). */
  readonly maxSearchStates?: number;
  /** How values appear in explanations (default: JSON, long values shortened to head…tail). */
  readonly formatValue?: (value: V) => string;
}

export type LinearizabilityErrorCode = "HISTORY_MALFORMED" | "HISTORY_TOO_LARGE" | "SEARCH_BUDGET_EXCEEDED";

export abstract class LinearizabilityError extends Error {
  abstract readonly code: LinearizabilityErrorCode;
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

export class HistoryMalformedError extends LinearizabilityError {
  readonly code = "HISTORY_MALFORMED";
}

export class HistoryTooLargeError extends LinearizabilityError {
  readonly code = "HISTORY_TOO_LARGE";
  constructor(operations: number, limit: number) {
    super(
      `history has ${operations} operations, over the checker's limit of ${limit}: record a shorter run ` +
        `or split it at moments when no call is in flight and check each part`,
    );
  }
}

export class SearchBudgetExceededError extends LinearizabilityError {
  readonly code = "SEARCH_BUDGET_EXCEEDED";
  constructor(states: number) {
    super(
      `gave up after ${states} search states without an answer: lower the concurrency (fewer clients, ` +
        `fewer unanswered calls) or the run's length, or raise maxSearchStates`,
    );
  }
}

const DEFAULT_MAX_OPERATIONS = 1000;
const DEFAULT_MAX_SEARCH_STATES = 500_000;

/** A history operation as seen in a prefix: `answered` is false for a call whose answer lies beyond it. */
export interface OperationView<V extends RegisterValue> {
  readonly index: number;
  readonly op: RegisterOperation<V>;
  readonly answered: boolean;
}

export function checkRegisterHistory<V extends RegisterValue>(
  history: readonly RegisterOperation<V>[],
  initialValue: V,
  options: RegisterCheckOptions<V> = {},
): RegisterCheckResult<V> {
  const maxOperations = options.maxOperations ?? DEFAULT_MAX_OPERATIONS;
  if (history.length > maxOperations) throw new HistoryTooLargeError(history.length, maxOperations);
  history.forEach(validateOperation);
  const maxStates = options.maxSearchStates ?? DEFAULT_MAX_SEARCH_STATES;
  const model = { initialValue, knownValues: knownWrittenValues(history, initialValue), maxStates };
  const whole = history.map((op, index) => ({ index, op, answered: op.completedAt !== undefined }));
  const outcome = checkViews(model, whole);
  if (outcome.linearizable) return { ok: true, linearization: outcome.linearization };

  const events = orderedEvents(history);
  const failing = smallestFailingPrefix(model, history, events, outcome.stuckAt);
  const last = events[failing - 1];
  // A call event alone never breaks linearizability: the new call may simply not have happened yet.
  if (last.kind !== "return")
    throw new Error("linearizability: the smallest failing prefix ends with a call");
  const explanation = renderFailingPrefix({
    views: prefixViews(history, events, failing),
    culprit: last.index,
    prefixEvents: failing,
    totalEvents: events.length,
    formatValue: options.formatValue,
  });
  return { ok: false, culprit: last.index, prefixEvents: failing, explanation };
}

/**
 * The number of events in the smallest prefix no order explains. The whole search's
 * furthest point is the likely answer: two prefix checks confirm it. Otherwise bisect:
 * linearizability is prefix-closed (a call cut before its answer may still take effect
 * or not), so prefixes pass up to some length and fail from there on.
 */
function smallestFailingPrefix<V extends RegisterValue>(
  model: RegisterModel<V>,
  history: readonly RegisterOperation<V>[],
  events: readonly HistoryEvent[],
  stuckAt: number,
): number {
  const passes = (length: number): boolean =>
    checkViews(model, prefixViews(history, events, length)).linearizable;
  const hint = events.findIndex((e) => e.kind === "return" && e.index === stuckAt) + 1;
  if (hint > 0 && !passes(hint) && passes(hint - 1)) return hint;
  let passing = 0;
  let failing = events.length;
  while (failing - passing > 1) {
    const middle = (passing + failing) >> 1;
    if (passes(middle)) passing = middle;
    else failing = middle;
  }
  return failing;
}

function validateOperation<V extends RegisterValue>(op: RegisterOperation<V>, index: number): void {
  const where = `operation #${index} (${op.process}, ${op.kind})`;
  const fail = (why: string): never => {
    throw new HistoryMalformedError(`${where}: ${why}`);
  };
  if (!Number.isFinite(op.invokedAt)) fail("invokedAt must be a finite time");
  const answered = op.completedAt !== undefined;
  if (answered && !(Number.isFinite(op.completedAt) && (op.completedAt ?? 0) >= op.invokedAt)) {
    fail("completedAt must be a finite time not before invokedAt, or undefined when the call never answered");
  }
  const answer = op.kind === "read" ? op.value : op.kind === "rotate" ? op.returned : undefined;
  if (op.kind === "write" && op.value === undefined) fail("a write needs the value it wrote");
  if (op.kind !== "write" && answered && answer === undefined) {
    fail("an answered call needs the value it returned: record it, or leave completedAt undefined");
  }
  if (op.kind !== "write" && !answered && answer !== undefined) {
    fail("a call that never answered has no returned value: drop it, or record when the answer came");
  }
}

type HistoryEvent = { readonly kind: "call" | "return"; readonly index: number; readonly time: number };

/** Same order as the search's event list: by time, calls before returns at equal times. */
function orderedEvents<V extends RegisterValue>(history: readonly RegisterOperation<V>[]): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  history.forEach((op, index) => {
    events.push({ kind: "call", index, time: op.invokedAt });
    if (op.completedAt !== undefined) events.push({ kind: "return", index, time: op.completedAt });
  });
  const rank = (e: HistoryEvent): number => (e.kind === "call" ? 0 : 1);
  return events.sort((a, b) => a.time - b.time || rank(a) - rank(b) || a.index - b.index);
}

function prefixViews<V extends RegisterValue>(
  history: readonly RegisterOperation<V>[],
  events: readonly HistoryEvent[],
  length: number,
): OperationView<V>[] {
  const called = new Set<number>();
  const returned = new Set<number>();
  for (const event of events.slice(0, length)) (event.kind === "call" ? called : returned).add(event.index);
  return [...called]
    .sort((a, b) => a - b)
    .map((index) => ({ index, op: history[index], answered: returned.has(index) }));
}

/**
 * The initial value and every value a call says it wrote. A fresh value differs from all of
 * them, also from those written after a given prefix: so a prefix's check stays a relaxation
 * of the whole history's, and the bisection above finds the smallest failing prefix.
 */
interface RegisterModel<V extends RegisterValue> {
  readonly initialValue: V;
  readonly knownValues: ReadonlySet<V>;
  readonly maxStates: number;
}

function knownWrittenValues<V extends RegisterValue>(
  history: readonly RegisterOperation<V>[],
  initialValue: V,
): Set<V> {
  const known = new Set<V>([initialValue]);
  for (const op of history) {
    if (op.kind === "write") known.add(op.value);
    if (op.kind === "rotate" && op.written !== undefined) known.add(op.written);
  }
  return known;
}

type ViewsOutcome<V extends RegisterValue> =
  | { readonly linearizable: true; readonly linearization: LinearizationPoint<V>[] }
  /** `stuckAt`: the history operation whose answer the search could not get past. */
  | { readonly linearizable: false; readonly stuckAt: number };

function checkViews<V extends RegisterValue>(
  model: RegisterModel<V>,
  views: readonly OperationView<V>[],
): ViewsOutcome<V> {
  const { problem, parts, values } = toSearchProblem(model, views);
  const outcome = searchLinearization(problem);
  if (outcome.kind === "budget-exceeded") throw new SearchBudgetExceededError(outcome.states);
  if (outcome.kind === "not-linearizable")
    return { linearizable: false, stuckAt: parts[outcome.stuckAt].operation };
  const linearization = outcome.order.map(({ op, valueAfter }) => ({
    ...parts[op],
    valueAfter: valueAfter === FRESH ? undefined : values[valueAfter],
  }));
  return { linearizable: true, linearization };
}

/**
 * Interns values and splits a rotate into its write and its read. Two reductions keep the
 * search small without changing the answer: an unanswered call's read part is dropped (it
 * returned nothing), and so is an unanswered write of a value no answer ever showed (moved
 * after everything else it changes nothing observed).
 */
function toSearchProblem<V extends RegisterValue>(
  { initialValue, knownValues, maxStates }: RegisterModel<V>,
  views: readonly OperationView<V>[],
): { problem: SearchProblem; parts: { operation: number; part: "read" | "write" }[]; values: V[] } {
  const values: V[] = [];
  const ids = new Map<V, number>();
  const intern = (value: V): number => {
    let id = ids.get(value);
    if (id === undefined) {
      id = values.push(value) - 1;
      ids.set(value, id);
    }
    return id;
  };
  const initial = intern(initialValue);
  const known = new Set([...knownValues].map(intern));
  const observed = new Set<number>();
  for (const { op, answered } of views) {
    const answer = op.kind === "read" ? op.value : op.kind === "rotate" ? op.returned : undefined;
    if (answered && answer !== undefined) observed.add(intern(answer));
  }
  const freshValues = [...observed].filter((id) => !known.has(id));

  const operations: { -readonly [K in keyof SearchOperation]: SearchOperation[K] }[] = [];
  const parts: { operation: number; part: "read" | "write" }[] = [];
  const add = (index: number, part: "read" | "write", op: SearchOperation): number => {
    parts.push({ operation: index, part });
    return operations.push(op) - 1;
  };
  for (const { index, op, answered } of views) {
    const timing = {
      invokedAt: op.invokedAt,
      completedAt: answered ? op.completedAt : undefined,
      after: undefined,
    };
    if (op.kind === "read") {
      if (answered && op.value !== undefined)
        add(index, "read", { ...timing, step: { kind: "read", value: intern(op.value) } });
      continue;
    }
    const written = op.kind === "write" ? op.value : op.written;
    if (!answered && (written === undefined ? freshValues.length === 0 : !observed.has(intern(written))))
      continue;
    const step =
      written === undefined
        ? ({ kind: "freshWrite" } as const)
        : ({ kind: "write", value: intern(written) } as const);
    const writePart = add(index, "write", { ...timing, step });
    if (op.kind === "rotate" && answered && op.returned !== undefined) {
      add(index, "read", { ...timing, after: writePart, step: { kind: "read", value: intern(op.returned) } });
    }
  }
  chainUnansweredFreshWrites(operations);
  return {
    problem: { operations, initialValue: initial, freshValues, valueCount: values.length, maxStates },
    parts,
    values,
  };
}

/**
 * Unanswered fresh writes are interchangeable but for their invocation times, so only
 * which ones took effect matters, not which did what: the search lets them take effect
 * in invocation order only. Otherwise every subset of them is a distinct configuration
 * (2^k for k unanswered rotates, which a leader kill easily produces). Sound: in any
 * order, hand the i-th such write point to the i-th invoked of them; it was invoked no
 * later than one of the first i, whose point already comes after everything that
 * completed before that invocation.
 */
function chainUnansweredFreshWrites(
  operations: {
    invokedAt: number;
    completedAt: number | undefined;
    step: SearchOperation["step"];
    after: number | undefined;
  }[],
): void {
  const unanswered = operations
    .map((op, i) => ({ op, i }))
    .filter(({ op }) => op.step.kind === "freshWrite" && op.completedAt === undefined)
    .sort((a, b) => a.op.invokedAt - b.op.invokedAt || a.i - b.i);
  for (let k = 1; k < unanswered.length; k++) unanswered[k].op.after = unanswered[k - 1].i;
}
