// The client side of the Raft transport to one peer: one long-lived stream that
// carries batches (everything queued since the last write goes in one frame), a
// bounded queue that drops when full (Raft retries), and snapshots streamed in
// chunks on a call of their own. The stream is opened as soon as the link exists,
// so the peer hears from us at once (that is how a restarted member makes its
// peers reconnect to it without waiting out their backoff).
//
// One backoff: the channel's. The stream waits for the channel to be ready
// (waitForReady), so reconnecting follows gRPC's own reconnect backoff alone, and
// a stream that broke is reopened at once. When the peer is heard from (its
// stream or a message reached our server) while our channel is still waiting to
// retry, the channel is replaced by a fresh one that connects now: the peer is
// up. Before, a restarted member waited for the leader behind the link's own
// backoff stacked on the channel's (0.5-3.5 s of NO_LEADER after listening).
// A stream the peer refuses although it is reachable (its authorizer says no)
// is retried after a full-jitter backoff of ours, so a refusal is not hammered.
import * as grpc from "@grpc/grpc-js";
import type { Message } from "../../gen/raft/v1/raft.js";
import {
  type MembersResponse,
  RaftTransportServiceClient,
  type SendRequest,
  type SendSnapshotRequest,
} from "../../gen/raft/v1/transport.js";
import type { Logger } from "../../log/logger.js";
import type { MemberBinding } from "./members.js";
import type { TransportEvents } from "./types.js";

export interface PeerLinkLimits {
  maxQueuedMessages: number;
  maxBatchBytes: number;
  snapshotChunkBytes: number;
  minBackoffMs: number;
  maxBackoffMs: number;
}

export interface PeerLinkHost {
  readonly log: Logger;
  readonly events: TransportEvents;
  readonly limits: PeerLinkLimits;
  random(): number;
}

const CHANNEL_OPTIONS = {
  // The server is checked by checkServerIdentity (cluster, role, and the node id the
  // membership binds to the member dialled), not by hostname; SNI names the role.
  "grpc.ssl_target_name_override": "manager",
  "grpc.default_authority": "manager",
  "grpc.max_send_message_length": 64 * 1024 * 1024,
  "grpc.max_receive_message_length": 64 * 1024 * 1024,
  "grpc.keepalive_time_ms": 5_000,
  "grpc.keepalive_timeout_ms": 5_000,
  "grpc.keepalive_permit_without_calls": 1,
  // A replaced channel must get a subchannel of its own: the shared one keeps its backoff.
  "grpc.use_local_subchannel_pool": 1,
} satisfies grpc.ChannelOptions;

/** At most one fresh channel per peer this often, however often the peer is heard from. */
const FRESH_CHANNEL_INTERVAL_MS = 1_000;

function approxBytes(m: Message): number {
  let n = 64;
  for (const e of m.entries) n += e.data.byteLength + 16;
  return n;
}

export class PeerLink {
  private queue: Message[] = [];
  private stream: grpc.ClientWritableStream<SendRequest> | undefined;
  private scheduled = false;
  private blocked = false;
  private backoffMs = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private client: InstanceType<typeof RaftTransportServiceClient>;
  /** Whether the current stream was accepted by the peer (it sent its headers). */
  private accepted = false;
  private freshChannelAt = Number.NEGATIVE_INFINITY;
  dropped = 0;
  /** Streams that broke or could not be opened (a refused server identity included). */
  failures = 0;
  lastError = "";

  constructor(
    readonly peerId: number,
    readonly binding: MemberBinding,
    private readonly credentials: grpc.ChannelCredentials,
    private readonly host: PeerLinkHost,
  ) {
    this.client = this.newClient();
    // Open now, not on first use: followers first talk to each other when the leader
    // dies, and a TLS handshake then widens the window in which both pre-vote at once
    // and split the election (measured: a second election round, up to +2 s).
    this.open();
  }

  /** Queues a message; the caller flushes once it has queued a whole Ready's worth. */
  enqueue(m: Message): void {
    if (this.queue.length >= this.host.limits.maxQueuedMessages) {
      this.dropped++; // Raft resends what matters; a bounded queue keeps a dead peer from eating memory
      return;
    }
    this.queue.push(m);
  }

  flush(): void {
    if (this.closed || this.blocked || this.retryTimer || this.queue.length === 0) return;
    const stream = this.stream ?? this.open();
    while (this.queue.length > 0 && !this.blocked) {
      let bytes = 0;
      let n = 0;
      while (n < this.queue.length && (n === 0 || bytes < this.host.limits.maxBatchBytes))
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

  /** The peer was heard from (its stream or a message reached our server): if we are waiting to reconnect, do it now. */
  heard(): void {
    if (this.closed) return;
    const state = this.client.getChannel().getConnectivityState(false);
    const waiting =
      state === grpc.connectivityState.TRANSIENT_FAILURE || state === grpc.connectivityState.IDLE;
    // A peer we hear from but cannot reach (its address serves someone else) must not get
    // a new channel for every message it sends us.
    const fresh = waiting && Date.now() - this.freshChannelAt >= FRESH_CHANNEL_INTERVAL_MS;
    if (!fresh && !this.retryTimer) return;
    this.host.log.debug(
      { peer: this.peerId, channel: grpc.connectivityState[state] },
      "heard from peer; reconnecting now",
    );
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.backoffMs = 0;
    const old = { client: this.client, stream: this.stream };
    this.stream = undefined;
    this.blocked = false;
    if (fresh) {
      // grpc-js cannot cut its reconnect backoff short: a fresh channel connects at once.
      this.freshChannelAt = Date.now();
      this.client = this.newClient();
      old.stream?.cancel();
      old.client.close();
    }
    this.open();
    this.flush();
  }

  /** The channel's connectivity, for tests and metrics. */
  channelState(): string {
    return grpc.connectivityState[this.client.getChannel().getConnectivityState(false)];
  }

  /** The peer's applied member bindings; undefined if it did not answer in time. */
  members(timeoutMs: number): Promise<MembersResponse | undefined> {
    return new Promise((resolve) => {
      this.client.members({}, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
        resolve(err ? undefined : res),
      );
    });
  }

  sendSnapshot(m: Message): void {
    const snapshot = m.snapshot!;
    const data = snapshot.data;
    const chunk = this.host.limits.snapshotChunkBytes;
    const call = this.client.sendSnapshot((err) => {
      if (err)
        this.host.log.warn(
          { peer: this.peerId, code: err.code, err: err.details },
          "snapshot transfer failed",
        );
      this.host.events.onSnapshotStatus(this.peerId, !err);
    });
    const header: SendSnapshotRequest = {
      message: { ...m, snapshot: { metadata: snapshot.metadata, data: new Uint8Array() } },
      data: new Uint8Array(),
    };
    call.write(header);
    for (let off = 0; off < data.byteLength; off += chunk) {
      call.write({ message: undefined, data: data.subarray(off, off + chunk) });
    }
    call.end();
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.stream?.end();
    this.client.close();
  }

  private schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private newClient(): InstanceType<typeof RaftTransportServiceClient> {
    const limits = this.host.limits;
    return new RaftTransportServiceClient(this.binding.address, this.credentials, {
      ...CHANNEL_OPTIONS,
      "grpc.initial_reconnect_backoff_ms": limits.minBackoffMs,
      "grpc.max_reconnect_backoff_ms": limits.maxBackoffMs,
    });
  }

  private open(): grpc.ClientWritableStream<SendRequest> {
    // Waits for the channel instead of failing while it reconnects: the channel's backoff is the only one.
    const stream = this.client.send(new grpc.Metadata({ waitForReady: true }), (err) => {
      if (this.stream !== stream) return; // an older stream, already replaced
      this.stream = undefined;
      // The peer ending our stream without an error is a peer going away too: reconnect.
      if (!this.closed) this.failed(err?.code ?? grpc.status.UNAVAILABLE, err?.details ?? "stream ended");
    });
    this.accepted = false;
    stream.on("metadata", () => {
      this.accepted = true;
      this.backoffMs = 0;
    });
    this.stream = stream;
    return stream;
  }

  private failed(code: grpc.status, details: string): void {
    this.blocked = false;
    this.failures++;
    this.lastError = details;
    this.host.events.onUnreachable(this.peerId);
    if (this.accepted) {
      // It broke after the peer took it (the peer died or restarts): the new stream waits for the channel.
      this.host.log.debug({ peer: this.peerId, code, err: details }, "raft stream to peer broke");
      this.accepted = false;
      this.open();
      this.flush();
      return;
    }
    // The peer refused the stream although we reached it: back off before asking again.
    const limits = this.host.limits;
    this.backoffMs = Math.min(limits.maxBackoffMs, Math.max(limits.minBackoffMs, this.backoffMs * 2));
    const waitMs = Math.floor(this.host.random() * this.backoffMs); // full jitter
    this.host.log.debug({ peer: this.peerId, code, err: details, waitMs }, "raft stream refused by peer");
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.closed) return;
      this.open();
      this.flush();
    }, waitMs);
  }
}
