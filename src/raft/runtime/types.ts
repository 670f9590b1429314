// Contracts between the Raft runtime and what it drives.
import type { Message } from "../../gen/raft/v1/raft.js";
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
