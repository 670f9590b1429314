// Linearizable admin reads through the real CLI (issue 10): concurrent `join-token
// worker --rotate` and `join-token worker` through all three managers while the leader
// is killed (-9) and restarted. Every call is recorded with one monotonic clock and the
// history is checked against a register (test/helpers/linearizability.ts): each read
// returns the latest acknowledged token or one written by an overlapping call.
import { performance } from "node:perf_hooks";
import { expect } from "chai";
import { checkRegisterHistory, type RegisterOperation } from "../helpers/linearizability.js";
import { type BackgroundLoop, startLoop } from "../helpers/loop.js";
import { ProcessCluster } from "./cluster-fixture.js";
import { nodectl, waitUntil } from "./nodectl.js";

describe("cluster: join-token reads are linearizable across a leader crash", function () {
  this.timeout(120_000);
  const c = new ProcessCluster();

  before(async () => {
    await c.init("m1");
    await c.join("m2", "manager", "m1");
    await c.join("m3", "manager", "m2");
    await c.allReady("m1", 3);
  });
  after(() => c.stop());

  it("every read returns the latest acknowledged token or one an overlapping call wrote", async () => {
    const history: RegisterOperation<string>[] = [];
    const initial = await c.token("m1", "worker");
    const call = async (manager: string, rotate: boolean) => {
      const invokedAt = performance.now();
      const args = ["join-token", "worker", "--quiet", "--state-dir", c.node(manager).stateDir];
      if (rotate) args.push("--rotate");
      const r = await nodectl(args, {}, 10_000);
      const completedAt = performance.now();
      const process = `${manager}-${rotate ? "rotate" : "read"}`;
      const token = r.stdout.trim();
      if (rotate)
        // A failed rotate may still have been applied (the manager died mid-call): no answer.
        history.push(
          r.status === 0
            ? { kind: "rotate", process, invokedAt, completedAt, returned: token }
            : { kind: "rotate", process, invokedAt },
        );
      // A failed read has no effect: left out.
      else if (r.status === 0) history.push({ kind: "read", process, invokedAt, completedAt, value: token });
    };
    const loops: BackgroundLoop[] = [];
    try {
      for (const m of ["m1", "m2", "m3"]) {
        loops.push(startLoop(() => call(m, true)));
        loops.push(startLoop(() => call(m, false)));
      }
      await new Promise((r) => setTimeout(r, 3_000));
      const leaderId = (await c.ls("m2")).find((n) => n.leader)?.id;
      if (!leaderId) throw new Error("no leader");
      const leader = c.nameOf(leaderId);
      c.node(leader).daemon.kill();
      await c.node(leader).daemon.exited;
      await new Promise((r) => setTimeout(r, 3_000));
      c.run(leader);
      await waitUntil(`${leader} back`, 20_000, async () =>
        (await c.ls(leader)).length === 3 ? true : undefined,
      );
      await new Promise((r) => setTimeout(r, 2_000));
    } finally {
      await Promise.all(loops.map((l) => l.stop()));
    }
    const answered = history.filter((o) => o.completedAt !== undefined);
    expect(answered.filter((o) => o.kind === "rotate").length, "acknowledged rotations").to.be.above(5);
    expect(answered.filter((o) => o.kind === "read").length, "answered reads").to.be.above(5);
    const result = checkRegisterHistory(history, initial);
    expect(result.ok, result.ok ? "" : result.explanation).to.equal(true);
  });
});
