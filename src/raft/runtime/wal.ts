// A write-ahead log of framed records in preallocated segment files. Every append is
// one positioned write on a descriptor opened with O_DSYNC: the write returns once
// the data is on stable storage, in one thread-pool round trip instead of a write
// plus an fsync. Segments are filled with zeros before use, so an append changes no
// file size or extent map and the sync flushes data only (measured on this machine's
// ext4, one 200-byte entry per persist: 0.19 ms p50, against 0.25-0.28 ms for a level
// batch with sync:true alone and 0.4-0.6 ms with three members writing).
//
// Record: u32 payload length, u32 CRC-32 of (type, index, payload), u8 type,
// u64 index, payload (all little-endian). A zero header is the end of the data. A
// record that fails its check at the end of the newest segment is a torn write (never
// acknowledged, hard case 24): it is cut off. Whatever lies behind the end of the
// newest segment's data (a torn record, or sectors of an interrupted write that landed
// while an earlier one did not) is zeroed again at open, so stale bytes can never be
// read as records later. Anywhere else a bad record is corruption, reported.
import * as fs from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import type { Logger } from "../../log/logger.js";
import { fsyncDirectory, type SyncDirectory } from "./durable-dir.js";
import { RaftStateCorruptError } from "./errors.js";

export const HEADER_BYTES = 17;
const SUFFIX = ".wal";
const ZERO_CHUNK = Buffer.alloc(1 << 20);

export interface WalRecord {
  type: number;
  /** The log index the record carries (0 when it has none); segments are pruned by it. */
  index: number;
  payload: Uint8Array;
}

interface Segment {
  seq: number;
  path: string;
  /** Highest index of any record in it (0 if none). */
  maxIndex: number;
}

export interface WalOptions {
  /** Bytes preallocated per segment; a single larger write grows its segment. */
  segmentBytes?: number;
  logger: Logger;
  /** Records that open every new segment (the latest hard state), so older segments can go. */
  preamble: () => WalRecord[];
  /** Syncs a directory's entries (tests watch it). */
  syncDirectory?: SyncDirectory;
}

export function encodeRecords(records: readonly WalRecord[]): Buffer {
  let size = 0;
  for (const r of records) size += HEADER_BYTES + r.payload.byteLength;
  const buf = Buffer.allocUnsafe(size);
  let off = 0;
  for (const r of records) {
    const len = r.payload.byteLength;
    buf.writeUInt32LE(len, off);
    buf.writeUInt8(r.type, off + 8);
    buf.writeBigUInt64LE(BigInt(r.index), off + 9);
    buf.set(r.payload, off + HEADER_BYTES);
    buf.writeUInt32LE(crc32(buf.subarray(off + 8, off + HEADER_BYTES + len)), off + 4);
    off += HEADER_BYTES + len;
  }
  return buf;
}

function segmentName(seq: number): string {
  return `${seq.toString(16).padStart(16, "0")}${SUFFIX}`;
}

function pwrite(fd: number, buf: Buffer, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (off: number): void => {
      fs.write(fd, buf, off, buf.length - off, position + off, (err, written) => {
        if (err) reject(err);
        else if (off + written < buf.length) step(off + written);
        else resolve();
      });
    };
    step(0);
  });
}

/** Creates a zero-filled segment under a temporary name, syncs it, then renames it in place. */
async function prepareSegment(
  dir: string,
  seq: number,
  bytes: number,
  syncDirectory: SyncDirectory,
): Promise<string> {
  const final = join(dir, segmentName(seq));
  const tmp = `${final}.tmp`;
  const fh = await fs.promises.open(tmp, "w");
  try {
    for (let off = 0; off < bytes; off += ZERO_CHUNK.length) {
      await fh.write(ZERO_CHUNK, 0, Math.min(ZERO_CHUNK.length, bytes - off), off);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.promises.rename(tmp, final);
  syncDirectory(dir);
  return final;
}

/** Every write on this descriptor returns once its data is on stable storage. */
function openForAppend(path: string): number {
  return fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_DSYNC);
}

function isUnused(path: string): boolean {
  const fd = fs.openSync(path, "r");
  try {
    const header = Buffer.alloc(HEADER_BYTES);
    fs.readSync(fd, header, 0, HEADER_BYTES, 0);
    return header.every((b) => b === 0);
  } finally {
    fs.closeSync(fd);
  }
}

export class Wal {
  private fd = -1;
  private pos = 0;
  private next: Promise<string> | undefined;
  private readonly segmentBytes: number;
  private readonly syncDirectory: SyncDirectory;

  private constructor(
    readonly dir: string,
    private readonly options: WalOptions,
    private readonly segments: Segment[],
  ) {
    this.segmentBytes = options.segmentBytes ?? 16 * 1024 * 1024;
    this.syncDirectory = options.syncDirectory ?? fsyncDirectory;
  }

  /** Creates a new log holding `records` in `dir`, whose parent must exist. */
  static async create(dir: string, options: WalOptions, records: WalRecord[]): Promise<Wal> {
    fs.mkdirSync(dir);
    const wal = new Wal(dir, options, []);
    wal.syncDirectory(join(dir, ".."));
    const path = await prepareSegment(dir, 1, wal.segmentBytes, wal.syncDirectory);
    wal.segments.push({ seq: 1, path, maxIndex: 0 });
    wal.fd = openForAppend(path);
    await wal.append(records);
    return wal;
  }

  /** Opens an existing log and hands every record, oldest first, to `onRecord`. */
  static async open(
    dir: string,
    stateDir: string,
    options: WalOptions,
    onRecord: (r: WalRecord) => void,
  ): Promise<Wal> {
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch {
      throw new RaftStateCorruptError(stateDir, "its write-ahead log (wal/) is missing");
    }
    const leftovers = names.filter((n) => n.endsWith(".tmp")); // unfinished preallocations
    for (const n of leftovers) fs.rmSync(join(dir, n), { force: true });
    const segments: Segment[] = names
      .filter((n) => /^[0-9a-f]{16}\.wal$/.test(n))
      .sort()
      .map((n) => ({ seq: Number.parseInt(n.slice(0, 16), 16), path: join(dir, n), maxIndex: 0 }));
    if (segments.length === 0)
      throw new RaftStateCorruptError(stateDir, "its write-ahead log has no segments");
    for (let i = 1; i < segments.length; i++) {
      if (segments[i].seq !== segments[i - 1].seq + 1) {
        throw new RaftStateCorruptError(
          stateDir,
          `write-ahead log segment ${segments[i - 1].seq + 1} is missing`,
        );
      }
    }
    // A segment zero-filled ahead of need but never written: the one before it is still
    // the newest (and may end in a torn write). Drop it; it is prepared again when needed.
    let removed = leftovers.length;
    while (segments.length > 1 && isUnused(segments[segments.length - 1].path)) {
      fs.rmSync(segments.pop()!.path);
      removed++;
    }
    const wal = new Wal(dir, options, segments);
    if (removed > 0) wal.syncDirectory(dir);
    let end = 0;
    for (let i = 0; i < segments.length; i++) {
      const last = i === segments.length - 1;
      const data = fs.readFileSync(segments[i].path);
      const { end: segEnd, torn } = wal.scan(data, segments[i], onRecord);
      if (torn && !last) {
        throw new RaftStateCorruptError(
          stateDir,
          `write-ahead log segment ${segmentName(segments[i].seq)} has a bad record at byte ${segEnd}`,
        );
      }
      if (last) {
        end = segEnd;
        const stale = data.subarray(segEnd).some((b) => b !== 0);
        if (stale) {
          // The tail of the newest segment was being written when the process died.
          options.logger.warn(
            { segment: segments[i].path, offset: segEnd, torn },
            "cut off an interrupted write at the end of the raft log (it was never acknowledged)",
          );
          const fd = fs.openSync(segments[i].path, "r+");
          try {
            for (let off = segEnd; off < data.length; off += ZERO_CHUNK.length) {
              fs.writeSync(fd, ZERO_CHUNK, 0, Math.min(ZERO_CHUNK.length, data.length - off), off);
            }
            fs.fsyncSync(fd);
          } finally {
            fs.closeSync(fd);
          }
        }
      }
    }
    const current = segments[segments.length - 1];
    wal.fd = openForAppend(current.path);
    wal.pos = end;
    if (end === 0) await wal.append(options.preamble()); // a segment prepared but never written
    return wal;
  }

  /** Parses records until the zero header (end) or a record that fails its checks (torn). */
  private scan(data: Buffer, seg: Segment, onRecord: (r: WalRecord) => void): { end: number; torn: boolean } {
    let off = 0;
    while (off + HEADER_BYTES <= data.length) {
      const len = data.readUInt32LE(off);
      const sum = data.readUInt32LE(off + 4);
      const type = data.readUInt8(off + 8);
      if (len === 0 && sum === 0 && type === 0) return { end: off, torn: false };
      const stop = off + HEADER_BYTES + len;
      if (type === 0 || stop > data.length || crc32(data.subarray(off + 8, stop)) !== sum) {
        return { end: off, torn: true };
      }
      const index = Number(data.readBigUInt64LE(off + 9));
      if (index > seg.maxIndex) seg.maxIndex = index;
      onRecord({ type, index, payload: data.subarray(off + HEADER_BYTES, stop) });
      off = stop;
    }
    return { end: off, torn: false };
  }

  /** Appends records durably: resolves once they are on stable storage. */
  async append(records: readonly WalRecord[]): Promise<void> {
    if (records.length === 0) return;
    let buf = encodeRecords(records);
    if (this.pos > 0 && this.pos + buf.length > this.segmentBytes) {
      await this.rollover();
      buf = Buffer.concat([encodeRecords(this.options.preamble()), buf]);
    }
    await pwrite(this.fd, buf, this.pos);
    this.pos += buf.length;
    const seg = this.segments[this.segments.length - 1];
    for (const r of records) if (r.index > seg.maxIndex) seg.maxIndex = r.index;
    // Zero-fill the next segment in the background, well before it is needed.
    if (!this.next && this.pos > this.segmentBytes / 2) {
      this.next = prepareSegment(this.dir, seg.seq + 1, this.segmentBytes, this.syncDirectory);
      this.next.catch(() => undefined); // awaited (and its error raised) at rollover
    }
  }

  private async rollover(): Promise<void> {
    const seq = this.segments[this.segments.length - 1].seq + 1;
    const path = await (this.next ?? prepareSegment(this.dir, seq, this.segmentBytes, this.syncDirectory));
    this.next = undefined;
    fs.closeSync(this.fd);
    this.fd = openForAppend(path);
    this.segments.push({ seq, path, maxIndex: 0 });
    this.pos = 0;
  }

  /** Deletes the oldest segments whose records all lie below `firstKept` (never the current one). */
  prune(firstKept: number): void {
    let removed = 0;
    while (this.segments.length > 1 && this.segments[0].maxIndex < firstKept) {
      fs.rmSync(this.segments.shift()!.path, { force: true });
      removed++;
    }
    if (removed > 0) this.syncDirectory(this.dir);
  }

  /** Segment files in use (for tests and metrics). */
  segmentCount(): number {
    return this.segments.length;
  }

  async close(): Promise<void> {
    if (this.next) await this.next.catch(() => undefined);
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}
