// Raft messages between managers over gRPC with mutual TLS, bound to the
// membership: the node hands the transport the applied membership (raft id ->
// node id and address, see members.ts); the client side dials each member with
// credentials that accept only a server presenting that member's node id, and
// the server side delivers a message only from the member its caller's
// certificate is bound to, addressed to this member (inbound-guard.ts).
//
// Bindings the log has not given us yet are "hints" (member-hints.ts): a joining
// member's seed list, and what a majority of the voters our log binds answer
// when a message comes from a member we do not know (we missed the change that
// added it). A hint never overrides the log and expires unless re-confirmed.
// The Members RPC answers only callers bound to a member in our log.
import * as grpc from "@grpc/grpc-js";
import type { Message } from "../../gen/raft/v1/raft.js";
import type {
  MembersResponse,
  RaftTransportServiceServer,
  SendRequest,
} from "../../gen/raft/v1/transport.js";
import type { Logger } from "../../log/logger.js";
import { InboundGuard } from "./inbound-guard.js";
import { MemberHints, type MembersAnswer } from "./member-hints.js";
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
  /** How long a hint counts unless the voters re-confirm it (default: ten lookup intervals). */
  hintTtlMs?: number;
  now?: () => number;
  random?: () => number;
}

export const RAFT_SERVER_OPTIONS: grpc.ServerOptions = {
  "grpc.max_receive_message_length": 64 * 1024 * 1024,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.http2.min_ping_interval_without_data_ms": 1_000,
};

const LOOKUP_TIMEOUT_MS = 1_000;

/** The CN (node id) of the caller's verified certificate; undefined without one. */
export type CallerIdentity = (
  call: Pick<grpc.ServerUnaryCall<unknown, unknown>, "getAuthContext">,
) => string | undefined;

export class GrpcTransport implements Transport, PeerLinkHost {
  readonly log: Logger;
  readonly events: TransportEvents;
  readonly limits: PeerLinkLimits;
  readonly guard: InboundGuard;
  private membership: Membership = {
    members: new Map(),
    removed: new Set(),
    voters: new Set(),
    removedNodeIds: new Set(),
  };
  private readonly hints: MemberHints;
  private readonly now: () => number;
  private readonly links = new Map<number, PeerLink>();
  private readonly maxSnapshotBytes: number;
  /** Senders (CNs) with a snapshot reception open: one each. */
  private readonly receivingSnapshots = new Set<string>();
  private lookupInFlight = false;
  /** Lookup rounds finished (for tests: a round that learned nothing is still a round). */
  private lookups = 0;
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
    this.now = options.now ?? Date.now;
    this.guard = new InboundGuard(options.selfId, (id) => this.bindingOf(id), this.log, this.now);
    const ttl = options.hintTtlMs ?? 10 * (options.lookupIntervalMs ?? 500);
    this.hints = new MemberHints(options.selfId, ttl, this.now, options.seeds);
    this.syncLinks();
  }

  random(): number {
    return (this.options.random ?? Math.random)();
  }

  setMembers(membership: Membership): void {
    this.membership = membership;
    this.hints.follow(membership);
    this.syncLinks();
  }

  /** Who `raftId` is: as the applied membership says, else as a live hint says (never against the log). */
  bindingOf(raftId: number): MemberBinding | undefined {
    return this.membership.members.get(raftId) ?? this.hints.get(raftId, this.membership);
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
    lookups: number;
    receivingSnapshots: number;
    peers: Map<number, { dropped: number; failures: number; lastError: string; channel: string }>;
  } {
    const peers = new Map(
      [...this.links].map(([id, l]) => [
        id,
        { dropped: l.dropped, failures: l.failures, lastError: l.lastError, channel: l.channelState() },
      ]),
    );
    return {
      refusals: { ...this.guard.refusals },
      lookups: this.lookups,
      receivingSnapshots: this.receivingSnapshots.size,
      peers,
    };
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
        receiveSnapshot(call, {
          maxSnapshotBytes: this.maxSnapshotBytes,
          caller,
          receiving: this.receivingSnapshots,
          accept: (header) => this.guard.check(header, caller) === undefined,
          refuse: (reason, fields) => this.guard.note(reason, fields),
          deliver: (m) => this.events.onMessage(m),
          done: callback,
        });
      },
      members: (call, callback) => {
        // Who is bound to whom is for members only (a stranger would learn which CN to steal).
        const caller = callerOf(call);
        const refusal = this.guard.checkMembersCaller(caller, this.membership);
        if (refusal) {
          callback({
            code: grpc.status.PERMISSION_DENIED,
            details: `${refusal}: Members is for members only`,
          });
          return;
        }
        callback(null, toMembersResponse(this.membership));
      },
    };
  }

  private receive(m: Message, caller: string | undefined): void {
    const refusal = this.guard.check(m, caller);
    if (refusal === "UNKNOWN_SENDER" && caller !== undefined) this.lookUpMembers();
    if (refusal) return;
    // A sender admitted by a hint only: ask the voters again before the hint runs out.
    if (!this.membership.members.has(m.from) && this.hints.stale(m.from)) this.lookUpMembers();
    this.links.get(m.from)?.heard();
    this.events.onMessage(m);
  }

  private raftIdOfNode(nodeId: string): number | undefined {
    for (const [id, b] of this.membership.members) if (b.nodeId === nodeId) return id;
    for (const id of this.hints.ids()) if (this.hints.get(id, this.membership)?.nodeId === nodeId) return id;
    return undefined;
  }

  /** One link per bound peer, dialled with credentials for exactly the node id it is bound to. */
  private syncLinks(): void {
    if (this.closed) return;
    const wanted = new Map<number, MemberBinding>();
    for (const id of [...this.membership.members.keys(), ...this.hints.ids()]) {
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

  /** Asks the voters our log binds who the members we do not know are (rate-limited, one round at a time). */
  private lookUpMembers(): void {
    const intervalMs = this.options.lookupIntervalMs ?? 500;
    const now = this.now();
    if (this.closed || this.lookupInFlight || now - this.lastLookupAt < intervalMs) return;
    const asked = [...this.hints.electorate(this.membership).asked.keys()]
      .map((id) => [id, this.links.get(id)] as const)
      .filter((e): e is readonly [number, PeerLink] => e[1] !== undefined);
    if (asked.length === 0) return;
    this.lookupInFlight = true;
    this.lastLookupAt = now;
    Promise.all(
      asked.map(async ([from, link]) => {
        const response = await link.members(LOOKUP_TIMEOUT_MS);
        return response && { from, response };
      }),
    )
      .then((answers) => this.learn(answers.filter((a): a is MembersAnswer => a !== undefined)))
      .catch((err: unknown) => this.log.warn({ err }, "asking members about an unknown sender failed"))
      .finally(() => {
        this.lookupInFlight = false;
        this.lookups++;
      });
  }

  /** Takes, as hints, the bindings a majority of our voters affirm for ids the log has not told us about. */
  private learn(answers: MembersAnswer[]): void {
    if (this.closed) return;
    const taken = this.hints.learn(answers, this.membership);
    for (const id of taken) {
      const b = this.bindingOf(id);
      this.log.info(
        { member: id, nodeId: b?.nodeId, address: b?.address },
        "learned a member from its peers",
      );
    }
    if (taken.length > 0) this.syncLinks();
  }
}

function toMembersResponse(membership: Membership): MembersResponse {
  return {
    members: [...membership.members].map(([raftId, b]) => ({ raftId, nodeId: b.nodeId, address: b.address })),
    removed: [...membership.removed],
    removedNodeIds: [...membership.removedNodeIds],
  };
}
