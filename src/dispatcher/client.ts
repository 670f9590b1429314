// The dispatcher's client side, for the node daemon: keeps one session open to one
// manager, picked by weight from the persisted list; heartbeats every period with
// jitter; when the session ends (its manager died or stopped, it refused us) it
// reconnects to another manager after an exponential backoff with full jitter.
// Nothing here looks at who leads Raft: a leader change never moves a session.
import { EventEmitter } from "node:events";
import * as grpc from "@grpc/grpc-js";
import {
  DispatcherServiceClient,
  type RenewInstruction,
  type SessionMessage,
} from "../gen/dispatcher/v1/dispatcher.js";
import type { Role } from "../gen/fsm/v1/state.js";
import type { Logger } from "../log/logger.js";
import { fullJitterDelayMs, pickManager, type WeightedManager } from "./backoff.js";
import { reasonOf, retryAfterMsOf } from "./errors.js";

export interface SessionClientEvents {
  managers: [managers: WeightedManager[]];
  trustBundle: [rootsPem: string];
  desiredRole: [role: Role];
  renew: [instruction: RenewInstruction];
  /** A session is open on this manager. */
  connected: [managerId: string];
  /** The session ended; a reconnect follows unless the client stopped or the node was removed. */
  disconnected: [managerId: string, reason: string];
}

export interface SessionClientOptions {
  /** The persisted managers list (node.json's): read at start. */
  loadManagers(): WeightedManager[] | Promise<WeightedManager[]>;
  /** Persists a list a manager pushed, so a restarted node starts from it. */
  saveManagers(managers: WeightedManager[]): void | Promise<void>;
  /** Credentials that accept only that manager's certificate. */
  credentialsFor(manager: WeightedManager): grpc.ChannelCredentials;
  logger: Logger;
  /** Until a manager says otherwise. */
  heartbeatPeriodMs?: number;
  /**
   * A manager's own node id: it holds its session on another manager whenever there is
   * one, so that its liveness is watched by someone else (a manager holding its own
   * session would never be seen down, nor would its orphaned nodes be adopted).
   */
  selfId?: string;
  /** Key ids of the roots the node trusts now, sent with each heartbeat (a rotation's confirmation). */
  trustedRootKeyIds?: () => string[];
  /** The issuer key id of the certificate the node presents now, sent with each heartbeat. */
  certificateIssuerKeyId?: () => string;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  random?: () => number;
}

type Live = {
  manager: WeightedManager;
  client: DispatcherServiceClient;
  stream: grpc.ClientReadableStream<SessionMessage>;
  sessionId: string;
  heartbeatTimer?: NodeJS.Timeout;
  failedHeartbeats: number;
  ended: boolean;
};

/** Consecutive failed heartbeats (not refusals) after which the session is given up. */
const MAX_FAILED_HEARTBEATS = 3;

export class SessionClient extends EventEmitter<SessionClientEvents> {
  private managers: WeightedManager[] = [];
  private live: Live | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private periodMs: number;
  private stopped = true;
  private readonly random: () => number;
  private readonly logger: Logger;
  /** Sessions this process opened (the daemon exports it as nodectl_session_connects_total). */
  sessionConnects = 0;

  constructor(private readonly options: SessionClientOptions) {
    super();
    this.periodMs = options.heartbeatPeriodMs ?? 5_000;
    this.random = options.random ?? Math.random;
    this.logger = options.logger.child({ component: "session-client" });
  }

  /** The manager holding the session now, if one is open. */
  get managerId(): string | undefined {
    return this.live?.sessionId ? this.live.manager.nodeId : undefined;
  }

  /**
   * The open session's channel and the manager it reaches, for calls that should ride the
   * same connection (a renewal: no new connection, no new handshake). Closed with the
   * session: a call on it then fails and its caller retries elsewhere.
   */
  openChannel(): { managerId: string; channel: grpc.ChannelInterface } | undefined {
    const live = this.live;
    if (!live?.sessionId || live.ended) return undefined;
    return { managerId: live.manager.nodeId, channel: live.client.getChannel() };
  }

  async start(): Promise<void> {
    this.managers = [...(await this.options.loadManagers())];
    this.stopped = false;
    this.connect(undefined);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    if (this.live) this.teardown(this.live);
    this.live = undefined;
  }

  private connect(avoid: string | undefined): void {
    if (this.stopped) return;
    const manager = pickManager(this.candidates(), this.random, avoid);
    if (!manager) {
      this.logger.error("no manager to connect to: the persisted managers list is empty");
      this.scheduleReconnect(undefined, undefined);
      return;
    }
    const client = new DispatcherServiceClient(manager.address, this.options.credentialsFor(manager), {
      "grpc.enable_channelz": 0,
      // The certificate names roles and node ids, not addresses (checked by the credentials).
      "grpc.ssl_target_name_override": "manager",
    });
    const stream = client.session({});
    const live: Live = { manager, client, stream, sessionId: "", failedHeartbeats: 0, ended: false };
    this.live = live;
    stream.on("data", (message: SessionMessage) => this.onMessage(live, message));
    stream.on("error", (error: grpc.ServiceError) => this.onEnd(live, error));
    stream.on("end", () => this.onEnd(live, undefined));
  }

  private onMessage(live: Live, message: SessionMessage): void {
    const m = message.message;
    if (!m || live.ended) return;
    switch (m.$case) {
      case "opened":
        live.sessionId = m.value.sessionId;
        this.periodMs = m.value.heartbeatPeriodMs || this.periodMs;
        this.attempt = 0;
        this.sessionConnects++;
        this.scheduleHeartbeat(live);
        this.logger.info({ manager: live.manager.nodeId }, "session opened");
        this.emit("connected", live.manager.nodeId);
        return;
      case "managers": {
        const managers = m.value.managers.map((x) => ({
          nodeId: x.nodeId,
          address: x.address,
          weight: x.weight,
        }));
        if (managers.length > 0) this.managers = managers;
        this.leaveSelf(live);
        Promise.resolve(this.options.saveManagers(managers)).catch((error: unknown) =>
          this.logger.warn({ err: String(error) }, "could not persist the managers list"),
        );
        this.emit("managers", managers);
        return;
      }
      case "trustBundle":
        this.emit("trustBundle", m.value.rootsPem);
        return;
      case "desiredRole":
        this.emit("desiredRole", m.value.role);
        return;
      case "renew":
        this.emit("renew", m.value);
        return;
    }
  }

  /** The managers to pick from: never this node itself while another exists. */
  private candidates(): WeightedManager[] {
    const others = this.managers.filter((m) => m.nodeId !== this.options.selfId);
    return others.length > 0 ? others : this.managers;
  }

  /** A manager whose session is on itself moves it once another manager is known. */
  private leaveSelf(live: Live): void {
    const selfId = this.options.selfId;
    if (!selfId || live.manager.nodeId !== selfId || this.candidates().every((m) => m.nodeId === selfId))
      return;
    this.logger.info("moving this manager's own session to another manager");
    this.teardown(live);
    if (this.live === live) this.live = undefined;
    this.connect(selfId);
  }

  private scheduleHeartbeat(live: Live): void {
    // ±10 %: nodes that connected together do not heartbeat together forever.
    const delayMs = Math.floor(this.periodMs * (0.9 + 0.2 * this.random()));
    live.heartbeatTimer = setTimeout(() => this.heartbeat(live), delayMs);
  }

  /** Heartbeats now (the node's trust changed: its manager should hear it at once), then every period again. */
  heartbeatNow(): void {
    const live = this.live;
    if (!live?.sessionId || live.ended) return;
    clearTimeout(live.heartbeatTimer);
    this.heartbeat(live);
  }

  private heartbeat(live: Live): void {
    if (live.ended) return;
    const deadline = new Date(Date.now() + this.periodMs);
    live.client.heartbeat(
      {
        sessionId: live.sessionId,
        trustedRootKeyIds: this.options.trustedRootKeyIds?.() ?? [],
        certificateIssuerKeyId: this.options.certificateIssuerKeyId?.() ?? "",
      },
      new grpc.Metadata(),
      { deadline },
      (error, response) => {
        if (live.ended) return;
        if (!error) {
          live.failedHeartbeats = 0;
          this.periodMs = response?.heartbeatPeriodMs || this.periodMs;
        } else if (error.code === grpc.status.NOT_FOUND || ++live.failedHeartbeats >= MAX_FAILED_HEARTBEATS) {
          this.onEnd(live, error);
          return;
        }
        this.scheduleHeartbeat(live);
      },
    );
  }

  private onEnd(live: Live, error: grpc.ServiceError | undefined): void {
    if (live.ended) return;
    this.teardown(live);
    if (this.live === live) this.live = undefined;
    const reason = error
      ? (reasonOf(error) ?? `${grpc.status[error.code]}: ${error.details}`)
      : "stream ended";
    this.logger.info({ manager: live.manager.nodeId, reason }, "session ended");
    this.emit("disconnected", live.manager.nodeId, reason);
    if (reason === "NODE_REMOVED") {
      // Reconnecting cannot help: the node must join again.
      this.stopped = true;
      return;
    }
    this.scheduleReconnect(live.manager.nodeId, error ? retryAfterMsOf(error) : undefined);
  }

  private scheduleReconnect(avoid: string | undefined, retryAfterMs: number | undefined): void {
    if (this.stopped) return;
    const jittered = fullJitterDelayMs(
      this.attempt++,
      this.options.backoffBaseMs ?? 200,
      this.options.backoffMaxMs ?? 30_000,
      this.random,
    );
    const delayMs = Math.max(jittered, retryAfterMs ?? 0);
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect(avoid);
    }, delayMs);
  }

  private teardown(live: Live): void {
    live.ended = true;
    clearTimeout(live.heartbeatTimer);
    live.stream.removeAllListeners("data");
    live.stream.on("error", () => {}); // the cancel below reports CANCELLED: expected
    live.stream.cancel();
    live.client.close();
  }
}
