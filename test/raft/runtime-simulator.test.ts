// The runtime simulator drives real RaftNodes (group commit, the early answer, lazy
// commit, snapshots, promise settling) in virtual time. It must pass clean seeds and
// catch bugs planted in RaftNode itself: a checker that never fails proves nothing.
import { expect } from "chai";
import type { RuntimeTestingKnobs } from "../../src/raft/runtime/node-options.js";
import { defaultRuntimeSimOptions } from "../../src/raft/sim/runtime-options.js";
import { huntRuntimeViolation, runRuntimeSeed } from "../../src/raft/sim/runtime-sim.js";

const CI_SEEDS = Number(process.env.RUNTIME_SIM_SEEDS ?? 300);

describe("runtime simulator: RaftNodes in virtual time", () => {
  it(`passes ${CI_SEEDS} seeds (3-5 voters, all fault profiles) with no violation`, async function () {
    this.timeout(300_000);
    const failures: string[] = [];
    const totals = { acked: 0, readsServed: 0, rejected: 0, elections: 0, crashes: 0, snapshotsSent: 0 };
    for (let seed = 1; seed <= CI_SEEDS; seed++) {
      const r = await runRuntimeSeed(defaultRuntimeSimOptions(seed));
      for (const k of Object.keys(totals) as (keyof typeof totals)[]) totals[k] += r.stats[k];
      if (r.violations.length > 0) {
        failures.push(
          `seed ${seed}: ${r.violations[0]} (replay: npm run sim -- --runtime --seeds 1 --from ${seed})`,
        );
      }
    }
    expect(failures).to.deep.equal([]);
    // The runs did real work through every path the checks look at.
    expect(totals.acked).to.be.greaterThan(CI_SEEDS * 20);
    expect(totals.readsServed).to.be.greaterThan(CI_SEEDS * 5);
    expect(totals.rejected).to.be.greaterThan(CI_SEEDS * 10);
    expect(totals.elections).to.be.greaterThan(CI_SEEDS * 2);
    expect(totals.crashes).to.be.greaterThan(CI_SEEDS * 2);
    expect(totals.snapshotsSent).to.be.greaterThan(CI_SEEDS / 10);
  });

  it("a member stopped while promote() waits to retry settles the promise (second reading, F4: seeds with one founding voter)", async function () {
    this.timeout(120_000);
    // These seeds stop the leader while promote() waits out LEARNER_NOT_READY; the wait's
    // timer died with the member and the promise was never settled.
    for (const seed of [265, 1412, 1533]) {
      const r = await runRuntimeSeed({ ...defaultRuntimeSimOptions(seed), nodes: 1 });
      expect(r.violations, `seed ${seed} with one founding voter`).to.deep.equal([]);
    }
  });

  it("replays a seed exactly", async () => {
    const a = await runRuntimeSeed(defaultRuntimeSimOptions(4242));
    const b = await runRuntimeSeed(defaultRuntimeSimOptions(4242));
    expect(b).to.deep.equal(a);
    expect(a.stats.acked).to.be.greaterThan(0);
  });

  describe("catches each planted runtime bug within 1,000 seeds", () => {
    const planted: { knob: keyof RuntimeTestingKnobs; what: string; expect: RegExp }[] = [
      {
        knob: "answerBeforeQuorum",
        what: "answer a proposal once its entry is durable here, before a quorum has it",
        expect: /acknowledged write|linearizable read/,
      },
      {
        knob: "answerBeforeLocalSync",
        what: "take the early-answer path before the local sync finished",
        expect: /durability|leader completeness|state-machine safety|acknowledged write/,
      },
      {
        knob: "forgetProposalsDuringLeaderChange",
        what: "drop the proposals refused during a leader change without rejecting their promises",
        expect: /promise settle/,
      },
    ];
    for (const bug of planted) {
      it(`${bug.what} (${bug.knob})`, async function () {
        this.timeout(300_000);
        const hunt = await huntRuntimeViolation({ [bug.knob]: true }, 1000);
        expect(hunt.found, `no violation in ${hunt.seedsTried} seeds`).to.not.equal(undefined);
        expect(hunt.found!.violations[0]).to.match(bug.expect);
        console.log(
          `      found after ${hunt.seedsTried} seed(s): ${hunt.found!.violations[0].split("\n")[0]}`,
        );
      });
    }
  });
});
