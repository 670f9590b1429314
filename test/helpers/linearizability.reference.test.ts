// The checker against a brute-force reference on small random histories, linearizable or
// not. The reference tries every order of every linearization point, with no
// memoization, no lazy binding of fresh values (a rotate of unknown token picks its
// value when it writes) and no reductions, straight from the history model.
import { expect } from "chai";
import fc from "fast-check";
import { checkRegisterHistory, type RegisterOperation } from "./linearizability.js";

type Op = RegisterOperation<string>;
const INITIAL = "a";
const NOBODY_SAW = Symbol("a fresh value nobody saw");
type Register = string | typeof NOBODY_SAW;

interface Part {
  readonly op: number;
  readonly kind: "read" | "write";
  readonly required: boolean;
}

function answerOf(op: Op): string | undefined {
  return op.kind === "read" ? op.value : op.kind === "rotate" ? op.returned : undefined;
}

/** `knownFrom`: the history whose written values fresh ones must differ from (the whole one, for a cut). */
function referenceIsLinearizable(history: readonly Op[], knownFrom: readonly Op[] = history): boolean {
  const parts: Part[] = history.flatMap((op, i) => {
    const required = op.completedAt !== undefined;
    if (op.kind === "read") return required ? [{ op: i, kind: "read" as const, required }] : [];
    const write = { op: i, kind: "write" as const, required };
    return op.kind === "rotate" && required ? [write, { op: i, kind: "read" as const, required }] : [write];
  });
  const known = new Set<string>([INITIAL]);
  for (const op of knownFrom) {
    if (op.kind === "write") known.add(op.value);
    if (op.kind === "rotate" && op.written !== undefined) known.add(op.written);
  }
  const observed = history.flatMap((op) => {
    const answer = answerOf(op);
    return op.completedAt !== undefined && answer !== undefined ? [answer] : [];
  });
  const freshCandidates = [...new Set(observed)].filter((v) => !known.has(v));
  const done = parts.map(() => false);
  const freshUsed = new Set<string>();

  const mayGoNow = (part: Part): boolean => {
    const me = history[part.op];
    if (part.kind === "read" && me.kind === "rotate" && !done[parts.findIndex((p) => p.op === part.op)])
      return false;
    // Everything that completed before this call was invoked must already be linearized.
    return parts.every(
      (other, j) => done[j] || !other.required || (history[other.op].completedAt ?? Infinity) >= me.invokedAt,
    );
  };
  const search = (register: Register): boolean => {
    if (parts.every((p, j) => done[j] || !p.required)) return true;
    return parts.some((part, j) => {
      if (done[j] || !mayGoNow(part)) return false;
      const op = history[part.op];
      const next: Register[] =
        part.kind === "read"
          ? answerOf(op) === register
            ? [register]
            : []
          : op.kind === "write"
            ? [op.value]
            : op.kind === "rotate" && op.written !== undefined
              ? [op.written]
              : [NOBODY_SAW, ...freshCandidates.filter((v) => !freshUsed.has(v))];
      return next.some((value) => {
        const takesFresh =
          part.kind === "write" && typeof value === "string" && freshCandidates.includes(value);
        done[j] = true;
        if (takesFresh) freshUsed.add(value);
        const found = search(value);
        done[j] = false;
        if (takesFresh) freshUsed.delete(value);
        return found;
      });
    });
  };
  return search(INITIAL);
}

/**
 * The history as known when `culprit` answered (events ordered by time, calls before
 * answers at equal times, answers by index): later calls are left out, later answers
 * forgotten; `withCulprit` says whether the culprit's own answer is in.
 */
function cutAtAnswer(history: readonly Op[], culprit: number, withCulprit: boolean): Op[] {
  const t = history[culprit].completedAt;
  if (t === undefined) throw new Error(`culprit #${culprit} never answered`);
  return history.flatMap((op, i): Op[] => {
    if (op.invokedAt > t) return [];
    const c = op.completedAt;
    if (c !== undefined && (c < t || (c === t && (i < culprit || (i === culprit && withCulprit)))))
      return [op];
    if (op.kind === "read") return [{ ...op, completedAt: undefined, value: undefined }];
    if (op.kind === "rotate") return [{ ...op, completedAt: undefined, returned: undefined }];
    return [{ ...op, completedAt: undefined }];
  });
}

const value = fc.constantFrom("a", "b", "c", "d");
const timing = fc
  .record({
    invokedAt: fc.integer({ min: 0, max: 12 }),
    length: fc.integer({ min: 0, max: 6 }),
    answered: fc.boolean(),
  })
  .map(({ invokedAt, length, answered }) => ({
    invokedAt,
    completedAt: answered || length > 4 ? invokedAt + length : undefined,
  }));
const operation: fc.Arbitrary<Op> = fc
  .record({
    kind: fc.constantFrom("read", "write", "rotate", "rotate"),
    timing,
    value,
    written: fc.option(value, { nil: undefined }),
    process: fc.constantFrom("p", "q"),
  })
  .map(({ kind, timing, value, written, process }): Op => {
    const answer = timing.completedAt === undefined ? undefined : value;
    if (kind === "read") return { kind, process, ...timing, value: answer };
    if (kind === "write") return { kind, process, ...timing, value };
    return { kind: "rotate", process, ...timing, written, returned: answer };
  });

describe("linearizability checker: agrees with a brute-force reference", () => {
  it("gives the reference's answer on random small histories, rejections naming an answered call", () => {
    const answers = { accepted: 0, rejected: 0 };
    fc.assert(
      fc.property(fc.array(operation, { minLength: 1, maxLength: 5 }), (history) => {
        const expected = referenceIsLinearizable(history);
        const result = checkRegisterHistory(history, INITIAL);
        expect(result.ok, JSON.stringify(history)).to.equal(expected);
        answers[expected ? "accepted" : "rejected"]++;
        if (result.ok) return;
        // The smallest failing prefix ends with the culprit's answer: the reference
        // rejects the history cut right after it and accepts it cut right before.
        expect(referenceIsLinearizable(cutAtAnswer(history, result.culprit, true), history)).to.equal(false);
        expect(referenceIsLinearizable(cutAtAnswer(history, result.culprit, false), history)).to.equal(true);
      }),
      { numRuns: 600 },
    );
    expect(answers.accepted, "both answers are exercised").to.be.greaterThan(100);
    expect(answers.rejected, "both answers are exercised").to.be.greaterThan(100);
  });
});
