// Raft messages between managers over gRPC with mutual TLS, bound to the
// membership: the node hands the transport the applied membership (raft id ->
// node id and address, see members.ts); the client side dials each member with
// credentials that accept only a server presenting that member's node id, and
// the server side delivers a message only from the member its caller's
// certificate is bound to, addressed to this member (inbound-guard.ts).
//
// Bindings the log has not given us yet are "hints": a joining member's seed
// list, and what the members we know answer when a message comes from a member
// we do not know (we missed the change that added it, e.g. we were down while it
// joined and took over as leader: without asking, we would drop its messages and
// never catch up). A hint never overrides the log: it goes when the log binds or
// removes that id, and it is never taken for an id the log removed.
import * as grpc from "@grpc/grpc-js";
import type { MemberInfo } from "../../gen/raft/v1/membership.js";
import type { Message } from "../../gen/raft/v1/raft.js";
import type {
  MembersResponse,
  RaftTransportServiceServer,
  SendRequest,
} from "../../gen/raft/v1/transport.js";
import type { Logger } from "../../log/logger.js";
import { InboundGuard } from "./inbound-guard.js";
import type { MemberBinding, Membership } from "./members.js";
import { PeerLink, type PeerLinkHost, type PeerLinkLimits } from "./peer-link.js";
import { receiveSnapshot } from "./snapshot-receiver.js";
import type { Transport, TransportEvents } from "./types.js";

export interface GrpcTransportOptions {
  selfId: number;
  /** Client credentials that accept only a server whose certificate's CN is `nodeId` (and of this cluster). */
  credentialsFor(nodeId: string): grpc.ChannelCredentials;
  events: TransportEvents;
  logger: Logger;
  /** Bindings known before the log gives any: a joining member's seed list (from whoever admitted it). */
  seeds?: ReadonlyMap<number, MemberBinding>;
  maxQueuedMessages?: number;
  maxBatchBytes?: number;
  snapshotChunkBytes?: number;
  maxSnapshotBytes?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Least time between two rounds of asking the known members about an unknown sender. */
  lookupIntervalMs?: number;
  random?: () => number;
}

export const RAFT_SERVER_OPTIONS: grpc.ServerOptions = {
  "grpc.max_receive_message_length": 64 * 1024 * 1024,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.http2.min_ping_interval_without_data_ms": 1_000,
};

const LOOKUP_TIMEOUT_MS = 1_000;

/** The CN (node id) of the caller's verified certificate; undefined without one. */
export type CallerIdentity = (call: grpc.ServerReadableStream<unknown, unknown>) => string | undefined;

export class GrpcTransport implements Transport, PeerLinkHost {
  readonly log: Logger;
  readonly events: TransportEvents;
  readonly limits: PeerLinkLimits;
  readonly guard: InboundGuard;
  private membership: Membership = { members: new Map(), removed: new Set() };
  private readonly hints = new Map<number, MemberBinding>();
  private readonly links = new Map<number, PeerLink>();
  private readonly maxSnapshotBytes: number;
  private lookupInFlight = false;
  private lastLookupAt = Number.NEGATIVE_INFINITY;
  private closed = false;

  constructor(private readonly options: GrpcTransportOptions) {
    this.log = options.logger.child({ component: "raft-transport", node: options.selfId });
    this.events = options.events;
    this.limits = {
      maxQueuedMessages: options.maxQueuedMessages ?? 8192,
      maxBatchBytes: options.maxBatchBytes ?? 4 * 1024 * 1024,
      snapshotChunkBytes: options.snapshotChunkBytes ?? 256 * 1024,
      minBackoffMs: options.minBackoffMs ?? 100,
      maxBackoffMs: options.maxBackoffMs ?? 2_000,
    };
    this.maxSnapshotBytes = options.maxSnapshotBytes ?? 1024 * 1024 * 1024;
    this.guard = new InboundGuard(options.selfId, (id) => this.bindingOf(id), this.log);
    for (const [id, binding] of options.seeds ?? []) this.hints.set(id, binding);
    this.syncLinks();
  }

  random(): number {
    return (this.options.random ?? Math.random)();
  }

  setMembers(membership: Membership): void {
    this.membership = membership;
    for (const id of [...this.hints.keys()])
      if (membership.members.has(id) || membership.removed.has(id)) this.hints.delete(id);
    this.syncLinks();
  }

  /** Who `raftId` is: as the applied membership says, else as a hint says (never for a removed id). */
  bindingOf(raftId: number): MemberBinding | undefined {
    const bound = this.membership.members.get(raftId);
    if (bound) return bound;
    return this.membership.removed.has(raftId) ? undefined : this.hints.get(raftId);
  }

  /** Sends one Ready's messages: one batch per peer, written now (no extra event-loop turn). */
  send(messages: Message[]): void {
    const touched = new Set<PeerLink>();
    for (const m of messages) {
      const link = this.links.get(m.to);
      if (!link) {
        this.events.onUnreachable(m.to);
        continue;
      }
      if (m.snapshot?.metadata) link.sendSnapshot(m);
      else {
        link.enqueue(m);
        touched.add(link);
      }
    }
    for (const link of touched) link.flush();
  }

  /** Per-peer delivery counters and the server side's refusals, for tests and metrics. */
  stats(): {
    refusals: InboundGuard["refusals"];
    peers: Map<number, { dropped: number; failures: number; lastError: string; channel: string }>;
  } {
    const peers = new Map(
      [...this.links].map(([id, l]) => [
        id,
        { dropped: l.dropped, failures: l.failures, lastError: l.lastError, channel: l.channelState() },
      ]),
    );
    return { refusals: { ...this.guard.refusals }, peers };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const link of this.links.values()) link.close();
    this.links.clear();
  }

  /** The server side, bound to this transport's membership. */
  service(callerOf: CallerIdentity): RaftTransportServiceServer {
    return {
      send: (call, callback) => {
        call.sendMetadata(new grpc.Metadata());
        const caller = callerOf(call);
        const callerId = caller === undefined ? undefined : this.raftIdOfNode(caller);
        // A member that (re)connects to us is up: stop waiting out our backoff towards it.
        if (callerId !== undefined) this.links.get(callerId)?.heard();
        call.on("data", (req: SendRequest) => {
          for (const m of req.messages) this.receive(m, caller);
        });
        call.on("end", () => callback(null, {}));
        call.on("error", () => undefined);
      },
      sendSnapshot: (call, callback) => {
        const caller = callerOf(call);
        receiveSnapshot(
          call,
          this.maxSnapshotBytes,
          (header) => this.guard.check(header, caller) === undefined,
          {
            deliver: (m) => this.events.onMessage(m),
            done: callback,
          },
        );
      },
      members: (_call, callback) => {
        callback(null, toMembersResponse(this.membership));
      },
    };
  }

  private receive(m: Message, caller: string | undefined): void {
    const refusal = this.guard.check(m, caller);
    if (refusal === "UNKNOWN_SENDER" && caller !== undefined) this.lookUpMembers();
    if (refusal) return;
    this.links.get(m.from)?.heard();
    this.events.onMessage(m);
  }

  private raftIdOfNode(nodeId: string): number | undefined {
    for (const [id, b] of this.membership.members) if (b.nodeId === nodeId) return id;
    for (const [id, b] of this.hints) if (b.nodeId === nodeId && this.bindingOf(id) === b) return id;
    return undefined;
  }

  /** One link per bound peer, dialled with credentials for exactly the node id it is bound to. */
  private syncLinks(): void {
    if (this.closed) return;
    const wanted = new Map<number, MemberBinding>();
    for (const id of [...this.membership.members.keys(), ...this.hints.keys()]) {
      const binding = this.bindingOf(id);
      if (binding && id !== this.options.selfId) wanted.set(id, binding);
    }
    for (const [id, link] of this.links) {
      const want = wanted.get(id);
      if (want && want.nodeId === link.binding.nodeId && want.address === link.binding.address) continue;
      link.close();
      this.links.delete(id);
    }
    for (const [id, binding] of wanted) {
      if (this.links.has(id)) continue;
      this.links.set(id, new PeerLink(id, binding, this.options.credentialsFor(binding.nodeId), this));
    }
  }

  /** Asks the members we know who the members we do not know are (rate-limited, one round at a time). */
  private lookUpMembers(): void {
    const intervalMs = this.options.lookupIntervalMs ?? 500;
    const now = Date.now();
    if (this.closed || this.lookupInFlight || now - this.lastLookupAt < intervalMs) return;
    const asked = [...this.links.values()];
    if (asked.length === 0) return;
    this.lookupInFlight = true;
    this.lastLookupAt = now;
    Promise.all(asked.map((link) => link.members(LOOKUP_TIMEOUT_MS)))
      .then((answers) => this.learn(answers.filter((a): a is MembersResponse => a !== undefined)))
      .catch((err: unknown) => this.log.warn({ err }, "asking members about an unknown sender failed"))
      .finally(() => {
        this.lookupInFlight = false;
      });
  }

  /** Takes, as hints, bindings the answers agree on for ids the log has not told us about. */
  private learn(answers: MembersResponse[]): void {
    if (this.closed) return;
    const removedAnywhere = new Set(answers.flatMap((a) => a.removed));
    const candidates = new Map<number, MemberInfo | null>();
    for (const m of answers.flatMap((a) => a.members)) {
      const known =
        m.raftId === this.options.selfId ||
        this.membership.members.has(m.raftId) ||
        this.membership.removed.has(m.raftId) ||
        this.hints.has(m.raftId) ||
        this.raftIdOfNode(m.nodeId) !== undefined;
      if (known || !m.nodeId) continue;
      const seen = candidates.get(m.raftId);
      if (seen === undefined) candidates.set(m.raftId, m);
      else if (seen && (seen.nodeId !== m.nodeId || seen.address !== m.address))
        candidates.set(m.raftId, null);
    }
    let learned = 0;
    for (const [id, m] of candidates) {
      if (!m || removedAnywhere.has(id)) continue; // members disagree, or one says it is gone: fail closed
      this.hints.set(id, { nodeId: m.nodeId, address: m.address });
      this.log.info({ member: id, nodeId: m.nodeId, address: m.address }, "learned a member from its peers");
      learned++;
    }
    if (learned > 0) this.syncLinks();
  }
}

function toMembersResponse(membership: Membership): MembersResponse {
  return {
    members: [...membership.members].map(([raftId, b]) => ({ raftId, nodeId: b.nodeId, address: b.address })),
    removed: [...membership.removed],
  };
}
