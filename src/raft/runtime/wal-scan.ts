// Reading a write-ahead log back, and deciding what a damaged spot in it means, without
// writing anything (the repairs are the caller's, after this has accepted the log).
//
// Only the last write can be torn: appends are serialized, each returns once durable,
// and the next starts after it. So a damaged spot is a torn write only when it is in
// the newest segment, nothing intact was written after it (no frame with a later
// sequence number follows it), and it has the shape a crash leaves (see looksTorn).
// Anything else is corruption: refusing to start loses nothing, while cutting the log
// there would drop acknowledged entries and a granted vote (the member could vote twice
// in a term).
import * as fs from "node:fs";
import { join } from "node:path";
import { RaftStateCorruptError } from "./errors.js";
import { frameAt, isZero, laterFrameAfter, looksTorn, type WalRecord } from "./wal-frame.js";

const SEGMENT_FILE = /^[0-9a-f]{16}\.wal$/;

export function segmentName(seq: number): string {
  return `${seq.toString(16).padStart(16, "0")}.wal`;
}

export interface Segment {
  seq: number;
  path: string;
  /** Highest index of any record in it (0 if none). */
  maxIndex: number;
}

export interface LogScan {
  /** Segments in use, oldest first. */
  segments: Segment[];
  /** Trailing segments zero-filled ahead of need and never written (nothing but zeros). */
  unused: string[];
  /** Unfinished preallocations. */
  leftovers: string[];
  /** Sequence number of the last intact write (0 if none). */
  lastSeq: number;
  /** Where the newest segment's intact writes end. */
  end: number;
  /** The newest segment's size in bytes. */
  size: number;
  /** Whether anything but zeros lies behind `end` (an interrupted write). */
  torn: boolean;
}

export type ReadFile = (path: string) => Buffer;

/** Reads every write in order, handing each record to `onRecord`; throws RaftStateCorruptError. */
export function scanLog(
  dir: string,
  stateDir: string,
  onRecord: (r: WalRecord) => void,
  read: ReadFile = (p) => fs.readFileSync(p),
): LogScan {
  const corrupt = (detail: string) => new RaftStateCorruptError(stateDir, detail);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    throw corrupt("its write-ahead log (wal/) is missing");
  }
  const segments: Segment[] = names
    .filter((n) => SEGMENT_FILE.test(n))
    .sort()
    .map((n) => ({ seq: Number.parseInt(n.slice(0, 16), 16), path: join(dir, n), maxIndex: 0 }));
  if (segments.length === 0) throw corrupt("its write-ahead log has no segments");
  for (let i = 1; i < segments.length; i++) {
    if (segments[i].seq !== segments[i - 1].seq + 1)
      throw corrupt(`write-ahead log segment ${segments[i - 1].seq + 1} is missing`);
  }
  // A segment zero-filled ahead of need but never written: the one before it is still
  // the newest (and may end in a torn write). Only one holding nothing but zeros: a
  // zeroed start with writes after it is damage, not an unused segment.
  const unused: string[] = [];
  let newestData = read(segments[segments.length - 1].path);
  while (segments.length > 1 && isZero(newestData)) {
    unused.push(segments.pop()!.path);
    newestData = read(segments[segments.length - 1].path);
  }
  let lastSeq: number | undefined;
  let end = 0;
  let torn = false;
  for (let i = 0; i < segments.length; i++) {
    const newest = i === segments.length - 1;
    const data = newest ? newestData : read(segments[i].path);
    ({ end, lastSeq } = readWrites(data, segments[i], lastSeq, onRecord, corrupt));
    if (isZero(data, end)) continue;
    const damage = notTorn(data, end, lastSeq ?? 0, newest);
    if (damage) throw corrupt(`write-ahead log segment ${segmentName(segments[i].seq)} ${damage}`);
    torn = true;
  }
  return {
    segments,
    unused,
    leftovers: names.filter((n) => n.endsWith(".tmp")).map((n) => join(dir, n)),
    lastSeq: lastSeq ?? 0,
    end,
    size: newestData.length,
    torn,
  };
}

/**
 * Why what lies at `end`, behind a segment's intact writes, is not a write cut short
 * by a crash (undefined if it is one).
 */
function notTorn(data: Buffer, end: number, lastSeq: number, newest: boolean): string | undefined {
  if (!newest) return `has a bad record at byte ${end}, before the newest segment`;
  const later = laterFrameAfter(data, end + 1, lastSeq);
  if (later) {
    return `has a bad record at byte ${end} followed by intact later writes (write ${later.seq} at byte ${later.start}); acknowledged writes would be lost`;
  }
  if (!looksTorn(data, end)) {
    return `has a bad last write at byte ${end} that no crash explains (it was not cut short: none of its sectors is unwritten)`;
  }
  return undefined;
}

/** Reads the intact writes at the start of a segment; returns where they end. */
function readWrites(
  data: Buffer,
  segment: Segment,
  prevSeq: number | undefined,
  onRecord: (r: WalRecord) => void,
  corrupt: (detail: string) => Error,
): { end: number; lastSeq: number | undefined } {
  let end = 0;
  let lastSeq = prevSeq;
  for (let frame = frameAt(data, 0); frame; frame = frameAt(data, end)) {
    // Writes are numbered without gaps across segments: a jump means some were lost.
    if (lastSeq !== undefined && frame.seq !== lastSeq + 1) {
      throw corrupt(
        `write-ahead log segment ${segmentName(segment.seq)} has write ${frame.seq} at byte ${end} right after write ${lastSeq}`,
      );
    }
    for (const r of frame.records) {
      if (r.index > segment.maxIndex) segment.maxIndex = r.index;
      onRecord(r);
    }
    lastSeq = frame.seq;
    end = frame.end;
  }
  return { end, lastSeq };
}
