// A small key-value state machine for the runtime's tests and benchmark only:
// every proposal's effect can be checked on every member. Commands are encoded
// PutRequests; the result of a put is the index it was applied at.
import { KVSnapshot, PutRequest } from "../gen/testbed/kv/v1/kv.js";
import type { StateMachine } from "../raft/runtime/types.js";

export class KVStateMachine implements StateMachine {
  private readonly data = new Map<string, Uint8Array>();
  /** Index of the last put to each key: lets tests see no entry was applied twice. */
  private readonly putIndex = new Map<string, number>();
  appliedPuts = 0;

  apply(index: number, command: Uint8Array): Uint8Array {
    const put = PutRequest.decode(command);
    this.data.set(put.key, put.value);
    this.putIndex.set(put.key, index);
    this.appliedPuts++;
    const result = Buffer.alloc(8);
    result.writeBigUInt64BE(BigInt(index));
    return result;
  }

  get(key: string): { value: Uint8Array; index: number } | undefined {
    const value = this.data.get(key);
    return value === undefined ? undefined : { value, index: this.putIndex.get(key)! };
  }

  get size(): number {
    return this.data.size;
  }

  snapshot(): Uint8Array {
    const pairs = [...this.data].map(([key, value]) => ({ key, value, index: this.putIndex.get(key)! }));
    return KVSnapshot.encode({ pairs }).finish();
  }

  restore(data: Uint8Array): void {
    this.data.clear();
    this.putIndex.clear();
    for (const p of KVSnapshot.decode(data).pairs) {
      this.data.set(p.key, p.value);
      this.putIndex.set(p.key, p.index);
    }
  }
}
