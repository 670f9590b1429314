// The server side of a streamed snapshot: the first request carries the message
// (with the snapshot's metadata), the data follows in chunks up to a limit. The
// sender is checked on the first request, before a byte of data is held: a stream
// whose first request has no snapshot header, or whose header the inbound guard
// refuses, is refused at once and not read further. The header is checked again
// at the end (the membership may have changed while the data streamed), and each
// sender has at most one reception open, so one member cannot hold many times the
// size limit in our memory.
import * as grpc from "@grpc/grpc-js";
import type { Message } from "../../gen/raft/v1/raft.js";
import type { SendSnapshotRequest, SendSnapshotResponse } from "../../gen/raft/v1/transport.js";
import type { RefusalReason } from "./inbound-guard.js";

export interface SnapshotReception {
  maxSnapshotBytes: number;
  /** The caller's certificate CN. */
  caller: string | undefined;
  /** Callers with a reception open (shared by every call to this server). */
  receiving: Set<string>;
  /** Whether the header may come from this caller (the inbound guard counts and logs its refusals). */
  accept(header: Message): boolean;
  /** Counts and logs a refusal decided here. */
  refuse(reason: RefusalReason, fields: Record<string, unknown>): void;
  deliver(m: Message): void;
  done: grpc.sendUnaryData<SendSnapshotResponse>;
}

export function receiveSnapshot(
  call: grpc.ServerReadableStream<SendSnapshotRequest, SendSnapshotResponse>,
  r: SnapshotReception,
): void {
  let header: Message | undefined;
  let owned = false;
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  let finished = false;
  const finish = (error: Partial<grpc.StatusObject> | null): void => {
    if (finished) return;
    finished = true;
    if (owned && r.caller !== undefined) r.receiving.delete(r.caller);
    chunks.length = 0;
    if (error) {
      // Stop reading: nothing more from this stream is buffered or looked at.
      call.removeAllListeners("data");
      call.pause();
      r.done(error as grpc.ServerErrorResponse);
    } else r.done(null, {});
  };
  call.on("data", (req: SendSnapshotRequest) => {
    if (finished) return;
    if (!header) {
      const refusal = firstRequestRefusal(req, r);
      if (refusal) return finish(refusal);
      header = req.message!;
      owned = true;
      r.receiving.add(r.caller!);
    }
    bytes += req.data.byteLength;
    if (bytes > r.maxSnapshotBytes) {
      r.refuse("SNAPSHOT_TOO_LARGE", { caller: r.caller, from: header.from, limit: r.maxSnapshotBytes });
      return finish({
        code: grpc.status.RESOURCE_EXHAUSTED,
        details: `snapshot larger than ${r.maxSnapshotBytes} bytes`,
      });
    }
    if (req.data.byteLength > 0) chunks.push(req.data);
  });
  call.on("end", () => {
    if (finished) return;
    if (!header) {
      r.refuse("SNAPSHOT_NO_HEADER", { caller: r.caller });
      return finish({
        code: grpc.status.INVALID_ARGUMENT,
        details: "snapshot stream without a valid header",
      });
    }
    if (!r.accept(header)) {
      return finish({
        code: grpc.status.PERMISSION_DENIED,
        details: "snapshot not accepted from this caller",
      });
    }
    header.snapshot!.data = Buffer.concat(chunks);
    r.deliver(header);
    finish(null);
  });
  call.on("error", () => finish({ code: grpc.status.CANCELLED, details: "snapshot stream failed" }));
}

/** Why the first request of a snapshot stream is refused, or undefined to go on reading. */
function firstRequestRefusal(
  req: SendSnapshotRequest,
  r: SnapshotReception,
): Partial<grpc.StatusObject> | undefined {
  if (!req.message?.snapshot?.metadata) {
    r.refuse("SNAPSHOT_NO_HEADER", { caller: r.caller });
    return {
      code: grpc.status.INVALID_ARGUMENT,
      details: "the first snapshot request must carry the header",
    };
  }
  if (!r.accept(req.message)) {
    return { code: grpc.status.PERMISSION_DENIED, details: "snapshot not accepted from this caller" };
  }
  if (r.receiving.has(r.caller!)) {
    r.refuse("SNAPSHOT_BUSY", { caller: r.caller, from: req.message.from });
    return {
      code: grpc.status.RESOURCE_EXHAUSTED,
      details: "a snapshot from this sender is being received already",
    };
  }
  return undefined;
}
