// scripts/lib/local-nodes.ts: its helpers, and how the driver reports a daemon that
// fails to start (test/scripts/start.test.ts runs the whole demo on the driver).
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { expect } from "chai";
import {
  LocalNodes,
  LocalNodesError,
  mapLimit,
  parseMetrics,
  waitFor,
} from "../../scripts/lib/local-nodes.js";

/** Pids whose command line names `dir`, from /proc. */
function pidsUsing(dir: string): number[] {
  return readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .filter((name) => {
      try {
        return readFileSync(`/proc/${name}/cmdline`, "utf8").includes(dir);
      } catch {
        return false; // ended while we looked
      }
    })
    .map(Number);
}

describe("scripts/lib/local-nodes", () => {
  it("parseMetrics reads Prometheus text: series with and without labels, comments skipped", () => {
    const text = [
      "# HELP nodectl_session_connects_total Sessions this process opened to a manager",
      "# TYPE nodectl_session_connects_total counter",
      "nodectl_session_connects_total 2",
      'nodectl_requests_total{method="ls",code="0"} 7',
      "nodectl_raft_is_leader 1",
      "",
    ].join("\n");
    const m = parseMetrics(text);
    expect(m.get("nodectl_session_connects_total")).to.equal(2);
    expect(m.get('nodectl_requests_total{method="ls",code="0"}')).to.equal(7);
    expect(m.get("nodectl_raft_is_leader")).to.equal(1);
    expect(m.size).to.equal(3);
  });

  it("mapLimit keeps at most `limit` calls in flight and returns results in input order", async () => {
    let inFlight = 0;
    let most = 0;
    const results = await mapLimit([30, 5, 20, 1, 10, 2], 2, async (ms, i) => {
      inFlight++;
      most = Math.max(most, inFlight);
      await new Promise((r) => setTimeout(r, ms));
      inFlight--;
      return i * 10;
    });
    expect(results).to.deep.equal([0, 10, 20, 30, 40, 50]);
    expect(most).to.equal(2);
  });

  it("waitFor returns the first defined value, and past its deadline fails naming what and the last error", async () => {
    let calls = 0;
    expect(await waitFor("a third call", 1_000, () => (++calls === 3 ? "done" : undefined), 5)).to.equal(
      "done",
    );
    const failure = await waitFor(
      "something that never happens",
      100,
      () => {
        throw new Error("still refused");
      },
      10,
    ).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).to.be.instanceOf(LocalNodesError);
    expect((failure as LocalNodesError).code).to.equal("DEADLINE");
    expect((failure as Error).message).to.match(
      /timed out after 100 ms waiting for something that never happens; last error: still refused/,
    );
  });

  it("a daemon that exits before it is up fails with NODE_EXITED and its own message; close() leaves nothing", async function () {
    this.timeout(30_000);
    const nodes = LocalNodes.create();
    try {
      const failure = await nodes.join("w1", "127.0.0.1:9", "SWMTKN-1-not-a-token", { listen: false }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(failure).to.be.instanceOf(LocalNodesError);
      expect((failure as LocalNodesError).code).to.equal("NODE_EXITED");
      expect((failure as Error).message).to.match(/w1 \(join\) exited \(1\) before it was up/);
      expect((failure as Error).message).to.include("nodectl: TOKEN_INVALID:");
    } finally {
      await nodes.close();
    }
    expect(existsSync(nodes.baseDir)).to.equal(false);
    await waitFor("the reaper to exit", 10_000, () =>
      pidsUsing(nodes.baseDir).length === 0 ? true : undefined,
    );
  });
});
