// The per-manager bound on CSRs in flight, alone: slots, a bounded FIFO queue, refusal
// with a retry hint beyond it, and waiters that leave (caller gone, service closing).
import { expect } from "chai";
import { IssuanceLimiter, IssuerRefusal } from "../../src/issuer/index.js";

function gate(): { promise: Promise<void>; open: () => void } {
  let open = () => {};
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

const limits = { maxInFlight: 1, maxQueued: 2, minRetryAfterMs: 100, maxRetryAfterMs: 10_000 };

describe("issuer: IssuanceLimiter", () => {
  it("runs in arrival order, refuses beyond the queue with a bounded retry hint, and frees every slot", async () => {
    const limiter = new IssuanceLimiter(limits);
    const held = gate();
    const order: number[] = [];
    const first = limiter.run(async () => {
      await held.promise;
      order.push(1);
    });
    const queued = [2, 3].map((n) => limiter.run(async () => void order.push(n)));
    expect(limiter.stats()).to.deep.equal({ inFlight: 1, queued: 2, refused: 0 });
    let refusal: unknown;
    try {
      await limiter.run(async () => void order.push(4));
    } catch (error) {
      refusal = error;
    }
    expect(refusal).to.be.instanceOf(IssuerRefusal);
    expect((refusal as IssuerRefusal).code).to.equal("OVERLOADED");
    expect((refusal as IssuerRefusal).retryAfterMs).to.be.within(100, 10_000);
    held.open();
    await Promise.all([first, ...queued]);
    expect(order).to.deep.equal([1, 2, 3]);
    expect(limiter.stats()).to.deep.equal({ inFlight: 0, queued: 0, refused: 1 });
  });

  it("a failing request frees its slot; a waiter whose caller left never runs; close fails the rest", async () => {
    const limiter = new IssuanceLimiter(limits);
    const held = gate();
    const failing = limiter.run(async () => {
      await held.promise;
      throw new Error("signing failed");
    });
    const caller = new AbortController();
    let ranAborted = false;
    const leaving = limiter.run(async () => {
      ranAborted = true;
    }, caller.signal);
    const closing = limiter.run(async () => undefined);
    caller.abort();
    expect(limiter.stats().queued).to.equal(1);
    limiter.close();
    const outcomes = await Promise.allSettled([leaving, closing]);
    expect(outcomes.map((o) => o.status)).to.deep.equal(["rejected", "rejected"]);
    held.open();
    expect((await Promise.allSettled([failing]))[0]?.status).to.equal("rejected");
    expect(ranAborted).to.equal(false);
    expect(limiter.stats()).to.include({ inFlight: 0, queued: 0 });
    await limiter.run(async () => undefined); // the slot is free again
  });
});
