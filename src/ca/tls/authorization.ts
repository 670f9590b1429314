// Authorization of every RPC in one place (DESIGN.md "Authorization"): a grpc-js
// server interceptor reads the peer certificate the TLS layer verified and
// checks cluster, role per method, removal and expiry before any handler runs.
// Methods missing from the policy are refused, so a new RPC is closed by default.
// Streams it admitted are checked again when the cluster's state about their node
// changes (`reauthorize`) and when their certificate runs out (open-streams.ts).
import type { PeerCertificate } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "../../log/logger.js";
import {
  CaError,
  CertExpiredError,
  CertInvalidError,
  CertMissingError,
  MethodNotAllowedError,
  NodeRemovedError,
  WrongClusterError,
  WrongRoleError,
} from "../errors.js";
import { type NodeIdentity, parseNodeCertificate } from "../node-identity.js";
import type { NodeRole } from "../profile.js";
import { DeadlineTimer, type OpenStream, OpenStreamRegistry } from "./open-streams.js";

/** A public method needs no client certificate (fetching the root, the token-bearing first issuance). */
export type MethodAccess = { readonly public: true } | { readonly roles: readonly NodeRole[] };

/** Keyed by the full gRPC path, "/package.Service/Method". */
export type AuthorizationPolicy = Readonly<Record<string, MethodAccess>>;

export interface AuthorizationOptions {
  clusterId: string;
  policy: AuthorizationPolicy;
  isNodeRemoved: (nodeId: string) => boolean;
  logger: Logger;
  now?: () => Date;
  /** For metrics: one call per refusal, and per open stream closed. */
  onRefusal?: (code: CaError["code"], method: string) => void;
  /**
   * The role the cluster grants the node now (a demoted manager is "worker" here);
   * undefined when the state does not know the node. It can only narrow what the
   * certificate allows: a method must allow both roles.
   */
  currentRole?: (nodeId: string) => NodeRole | undefined;
  /**
   * Expiry of the node's latest certificate on record. A connection that outlives the
   * certificate it presented is still the node's while a renewed one is on record
   * (the hitless promise); once that one expires too, its calls are refused and its
   * streams closed.
   */
  recordedNotAfter?: (nodeId: string) => Date | undefined;
}

/** Trailing metadata key carrying the refusal's stable reason code. */
export const REASON_CODE_METADATA_KEY = "x-nodectl-reason";

const UNAUTHENTICATED_CODES: ReadonlySet<string> = new Set([
  "CERT_MISSING",
  "CERT_INVALID",
  "CERT_EXPIRED",
  "UNTRUSTED_ROOT",
]);

// A refused caller may retry in a loop: log each refusal code at most this often.
const REFUSAL_LOG_INTERVAL_MS = 5_000;

// Parsing is cheap but not free; a connection makes many calls with one certificate.
const MAX_CACHED_IDENTITIES = 4096;

interface AuthContextSource {
  getAuthContext(): { sslPeerCertificate?: PeerCertificate };
}

type StatusToSend = Parameters<grpc.ServerInterceptingCallInterface["sendStatus"]>[0];

interface TrackedStream extends OpenStream {
  readonly peer: string;
  /** Ends the call with this status; a no-op when the call already ended. */
  readonly end: (status: StatusToSend) => void;
}

export class NodeAuthorizer {
  private readonly identities = new Map<string, NodeIdentity>();
  /** Identity per live HTTP/2 session; entries go with their session. */
  private readonly byConnection = new WeakMap<object, NodeIdentity>();
  private readonly now: () => Date;
  /** Per refusal code: when it was last logged, and how many went unlogged since. */
  private readonly refusalLog = new Map<string, { at: number; suppressed: number }>();
  private readonly openStreams = new OpenStreamRegistry<TrackedStream>();
  private readonly deadlineTimer = new DeadlineTimer(() => this.closeExpiredStreams());
  private closed = false;

  constructor(private readonly options: AuthorizationOptions) {
    this.now = options.now ?? (() => new Date());
  }

  /** Open streams being tracked, and the nodes they belong to (for metrics and tests). */
  get tracking(): { streams: number; nodes: number; nextDeadline: Date | undefined } {
    const armed = this.deadlineTimer.armedFor;
    return {
      streams: this.openStreams.size,
      nodes: this.openStreams.nodeCount,
      nextDeadline: armed === undefined ? undefined : new Date(armed),
    };
  }

  /** The caller's identity, or undefined for a public method; throws the refusal otherwise. */
  authorize(method: string, call: AuthContextSource): NodeIdentity | undefined {
    const access = this.options.policy[method];
    if (!access) throw new MethodNotAllowedError(method);
    if ("public" in access) return undefined;
    const identity = this.peerIdentity(call);
    if (!identity) throw new CertMissingError();
    if (identity.clusterId !== this.options.clusterId) {
      throw new WrongClusterError(this.options.clusterId, identity.clusterId);
    }
    const now = this.now();
    // The handshake checked validity once; a long-lived connection can outlive its certificate.
    const deadlineMs = this.deadlineOf(identity.nodeId, identity.notAfter);
    if (now.getTime() > deadlineMs || now < identity.notBefore) {
      throw new CertExpiredError(
        `${identity.role} ${identity.nodeId}`,
        identity.notBefore,
        new Date(deadlineMs),
        now,
      );
    }
    if (this.options.isNodeRemoved(identity.nodeId)) throw new NodeRemovedError(identity.nodeId);
    const wrongRole = this.roleRefusal(access.roles, identity.nodeId, identity.role);
    if (wrongRole) throw wrongRole;
    return identity;
  }

  /**
   * Checks the open streams of these nodes (all when omitted) against the state now:
   * a removed node's streams end with NODE_REMOVED, a stream whose method no longer
   * allows the node's role with WRONG_ROLE, one past its deadline with CERT_EXPIRED.
   * The owner calls it after each applied batch of state changes. Returns how many closed.
   */
  reauthorize(nodeIds?: Iterable<string>): number {
    if (this.closed) return 0;
    const now = this.now();
    let closedCount = 0;
    let earliestMs = Number.POSITIVE_INFINITY;
    for (const stream of this.openStreams.snapshot(nodeIds)) {
      const refusal = this.standingRefusal(stream, now);
      if (refusal) {
        this.closeStream(stream, refusal);
        closedCount++;
      } else {
        earliestMs = Math.min(earliestMs, stream.deadlineMs);
      }
    }
    // Checking every stream finds the true earliest deadline; a subset can only bring it closer.
    if (nodeIds === undefined) this.deadlineTimer.rearm(earliestMs, now.getTime());
    else this.deadlineTimer.armBy(earliestMs, now.getTime());
    return closedCount;
  }

  /** Stops the deadline timer and forgets the open streams (the owner calls it at stop). */
  close(): void {
    this.closed = true;
    this.deadlineTimer.clear();
    this.openStreams.clear();
  }

  /** The verified peer's node identity, if it presented a trusted certificate. */
  peerIdentity(call: AuthContextSource): NodeIdentity | undefined {
    // Reading the peer certificate costs more than the rest of a small call (measured:
    // ~11% of a busy leader's CPU), and it cannot change on a TLS 1.3 connection (no
    // renegotiation): read it once per connection. Expiry, removal and role are still
    // checked on every call, against the identity read here.
    const tls = tlsConnectionOf(call);
    const known = tls && this.byConnection.get(tls.session);
    if (known) return known;
    // grpc-js returns {} when the socket is not authorized: no certificate, or one not chaining to our roots.
    const cert = call.getAuthContext().sslPeerCertificate;
    if (!cert?.raw) return undefined;
    let identity = this.identities.get(cert.fingerprint256);
    if (!identity) {
      identity = parseNodeCertificate(cert.raw);
      if (this.identities.size >= MAX_CACHED_IDENTITIES) {
        const oldest = this.identities.keys().next().value;
        if (oldest !== undefined) this.identities.delete(oldest);
      }
      this.identities.set(cert.fingerprint256, identity);
    }
    if (tls?.socket.getProtocol?.() === "TLSv1.3") this.byConnection.set(tls.session, identity);
    return identity;
  }

  interceptor(): grpc.ServerInterceptor {
    return (methodDescriptor, call) => {
      const streaming = methodDescriptor.requestStream || methodDescriptor.responseStream;
      let tracked: TrackedStream | undefined;
      let ended = false;
      const listener = new grpc.ServerListenerBuilder()
        .withOnReceiveMetadata((metadata, next) => {
          const admission = this.admit(methodDescriptor.path, call);
          if ("refusal" in admission) {
            call.sendStatus(admission.refusal);
            return;
          }
          if (streaming && admission.identity && !ended) {
            tracked = this.track(methodDescriptor.path, admission.identity, call, (status) =>
              intercepting.sendStatus(status),
            );
          }
          next(metadata);
        })
        // grpc-js calls this once whenever the call ends: status sent, cancelled, client gone.
        .withOnCancel(() => {
          ended = true;
          if (tracked) this.untrack(tracked);
        })
        .build();
      const responder = new grpc.ResponderBuilder()
        .withStart((next) => next(listener))
        // The handler (or a close) is ending the call: no check may close it on top of that.
        .withSendStatus((status, next) => {
          ended = true;
          if (tracked) this.untrack(tracked);
          next(status);
        })
        .build();
      const intercepting = new grpc.ServerInterceptingCall(call, responder);
      return intercepting;
    };
  }

  private track(
    method: string,
    identity: NodeIdentity,
    call: grpc.ServerInterceptingCallInterface,
    end: (status: StatusToSend) => void,
  ): TrackedStream | undefined {
    const access = this.options.policy[method];
    if (this.closed || !access || "public" in access) return undefined;
    const stream: TrackedStream = {
      nodeId: identity.nodeId,
      method,
      allowedRoles: access.roles,
      certificateRole: identity.role,
      notBefore: identity.notBefore,
      notAfter: identity.notAfter,
      deadlineMs: this.deadlineOf(identity.nodeId, identity.notAfter),
      peer: call.getPeer(),
      end,
    };
    this.openStreams.add(stream);
    this.deadlineTimer.armBy(stream.deadlineMs, this.now().getTime());
    return stream;
  }

  private untrack(stream: TrackedStream): void {
    this.openStreams.delete(stream);
    if (this.openStreams.size === 0) this.deadlineTimer.clear();
  }

  /** Why this open stream may not go on, judged on the state now; refreshes its deadline. */
  private standingRefusal(stream: TrackedStream, now: Date): CaError | undefined {
    if (this.options.isNodeRemoved(stream.nodeId)) return new NodeRemovedError(stream.nodeId);
    const wrongRole = this.roleRefusal(stream.allowedRoles, stream.nodeId, stream.certificateRole);
    if (wrongRole) return wrongRole;
    stream.deadlineMs = this.deadlineOf(stream.nodeId, stream.notAfter);
    if (now.getTime() > stream.deadlineMs) {
      const subject = `${stream.certificateRole} ${stream.nodeId}`;
      return new CertExpiredError(subject, stream.notBefore, new Date(stream.deadlineMs), now);
    }
    return undefined;
  }

  /** The deadline timer's work: closes the streams past their deadline, arms for the next one. */
  private closeExpiredStreams(): void {
    if (this.closed) return;
    const now = this.now();
    let earliestMs = Number.POSITIVE_INFINITY;
    for (const stream of this.openStreams.snapshot()) {
      // Only a stream that looks expired is checked: the state may hold a renewal since.
      const refusal = stream.deadlineMs < now.getTime() ? this.standingRefusal(stream, now) : undefined;
      if (refusal) this.closeStream(stream, refusal);
      else earliestMs = Math.min(earliestMs, stream.deadlineMs);
    }
    this.deadlineTimer.rearm(earliestMs, now.getTime());
  }

  private closeStream(stream: TrackedStream, refusal: CaError): void {
    // Unregistered first: a second check before grpc-js reports the end must not close it again.
    if (!this.openStreams.delete(stream)) return;
    const status = this.refusalStatus(refusal, stream.method, stream.peer, true);
    try {
      stream.end(status);
    } catch (error) {
      // grpc-js ignores a status on a call that already ended; should a version throw instead,
      // the call is over either way and this check must go on with the other streams.
      this.options.logger.debug({ err: error, method: stream.method }, "closing an ended stream failed");
    }
    if (this.openStreams.size === 0) this.deadlineTimer.clear();
  }

  /** Until when the node's connection may be used: the presented notAfter or a later one on record. */
  private deadlineOf(nodeId: string, presentedNotAfter: Date): number {
    const recorded = this.options.recordedNotAfter?.(nodeId)?.getTime();
    const presented = presentedNotAfter.getTime();
    return recorded !== undefined && recorded > presented ? recorded : presented;
  }

  /** The certificate grants the role; the state may have taken it away since (demotion). */
  private roleRefusal(
    allowed: readonly NodeRole[],
    nodeId: string,
    certificateRole: NodeRole,
  ): WrongRoleError | undefined {
    if (!allowed.includes(certificateRole)) return new WrongRoleError(allowed, certificateRole);
    const current = this.options.currentRole?.(nodeId);
    if (current !== undefined && !allowed.includes(current)) return new WrongRoleError(allowed, current);
    return undefined;
  }

  /** Logs a refusal, at most once per code per interval, with how many were not logged since. */
  private logRefusal(refusal: CaError, method: string, peer: string, openStream: boolean): void {
    const now = this.now().getTime();
    const last = this.refusalLog.get(refusal.code);
    if (last && now - last.at < REFUSAL_LOG_INTERVAL_MS) {
      last.suppressed++;
      return;
    }
    this.refusalLog.set(refusal.code, { at: now, suppressed: 0 });
    const suppressed = last?.suppressed ?? 0;
    const fields = { code: refusal.code, method, peer, suppressed, ...(openStream ? { openStream } : {}) };
    this.options.logger.warn(fields, refusal.message);
  }

  private admit(
    method: string,
    call: grpc.ServerInterceptingCallInterface,
  ): { identity: NodeIdentity | undefined } | { refusal: StatusToSend } {
    try {
      return { identity: this.authorize(method, call) };
    } catch (error) {
      return { refusal: this.refusalStatus(asCaError(error), method, call.getPeer(), false) };
    }
  }

  /** Logs and counts a refusal; the status that carries it to the caller. */
  private refusalStatus(refusal: CaError, method: string, peer: string, openStream: boolean): StatusToSend {
    this.logRefusal(refusal, method, peer, openStream);
    this.options.onRefusal?.(refusal.code, method);
    const metadata = new grpc.Metadata();
    metadata.set(REASON_CODE_METADATA_KEY, refusal.code);
    return {
      code: UNAUTHENTICATED_CODES.has(refusal.code)
        ? grpc.status.UNAUTHENTICATED
        : grpc.status.PERMISSION_DENIED,
      details: `${refusal.code}: ${refusal.message}`,
      metadata,
    };
  }
}

/**
 * The HTTP/2 session and TLS socket a server call arrived on. grpc-js does not expose
 * them, so this reads its call's `stream` field; when a grpc-js upgrade moves it, this
 * returns undefined and every call reads the certificate again (slower, still correct).
 * test/ca/authorization.test.ts fails on that, so the upgrade is noticed.
 */
function tlsConnectionOf(
  call: object,
): { session: object; socket: { getProtocol?(): string | null } } | undefined {
  const session = (call as { stream?: { session?: { socket?: unknown } } }).stream?.session;
  const socket = session?.socket;
  if (!session || typeof socket !== "object" || socket === null) return undefined;
  return { session, socket: socket as { getProtocol?(): string | null } };
}

function asCaError(error: unknown): CaError {
  // Anything unexpected came from reading the certificate: refuse it as invalid rather than crash the call.
  return error instanceof CaError ? error : new CertInvalidError(String(error), { cause: error });
}

/** A refused client's reason code, read from the status a NodeAuthorizer sent. */
export function refusalReasonOf(error: grpc.ServiceError): string | undefined {
  const value = error.metadata?.get(REASON_CODE_METADATA_KEY)[0];
  return typeof value === "string" ? value : undefined;
}

/**
 * A failed call's message for a person: its details without the reason code the caller
 * prints itself in front, and without grpc-js's empty "Resolution note:" tail.
 */
export function callErrorMessage(error: grpc.ServiceError, code?: string): string {
  let text = error.details || error.message;
  if (code && text.startsWith(`${code}: `)) text = text.slice(code.length + 2);
  return text.replace(/\.?\s*Resolution note:\s*$/, "").trim();
}
