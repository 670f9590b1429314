// The knobs of one runtime-simulator run (RaftNodes in virtual time). Times are
// virtual milliseconds.
import type { RuntimeTestingKnobs } from "../runtime/node-options.js";
import type { SimNetworkOptions } from "./sim-network.js";
import type { SimStorageOptions } from "./sim-storage.js";

export interface RuntimeSimOptions {
  seed: number;
  /** Founding voters (3..5). */
  nodes: number;
  /** Most members a run may grow to through additions. */
  maxMembers: number;
  tickMs: number;
  electionTimeoutTicks: number;
  /** RaftNode's proposal timeout: the longest a request may wait for its answer. */
  proposalTimeoutMs: number;
  /** Length of the fault phase; then faults heal and clients stop. */
  chaosMs: number;
  /** After healing, a marker must be applied on every member and every promise settled within this. */
  livenessBoundMs: number;
  network: SimNetworkOptions;
  storage: SimStorageOptions;
  /** Per-ms chance of a fault (crash, partition, pause, graceful restart) during chaos. */
  faultRatePerMs: number;
  /** Chance that a new leader is crashed within 40 ms (leader flapping). */
  leaderCrashRate: number;
  /** Chance that a storage operation is cut short by a crash of its process (mid-persist). */
  crashMidWriteRate: number;
  maxPauseMs: number;
  proposeRatePerMs: number;
  readRatePerMs: number;
  confChangeRatePerMs: number;
  transferRatePerMs: number;
  snapshotEveryEntries: number;
  keepEntriesAfterSnapshot: number;
  knobs?: RuntimeTestingKnobs;
}

type ProfileOverrides = Partial<Omit<RuntimeSimOptions, "network" | "storage">> & {
  network?: Partial<SimNetworkOptions>;
  storage?: Partial<SimStorageOptions>;
};

/** Fault mixes; each seed takes one (seed % 4) unless one is named. */
export const RUNTIME_FAULT_PROFILES = {
  steady: { faultRatePerMs: 0.0015 },
  lossy: { network: { dropRate: 0.2, duplicateRate: 0.1, slowRate: 0.1 } },
  /** Processes die mid-write, leaders die young, syncs stall. */
  crashy: {
    crashMidWriteRate: 0.01,
    leaderCrashRate: 0.3,
    storage: { slowSyncRate: 0.1 },
  },
  partitions: { faultRatePerMs: 0.008 },
} satisfies Record<string, ProfileOverrides>;

export type RuntimeFaultProfile = keyof typeof RUNTIME_FAULT_PROFILES;

export function runtimeProfileForSeed(seed: number): RuntimeFaultProfile {
  const names = Object.keys(RUNTIME_FAULT_PROFILES) as RuntimeFaultProfile[];
  return names[seed % names.length];
}

export function defaultRuntimeSimOptions(
  seed: number,
  overrides: Partial<RuntimeSimOptions> = {},
  profile: RuntimeFaultProfile = runtimeProfileForSeed(seed),
): RuntimeSimOptions {
  const p: ProfileOverrides = RUNTIME_FAULT_PROFILES[profile];
  return {
    seed,
    nodes: 3 + (seed % 3),
    maxMembers: 6,
    tickMs: 10,
    electionTimeoutTicks: 10,
    proposalTimeoutMs: 1000,
    chaosMs: 2500,
    livenessBoundMs: 4000,
    faultRatePerMs: 0.003,
    leaderCrashRate: 0.1,
    crashMidWriteRate: 0.001,
    maxPauseMs: 600,
    proposeRatePerMs: 0.05,
    readRatePerMs: 0.02,
    confChangeRatePerMs: 0.002,
    transferRatePerMs: 0.001,
    snapshotEveryEntries: [20, 50][seed % 2],
    keepEntriesAfterSnapshot: [0, 5, 30][Math.floor(seed / 8) % 3],
    ...p,
    network: {
      minDelayMs: 1,
      maxDelayMs: 8,
      slowRate: 0.03,
      dropRate: 0.05,
      duplicateRate: 0.03,
      unflushedMs: 2,
      ...p.network,
    },
    storage: { syncMinMs: 0, syncMaxMs: 3, slowSyncRate: 0.03, slowSyncMaxMs: 60, ...p.storage },
    ...overrides,
  };
}
