// The dispatcher's server side, on every manager (leader or not): it holds the
// sessions of the nodes connected here, pushes them what the replicated state says
// they must know, tracks their liveness in memory and commits only transitions.
// Sessions never depend on who leads: proposals go through the runtime, which
// forwards them to whichever member leads.
import { randomBytes } from "node:crypto";
import type * as grpc from "@grpc/grpc-js";
import type { AuthorizationPolicy, NodeAuthorizer } from "../ca/index.js";
import {
  type ChangeEvent,
  type ClusterState,
  type CommandLog,
  proposeCommand,
  renewedFor,
} from "../fsm/index.js";
import type {
  DispatcherServiceServer,
  HeartbeatRequest,
  HeartbeatResponse,
  LeaveRequest,
  LeaveResponse,
  Manager,
  SessionMessage,
  SessionRequest,
} from "../gen/dispatcher/v1/dispatcher.js";
import { type Node, NodeStatus, Role, RotationPhase } from "../gen/fsm/v1/state.js";
import type { Logger } from "../log/logger.js";
import type { LeadershipEvents } from "../raft/runtime/seam.js";
import { DispatcherRefusal, refusals } from "./errors.js";
import { LivenessTracker, TransitionBatcher } from "./liveness.js";
import {
  managerListOf,
  renewInstructionFor,
  sameManagerList,
  trustBundleOf,
  UP_MANAGER_WEIGHT,
} from "./pushes.js";
import { TrustRecorder } from "./trust-recorder.js";

/** Who may call what: any node of this cluster, manager or worker, may hold a session. */
export const DISPATCHER_POLICY: AuthorizationPolicy = {
  "/dispatcher.v1.DispatcherService/Session": { roles: ["worker", "manager"] },
  "/dispatcher.v1.DispatcherService/Heartbeat": { roles: ["worker", "manager"] },
  "/dispatcher.v1.DispatcherService/Leave": { roles: ["worker", "manager"] },
};

export interface DispatcherOptions {
  /** This manager's node id: sessions opened here are recorded on it. */
  selfNodeId: string;
  state: ClusterState;
  log: CommandLog;
  /** Reads the caller's verified certificate (its interceptor has authorized the call already). */
  authorizer: Pick<NodeAuthorizer, "peerIdentity">;
  /**
   * Whether this member leads (the leader alone adopts the orphans of managers that are down),
   * and its changes (a batch of transitions in flight is then sent again).
   */
  leadership?: Pick<LeadershipEvents, "leadership"> & Partial<Pick<LeadershipEvents, "onLeadershipChange">>;
  logger: Logger;
  heartbeatPeriodMs?: number;
  /**
   * Whether this manager (node id) has been heard from lately by other means (the Raft
   * log's own traffic): the leader does not adopt the sessions of a manager it hears,
   * whatever that manager's own session status says.
   */
  managerHeard?(managerNodeId: string, withinMs: number): boolean;
  /** A node silent this many periods is down. */
  missedPeriods?: number;
  maxSessions?: number;
  /** Rotation renewals are spread uniformly over this window (unless the rotation names its own). */
  renewSpreadWindowMs?: number;
  /** The wait a node refused for the session bound is told to respect. */
  sessionLimitRetryAfterMs?: number;
  transitionBatchMs?: number;
  transitionRetryMs?: number;
  /** A node that does not read its stream is cut off past this many buffered bytes. */
  maxBufferedBytesPerSession?: number;
  now?: () => number;
  random?: () => number;
}

interface OpenSession {
  readonly id: string;
  readonly nodeId: string;
  readonly call: grpc.ServerWritableStream<SessionRequest, SessionMessage>;
  managers: Manager[];
  trustBundlePem: string;
  desiredRole: Role;
  /** The last renewal told, so a repeated change event does not tell it again. */
  renewKey: string;
  /** When a rotation's renewal was last told (a node that did not act is told again). */
  renewToldAtMs: number;
  renewDelayMs: number;
  readonly openedAtMs: number;
  /** Said once: the state records this node's session on another live manager. */
  warnedHeldElsewhere?: boolean;
}

export class Dispatcher {
  private readonly sessions = new Map<string, OpenSession>();
  private readonly batcher: TransitionBatcher;
  private readonly trust: TrustRecorder;
  private readonly liveness: LivenessTracker;
  private readonly logger: Logger;
  private readonly periodMs: number;
  private readonly silentAfterMs: number;
  private readonly maxSessions: number;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly sweepTimer: NodeJS.Timeout;
  private readonly unwatch: () => void;
  private readonly unwatchLeadership: () => void;
  private managers: Manager[];
  private stopped = false;
  private lastOrphanScanMs = Number.NEGATIVE_INFINITY;
  /** Sessions opened here since start, and heartbeats accepted (for metrics and tests). */
  sessionsOpened = 0;
  heartbeatsReceived = 0;

  constructor(private readonly options: DispatcherOptions) {
    this.logger = options.logger.child({ component: "dispatcher" });
    this.periodMs = options.heartbeatPeriodMs ?? 5_000;
    this.maxSessions = options.maxSessions ?? 10_000;
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.batcher = new TransitionBatcher({
      log: options.log,
      logger: this.logger,
      batchMs: options.transitionBatchMs ?? 100,
      retryMs: options.transitionRetryMs ?? 500,
    });
    this.silentAfterMs = this.periodMs * (options.missedPeriods ?? 3);
    this.trust = new TrustRecorder(options.log, this.logger);
    this.liveness = new LivenessTracker({
      selfId: options.selfNodeId,
      batcher: this.batcher,
      silentAfterMs: this.silentAfterMs,
      maxTracked: 2 * this.maxSessions,
      now: this.now,
    });
    this.managers = managerListOf(options.state.nodes());
    this.unwatch = options.state.watch((events) => this.onChanges(events));
    this.unwatchLeadership =
      options.leadership?.onLeadershipChange?.((now) => {
        if (now.leader === 0) return; // an election: what is in flight waits for its outcome
        this.batcher.leaderChanged();
        this.trust.leaderChanged();
      }) ?? (() => {});
    this.sweepTimer = setInterval(() => this.sweep(), Math.max(10, Math.floor(this.periodMs / 2)));
  }

  /** The gRPC service implementation, to add to the manager's server. */
  service(): DispatcherServiceServer {
    return {
      session: (call) => this.openSession(call),
      heartbeat: (call, callback) => callback(...this.heartbeat(call)),
      leave: (call, callback) => {
        this.leave(call).then(
          (nodeId) => callback(null, { nodeId }),
          (error: unknown) =>
            callback(asServiceError(error instanceof DispatcherRefusal ? error : this.leaveFailed(error))),
        );
      },
    };
  }

  get openSessions(): number {
    return this.sessions.size;
  }

  /** Transition batches that reached the log, and the transitions in them. */
  get recorded(): { proposals: number; transitions: number } {
    return { proposals: this.batcher.proposals, transitions: this.batcher.committedTransitions };
  }

  /** Ends every session (their nodes reconnect to another manager) and every timer. */
  close(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.sweepTimer);
    this.unwatch();
    this.unwatchLeadership();
    this.trust.close();
    for (const session of [...this.sessions.values()]) this.end(session, refusals.stopped());
    this.batcher.close();
    this.logger.info("dispatcher stopped");
  }

  // ---- calls -----------------------------------------------------------------------

  private openSession(call: grpc.ServerWritableStream<SessionRequest, SessionMessage>): void {
    const refusal = this.refusalToOpen(call);
    if (refusal) {
      // A node this manager's state does not show yet (its join, or a new cluster, still being
      // applied here) is told to retry: expected while a cluster forms, not worth a warning.
      const level = refusal.code === "UNKNOWN_NODE" ? "info" : "warn";
      this.logger[level]({ code: refusal.code, peer: call.getPeer() }, refusal.message);
      call.emit("error", refusal.toStatus());
      return;
    }
    const nodeId = this.options.authorizer.peerIdentity(call)?.nodeId ?? "";
    const previous = this.sessions.get(nodeId);
    if (previous) this.end(previous, refusals.superseded(nodeId));
    const session: OpenSession = {
      id: randomBytes(12).toString("hex"),
      nodeId,
      call,
      managers: [],
      trustBundlePem: "",
      desiredRole: Role.ROLE_UNSPECIFIED,
      renewKey: "",
      renewToldAtMs: 0,
      renewDelayMs: 0,
      openedAtMs: this.now(),
    };
    this.sessions.set(nodeId, session);
    this.sessionsOpened++;
    // The client went away (cancel, reset, connection lost): its liveness entry stays until it is
    // silent for the down period, so a node that comes back in time is never marked down.
    call.on("cancelled", () => this.forgetSession(session));
    call.on("error", () => this.forgetSession(session));
    this.liveness.opened(nodeId, session.openedAtMs, (id) => this.sessions.has(id));
    this.push(session, {
      $case: "opened",
      value: { sessionId: session.id, managerId: this.options.selfNodeId, heartbeatPeriodMs: this.periodMs },
    });
    this.refresh(session);
    this.logger.info({ nodeId, session: session.id, open: this.sessions.size }, "session opened");
  }

  private refusalToOpen(
    call: grpc.ServerWritableStream<SessionRequest, SessionMessage>,
  ): DispatcherRefusal | undefined {
    if (this.stopped) return refusals.stopped();
    const identity = this.options.authorizer.peerIdentity(call);
    if (!identity) return refusals.certMissing();
    const { state } = this.options;
    if (state.removedNode(identity.nodeId)) return refusals.nodeRemoved(identity.nodeId);
    const node = state.node(identity.nodeId);
    if (!node || !state.cluster()) return refusals.unknownNode(identity.nodeId);
    const notAfterMs = node.certificate?.notAfterMs;
    if (notAfterMs !== undefined && notAfterMs < this.now()) return refusals.certExpired(node.id, notAfterMs);
    // A node replacing its own session here does not grow the count.
    if (this.sessions.size >= this.maxSessions && !this.sessions.has(identity.nodeId))
      return refusals.sessionLimit(this.maxSessions, this.options.sessionLimitRetryAfterMs ?? this.periodMs);
    return undefined;
  }

  private heartbeat(
    call: grpc.ServerUnaryCall<HeartbeatRequest, HeartbeatResponse>,
  ): [grpc.ServerErrorResponse | null, HeartbeatResponse?] {
    const nodeId = this.options.authorizer.peerIdentity(call)?.nodeId;
    if (!nodeId) return [asServiceError(refusals.certMissing())];
    const session = this.sessions.get(nodeId);
    if (!session || session.id !== call.request.sessionId) {
      const refusal = this.stopped ? refusals.stopped() : refusals.noSession(nodeId);
      this.logger.info({ code: refusal.code, nodeId }, refusal.message);
      return [asServiceError(refusal)];
    }
    this.liveness.heard(nodeId, this.recordedWell(session), session.openedAtMs);
    this.heartbeatsReceived++;
    this.noteRotation(nodeId, call.request.trustedRootKeyIds, call.request.certificateIssuerKeyId);
    return [null, { heartbeatPeriodMs: this.periodMs }];
  }

  /**
   * Whether the state can stay as it is for a node heartbeating here: ready on this manager,
   * or ready on another manager that is up. The latter is not this session's story (two
   * processes with one identity, a cloned state dir): said once, and not fought over in the
   * log. Down, or ready on a manager that is down or gone: no (the heartbeat records it ready here).
   */
  private recordedWell(session: OpenSession): boolean {
    const recorded = this.options.state.node(session.nodeId);
    if (recorded?.status !== NodeStatus.NODE_STATUS_READY) return false;
    const holder = recorded.session?.managerId;
    if (holder === this.options.selfNodeId) return true;
    const elsewhereUp = this.managers.some((m) => m.nodeId === holder && m.weight === UP_MANAGER_WEIGHT);
    if (elsewhereUp && !session.warnedHeldElsewhere) {
      session.warnedHeldElsewhere = true;
      this.logger.warn(
        { nodeId: session.nodeId, session: session.id, recordedOn: holder },
        "a node heartbeats here while the cluster records its session on another live manager: two processes may share its identity",
      );
    }
    return elsewhereUp;
  }

  /** The caller removes itself, as `rm --force` would; its session closes with the removal. */
  private async leave(call: grpc.ServerUnaryCall<LeaveRequest, LeaveResponse>): Promise<string> {
    const nodeId = this.options.authorizer.peerIdentity(call)?.nodeId;
    if (!nodeId) throw refusals.certMissing();
    const node = this.options.state.node(nodeId);
    if (!node) throw refusals.unknownNode(nodeId);
    if (node.role === Role.ROLE_MANAGER || node.desiredRole === Role.ROLE_MANAGER)
      throw refusals.isManager(nodeId);
    try {
      await proposeCommand(this.options.log, {
        $case: "removeNode",
        value: { nodeId, force: true, atMs: this.now() },
      });
    } catch (error) {
      // Promoted between the check and the entry: apply refused it, nothing changed.
      if ((error as { code?: unknown }).code === "NODE_IS_MANAGER") throw refusals.isManager(nodeId);
      throw error;
    }
    this.logger.info({ nodeId }, "node left the cluster");
    return nodeId;
  }

  private leaveFailed(error: unknown): DispatcherRefusal {
    this.logger.warn({ err: String(error) }, "a leave was not recorded");
    return refusals.unavailable(error instanceof Error ? error.message : String(error));
  }

  /**
   * During a rotation: a node presenting a certificate of the new key has renewed (not
   * only had one recorded), and in the trust phase a node trusting the new root alone
   * has confirmed it.
   */
  private noteRotation(nodeId: string, trustedKeyIds: readonly string[], heldIssuerKeyId: string): void {
    const rotation = this.options.state.cluster()?.rotation;
    const newKeyId = rotation?.newRoot?.keyId;
    const node = this.options.state.node(nodeId);
    if (!newKeyId || !node) return;
    const holds = heldIssuerKeyId === newKeyId && node.heldIssuerKeyId !== newKeyId;
    const trusts =
      rotation?.phase === RotationPhase.ROTATION_PHASE_TRUST &&
      trustedKeyIds.length === 1 &&
      trustedKeyIds[0] === newKeyId &&
      node.trustedRootKeyId !== newKeyId;
    if (holds || trusts)
      this.trust.confirm(nodeId, {
        heldIssuerKeyId: holds ? newKeyId : "",
        rootKeyId: trusts ? newKeyId : "",
      });
  }

  /** A node told to renew for a rotation that has not, well after its delay, is told again (at once). */
  private retellRenewals(): void {
    const cluster = this.options.state.cluster();
    if (cluster?.rotation?.phase !== RotationPhase.ROTATION_PHASE_RENEW) return;
    const now = this.now();
    for (const session of this.sessions.values()) {
      if (!session.renewKey.startsWith("rotation/")) continue;
      if (now - session.renewToldAtMs < session.renewDelayMs + 3 * this.periodMs) continue;
      const node = this.options.state.node(session.nodeId);
      const newKeyId = cluster.rotation.newRoot?.keyId ?? "";
      if (!node || renewedFor(node, newKeyId)) continue;
      session.renewToldAtMs = now;
      session.renewDelayMs = 0;
      this.logger.info({ nodeId: node.id }, "told to renew for the rotation and has not: telling it again");
      this.push(session, { $case: "renew", value: { delayMs: 0, reason: "rotation" } });
    }
  }

  // ---- pushes ------------------------------------------------------------------------

  /** Tells a session whatever differs from what it was last told. */
  private refresh(session: OpenSession): void {
    const { state } = this.options;
    const node = state.node(session.nodeId);
    const cluster = state.cluster();
    if (!node || !cluster) return;
    if (!sameManagerList(session.managers, this.managers)) {
      session.managers = this.managers;
      this.push(session, { $case: "managers", value: { managers: this.managers } });
    }
    const trust = trustBundleOf(cluster);
    if (trust !== session.trustBundlePem) {
      session.trustBundlePem = trust;
      this.push(session, { $case: "trustBundle", value: { rootsPem: trust } });
    }
    if (node.desiredRole !== session.desiredRole) {
      session.desiredRole = node.desiredRole;
      this.push(session, { $case: "desiredRole", value: { role: node.desiredRole } });
    }
    this.maybeRenew(session, node);
  }

  private maybeRenew(session: OpenSession, node: Node): void {
    const cluster = this.options.state.cluster();
    if (!cluster) return;
    const renew = renewInstructionFor(
      node,
      cluster,
      this.options.renewSpreadWindowMs ?? 10 * 60_000,
      this.random,
    );
    if (!renew) return;
    // Told once per reason and certificate: a renewed certificate (new serial) that still needs it is told again.
    const key = `${renew.reason}/${node.certificate?.serial ?? ""}/${node.desiredRole}/${cluster.rotation?.newRoot?.keyId ?? ""}`;
    if (key === session.renewKey) return;
    session.renewKey = key;
    session.renewToldAtMs = this.now();
    session.renewDelayMs = Number(renew.delayMs);
    this.push(session, { $case: "renew", value: renew });
  }

  private push(session: OpenSession, message: NonNullable<SessionMessage["message"]>): void {
    const limit = this.options.maxBufferedBytesPerSession ?? 1024 * 1024;
    if (session.call.writableLength > limit) {
      this.logger.warn({ nodeId: session.nodeId }, "session does not read its stream; closing it");
      this.end(session, refusals.heartbeatMissed(session.nodeId, 0));
      return;
    }
    session.call.write({ message });
  }

  // ---- state changes -------------------------------------------------------------------

  private onChanges(events: readonly ChangeEvent[]): void {
    if (this.stopped) return;
    let managersChanged = false;
    const touched = new Set<string>();
    let all = false;
    for (const event of events) {
      if (event.kind === "nodeRemoved") {
        this.removed(event.removed.id);
      } else if (event.kind === "node") {
        touched.add(event.node.id);
        if (event.node.role === Role.ROLE_MANAGER || event.previous?.role === Role.ROLE_MANAGER)
          managersChanged = true;
      } else if (event.kind === "cluster" || event.kind === "restored") {
        all = true;
        managersChanged = true;
      }
    }
    if (managersChanged) {
      const next = managerListOf(this.options.state.nodes());
      if (!sameManagerList(next, this.managers)) {
        this.managers = next;
        all = true;
      }
    }
    if (all) {
      for (const session of [...this.sessions.values()]) this.reconcile(session);
      return;
    }
    for (const nodeId of touched) {
      const session = this.sessions.get(nodeId);
      if (session) this.reconcile(session);
    }
  }

  /** After a snapshot install a removed node shows up only as missing: close it like a removal. */
  private reconcile(session: OpenSession): void {
    const { state } = this.options;
    if (state.removedNode(session.nodeId) || !state.node(session.nodeId)) {
      this.removed(session.nodeId);
      return;
    }
    this.refresh(session);
  }

  private removed(nodeId: string): void {
    this.liveness.forget(nodeId);
    const session = this.sessions.get(nodeId);
    if (!session) return;
    this.end(session, refusals.nodeRemoved(nodeId));
    this.logger.info({ nodeId }, "node removed: its session is closed");
  }

  private sweep(): void {
    this.retellRenewals();
    if (this.now() - this.lastOrphanScanMs >= this.silentAfterMs) this.adoptOrphans();
    this.closeExpired();
    const orphaned = this.orphanTest();
    const self = this.options.selfNodeId;
    const stillDue = (nodeId: string, holder: string): boolean => {
      if (holder !== self) return orphaned(nodeId, holder);
      if (this.sessions.has(nodeId)) return true; // silent on an open session here
      const node = this.options.state.node(nodeId);
      const elsewhere = node?.session?.managerId;
      return !(node?.status === NodeStatus.NODE_STATUS_READY && elsewhere && elsewhere !== self);
    };
    for (const nodeId of this.liveness.sweep(stillDue)) {
      const session = this.sessions.get(nodeId);
      this.logger.warn(
        { nodeId, open: session !== undefined },
        "node silent for the down period: marked down",
      );
      if (session) this.end(session, refusals.heartbeatMissed(nodeId, this.silentAfterMs));
    }
  }

  /**
   * A session lives as long as its node holds an unexpired certificate on record, not
   * only the one it opened with: a node that renewed keeps its session (the hitless
   * promise); one that never renewed is cut off at its certificate's expiry.
   */
  private closeExpired(): void {
    const now = this.now();
    for (const session of [...this.sessions.values()]) {
      const notAfterMs = this.options.state.node(session.nodeId)?.certificate?.notAfterMs;
      if (notAfterMs === undefined || notAfterMs >= now) continue;
      const refusal = refusals.certExpired(session.nodeId, notAfterMs);
      this.logger.warn({ nodeId: session.nodeId, code: refusal.code }, refusal.message);
      this.end(session, refusal);
    }
  }

  /**
   * Nodes the state says are ready on a manager that does not watch them: on this one
   * (sessions of its previous run that never came back) or, on the leader only, on a
   * manager that is down or gone (it cannot report them itself). Each is given the down
   * period to reconnect somewhere, then recorded down. One pass over the nodes per down period.
   */
  private adoptOrphans(): void {
    this.lastOrphanScanMs = this.now();
    const orphaned = this.orphanTest();
    for (const node of this.options.state.nodes()) {
      const holder = node.session?.managerId;
      if (node.status !== NodeStatus.NODE_STATUS_READY || !holder || this.liveness.isTracked(node.id))
        continue;
      if (orphaned(node.id, holder)) {
        this.liveness.adopt(node.id, holder);
        this.logger.info({ nodeId: node.id, manager: holder }, "session not watched by any manager: adopted");
      }
    }
  }

  /**
   * Whether a node recorded ready on `holder` has no manager watching it: on this manager,
   * when its session here is gone; on another, only for the leader, when that manager is
   * down or gone and Raft has not heard it for the down period either. Asked when a node is
   * adopted and again before an adopted node is recorded down (the holder may be back).
   */
  private orphanTest(): (nodeId: string, holder: string) => boolean {
    const self = this.options.selfNodeId;
    const leads = this.options.leadership?.leadership().isSelf ?? false;
    let liveManagers: Set<string> | undefined;
    return (nodeId, holder) => {
      if (holder === self) return !this.sessions.has(nodeId);
      if (!leads) return false;
      liveManagers ??= new Set(
        this.managers.filter((m) => m.weight === UP_MANAGER_WEIGHT).map((m) => m.nodeId),
      );
      return !liveManagers.has(holder) && !this.options.managerHeard?.(holder, this.silentAfterMs);
    };
  }

  // ---- session ends ---------------------------------------------------------------------

  private end(session: OpenSession, why: DispatcherRefusal): void {
    this.forgetSession(session);
    session.call.emit("error", why.toStatus());
  }

  private forgetSession(session: OpenSession): void {
    if (this.sessions.get(session.nodeId) === session) this.sessions.delete(session.nodeId);
  }
}

function asServiceError(refusal: DispatcherRefusal): grpc.ServerErrorResponse {
  const status = refusal.toStatus();
  return Object.assign(new Error(status.details), {
    code: status.code,
    details: status.details,
    metadata: status.metadata,
  });
}
