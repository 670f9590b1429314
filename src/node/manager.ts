// A manager's parts, wired together (DESIGN.md "Layers"): ClusterState replicated by a
// RaftNode over the member-bound GrpcTransport; one TLS gRPC server (Raft, the CA
// service, worker sessions, health; every call through one NodeAuthorizer); the
// control API on control.sock; the membership reconciler; and the cluster's creation
// on a new cluster. The node daemon (daemon.ts) owns it: it starts one when the node
// is or becomes a manager and stops it on a demotion.
// start() undoes what it did when a later step fails; stop() closes everything it
// started, so the process exits on its own.
import * as grpc from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import {
  NodeAuthorizer,
  type NodeRole,
  refuseUnverifiedClientCertificates,
  type TlsCredentialHolder,
} from "../ca/index.js";
import { ControlApi, ControlEndpoint, shutdown } from "../control/index.js";
import { Dispatcher } from "../dispatcher/index.js";
import { type ChangeEvent, ClusterState } from "../fsm/index.js";
import { NodeCAServiceService } from "../gen/ca/v1/ca.js";
import { DispatcherServiceService } from "../gen/dispatcher/v1/dispatcher.js";
import { type Node, RaftMembership, Role } from "../gen/fsm/v1/state.js";
import { RaftTransportServiceService } from "../gen/raft/v1/transport.js";
import { NodeCAIssuer, RootRotationReconciler } from "../issuer/index.js";
import type { Logger } from "../log/logger.js";
import type { DiskStorage } from "../raft/runtime/disk-storage.js";
import { GrpcTransport, RAFT_SERVER_OPTIONS } from "../raft/runtime/grpc-transport.js";
import type { MemberBinding } from "../raft/runtime/members.js";
import { RaftNode } from "../raft/runtime/node.js";
import { ClusterCreation } from "./cluster-creation.js";
import { NodeError } from "./errors.js";
import { MembershipReconciler } from "./membership.js";
import { managerPolicy } from "./policy.js";
import { keepRevocationListsCurrent } from "./revocation.js";
import type { NodeConfig } from "./state-dir.js";
import { stateDirPaths } from "./state-dir.js";

export interface ManagerOptions {
  stateDir: string;
  config: NodeConfig;
  /** Opened (and locked) by the caller: created by init or a join/promotion, or opened by run. */
  storage: DiskStorage;
  /** The node's TLS identity, owned by the daemon (renewals replace it in place). */
  credentials: TlsCredentialHolder;
  /** A manager joining with an empty log: the members that admitted it, by Raft id. */
  seeds?: ReadonlyMap<number, MemberBinding>;
  logger: Logger;
  /** Tunables of the session service (tests shorten the heartbeat period). */
  heartbeatPeriodMs?: number;
}

const SERVER_GRACE_MS = 1_000;

/**
 * The role the cluster grants a node now: a demoted manager is a worker as soon as it
 * left Raft (its Raft streams close then), before its worker certificate exists.
 */
function grantedRole(node: Node | undefined): NodeRole | undefined {
  if (!node) return undefined;
  const leftRaft =
    node.desiredRole === Role.ROLE_WORKER && node.membership === RaftMembership.RAFT_MEMBERSHIP_UNSPECIFIED;
  return node.role === Role.ROLE_MANAGER && !leftRaft ? "manager" : "worker";
}

/** The nodes a batch of changes touched; undefined (all) after a snapshot install. */
function touchedNodes(events: readonly ChangeEvent[]): string[] | undefined {
  const ids: string[] = [];
  for (const e of events) {
    if (e.kind === "restored") return undefined;
    if (e.kind === "node") ids.push(e.node.id);
    else if (e.kind === "nodeRemoved") ids.push(e.removed.id);
  }
  return ids;
}

export class Manager {
  readonly raft: RaftNode;
  readonly state = new ClusterState();
  /** Set once wired: worker sessions held here (for metrics and the daemon). */
  dispatcher: Dispatcher | undefined;
  issuer: NodeCAIssuer | undefined;
  /** TLS handshakes this manager's server completed (nodectl_tls_handshakes_total). */
  tlsHandshakes = 0;
  private readonly closers: (() => Promise<void> | void)[] = [];
  private stopping: Promise<void> | undefined;

  private constructor(private readonly options: ManagerOptions) {
    const { config, storage, logger } = options;
    // Followers serve joins, renewals and admin writes: each is answered once applied on
    // the follower, so the commit index goes out at once rather than with the next heartbeat.
    this.raft = new RaftNode({
      id: config.raftId,
      storage,
      stateMachine: this.state,
      logger,
      lazyCommit: false,
    });
  }

  get nodeId(): string {
    return this.options.config.nodeId;
  }

  get clusterId(): string {
    return this.options.config.clusterId;
  }

  /** Starts a manager on an opened storage; on failure everything started (and the storage) is closed. */
  static async start(options: ManagerOptions): Promise<Manager> {
    const manager = new Manager(options);
    try {
      await manager.wire();
    } catch (err) {
      await manager.stop();
      throw err;
    }
    return manager;
  }

  /** Graceful: finishes or refuses what is in flight, closes every server, stream and timer. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.options.logger.info("manager stopping");
      // The raft node owns the transport and the storage; its stop closes both.
      for (const close of this.closers.reverse()) {
        try {
          await close();
        } catch (err) {
          // One part failing to close must not leave the others open.
          this.options.logger.error({ err }, "closing a part of the manager failed");
        }
      }
    })();
    return this.stopping;
  }

  private async wire(): Promise<void> {
    const { config, logger, credentials } = this.options;
    const paths = stateDirPaths(this.options.stateDir);
    let raftStarted = false;
    this.closers.push(() => (raftStarted ? this.raft.stop() : this.options.storage.close()));

    const authorizer = new NodeAuthorizer({
      clusterId: config.clusterId,
      isNodeRemoved: (nodeId) => this.state.removedNode(nodeId) !== undefined,
      currentRole: (nodeId) => grantedRole(this.state.node(nodeId)),
      recordedNotAfter: (nodeId) => {
        const notAfterMs = this.state.node(nodeId)?.certificate?.notAfterMs;
        return notAfterMs === undefined ? undefined : new Date(notAfterMs);
      },
      logger,
      policy: managerPolicy(),
    });
    // Open streams are authorized again whenever what they were authorized on changes.
    const unwatch = this.state.watch((events) => authorizer.reauthorize(touchedNodes(events)));
    this.closers.push(() => {
      unwatch();
      authorizer.close();
    });
    // Removed nodes' certificates fail the TLS handshake itself (revocation lists), before the authorizer.
    this.closers.push(keepRevocationListsCurrent(this.state, credentials, logger));
    const transport = new GrpcTransport({
      selfId: config.raftId,
      credentialsFor: (nodeId) =>
        credentials.channelCredentials({
          clusterId: config.clusterId,
          expectedServerRole: "manager",
          expectedServerNodeId: nodeId,
        }),
      events: this.raft,
      logger,
      seeds: this.options.seeds,
    });
    const issuer = new NodeCAIssuer({
      state: this.state,
      raft: this.raft,
      callerIdentity: (call) => authorizer.peerIdentity(call),
      logger,
    });
    this.issuer = issuer;
    this.closers.push(() => issuer.close());
    const dispatcher = new Dispatcher({
      selfNodeId: config.nodeId,
      state: this.state,
      log: this.raft,
      authorizer,
      leadership: this.raft,
      managerHeard: (nodeId, withinMs) => {
        const raftId = this.state.node(nodeId)?.raftId ?? 0;
        return raftId !== 0 && this.raft.heardFrom(raftId, withinMs);
      },
      logger,
      heartbeatPeriodMs: this.options.heartbeatPeriodMs,
    });
    this.dispatcher = dispatcher;
    this.closers.push(() => dispatcher.close());
    const health = new HealthImplementation({ "": "NOT_SERVING" });
    await this.serve(authorizer, transport, issuer, dispatcher, health);

    const control = new ControlEndpoint(
      paths.controlSocket,
      new ControlApi({
        raft: this.raft,
        state: this.state,
        logger,
        renewalRefusal: (nodeId) => issuer.lastRenewalRefusal(nodeId),
        selfNodeId: this.nodeId,
      }),
      logger,
    );
    await control.start();
    this.closers.push(() => control.stop());

    this.raft.start(transport);
    raftStarted = true;
    const reconciler = new MembershipReconciler(this.raft, this.state, logger);
    this.closers.push(() => reconciler.stop());
    reconciler.start();
    const rotation = new RootRotationReconciler(this.raft, this.state, logger);
    this.closers.push(() => rotation.stop());
    rotation.start();
    const creation = new ClusterCreation(
      paths.pendingCluster,
      config.clusterId,
      this.raft,
      this.state,
      logger,
    );
    this.closers.push(() => creation.stop());
    creation.start();
    health.setStatus("", "SERVING");
    this.closers.push(() => health.setStatus("", "NOT_SERVING"));
    logger.info(
      {
        nodeId: config.nodeId,
        raftId: config.raftId,
        clusterId: config.clusterId,
        listen: config.listen,
        control: paths.controlSocket,
      },
      "manager started",
    );
  }

  private async serve(
    authorizer: NodeAuthorizer,
    transport: GrpcTransport,
    issuer: NodeCAIssuer,
    dispatcher: Dispatcher,
    health: HealthImplementation,
  ): Promise<void> {
    const server = new grpc.Server({ ...RAFT_SERVER_OPTIONS, interceptors: [authorizer.interceptor()] });
    server.addService(
      RaftTransportServiceService,
      transport.service((call) => authorizer.peerIdentity(call)?.nodeId),
    );
    server.addService(NodeCAServiceService, issuer.service());
    server.addService(DispatcherServiceService, dispatcher.service());
    health.addToServer(server);
    const listen = this.options.config.listen;
    await new Promise<number>((resolve, reject) =>
      // Client certificates are requested and verified when sent; public methods (health,
      // later the root fetch and the token-bearing join) are the only ones that do without.
      server.bindAsync(
        listen,
        this.options.credentials.serverCredentials({ requireClientCertificate: false }),
        (err, port) =>
          err
            ? reject(
                new NodeError(
                  "ADDRESS_UNAVAILABLE",
                  `cannot listen on ${listen} (${err.message}); nothing was changed. Free the port or ` +
                    "stop the process holding it",
                ),
              )
            : resolve(port),
      ),
    );
    this.closers.push(() => shutdown(server, SERVER_GRACE_MS));
    refuseUnverifiedClientCertificates(server, this.options.logger, () => {
      this.tlsHandshakes++;
    });
  }
}
