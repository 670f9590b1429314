// The write-ahead log's on-disk unit: one frame per append, holding that append's
// records under one CRC and a write sequence number.
//
// Frame:  u32 CRC-32 of everything after it, u32 body length, u64 write sequence
//         (1, 2, 3, ... across segments; 0 never), body.
// Body:   records, each u32 payload length, u8 type (never 0), u64 index, payload.
// All little-endian. A zero frame header is where the data ends.
//
// A frame is whole or it is not a frame: a write cut short at a crash never yields
// some of its records. The sequence number tells one write from the next, so a
// damaged spot followed by an intact later write is known to be damage, not the tear
// of the last write (only the last write can be torn: appends are serialized).
import { crc32 } from "node:zlib";

export const FRAME_HEADER_BYTES = 16;
export const RECORD_HEADER_BYTES = 13;
/**
 * The unit a disk writes whole (etcd's minSectorSize). A write interrupted by a crash
 * leaves each of its sectors either written or as it was before: zeros, since segments
 * are zero-filled before use and everything behind the log's end is zeroed at open.
 */
export const SECTOR_BYTES = 512;
const ZERO = Buffer.alloc(64 * 1024);

export interface WalRecord {
  type: number;
  /** The log index the record carries (0 when it has none); segments are pruned by it. */
  index: number;
  payload: Uint8Array;
}

export interface Frame {
  seq: number;
  start: number;
  /** Offset just past the frame. */
  end: number;
  records: WalRecord[];
}

export function frameBytes(records: readonly WalRecord[]): number {
  let size = FRAME_HEADER_BYTES;
  for (const r of records) size += RECORD_HEADER_BYTES + r.payload.byteLength;
  return size;
}

export function encodeFrame(seq: number, records: readonly WalRecord[]): Buffer {
  const buf = Buffer.allocUnsafe(frameBytes(records));
  buf.writeUInt32LE(buf.length - FRAME_HEADER_BYTES, 4);
  buf.writeBigUInt64LE(BigInt(seq), 8);
  let off = FRAME_HEADER_BYTES;
  for (const r of records) {
    buf.writeUInt32LE(r.payload.byteLength, off);
    buf.writeUInt8(r.type, off + 4);
    buf.writeBigUInt64LE(BigInt(r.index), off + 5);
    buf.set(r.payload, off + RECORD_HEADER_BYTES);
    off += RECORD_HEADER_BYTES + r.payload.byteLength;
  }
  buf.writeUInt32LE(crc32(buf.subarray(4)), 0);
  return buf;
}

/** The intact frame starting at `off`, if there is one. */
export function frameAt(data: Buffer, off: number): Frame | undefined {
  if (off + FRAME_HEADER_BYTES > data.length) return undefined;
  const end = off + FRAME_HEADER_BYTES + data.readUInt32LE(off + 4);
  if (end - off < FRAME_HEADER_BYTES + RECORD_HEADER_BYTES || end > data.length) return undefined;
  const seq = data.readBigUInt64LE(off + 8);
  if (seq === 0n || seq > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  if (crc32(data.subarray(off + 4, end)) !== data.readUInt32LE(off)) return undefined;
  const records: WalRecord[] = [];
  for (let p = off + FRAME_HEADER_BYTES; p < end; ) {
    const stop = p + RECORD_HEADER_BYTES + (p + RECORD_HEADER_BYTES <= end ? data.readUInt32LE(p) : 0);
    const type = data.readUInt8(p + 4);
    // A checksum that matches over records that do not tile the body is no frame of ours.
    if (p + RECORD_HEADER_BYTES > end || stop > end || type === 0) return undefined;
    records.push({
      type,
      index: Number(data.readBigUInt64LE(p + 5)),
      payload: data.subarray(p + RECORD_HEADER_BYTES, stop),
    });
    p = stop;
  }
  return { seq: Number(seq), start: off, end, records };
}

export function isZero(data: Buffer, from = 0, to = data.length): boolean {
  for (let i = from; i < to; i += ZERO.length) {
    const n = Math.min(ZERO.length, to - i);
    if (ZERO.compare(data, i, i + n, 0, n) !== 0) return false;
  }
  return true;
}

/**
 * The first intact frame after `from` with a sequence number above `lastSeq` (a later
 * write), if any. Looks at every offset: a damaged frame's length cannot be trusted.
 */
export function laterFrameAfter(data: Buffer, from: number, lastSeq: number): Frame | undefined {
  // More writes than this cannot fit in what is left of the segment.
  const maxSeq = lastSeq + 1 + Math.ceil(data.length / (FRAME_HEADER_BYTES + RECORD_HEADER_BYTES));
  for (let p = from; p + FRAME_HEADER_BYTES <= data.length; ) {
    // A frame header is never all zeros, so none starts in the first part of a zero run.
    const block = Math.min(ZERO.length, data.length - p);
    if (block > FRAME_HEADER_BYTES && isZero(data, p, p + block)) {
      p += block - FRAME_HEADER_BYTES + 1;
      continue;
    }
    const seq = data.readUInt32LE(p + 8) + data.readUInt32LE(p + 12) * 2 ** 32;
    if (seq > lastSeq && seq <= maxSeq) {
      const frame = frameAt(data, p);
      if (frame) return frame;
    }
    p++;
  }
  return undefined;
}

/**
 * Whether the damaged frame at `off` has the shape of a write cut short by a crash:
 * its header never landed (all zeros), or one of the sectors it covers still holds
 * the zeros from before the write (etcd's isTornEntry), or it runs past the end of
 * the file where only a segment's first write may grow it. A flipped bit or a
 * stray byte leaves no such sector, so it is refused as corruption; a damaged
 * frame that happens to hold a sector-aligned run of zeros of its own cannot be
 * told from a torn one, here as in etcd.
 */
export function looksTorn(data: Buffer, off: number): boolean {
  if (isZero(data, off, Math.min(off + FRAME_HEADER_BYTES, data.length))) return true;
  const len = off + 8 <= data.length ? data.readUInt32LE(off + 4) : 0;
  // Zeroed bytes only make a length smaller: a length past the file's end was not torn,
  // unless the write began at offset 0, the only write allowed to grow a segment.
  const stop = off + FRAME_HEADER_BYTES + len;
  if (stop > data.length) return off === 0;
  for (let sector = off - (off % SECTOR_BYTES); sector < stop; sector += SECTOR_BYTES) {
    if (isZero(data, Math.max(sector, off), Math.min(sector + SECTOR_BYTES, stop))) return true;
  }
  return false;
}
