// The simulator must pass clean seeds and must catch planted bugs: a checker
// that never fails proves nothing.
import { expect } from "chai";
import type { TestingKnobs } from "../../src/raft/core/types.js";
import { huntForViolation } from "../../src/raft/sim/hunt.js";
import { defaultSimOptions, type FaultProfile } from "../../src/raft/sim/options.js";
import { runSeed } from "../../src/raft/sim/simulator.js";

const CI_SEEDS = Number(process.env.SIM_SEEDS ?? 600);

describe("deterministic cluster simulator", () => {
  it(`passes ${CI_SEEDS} seeds (3-7 voters, all fault profiles) with no violation`, function () {
    this.timeout(300_000);
    const failures: string[] = [];
    let acked = 0;
    let elections = 0;
    for (let seed = 1; seed <= CI_SEEDS; seed++) {
      const r = runSeed(defaultSimOptions(seed));
      acked += r.stats.ackedWrites;
      elections += r.stats.elections;
      if (r.violations.length > 0)
        failures.push(`seed ${seed}: ${r.violations[0]} (replay: npm run sim -- --seeds 1 --from ${seed})`);
    }
    expect(failures).to.deep.equal([]);
    // The runs did real work: writes were acknowledged and leaders changed.
    expect(acked).to.be.greaterThan(CI_SEEDS * 10);
    expect(elections).to.be.greaterThan(CI_SEEDS * 2);
  });

  it("replays a seed exactly", () => {
    const a = runSeed(defaultSimOptions(4242));
    const b = runSeed(defaultSimOptions(4242));
    expect(b).to.deep.equal(a);
  });

  describe("catches each planted bug within 1,000 seeds", () => {
    const planted: { knob: keyof TestingKnobs; what: string; profile?: FaultProfile; expect: RegExp }[] = [
      {
        knob: "commitOldTermEntries",
        what: "Figure 8: commit an old-term entry by counting replicas",
        profile: "flapping",
        expect: /leader completeness|state-machine safety/,
      },
      {
        knob: "voteWithoutUpToDateCheck",
        what: "grant a vote without the up-to-date check",
        expect: /leader completeness|state-machine safety/,
      },
      {
        knob: "ackBeforePersist",
        what: "acknowledge an append before it is persisted",
        profile: "crashy",
        expect: /leader completeness|state-machine safety|raft invariant/,
      },
      {
        knob: "forgetVoteOnRestart",
        what: "forget the vote across a restart",
        expect: /election safety|leader completeness|state-machine safety/,
      },
      {
        knob: "followerCommitBeyondVerified",
        what: "follower commits past what the leader verified",
        expect: /state-machine safety|leader completeness/,
      },
      {
        knob: "readIndexBeforeTermCommit",
        what: "serve ReadIndex before the new leader commits in its term",
        expect: /linearizable read/,
      },
    ];
    for (const bug of planted) {
      it(`${bug.what} (${bug.knob}${bug.profile ? `, ${bug.profile} profile` : ""})`, function () {
        this.timeout(120_000);
        const hunt = huntForViolation({ [bug.knob]: true }, 1000, bug.profile);
        expect(hunt.found, `no violation in ${hunt.seedsTried} seeds`).to.not.equal(undefined);
        expect(hunt.found!.violations[0]).to.match(bug.expect);
        console.log(
          `      found after ${hunt.seedsTried} seed(s): ${hunt.found!.violations[0].split("\n")[0]}`,
        );
      });
    }
  });
});
