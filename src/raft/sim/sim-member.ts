// One simulated member: its disk (what survives), and while it runs, the process
// incarnation, the real RaftNode on simulated storage, clock and network, and the
// state machine the checks read.
import { EntryType } from "../../gen/raft/v1/raft.js";
import { assert } from "../core/assert.js";
import type { Raft } from "../core/raft.js";
import type { RaftNode } from "../runtime/node.js";
import type { StateMachine } from "../runtime/types.js";
import { chainHash } from "./checker.js";
import type { SimProcess } from "./sim-clock.js";
import type { SimDisk, SimStorage } from "./sim-storage.js";

export interface Running {
  proc: SimProcess;
  node: RaftNode;
  storage: SimStorage;
  sm: SimStateMachine;
  /** The core, for the safety checks only. */
  core: Raft;
  /** stop() was called (a graceful restart, retirement or the end of the run). */
  stopping: boolean;
}

export interface SimMember {
  id: number;
  disk: SimDisk;
  running?: Running;
  /** Out of the cluster for good (never admitted, or removed). */
  retired: boolean;
}

export interface StateMachineHooks {
  /** `hashAfter`: the state hash once `command` is applied at `index`. */
  onApply(index: number, command: Uint8Array, hashAfter: number): void;
  onRestore(index: number, hash: number): void;
  /** The entry at `index` as the core holds it (its term and bytes feed the hash). */
  entryTerm(index: number): number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * The replicated state is a hash chain over (index, term, command): equal hashes at
 * an index mean equal histories. apply() returns the index, as the KV test bed does.
 */
export class SimStateMachine implements StateMachine {
  /** The last index a command was applied at (or the snapshot's). */
  lastIndex = 0;
  hash = 0;

  constructor(private readonly hooks: StateMachineHooks) {}

  apply(index: number, command: Uint8Array): Uint8Array {
    assert(index > this.lastIndex, `state machine applies in order: ${index} after ${this.lastIndex}`);
    const term = this.hooks.entryTerm(index);
    this.hash = chainHash(this.hash, { index, term, type: EntryType.ENTRY_TYPE_NORMAL, data: command });
    this.lastIndex = index;
    this.hooks.onApply(index, command, this.hash);
    return enc.encode(String(index));
  }

  snapshot(): Uint8Array {
    return enc.encode(JSON.stringify({ index: this.lastIndex, hash: this.hash }));
  }

  restore(data: Uint8Array): void {
    const s = data.byteLength === 0 ? { index: 0, hash: 0 } : (JSON.parse(dec.decode(data)) as StateSnapshot);
    this.lastIndex = s.index;
    this.hash = s.hash;
    if (s.index > 0) this.hooks.onRestore(s.index, s.hash);
  }
}

interface StateSnapshot {
  index: number;
  hash: number;
}
