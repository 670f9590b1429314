// Proposals travel in the log wrapped with a request id, so the member that
// proposed (leader or follower) recognises its own entry when applying it.
import { randomBytes } from "node:crypto";

export const REQUEST_ID_BYTES = 16;

export class RequestIds {
  private seq = 0n;
  private readonly prefix: Buffer;

  /** `nonce`: 4 random bytes per boot (the simulator passes seeded ones, so a seed replays exactly). */
  constructor(nodeId: number, nonce: Uint8Array = randomBytes(4)) {
    // node id + a per-boot nonce: ids never repeat across restarts.
    this.prefix = Buffer.alloc(8);
    this.prefix.writeUInt32BE(nodeId >>> 0, 0);
    this.prefix.set(nonce.subarray(0, 4), 4);
  }

  next(): Buffer {
    const id = Buffer.alloc(REQUEST_ID_BYTES);
    this.prefix.copy(id, 0);
    id.writeBigUInt64BE(++this.seq, 8);
    return id;
  }
}

export function wrap(id: Uint8Array, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(REQUEST_ID_BYTES + payload.byteLength);
  out.set(id, 0);
  out.set(payload, REQUEST_ID_BYTES);
  return out;
}

/** Splits an entry's data; undefined for entries that carry no request (the leader's empty entry). */
export function unwrap(data: Uint8Array): { id: string; payload: Uint8Array } | undefined {
  if (data.byteLength < REQUEST_ID_BYTES) return undefined;
  return {
    id: Buffer.from(data.buffer, data.byteOffset, REQUEST_ID_BYTES).toString("hex"),
    payload: data.subarray(REQUEST_ID_BYTES),
  };
}
