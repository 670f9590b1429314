// The server side of a streamed snapshot: the first chunk carries the message
// (with the snapshot's metadata), the data follows in chunks up to a limit. The
// message is delivered only if `accept` lets its header through.
import * as grpc from "@grpc/grpc-js";
import type { Message } from "../../gen/raft/v1/raft.js";
import type { SendSnapshotRequest, SendSnapshotResponse } from "../../gen/raft/v1/transport.js";

export function receiveSnapshot(
  call: grpc.ServerReadableStream<SendSnapshotRequest, SendSnapshotResponse>,
  maxSnapshotBytes: number,
  accept: (header: Message) => boolean,
  to: { deliver(m: Message): void; done: grpc.sendUnaryData<SendSnapshotResponse> },
): void {
  let header: Message | undefined;
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  let failed = false;
  call.on("data", (req: SendSnapshotRequest) => {
    if (failed) return;
    if (!header) header = req.message;
    bytes += req.data.byteLength;
    if (bytes > maxSnapshotBytes) {
      failed = true;
      to.done({
        code: grpc.status.RESOURCE_EXHAUSTED,
        details: `snapshot larger than ${maxSnapshotBytes} bytes`,
      });
      return;
    }
    if (req.data.byteLength > 0) chunks.push(req.data);
  });
  call.on("end", () => {
    if (failed) return;
    if (!header?.snapshot?.metadata) {
      to.done({ code: grpc.status.INVALID_ARGUMENT, details: "snapshot stream without a valid header" });
      return;
    }
    if (!accept(header)) {
      to.done({ code: grpc.status.PERMISSION_DENIED, details: "snapshot not accepted from this caller" });
      return;
    }
    header.snapshot.data = Buffer.concat(chunks);
    to.deliver(header);
    to.done(null, {});
  });
  call.on("error", () => undefined);
}
