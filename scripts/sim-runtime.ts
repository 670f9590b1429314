// `npm run sim -- --runtime`: seeded simulations of RaftNodes (the runtime, not the
// core alone) in virtual time; scripts/sim.ts hands over here. Same output as the
// core simulator: a replay line per violation, then `seeds=N violations=V`.
import { defaultRuntimeSimOptions } from "../src/raft/sim/runtime-options.js";
import { runRuntimeSeed } from "../src/raft/sim/runtime-sim.js";

export interface RuntimeSimCli {
  seeds: number;
  from: number;
  /** Founding voters; default 3..5 by seed. */
  nodes?: number;
  verbose?: boolean;
}

/** Runs the seeds and prints the report; returns how many seeds found a violation. */
export async function runtimeSimMain(cli: RuntimeSimCli): Promise<number> {
  if (cli.nodes !== undefined && cli.nodes > 5) {
    console.error(`sim: --runtime runs 1..5 founding voters (got ${cli.nodes})`);
    process.exit(2);
  }
  let violations = 0;
  const started = performance.now();
  for (let seed = cli.from; seed < cli.from + cli.seeds; seed++) {
    const result = await runRuntimeSeed(
      defaultRuntimeSimOptions(seed, cli.nodes === undefined ? {} : { nodes: cli.nodes }),
    );
    if (cli.verbose) console.log(JSON.stringify({ seed, endMs: result.endMs, ...result.stats }));
    if (result.violations.length > 0) {
      violations++;
      const replay = `npm run sim -- --runtime --seeds 1 --from ${seed}${cli.nodes === undefined ? "" : ` --nodes ${cli.nodes}`}`;
      console.log(`seed ${seed}: VIOLATION\n  ${result.violations.join("\n  ")}\n  replay: ${replay}`);
    }
  }
  const seconds = (performance.now() - started) / 1000;
  console.error(
    `${cli.seeds} runtime seed${cli.seeds === 1 ? "" : "s"} in ${seconds.toFixed(1)} s (${(cli.seeds / seconds).toFixed(1)} seeds/s)`,
  );
  console.log(`seeds=${cli.seeds} violations=${violations}`);
  return violations;
}
