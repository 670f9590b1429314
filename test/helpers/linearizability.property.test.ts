// Property tests of the register checker against a real sequential register: histories
// produced by running one, with random intervals around each operation's true
// linearization points, are always accepted (with a witness that replays correctly);
// one answer changed to a value it cannot have seen is always rejected, and the
// rejection names that answer.
import { expect } from "chai";
import fc from "fast-check";
import { checkRegisterHistory, type LinearizationPoint, type RegisterOperation } from "./linearizability.js";

type Op = RegisterOperation<string>;
type Kind = "read" | "write" | "rotateKnown" | "rotateUnknown";

interface PlannedOp {
  readonly kind: Kind;
  /** Orders the true linearization points; distinct across ops by construction. */
  readonly slot: number;
  /** A rotate reads this many slots after it wrote (0: right after). */
  readonly readGap: number;
  readonly before: number;
  readonly after: number;
  /** Never answered; `applied` says whether it took effect anyway. */
  readonly unanswered: boolean;
  readonly applied: boolean;
}

const INITIAL = "v0";
const MAX_OPS = 24; // < 32, so the point encoding below stays unique

const plannedOp = (kinds: readonly Kind[]): fc.Arbitrary<PlannedOp> =>
  fc.record({
    kind: fc.constantFrom(...kinds),
    slot: fc.integer({ min: 0, max: 40 }),
    readGap: fc.integer({ min: 0, max: 8 }),
    before: fc.integer({ min: 0, max: 300 }),
    after: fc.integer({ min: 0, max: 300 }),
    unanswered: fc.boolean().chain((b) => (b ? fc.boolean() : fc.constant(false))), // ~25 %
    applied: fc.boolean(),
  });

const plans = (kinds: readonly Kind[]) => fc.array(plannedOp(kinds), { minLength: 1, maxLength: MAX_OPS });

/** Runs a real register through the planned points in time order and records what each call saw. */
function runRegister(planned: readonly PlannedOp[]): Op[] {
  const points: { time: number; op: number; part: "write" | "read" }[] = [];
  planned.forEach((p, op) => {
    const first = p.slot * 64 + op;
    const isRotate = p.kind === "rotateKnown" || p.kind === "rotateUnknown";
    if (p.kind !== "read") points.push({ time: first, op, part: "write" });
    if (p.kind === "read") points.push({ time: first, op, part: "read" });
    if (isRotate) points.push({ time: (p.slot + p.readGap) * 64 + 32 + op, op, part: "read" });
  });
  points.sort((a, b) => a.time - b.time);
  let register = INITIAL;
  let writes = 0;
  const written = planned.map((_, op) => `unapplied-${op}`);
  const seen: (string | undefined)[] = planned.map(() => undefined);
  for (const { op, part } of points) {
    if (planned[op].unanswered && !planned[op].applied) continue;
    if (part === "write") {
      register = `v${++writes}`;
      written[op] = register;
    } else seen[op] = register;
  }
  return planned.map((p, op) => {
    const opPoints = points.filter((point) => point.op === op).map((point) => point.time);
    const base = {
      process: `p${op % 4}`,
      invokedAt: Math.min(...opPoints) - p.before,
      completedAt: p.unanswered ? undefined : Math.max(...opPoints) + p.after,
    };
    const answer = p.unanswered ? undefined : seen[op];
    if (p.kind === "read") return { ...base, kind: "read", value: answer };
    if (p.kind === "write") return { ...base, kind: "write", value: written[op] };
    const known = p.kind === "rotateKnown" ? written[op] : undefined;
    return { ...base, kind: "rotate", written: known, returned: answer };
  });
}

/** Replays a witness order on a register and checks it against the history's real-time order. */
function expectValidWitness(history: readonly Op[], witness: readonly LinearizationPoint<string>[]): void {
  let register: string | undefined = INITIAL;
  const position = new Map<string, number>();
  const freshUsed = new Set<string>();
  const knownValues = new Set<string>([INITIAL]);
  for (const op of history) {
    if (op.kind === "write") knownValues.add(op.value);
    if (op.kind === "rotate" && op.written !== undefined) knownValues.add(op.written);
  }
  witness.forEach(({ operation, part, valueAfter }, i) => {
    const op = history[operation];
    position.set(`${operation}/${part}`, i);
    if (part === "read") {
      const answer = op.kind === "read" ? op.value : op.kind === "rotate" ? op.returned : undefined;
      expect(answer, `witness step ${i} reads what the call returned`).to.equal(register);
      if (op.kind === "rotate")
        expect(position.has(`${operation}/write`), "rotate: write before read").to.equal(true);
    } else if (op.kind === "write" || (op.kind === "rotate" && op.written !== undefined)) {
      expect(valueAfter).to.equal(op.kind === "write" ? op.value : op.written);
    } else if (valueAfter !== undefined) {
      expect(knownValues.has(valueAfter) || freshUsed.has(valueAfter), "fresh values are fresh").to.equal(
        false,
      );
      freshUsed.add(valueAfter);
    }
    register = valueAfter;
  });
  const positionsOf = (op: number): number[] =>
    ["write", "read"].flatMap((part) => position.get(`${op}/${part}`) ?? []);
  history.forEach((op, a) => {
    if (op.completedAt === undefined) return;
    for (const part of op.kind === "rotate" ? ["write", "read"] : [op.kind]) {
      expect(position.has(`${a}/${part}`), `answered #${a} is linearized`).to.equal(true);
    }
    history.forEach((later, b) => {
      if (!precedes(op, later) || positionsOf(b).length === 0) return;
      expect(Math.max(...positionsOf(a)), `#${a} completed before #${b} was invoked`).to.be.lessThan(
        Math.min(...positionsOf(b)),
      );
    });
  });
}

/** Indices of answered calls that returned a value (reads and rotates). */
const answeredReads = (history: readonly Op[]): number[] =>
  history.flatMap((op, i) => (op.completedAt !== undefined && op.kind !== "write" ? [i] : []));

function withAnswer(history: readonly Op[], index: number, value: string): Op[] {
  return history.map((op, i) => {
    if (i !== index) return op;
    if (op.kind === "read") return { ...op, value };
    if (op.kind === "rotate") return { ...op, returned: value };
    throw new Error("only reads and rotates answer with a value");
  });
}

const ALL_KINDS: readonly Kind[] = ["read", "write", "rotateKnown", "rotateUnknown"];
// A rotate whose token nobody recorded could explain any unexpected value: these
// properties need every written value known.
const KNOWN_KINDS: readonly Kind[] = ["read", "write", "rotateKnown"];

describe("linearizability checker: properties against a real register", () => {
  it("accepts every history a real register produces, with a witness that replays", () => {
    fc.assert(
      fc.property(plans(ALL_KINDS), (planned) => {
        const history = runRegister(planned);
        const result = checkRegisterHistory(history, INITIAL);
        if (!result.ok) throw new Error(result.explanation);
        expectValidWitness(history, result.linearization);
      }),
      { numRuns: 300 },
    );
  });

  it("rejects a history where one answer is changed to a value never written, naming that answer", () => {
    fc.assert(
      fc.property(plans(KNOWN_KINDS), fc.nat(), (planned, pick) => {
        const history = runRegister(planned);
        const candidates = answeredReads(history);
        fc.pre(candidates.length > 0);
        const index = candidates[pick % candidates.length];
        const result = checkRegisterHistory(withAnswer(history, index, "never-written"), INITIAL);
        expect(result.ok).to.equal(false);
        if (!result.ok) expect(result.culprit).to.equal(index);
      }),
      { numRuns: 200 },
    );
  });

  it("rejects a stale answer: a value overwritten by a write that completed before the call began", () => {
    let nonVacuous = 0;
    fc.assert(
      fc.property(plans(KNOWN_KINDS), fc.nat(), (planned, pick) => {
        const history = runRegister(planned);
        const writes = history.flatMap((op, i) =>
          op.kind !== "read" && op.completedAt !== undefined ? [i] : [],
        );
        const stale = answeredReads(history).flatMap((r) =>
          writes.flatMap((w1) =>
            writes
              .filter((w2) => precedes(history[w1], history[w2]) && precedes(history[w2], history[r]))
              .map(() => ({ r, value: writtenValue(history[w1]) })),
          ),
        );
        if (stale.length === 0) return;
        nonVacuous++;
        const { r, value } = stale[pick % stale.length];
        const result = checkRegisterHistory(withAnswer(history, r, value), INITIAL);
        expect(result.ok).to.equal(false);
        if (!result.ok) expect(result.culprit).to.equal(r);
      }),
      { numRuns: 200 },
    );
    expect(nonVacuous, "enough generated histories had a stale candidate").to.be.greaterThan(50);
  });
});

function precedes(a: Op, b: Op): boolean {
  return a.completedAt !== undefined && a.completedAt < b.invokedAt;
}

function writtenValue(op: Op): string {
  if (op.kind === "write") return op.value;
  if (op.kind === "rotate" && op.written !== undefined) return op.written;
  throw new Error("only writes and rotates with a known token have a written value");
}
