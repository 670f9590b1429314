// npm run sim -- --seeds N [--from S] [--nodes K] [--verbose] [--runtime]
// Runs N seeded simulations of a whole cluster; ends with `seeds=N violations=V`.
import { Command } from "commander";
import { defaultSimOptions } from "../src/raft/sim/options.js";
import { runSeed } from "../src/raft/sim/simulator.js";
import { runtimeSimMain } from "./sim-runtime.js";

const program = new Command()
  .name("sim")
  .description("Deterministic Raft cluster simulation over many seeds")
  .option("--seeds <n>", "how many seeds to run", "100")
  .option("--from <s>", "first seed", "1")
  .option("--nodes <k>", "founding voters (1..7); default varies with the seed (1..7)")
  .option("--verbose", "print each seed's statistics")
  .option("--runtime", "simulate RaftNodes (the runtime over the core; 1..5 voters)")
  .parse();

const opts = program.opts<{ seeds: string; from: string; nodes?: string; verbose?: boolean }>();
const seeds = Number(opts.seeds);
const from = Number(opts.from);
const nodes = opts.nodes === undefined ? undefined : Number(opts.nodes);
const usage = (what: string): never => {
  console.error(`sim: ${what}\nusage: npm run sim -- --seeds N [--from S] [--nodes K]  (N >= 1, K in 1..7)`);
  process.exit(2);
};
if (!Number.isInteger(seeds) || seeds < 1) usage(`--seeds must be a whole number >= 1 (got "${opts.seeds}")`);
if (!Number.isInteger(from)) usage(`--from must be a whole number (got "${opts.from}")`);
if (nodes !== undefined && !(Number.isInteger(nodes) && nodes >= 1 && nodes <= 7)) {
  usage(
    `--nodes is the number of founding voters, 1..7 (got "${opts.nodes}"); a run may add members up to 9 itself`,
  );
}
if (program.opts<{ runtime?: boolean }>().runtime) {
  process.exit((await runtimeSimMain({ seeds, from, nodes, verbose: opts.verbose })) > 0 ? 1 : 0);
}

let violations = 0;
const started = performance.now();
for (let seed = from; seed < from + seeds; seed++) {
  const result = runSeed(defaultSimOptions(seed, nodes === undefined ? {} : { nodes }));
  if (opts.verbose) console.log(JSON.stringify({ seed, endMs: result.endMs, ...result.stats }));
  if (result.violations.length > 0) {
    violations++;
    const replay = `npm run sim -- --seeds 1 --from ${seed}${nodes === undefined ? "" : ` --nodes ${nodes}`}`;
    console.log(`seed ${seed}: VIOLATION\n  ${result.violations.join("\n  ")}\n  replay: ${replay}`);
  }
}
const seconds = (performance.now() - started) / 1000;
console.error(
  `${seeds} seed${seeds === 1 ? "" : "s"} in ${seconds.toFixed(1)} s (${(seeds / seconds).toFixed(1)} seeds/s)`,
);
console.log(`seeds=${seeds} violations=${violations}`);
process.exit(violations > 0 ? 1 : 0);
