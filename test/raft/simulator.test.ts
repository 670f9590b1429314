// The simulator must pass clean seeds and must catch planted bugs: a checker
// that never fails proves nothing.
import { expect } from "chai";
import type { TestingKnobs } from "../../src/raft/core/types.js";
import { huntForViolation } from "../../src/raft/sim/hunt.js";
import { defaultSimOptions, type FaultProfile } from "../../src/raft/sim/options.js";
import { runSeed } from "../../src/raft/sim/simulator.js";

const CI_SEEDS = Number(process.env.SIM_SEEDS ?? 600);

describe("deterministic cluster simulator", () => {
  it(`passes ${CI_SEEDS} seeds (1-7 founding voters, all fault profiles) with no violation`, function () {
    this.timeout(300_000);
    const failures: string[] = [];
    let acked = 0;
    let elections = 0;
    let batches = 0;
    let unreachable = 0;
    let growthFromOne = 0;
    const sizes = new Set<number>();
    for (let seed = 1; seed <= CI_SEEDS; seed++) {
      const opts = defaultSimOptions(seed);
      const r = runSeed(opts);
      sizes.add(opts.nodes);
      acked += r.stats.ackedWrites;
      elections += r.stats.elections;
      batches += r.stats.batches;
      unreachable += r.stats.unreachableReports;
      if (opts.nodes === 1) growthFromOne += r.stats.confChanges;
      if (r.violations.length > 0)
        failures.push(`seed ${seed}: ${r.violations[0]} (replay: npm run sim -- --seeds 1 --from ${seed})`);
      else expect(r.stats.readLivenessMs, `seed ${seed}`).to.be.at.least(0);
    }
    expect(failures).to.deep.equal([]);
    // The runs did real work: writes were acknowledged and leaders changed.
    expect(acked).to.be.greaterThan(CI_SEEDS * 10);
    expect(elections).to.be.greaterThan(CI_SEEDS * 2);
    // And drove what the simulator once left alone (issue 9).
    expect([...sizes].sort()).to.deep.equal([1, 2, 3, 4, 5, 6, 7]);
    expect(growthFromOne).to.be.greaterThan(CI_SEEDS / 20);
    expect(batches).to.be.greaterThan(CI_SEEDS);
    expect(unreachable).to.be.greaterThan(CI_SEEDS / 10);
  });

  it("replays a seed exactly", () => {
    const a = runSeed(defaultSimOptions(4242));
    const b = runSeed(defaultSimOptions(4242));
    expect(b).to.deep.equal(a);
  });

  describe("catches each planted bug within 1,000 seeds", () => {
    const planted: {
      knobs: TestingKnobs;
      what: string;
      profile?: FaultProfile;
      expect: RegExp;
    }[] = [
      {
        knobs: { commitOldTermEntries: true },
        what: "Figure 8: commit an old-term entry by counting replicas",
        profile: "flapping",
        expect: /leader completeness|state-machine safety/,
      },
      {
        knobs: { voteWithoutUpToDateCheck: true },
        what: "grant a vote without the up-to-date check",
        expect: /leader completeness|state-machine safety/,
      },
      {
        knobs: { ackBeforePersist: true },
        what: "acknowledge an append before it is persisted",
        profile: "crashy",
        expect: /leader completeness|state-machine safety|raft invariant/,
      },
      {
        knobs: { forgetVoteOnRestart: true },
        what: "forget the vote across a restart",
        expect: /election safety|leader completeness|state-machine safety/,
      },
      {
        knobs: { followerCommitBeyondVerified: true },
        what: "follower commits past what the leader verified",
        expect: /state-machine safety|leader completeness/,
      },
      {
        knobs: { readIndexBeforeTermCommit: true },
        what: "serve ReadIndex before the new leader commits in its term",
        expect: /linearizable read/,
      },
      // The four defects of issue 9, put back.
      {
        knobs: { voteOnlyForConfiguredVoters: true },
        what: "refuse votes to candidates our applied configuration omits (a cluster that never elects again)",
        expect: /liveness/,
      },
      {
        knobs: { voteOnlyForConfiguredVoters: true, promoteLaggingLearners: true },
        what: "the same, with learners promoted before they caught up",
        expect: /liveness/,
      },
      {
        knobs: { singleVoterReadBeforeTermCommit: true },
        what: "a single voter answers ReadIndex before it commits in its term (stale read after a restart)",
        expect: /linearizable read/,
      },
      {
        knobs: { heartbeatCommitCappedByVerified: true },
        what: "heartbeats capped by what this leader's appends verified (a restarted follower stuck behind)",
        expect: /liveness/,
      },
      {
        knobs: { selfVoteBeforePersist: true },
        what: "a candidate counts its own vote before its term is durable (a single voter leads a term twice)",
        expect: /election safety/,
      },
    ];
    for (const bug of planted) {
      const knobs = Object.keys(bug.knobs).join(" + ");
      it(`${bug.what} (${knobs}${bug.profile ? `, ${bug.profile} profile` : ""})`, function () {
        this.timeout(120_000);
        const hunt = huntForViolation(bug.knobs, 1000, bug.profile);
        expect(hunt.found, `no violation in ${hunt.seedsTried} seeds`).to.not.equal(undefined);
        expect(hunt.found!.violations[0]).to.match(bug.expect);
        console.log(
          `      found after ${hunt.seedsTried} seed(s): ${hunt.found!.violations[0].split("\n")[0]}`,
        );
      });
    }
  });
});
