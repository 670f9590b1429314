// The knobs of one simulated run. Times are in virtual milliseconds.
import type { TestingKnobs } from "../core/types.js";
import type { LastFault } from "./liveness.js";

export interface SimOptions {
  seed: number;
  /** Founding voters (1..7); a run grows from there by adding learners and promoting them. */
  nodes: number;
  /** Most members the run may grow to through additions. */
  maxMembers: number;
  tickMs: number;
  electionTimeoutTicks: number;
  /** Length of the fault phase, then faults heal. */
  chaosMs: number;
  /**
   * After faults heal, each liveness step (the last fault, a read served on every live
   * member with no write, a new write applied everywhere) must finish within this, or
   * keep progressing, up to ten times this (liveness.ts).
   */
  livenessBoundMs: number;
  /** How often each last fault is picked once faults heal (see liveness.ts). */
  lastFaultWeights: Record<LastFault, number>;
  minDelayMs: number;
  maxDelayMs: number;
  /** Share of messages that take up to 5x the max delay (reordering). */
  slowRate: number;
  dropRate: number;
  duplicateRate: number;
  /** Per-ms chance of a fault event (crash, partition, heal) during chaos. */
  faultRatePerMs: number;
  /**
   * Chance that a node crashes between sending a Ready's messages and persisting it; a
   * random prefix of the write survives (see MemoryStorage.persistPrefix).
   */
  crashMidReadyRate: number;
  /** A Ready's durable write takes 0..this many ms; inputs arriving meanwhile wait for the next round. */
  maxWriteMs: number;
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
  /** Share of client proposals sent as one proposeBatch of 2..4 commands. */
  batchRate: number;
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
 * Fault mixes. Each seed takes one (seed % 5) unless a profile is named, so a
 * long run covers calm clusters, flapping leaders, lossy links, partitions and crashes.
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
  /** Processes die mid-write and leaders die right after committing (1-3 founding voters). */
  crashy: {
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
  // Founding voters 1..7 (seed % 7, coprime with the five profiles); the crashy profile
  // cycles 1..3, where a single voter's durability matters most.
  const nodes = profile === "crashy" ? 1 + (Math.floor(seed / 5) % 3) : 1 + (seed % 7);
  return {
    seed,
    nodes,
    maxMembers: 9,
    tickMs: 10,
    electionTimeoutTicks: 10,
    chaosMs: 3000,
    livenessBoundMs: 3000,
    lastFaultWeights: { none: 1, keepDown: 1, restart: 1, grow: 1 },
    minDelayMs: 1,
    maxDelayMs: 8,
    slowRate: 0.03,
    dropRate: 0.05,
    duplicateRate: 0.03,
    faultRatePerMs: 0.004,
    crashMidReadyRate: 0.002,
    maxWriteMs: 2,
    leaderCrashRate: 0.2,
    leaderCrashWindowMs: 40,
    firstCommitCrashRate: 0.02,
    leaderCommitCrashRate: 0,
    unflushedMs: 2,
    proposeRatePerMs: 0.05,
    batchRate: 0.3,
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
