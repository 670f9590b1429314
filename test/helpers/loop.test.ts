import { expect } from "chai";
import { startLoop } from "./loop.js";

describe("test helpers: background loops cannot starve the event loop", () => {
  it("a body that settles at once still lets timers fire, and stop() ends the loop", async () => {
    // The shape that hung the suite: a writer whose every call fails at once.
    const loop = startLoop(() => Promise.reject(new Error("no target")).catch(() => undefined));
    try {
      const fired = await new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 20));
      expect(fired).to.equal(true);
      expect(loop.iterations).to.be.greaterThan(0);
    } finally {
      await loop.stop();
    }
    const after = loop.iterations;
    await new Promise((r) => setTimeout(r, 10));
    expect(loop.iterations).to.equal(after);
  });

  it("an unexpected error ends the loop and is rethrown by stop()", async () => {
    const loop = startLoop(async (i) => {
      if (i === 3) throw new Error("boom");
    });
    const deadline = Date.now() + 2_000;
    while (loop.iterations < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
    await new Promise((r) => setTimeout(r, 10));
    expect(loop.iterations, "the loop ended at the failing iteration").to.equal(4);
    let caught: unknown;
    try {
      await loop.stop();
    } catch (err) {
      caught = err;
    }
    expect((caught as Error | undefined)?.message).to.equal("boom");
  });
});
