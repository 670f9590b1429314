// Hand-made register histories with a known answer, one per case the join-token process
// test can produce, plus the checker's refusals.
import { expect } from "chai";
import {
  checkRegisterHistory,
  HistoryMalformedError,
  HistoryTooLargeError,
  type RegisterCheckResult,
  type RegisterOperation,
  SearchBudgetExceededError,
} from "./linearizability.js";

type Op = RegisterOperation<string>;

const read = (process: string, invokedAt: number, completedAt: number | undefined, value?: string): Op => ({
  kind: "read",
  process,
  invokedAt,
  completedAt,
  value,
});
const write = (process: string, invokedAt: number, completedAt: number | undefined, value: string): Op => ({
  kind: "write",
  process,
  invokedAt,
  completedAt,
  value,
});
const rotate = (
  process: string,
  invokedAt: number,
  completedAt: number | undefined,
  returned?: string,
  written?: string,
): Op => ({ kind: "rotate", process, invokedAt, completedAt, returned, written });

/** Frozen input, so every test also shows the checker leaves the history as it was. */
function check(history: Op[], initial = "t0"): RegisterCheckResult<string> {
  return checkRegisterHistory<string>(Object.freeze(history.map((op) => Object.freeze(op))), initial);
}

function expectRejected(result: RegisterCheckResult<string>, culprit: number): string {
  if (result.ok)
    throw new Error(`expected a rejection, got the witness ${JSON.stringify(result.linearization)}`);
  expect(result.culprit).to.equal(culprit);
  expect(result.explanation).to.include(`#${culprit} `);
  expect(result.explanation).to.include("<- no order explains this answer");
  return result.explanation;
}

describe("linearizability checker: a single register", () => {
  it("accepts a sequential history and returns its only witness order", () => {
    const result = check([
      write("a", 0, 1, "t1"),
      read("b", 2, 3, "t1"),
      write("a", 4, 5, "t2"),
      read("b", 6, 7, "t2"),
    ]);
    expect(result.ok).to.equal(true);
    if (!result.ok) return;
    expect(result.linearization.map((p) => [p.operation, p.valueAfter])).to.deep.equal([
      [0, "t1"],
      [1, "t1"],
      [2, "t2"],
      [3, "t2"],
    ]);
  });

  it("accepts both outcomes of two concurrent writes, and touching intervals count as concurrent", () => {
    for (const seen of ["t1", "t2"]) {
      expect(check([write("a", 0, 10, "t1"), write("b", 5, 15, "t2"), read("c", 20, 30, seen)]).ok).to.equal(
        true,
      );
    }
    // The read was invoked at the instant the write completed: it may still precede it.
    expect(check([write("a", 0, 10, "t1"), read("b", 10, 12, "t0")]).ok).to.equal(true);
  });

  it("rejects a stale read after a completed write, naming the read", () => {
    const history = [write("a", 0, 10, "t1"), write("a", 20, 30, "t2"), read("b", 40, 50, "t1")];
    const explanation = expectRejected(check(history), 2);
    expect(explanation).to.include('read -> "t1"');
    expect(explanation).to.include("[0, 10]");
  });

  it("rejects a read of a value nobody wrote", () => {
    expectRejected(check([write("a", 0, 10, "t1"), read("b", 5, 15, "never")]), 1);
  });

  it("explains with the smallest failing prefix: later events are left out", () => {
    const history = [
      write("a", 0, 10, "t1"),
      read("b", 20, 30, "t0"),
      write("a", 40, 50, "t2"),
      read("b", 60, 70, "t2"),
    ];
    const result = check(history);
    expectRejected(result, 1);
    if (result.ok) return;
    expect(result.prefixEvents).to.equal(4);
    expect(result.explanation).to.include("the first 4 of 8 call/return events");
    expect(result.explanation).not.to.include("#3 ");
  });

  it("accepts a write that timed out and is seen later, and one that is never seen", () => {
    expect(check([write("a", 0, undefined, "t1"), read("b", 100, 110, "t1")]).ok).to.equal(true);
    expect(check([write("a", 0, undefined, "t1"), read("b", 100, 110, "t0")]).ok).to.equal(true);
    // A lost answer for a read says nothing at all.
    expect(check([read("b", 0, undefined), read("b", 5, 6, "t0")]).ok).to.equal(true);
  });

  it("rejects a timed-out write that takes effect, then is undone", () => {
    const history = [write("a", 0, undefined, "t1"), read("b", 10, 20, "t1"), read("b", 30, 40, "t0")];
    expectRejected(check(history), 2);
  });

  it("accepts a rotate that returns the newer token of an overlapping rotate", () => {
    // A writes its own token (which nobody recorded), B overwrites it, both return B's.
    const history = [rotate("A", 0, 20, "t2"), rotate("B", 5, 15, "t2"), read("c", 30, 40, "t2")];
    expect(check(history).ok).to.equal(true);
    // A reader in between may even see A's token, which A itself never printed.
    expect(check([...history, read("d", 6, 7, "t1")]).ok).to.equal(true);
  });

  it("rejects a rotate returning a token older than a write completed before it started", () => {
    expectRejected(check([rotate("A", 0, 10, "t1"), rotate("B", 20, 30, "t1")]), 1);
    expectRejected(check([write("a", 0, 10, "t1"), rotate("B", 20, 30, "t1")]), 1);
    // Rotating never returns the token it replaced.
    expectRejected(check([rotate("B", 0, 10, "t0")]), 0);
  });

  it("fresh tokens are unique: no two rotates wrote the same token", () => {
    // Four rotates of unknown tokens, and readers seeing t1, t2, then t1 again. Were fresh
    // tokens not unique, C could have rewritten t1 (A: t1, B: t2, C: t1, D: t3).
    const history = [
      rotate("A", 0, 100, "t3"),
      rotate("B", 0, 100, "t3"),
      rotate("C", 0, 100, "t3"),
      rotate("D", 0, 100, "t3"),
      read("r", 10, 20, "t1"),
      read("r", 30, 40, "t2"),
      read("r", 50, 60, "t1"),
    ];
    expectRejected(check(history), 6);
    expect(check(history.slice(0, 6)).ok).to.equal(true);
  });

  it("uses a rotate's written token when the client knows it", () => {
    expect(check([rotate("A", 0, 20, "t2", "t1"), write("b", 5, 15, "t2")]).ok).to.equal(true);
    expectRejected(check([write("b", 0, 5, "t2"), rotate("A", 10, 20, "t2", "t1")]), 1);
    // An unanswered rotate with a known token may or may not have taken effect.
    expect(check([rotate("A", 0, undefined, undefined, "t1"), read("b", 10, 20, "t1")]).ok).to.equal(true);
    expect(check([rotate("A", 0, undefined, undefined, "t1"), read("b", 10, 20, "t0")]).ok).to.equal(true);
  });

  it("shortens long values in explanations, keeping the distinguishing tail", () => {
    const token = (secret: string) => `SWMTKN-1-${"d".repeat(50)}-${secret}`;
    const result = checkRegisterHistory(
      [rotate("A", 0, 10, token("aaaa")), read("b", 20, 30, token("bbbb"))],
      token("0"),
    );
    expectRejected(result, 1);
    if (result.ok) return;
    expect(result.explanation).to.include(`"SWMTKN-…ddddddd-bbbb"`);
  });

  it("refuses malformed histories with a code and a message that says what to record", () => {
    const cases: Op[] = [
      read("a", 0, 1),
      read("a", 0, undefined, "t1"),
      rotate("a", 0, 1),
      write("a", 5, 4, "t1"),
      write("a", Number.NaN, 4, "t1"),
    ];
    for (const op of cases) {
      let caught: unknown;
      try {
        check([op]);
      } catch (error) {
        caught = error;
      }
      expect(caught).to.be.instanceOf(HistoryMalformedError);
      expect((caught as HistoryMalformedError).code).to.equal("HISTORY_MALFORMED");
      expect((caught as Error).message).to.match(/^operation #0 \(a, (read|write|rotate)\): /);
    }
  });

  it("refuses a history over the operation limit, and gives up past the search budget", () => {
    const long = Array.from({ length: 11 }, (_, i) => write("a", i, i + 0.5, `t${i}`));
    expect(() => checkRegisterHistory(long, "t0", { maxOperations: 10 }))
      .to.throw(HistoryTooLargeError, "11 operations, over the checker's limit of 10")
      .with.property("code", "HISTORY_TOO_LARGE");
    // Ten fully concurrent writes and a read of the initial value: no order explains it,
    // and proving that takes more than 50 configurations.
    const concurrent = [
      ...Array.from({ length: 10 }, (_, i) => write("w", 0, 100, `t${i + 1}`)),
      read("r", 200, 300, "t0"),
    ];
    expect(() => checkRegisterHistory(concurrent, "t0", { maxSearchStates: 50 }))
      .to.throw(SearchBudgetExceededError, "gave up after 50 search states")
      .with.property("code", "SEARCH_BUDGET_EXCEEDED");
    expectRejected(checkRegisterHistory(concurrent, "t0"), 10);
  });
});
