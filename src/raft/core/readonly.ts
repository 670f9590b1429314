// Pending ReadIndex requests on a leader, in the order they arrived. A
// heartbeat acknowledged by a quorum confirms every request queued up to and
// including the one whose context it carried.
import type { Message } from "../../gen/raft/v1/raft.js";

export interface PendingRead {
  readonly index: number;
  readonly request: Message;
  readonly acks: Set<number>;
}

export function contextKey(context: Uint8Array): string {
  return Buffer.from(context.buffer, context.byteOffset, context.byteLength).toString("hex");
}

export class ReadOnlyQueue {
  private readonly pending = new Map<string, PendingRead>();
  private readonly order: string[] = [];

  constructor(readonly maxPending: number) {}

  get size(): number {
    return this.order.length;
  }

  full(): boolean {
    return this.order.length >= this.maxPending;
  }

  add(index: number, request: Message): void {
    const key = contextKey(request.context);
    if (this.pending.has(key)) return;
    this.pending.set(key, { index, request, acks: new Set() });
    this.order.push(key);
  }

  recvAck(from: number, context: Uint8Array): Set<number> | undefined {
    const read = this.pending.get(contextKey(context));
    if (!read) return undefined;
    read.acks.add(from);
    return read.acks;
  }

  /** Removes and returns every request up to and including `context`. */
  advance(context: Uint8Array): PendingRead[] {
    const key = contextKey(context);
    const at = this.order.indexOf(key);
    if (at < 0) return [];
    const done = this.order.splice(0, at + 1);
    return done.map((k) => {
      const read = this.pending.get(k)!;
      this.pending.delete(k);
      return read;
    });
  }

  /**
   * The context of the newest request whose acknowledgements satisfy `confirmed` (e.g.
   * a quorum of a configuration that just changed), or undefined. Reads are confirmed
   * in order: answering it answers every request before it too.
   */
  newestConfirmed(confirmed: (acks: ReadonlySet<number>) => boolean): Uint8Array | undefined {
    for (let i = this.order.length - 1; i >= 0; i--) {
      const read = this.pending.get(this.order[i])!;
      if (confirmed(read.acks)) return read.request.context;
    }
    return undefined;
  }

  lastContext(): Uint8Array | undefined {
    const key = this.order[this.order.length - 1];
    return key === undefined ? undefined : this.pending.get(key)!.request.context;
  }

  reset(): void {
    this.pending.clear();
    this.order.length = 0;
  }
}
