// Runs seeds until one violates an invariant: how tests prove the simulator
// catches a planted bug, and how many seeds that took.
import type { TestingKnobs } from "../core/types.js";
import { defaultSimOptions, type FaultProfile } from "./options.js";
import { runSeed, type SimResult } from "./simulator.js";

export interface HuntResult {
  found: SimResult | undefined;
  seedsTried: number;
}

export function huntForViolation(
  knobs: TestingKnobs,
  maxSeeds: number,
  profile?: FaultProfile,
  firstSeed = 1,
): HuntResult {
  for (let i = 0; i < maxSeeds; i++) {
    const result = runSeed(defaultSimOptions(firstSeed + i, { knobs }, profile));
    if (result.violations.length > 0) return { found: result, seedsTried: i + 1 };
  }
  return { found: undefined, seedsTried: maxSeeds };
}
