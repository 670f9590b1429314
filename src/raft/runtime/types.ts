// Contracts between the Raft runtime and what it drives.
import type { Message, Snapshot } from "../../gen/raft/v1/raft.js";
import type { PersistentState, Ready } from "../core/types.js";
import type { Membership } from "./members.js";

/** The replicated state machine: deterministic, no I/O, no clock. */
export interface StateMachine {
  apply(index: number, command: Uint8Array): Uint8Array;
  snapshot(): Uint8Array;
  restore(data: Uint8Array): void;
}

/** Sends messages to peers; never blocks, may drop (Raft retries). */
export interface Transport {
  send(messages: Message[]): void;
  /**
   * The whole applied membership (who each member is and where), replacing the
   * previous one: called at start, after each applied configuration change and
   * after a snapshot install. Messages are accepted only as it binds them.
   */
  setMembers(membership: Membership): void;
  close(): Promise<void>;
}

/** What the transport tells the node about delivery. */
export interface TransportEvents {
  onMessage(m: Message): void;
  onSnapshotStatus(to: number, ok: boolean): void;
  onUnreachable(to: number): void;
}

/**
 * Durable Raft state of one member: what RaftNode needs of DiskStorage, and what the
 * simulator's storage (src/raft/sim/sim-storage.ts) implements to lose unsynced
 * writes at a crash. RaftNode never runs two of these operations at once.
 */
export interface RaftStorage {
  /** What was persisted, as the core's constructor takes it. */
  load(): PersistentState;
  /**
   * Makes the durable part of a Ready (snapshot, entries, hard state) durable;
   * resolves only once it is. A commit-only hard state may be deferred to the next
   * write or close() (a restarted member learns the commit index again).
   */
  persist(rd: Ready): Promise<void>;
  /** Stores the state machine's snapshot and drops the log it covers but the last `keepEntries`. */
  compact(snapshot: Snapshot, keepEntries: number): Promise<void>;
  /** Writes what was deferred and releases the storage. */
  close(): Promise<void>;
}
