// Raft messages between managers over gRPC with mutual TLS: one long-lived
// client stream per peer carries batches (everything queued since the last
// write goes in one frame), queues are bounded and drop when full (Raft
// retries), a broken stream reconnects with exponential backoff and full
// jitter, and snapshots are streamed in chunks on a call of their own.
import * as grpc from "@grpc/grpc-js";
import type { Message } from "../../gen/raft/v1/raft.js";
import {
  RaftTransportServiceClient,
  type RaftTransportServiceServer,
  type SendRequest,
  type SendSnapshotRequest,
} from "../../gen/raft/v1/transport.js";
import type { Logger } from "../../log/logger.js";
import type { Transport, TransportEvents } from "./types.js";

export interface GrpcTransportOptions {
  selfId: number;
  credentials: grpc.ChannelCredentials;
  events: TransportEvents;
  logger: Logger;
  maxQueuedMessages?: number;
  maxBatchBytes?: number;
  snapshotChunkBytes?: number;
}

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // Peers are verified by cluster and role (checkServerIdentity), not hostname; SNI names the role.
  "grpc.ssl_target_name_override": "manager",
  "grpc.default_authority": "manager",
  "grpc.max_send_message_length": 64 * 1024 * 1024,
  "grpc.max_receive_message_length": 64 * 1024 * 1024,
  "grpc.keepalive_time_ms": 5_000,
  "grpc.keepalive_timeout_ms": 5_000,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 2_000,
};

export const RAFT_SERVER_OPTIONS: grpc.ServerOptions = {
  "grpc.max_receive_message_length": 64 * 1024 * 1024,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.http2.min_ping_interval_without_data_ms": 1_000,
};

const MIN_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 2_000;

function approxBytes(m: Message): number {
  let n = 64;
  for (const e of m.entries) n += e.data.byteLength + 16;
  return n;
}

class PeerLink {
  private queue: Message[] = [];
  private stream: grpc.ClientWritableStream<SendRequest> | undefined;
  private scheduled = false;
  private blocked = false;
  private backoffMs = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  dropped = 0;

  constructor(
    readonly peerId: number,
    readonly address: string,
    private readonly client: InstanceType<typeof RaftTransportServiceClient>,
    private readonly t: GrpcTransport,
  ) {}

  /** Queues a message; the caller flushes once it has queued a whole Ready's worth. */
  enqueue(m: Message): void {
    if (this.queue.length >= this.t.maxQueuedMessages) {
      this.dropped++; // Raft resends what matters; a bounded queue keeps a dead peer from eating memory
      return;
    }
    this.queue.push(m);
  }

  private schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  flush(): void {
    if (this.closed || this.blocked || this.retryTimer || this.queue.length === 0) return;
    const stream = this.stream ?? this.open();
    while (this.queue.length > 0 && !this.blocked) {
      let bytes = 0;
      let n = 0;
      while (n < this.queue.length && (n === 0 || bytes < this.t.maxBatchBytes))
        bytes += approxBytes(this.queue[n++]);
      const messages = this.queue.slice(0, n);
      this.queue = this.queue.slice(n);
      if (!stream.write({ messages })) {
        this.blocked = true;
        stream.once("drain", () => {
          this.blocked = false;
          this.schedule();
        });
      }
    }
  }

  private open(): grpc.ClientWritableStream<SendRequest> {
    const stream = this.client.send((err) => {
      if (this.stream === stream) this.stream = undefined;
      if (err && !this.closed) this.failed(err);
    });
    stream.on("metadata", () => {
      this.backoffMs = 0; // the peer accepted the stream
    });
    this.stream = stream;
    return stream;
  }

  private failed(err: grpc.ServiceError): void {
    this.blocked = false;
    this.backoffMs = Math.min(MAX_BACKOFF_MS, Math.max(MIN_BACKOFF_MS, this.backoffMs * 2));
    const waitMs = Math.floor(Math.random() * this.backoffMs); // full jitter
    this.t.log.debug(
      { peer: this.peerId, code: err.code, err: err.details, waitMs },
      "raft stream to peer broke",
    );
    this.t.events.onUnreachable(this.peerId);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.schedule();
    }, waitMs);
  }

  sendSnapshot(m: Message): void {
    const snapshot = m.snapshot!;
    const data = snapshot.data;
    const call = this.client.sendSnapshot((err) => {
      if (err)
        this.t.log.warn({ peer: this.peerId, code: err.code, err: err.details }, "snapshot transfer failed");
      this.t.events.onSnapshotStatus(this.peerId, !err);
    });
    const header: SendSnapshotRequest = {
      message: { ...m, snapshot: { metadata: snapshot.metadata, data: new Uint8Array() } },
      data: new Uint8Array(),
    };
    call.write(header);
    for (let off = 0; off < data.byteLength; off += this.t.snapshotChunkBytes) {
      call.write({ message: undefined, data: data.subarray(off, off + this.t.snapshotChunkBytes) });
    }
    call.end();
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.stream?.end();
    this.client.close();
  }
}

export class GrpcTransport implements Transport {
  readonly log: Logger;
  readonly events: TransportEvents;
  readonly maxQueuedMessages: number;
  readonly maxBatchBytes: number;
  readonly snapshotChunkBytes: number;
  private readonly peers = new Map<number, PeerLink>();

  constructor(private readonly options: GrpcTransportOptions) {
    this.log = options.logger.child({ component: "raft-transport", node: options.selfId });
    this.events = options.events;
    this.maxQueuedMessages = options.maxQueuedMessages ?? 8192;
    this.maxBatchBytes = options.maxBatchBytes ?? 4 * 1024 * 1024;
    this.snapshotChunkBytes = options.snapshotChunkBytes ?? 256 * 1024;
  }

  addPeer(id: number, address: string): void {
    if (id === this.options.selfId) return;
    const existing = this.peers.get(id);
    if (existing?.address === address) return;
    existing?.close();
    const client = new RaftTransportServiceClient(address, this.options.credentials, CHANNEL_OPTIONS);
    // Connect now, not on first use: followers first talk to each other when the leader
    // dies, and a TLS handshake then widens the window in which both pre-vote at once
    // and split the election (measured: a second election round, up to +2 s).
    client.getChannel().getConnectivityState(true);
    this.peers.set(id, new PeerLink(id, address, client, this));
  }

  removePeer(id: number): void {
    this.peers.get(id)?.close();
    this.peers.delete(id);
  }

  /** Sends one Ready's messages: one batch per peer, written now (no extra event-loop turn). */
  send(messages: Message[]): void {
    const touched = new Set<PeerLink>();
    for (const m of messages) {
      const peer = this.peers.get(m.to);
      if (!peer) {
        this.events.onUnreachable(m.to);
        continue;
      }
      if (m.snapshot?.metadata) peer.sendSnapshot(m);
      else {
        peer.enqueue(m);
        touched.add(peer);
      }
    }
    for (const peer of touched) peer.flush();
  }

  async close(): Promise<void> {
    for (const p of this.peers.values()) p.close();
    this.peers.clear();
  }
}

export interface RaftServiceOptions {
  events: TransportEvents;
  logger: Logger;
  /** The raft id the caller's certificate proves, if any: messages claiming another sender are dropped. */
  peerIdOf: (call: grpc.ServerReadableStream<unknown, unknown>) => number | undefined;
  maxSnapshotBytes?: number;
}

/** The server side: hands every authenticated message to the node. */
export function raftTransportService(options: RaftServiceOptions): RaftTransportServiceServer {
  const log = options.logger.child({ component: "raft-transport" });
  const maxSnapshotBytes = options.maxSnapshotBytes ?? 1024 * 1024 * 1024;
  const fromMatches = (peer: number | undefined, m: Message): boolean => {
    if (peer === undefined || m.from === peer) return true;
    log.warn({ claimed: m.from, peer }, "dropped a raft message whose sender is not the authenticated peer");
    return false;
  };
  return {
    send(call, callback) {
      call.sendMetadata(new grpc.Metadata());
      const peer = options.peerIdOf(call);
      call.on("data", (req: SendRequest) => {
        for (const m of req.messages) if (fromMatches(peer, m)) options.events.onMessage(m);
      });
      call.on("end", () => callback(null, {}));
      call.on("error", () => undefined);
    },
    sendSnapshot(call, callback) {
      const peer = options.peerIdOf(call);
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
          callback({
            code: grpc.status.RESOURCE_EXHAUSTED,
            details: `snapshot larger than ${maxSnapshotBytes} bytes`,
          });
          return;
        }
        if (req.data.byteLength > 0) chunks.push(req.data);
      });
      call.on("end", () => {
        if (failed) return;
        if (!header?.snapshot?.metadata || !fromMatches(peer, header)) {
          callback({ code: grpc.status.INVALID_ARGUMENT, details: "snapshot stream without a valid header" });
          return;
        }
        header.snapshot.data = Buffer.concat(chunks);
        options.events.onMessage(header);
        callback(null, {});
      });
      call.on("error", () => undefined);
    },
  };
}
