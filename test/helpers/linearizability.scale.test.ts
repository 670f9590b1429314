// The size the join-token process test produces: six clients (a rotate loop and a read
// loop per manager) calling back to back, every token unknown to its writer, some calls
// never answered (a killed leader). Decided within the default search budget, both ways.
import { expect } from "chai";
import { checkRegisterHistory, type RegisterOperation } from "./linearizability.js";

type Op = RegisterOperation<string>;

/** A fixed-seed generator, so the test sees the same history every run. */
function lcg(seed: number): () => number {
  let state = seed;
  return () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state / 0x1_0000_0000;
  };
}

/**
 * Clients alternate rotate and read loops; each call lasts 50..300 ms and takes effect
 * at a random point inside it (a rotate reads at a later point). An unanswered call
 * (timeout after 2 s) takes effect, at some point up to 3 s after it began, half the time.
 */
function joinTokenHistory(clients: number, calls: number, unansweredRate: number, seed: number): Op[] {
  const random = lcg(seed);
  const clock = Array.from({ length: clients }, () => random() * 100);
  const planned = Array.from({ length: calls }, (_, i) => {
    const client = i % clients;
    const invokedAt = clock[client];
    const unanswered = random() < unansweredRate;
    const completedAt = invokedAt + (unanswered ? 2_000 : 50 + random() * 250);
    clock[client] = completedAt + random() * 20;
    const applied = !unanswered || random() < 0.5;
    const writeAt = invokedAt + random() * (unanswered ? 3_000 : completedAt - invokedAt);
    const readAt = unanswered ? writeAt : writeAt + random() * (completedAt - writeAt);
    const kind = client % 2 === 0 ? ("rotate" as const) : ("read" as const);
    return { client, kind, invokedAt, completedAt, unanswered, applied, writeAt, readAt };
  });
  const points = planned.flatMap((p, i) => [
    ...(p.kind === "rotate" ? [{ at: p.writeAt, i, write: true }] : []),
    { at: p.readAt, i, write: false },
  ]);
  points.sort((a, b) => a.at - b.at);
  let token = "t0";
  let rotations = 0;
  const seen: string[] = [];
  for (const { i, write } of points) {
    if (!planned[i].applied) continue;
    if (write) token = `t${++rotations}`;
    else seen[i] = token;
  }
  return planned.map((p, i): Op => {
    const timing = { process: `c${p.client}`, invokedAt: p.invokedAt };
    if (p.unanswered) return { ...timing, kind: p.kind };
    if (p.kind === "read") return { ...timing, completedAt: p.completedAt, kind: "read", value: seen[i] };
    return { ...timing, completedAt: p.completedAt, kind: "rotate", returned: seen[i] };
  });
}

describe("linearizability checker: a join-token history of realistic size", () => {
  const history = joinTokenHistory(6, 500, 0.03, 7);

  it("accepts 500 calls from 6 clients with unanswered rotates", () => {
    expect(history.filter((op) => op.completedAt === undefined).length).to.be.greaterThan(5);
    const result = checkRegisterHistory(history, "t0");
    expect(result.ok, result.ok ? "" : result.explanation).to.equal(true);
  });

  it("rejects the same history with one read turned stale, naming that read", () => {
    // The last read returns a token that a later, answered read had already replaced.
    const reads = history.flatMap((op, i) => (op.kind === "read" && op.completedAt !== undefined ? [i] : []));
    const last = reads[reads.length - 1];
    const earlier = reads.find((i) => (history[i].completedAt ?? 0) + 1_000 < history[last].invokedAt);
    expect(earlier).to.not.equal(undefined);
    const stale = history[earlier ?? 0] as Op & { kind: "read" };
    const mutated = history.map(
      (op, i): Op => (i === last && op.kind === "read" ? { ...op, value: stale.value } : op),
    );
    const result = checkRegisterHistory(mutated, "t0");
    expect(result.ok).to.equal(false);
    if (result.ok) return;
    expect(result.culprit).to.equal(last);
    expect(
      result.explanation.split("\n").length,
      "long histories show only the last operations",
    ).to.be.lessThan(45);
  });
});
