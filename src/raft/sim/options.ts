// The knobs of one simulated run. Times are in virtual milliseconds.
import type { TestingKnobs } from "../core/types.js";

export interface SimOptions {
  seed: number;
  /** Founding voters (3..7). */
  nodes: number;
  /** Most members the run may grow to through additions. */
  maxMembers: number;
  tickMs: number;
  electionTimeoutTicks: number;
  /** Length of the fault phase, then faults heal. */
  chaosMs: number;
  /** After healing, a leader must exist and a new proposal must apply everywhere within this. */
  livenessBoundMs: number;
  minDelayMs: number;
  maxDelayMs: number;
  /** Share of messages that take up to 5x the max delay (reordering). */
  slowRate: number;
  dropRate: number;
  duplicateRate: number;
  /** Per-ms chance of a fault event (crash, partition, heal) during chaos. */
  faultRatePerMs: number;
  /** Chance that a node crashes between sending a Ready's messages and persisting it. */
  crashMidReadyRate: number;
  /** Chance that a newly elected leader crashes within `leaderCrashWindowMs` (leader flapping). */
  leaderCrashRate: number;
  leaderCrashWindowMs: number;
  /** Chance that a leader crashes right after its first commit of a term. */
  firstCommitCrashRate: number;
  /** Chance that a leader crashes right after any Ready that committed entries. */
  leaderCommitCrashRate: number;
  /** Messages sent this recently before a crash die with the process (user-space buffers). */
  unflushedMs: number;
  proposeRatePerMs: number;
  readRatePerMs: number;
  confChangeRatePerMs: number;
  transferRatePerMs: number;
  /** Compact once this many entries are applied past the last snapshot. */
  compactEveryEntries: number;
  /** Entries kept behind each snapshot for slow followers. */
  keepEntriesAfterSnapshot: number;
  /** Flow-control limits: small ones split the log into many messages. */
  maxMsgBytes: number;
  maxInflightMsgs: number;
  /** Commit index reaches followers with the next append or heartbeat (the runtime's setting). */
  lazyCommit: boolean;
  knobs?: TestingKnobs;
}

/**
 * Fault mixes. Each seed takes one (seed % 4) unless a profile is named, so a
 * long run covers calm clusters, flapping leaders, lossy links and partitions.
 */
export const FAULT_PROFILES = {
  steady: {},
  /** Leaders crash right after election with one entry per message: Figure 8 territory. */
  flapping: {
    nodes: 5,
    chaosMs: 10000,
    leaderCrashRate: 0.6,
    leaderCrashWindowMs: 6,
    firstCommitCrashRate: 0.5,
    maxMsgBytes: 40,
    maxInflightMsgs: 1,
    dropRate: 0.2,
    proposeRatePerMs: 0.2,
  },
  lossy: { dropRate: 0.2, duplicateRate: 0.1, slowRate: 0.1 },
  partitions: { faultRatePerMs: 0.01, leaderCrashRate: 0.05 },
  /** Processes die mid-write and leaders die right after committing. */
  crashy: {
    nodes: 3,
    chaosMs: 8000,
    crashMidReadyRate: 0.06,
    leaderCommitCrashRate: 0.03,
    firstCommitCrashRate: 0.2,
    maxMsgBytes: 40,
    dropRate: 0.1,
  },
} satisfies Record<string, Partial<SimOptions>>;

export type FaultProfile = keyof typeof FAULT_PROFILES;

export function profileForSeed(seed: number): FaultProfile {
  const names = Object.keys(FAULT_PROFILES) as FaultProfile[];
  return names[seed % names.length];
}

export function defaultSimOptions(
  seed: number,
  overrides: Partial<SimOptions> = {},
  profile: FaultProfile = profileForSeed(seed),
): SimOptions {
  return {
    seed,
    nodes: 3 + (seed % 5),
    maxMembers: 9,
    tickMs: 10,
    electionTimeoutTicks: 10,
    chaosMs: 3000,
    livenessBoundMs: 3000,
    minDelayMs: 1,
    maxDelayMs: 8,
    slowRate: 0.03,
    dropRate: 0.05,
    duplicateRate: 0.03,
    faultRatePerMs: 0.004,
    crashMidReadyRate: 0.002,
    leaderCrashRate: 0.2,
    leaderCrashWindowMs: 40,
    firstCommitCrashRate: 0.02,
    leaderCommitCrashRate: 0,
    unflushedMs: 2,
    proposeRatePerMs: 0.05,
    readRatePerMs: 0.02,
    confChangeRatePerMs: 0.002,
    transferRatePerMs: 0.001,
    compactEveryEntries: 20,
    keepEntriesAfterSnapshot: [0, 5, 30][Math.floor(seed / 45) % 3],
    maxMsgBytes: [40, 300, 4096][Math.floor(seed / 5) % 3],
    maxInflightMsgs: [1, 4, 64][Math.floor(seed / 15) % 3],
    lazyCommit: seed % 2 === 1,
    ...FAULT_PROFILES[profile],
    ...overrides,
  };
}
