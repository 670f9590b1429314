// Contracts between the Raft runtime and what it drives.
import type { Message } from "../../gen/raft/v1/raft.js";

/** The replicated state machine: deterministic, no I/O, no clock. */
export interface StateMachine {
  apply(index: number, command: Uint8Array): Uint8Array;
  snapshot(): Uint8Array;
  restore(data: Uint8Array): void;
}

/** Sends messages to peers; never blocks, may drop (Raft retries). */
export interface Transport {
  send(messages: Message[]): void;
  addPeer(id: number, address: string): void;
  removePeer(id: number): void;
  close(): Promise<void>;
}

/** What the transport tells the node about delivery. */
export interface TransportEvents {
  onMessage(m: Message): void;
  onSnapshotStatus(to: number, ok: boolean): void;
  onUnreachable(to: number): void;
}
