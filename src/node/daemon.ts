// The node daemon: one process per node, worker or manager (DESIGN.md "Layers":
// src/node is where a process is wired). Every node holds its TLS identity, one
// session to a manager (SessionClient: managers hold one too, so `ls` shows them
// ready), and the renewal loop. A manager also runs its Manager (Raft, CA service,
// sessions, control). Role changes happen live, by renewal:
// - promote: the session says renew; the new certificate is a manager's and comes with
//   the Raft id the log assigned and the current members; the daemon creates an empty
//   Raft state dir and starts its Manager, which the leader adds as a learner, then
//   promotes;
// - demote: the leader removes the node from Raft (handing leadership over first if it
//   is the one), then the session says renew; the certificate is a worker's; the daemon
//   stops its Manager and drops its Raft data.
// node.json follows each change; a crash between the certificate and node.json is
// repaired at the next start (the certificate, the newer fact, wins).
import { rmSync } from "node:fs";
import { rootKeyIdsOf, type TlsCredentialHolder, writeCertificateFile } from "../ca/index.js";
import { SessionClient, type WeightedManager } from "../dispatcher/index.js";
import type { RaftBinding } from "../gen/ca/v1/ca.js";
import { checkNodeOnRecord, IssuerCallError, type RenewedCertificate } from "../issuer/index.js";
import type { Logger } from "../log/logger.js";
import { joiningState } from "../raft/core/bootstrap.js";
import { DiskStorage } from "../raft/runtime/disk-storage.js";
import type { MemberBinding } from "../raft/runtime/members.js";
import { loadNodeCredentials } from "./credentials.js";
import { NodeError } from "./errors.js";
import { Manager } from "./manager.js";
import { NodeMetrics } from "./metrics.js";
import { RenewalLoop } from "./renewal.js";
import { type NodeConfig, type StateDirPaths, stateDirPaths, writeNodeConfig } from "./state-dir.js";
import { lockStateDir, type StateDirLock } from "./state-lock.js";

export interface NodeDaemonOptions {
  stateDir: string;
  config: NodeConfig;
  /** A manager's Raft state, opened (and locked) by the caller; absent for a worker. */
  storage?: DiskStorage;
  /** A manager joining with an empty log: the members that admitted it. */
  seeds?: ReadonlyMap<number, MemberBinding>;
  metricsAddress?: string;
  logger: Logger;
  /** Tests shorten these. */
  heartbeatPeriodMs?: number;
  /** The state dir's lock, taken by the caller (init, join, run); the daemon owns it from start. */
  lock?: StateDirLock;
}

export class NodeDaemon {
  private config: NodeConfig;
  private readonly paths: StateDirPaths;
  readonly credentials: TlsCredentialHolder;
  readonly session: SessionClient;
  readonly renewal: RenewalLoop;
  readonly metrics: NodeMetrics;
  private managerPart: Manager | undefined;
  private transition: Promise<void> = Promise.resolve();
  /** node.json writes, one at a time, each writing the config as it is then (the last write wins with the latest). */
  private configWrites: Promise<void> = Promise.resolve();
  private stopping: Promise<void> | undefined;
  private fatalListeners = new Set<(error: Error) => void>();
  private failedConnects = 0;
  private readonly logger: Logger;

  /** This process's hold on the state dir, released last when it stops. */
  private lock: StateDirLock | undefined;

  private constructor(private readonly options: NodeDaemonOptions) {
    this.config = options.config;
    this.paths = stateDirPaths(options.stateDir);
    this.logger = options.logger;
    this.credentials = loadNodeCredentials(this.paths, this.config, this.logger);
    this.session = new SessionClient({
      loadManagers: () => this.config.managers.map((m) => ({ ...m, weight: m.weight ?? 1 })),
      saveManagers: (managers) => this.saveManagers(managers),
      credentialsFor: (manager) =>
        this.credentials.channelCredentials({
          clusterId: this.config.clusterId,
          expectedServerRole: "manager",
          expectedServerNodeId: manager.nodeId,
        }),
      logger: this.logger,
      heartbeatPeriodMs: options.heartbeatPeriodMs,
      selfId: this.config.nodeId,
      trustedRootKeyIds: () => this.trustedRootKeyIds(),
      certificateIssuerKeyId: () => this.credentials.currentIdentity.issuerKeyId,
    });
    this.renewal = new RenewalLoop({
      holder: this.credentials,
      paths: this.paths,
      clusterId: this.config.clusterId,
      managers: () => this.renewalManagers(),
      sessionChannel: () => this.session.openChannel(),
      onRenewed: (renewed) => this.onRenewed(renewed),
      onRefused: (error) => this.fail(error),
      logger: this.logger,
    });
    this.metrics = new NodeMetrics({
      manager: () => this.managerPart,
      sessionConnects: () => this.session.sessionConnects,
      renewals: () => this.renewal.renewals,
    });
  }

  get nodeId(): string {
    return this.config.nodeId;
  }

  get clusterId(): string {
    return this.config.clusterId;
  }

  get role(): NodeConfig["role"] {
    return this.config.role;
  }

  /** The manager part, while this node is a manager. */
  get manager(): Manager | undefined {
    return this.managerPart;
  }

  /** Starts a node; on failure everything started (and the storage) is closed. */
  static async start(options: NodeDaemonOptions): Promise<NodeDaemon> {
    let daemon: NodeDaemon;
    let lock: StateDirLock | undefined;
    try {
      lock = options.lock ?? (await lockStateDir(options.stateDir));
      daemon = new NodeDaemon(options);
      daemon.lock = lock;
    } catch (err) {
      await lock?.release();
      await options.storage?.close();
      throw err;
    }
    try {
      await daemon.wire();
    } catch (err) {
      await daemon.stop();
      throw err;
    }
    return daemon;
  }

  /** Called once if the node cannot go on (removed from the cluster, its Raft member failed). */
  onFatal(listener: (error: Error) => void): void {
    this.fatalListeners.add(listener);
  }

  /** Graceful and idempotent: the session, the renewal loop, the manager part, metrics. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      try {
        this.session.stop();
        await this.renewal.stop();
        await this.transition.catch(() => undefined);
        await this.stopManager();
        await this.metrics.close();
        await this.configWrites;
      } finally {
        await this.lock?.release();
      }
    })();
    return this.stopping;
  }

  private async wire(): Promise<void> {
    const { config } = this;
    if (this.options.metricsAddress) await this.metrics.listen(this.options.metricsAddress, this.logger);
    const certRole = this.credentials.currentIdentity.role;
    if (config.role === "manager" && certRole === "manager") {
      if (!this.options.storage) throw new Error("a manager starts with its Raft storage");
      await this.startManager(this.options.storage, this.options.seeds);
    } else if (config.role === "manager") {
      // Crashed between a demotion's worker certificate and node.json: finish the demotion.
      await this.options.storage?.close();
      await this.becomeWorker();
    }
    this.session.on("renew", (instruction) =>
      this.renewal.renewIn(Number(instruction.delayMs), instruction.reason),
    );
    this.session.on("trustBundle", (pem) => {
      this.adoptTrustBundle(pem).catch((err: unknown) =>
        this.logger.error(
          { err: String(err) },
          "could not take the trust bundle a manager pushed; keeping the old one",
        ),
      );
    });
    this.session.on("connected", () => {
      this.failedConnects = 0;
    });
    this.session.on("disconnected", (manager, reason) => {
      if (reason === "NODE_REMOVED") this.fail(removedError(config.nodeId));
      else if (++this.failedConnects % REMOVAL_CHECK_EVERY === 0) this.checkStillMember(manager);
    });
    await this.session.start();
    this.renewal.start();
    // Crashed between a promotion's manager certificate and node.json: renew again to learn the Raft id.
    if (config.role === "worker" && certRole === "manager") this.renewal.renewIn(0, "resume promotion");
    this.logger.info({ nodeId: config.nodeId, role: config.role }, "node started");
  }

  private async startManager(
    storage: DiskStorage,
    seeds?: ReadonlyMap<number, MemberBinding>,
  ): Promise<void> {
    const manager = await Manager.start({
      stateDir: this.options.stateDir,
      config: this.config,
      storage,
      credentials: this.credentials,
      seeds,
      logger: this.logger,
      heartbeatPeriodMs: this.options.heartbeatPeriodMs,
    });
    manager.raft.on("fatal", (err: unknown) =>
      this.fail(err instanceof Error ? err : new Error(String(err))),
    );
    this.managerPart = manager;
    this.metrics.attach(manager);
  }

  private async stopManager(): Promise<void> {
    const manager = this.managerPart;
    this.managerPart = undefined;
    if (manager) await manager.stop();
  }

  private onRenewed(renewed: RenewedCertificate): Promise<void> {
    // The manager hears at once which certificate this node presents now (a rotation waits for it).
    this.session.heartbeatNow();
    const next = this.transition.then(async () => {
      if (renewed.role === "manager" && this.config.role === "worker") await this.becomeManager(renewed.raft);
      else if (renewed.role === "worker" && this.config.role === "manager") await this.becomeWorker();
    });
    this.transition = next.catch((err: unknown) =>
      this.fail(err instanceof Error ? err : new Error(String(err))),
    );
    return this.transition;
  }

  private async becomeManager(raft: RaftBinding | undefined): Promise<void> {
    if (this.stopping) return;
    if (!raft || raft.raftId === 0)
      throw new NodeError(
        "STATE_DIR_CORRUPT",
        "the manager certificate came without a Raft member id; retry the promotion",
      );
    if (!this.config.listen)
      throw new NodeError(
        "NOT_SUPPORTED",
        "promoted, but this node was joined without --listen: a manager must serve. Demote it, " +
          "then join a node with --listen",
      );
    this.logger.info({ raftId: raft.raftId }, "promoted: starting the manager part");
    rmSync(this.paths.raft, { recursive: true, force: true });
    const storage = await DiskStorage.create(this.paths.raft, Number(raft.raftId), joiningState(), {
      logger: this.logger,
    });
    this.config = { ...this.config, role: "manager", raftId: Number(raft.raftId) };
    await this.persistConfig();
    await this.startManager(storage, seedsOf(raft));
  }

  private async becomeWorker(): Promise<void> {
    this.logger.info("demoted: stopping the manager part and dropping its Raft data");
    await this.stopManager();
    this.config = { ...this.config, role: "worker", raftId: 0 };
    await this.persistConfig();
    rmSync(this.paths.raft, { recursive: true, force: true });
    rmSync(this.paths.controlSocket, { force: true });
  }

  /**
   * A manager pushed the roots to trust (a rotation's trust phase): new handshakes use
   * them at once, ca.crt follows, and the manager hears at once (a heartbeat carries the
   * key ids) so it can record the confirmation.
   */
  private async adoptTrustBundle(pem: string): Promise<void> {
    if (normalizePem(pem) === normalizePem(this.credentials.currentTrustBundlePem)) return;
    this.credentials.replaceTrustBundle(pem);
    await writeCertificateFile(this.paths.caCert, pem);
    this.logger.info({ roots: this.trustedRootKeyIds() }, "trust bundle replaced as the cluster asked");
    this.session.heartbeatNow();
  }

  private trustCache: { pem: string; ids: string[] } | undefined;

  private trustedRootKeyIds(): string[] {
    const pem = this.credentials.currentTrustBundlePem;
    if (this.trustCache?.pem !== pem) this.trustCache = { pem, ids: rootKeyIdsOf(pem) };
    return this.trustCache.ids;
  }

  /** The manager holding this node's session first, then the others it knows. */
  private renewalManagers(): { nodeId: string; address: string }[] {
    const current = this.session.managerId;
    const all = this.config.managers;
    return [...all.filter((m) => m.nodeId === current), ...all.filter((m) => m.nodeId !== current)];
  }

  private async saveManagers(managers: WeightedManager[]): Promise<void> {
    if (managers.length === 0) return;
    this.config = { ...this.config, managers: managers.map((m) => ({ ...m })) };
    await this.persistConfig();
  }

  private persistConfig(): Promise<void> {
    const write = this.configWrites.then(() => writeNodeConfig(this.paths, this.config));
    this.configWrites = write.catch(() => undefined);
    return write;
  }

  /**
   * A removed node's certificate fails the handshake itself (revocation lists), so it
   * never hears NODE_REMOVED on a session: after failed connects it asks the public
   * status call, without a certificate, whether it is still on record.
   */
  private checkStillMember(managerId: string): void {
    const manager = this.config.managers.find((m) => m.nodeId === managerId) ?? this.config.managers[0];
    if (!manager || this.stopping) return;
    checkNodeOnRecord({
      managerAddress: manager.address,
      trustBundlePem: this.credentials.currentTrustBundlePem,
      clusterId: this.config.clusterId,
      nodeId: this.config.nodeId,
    }).catch((error: unknown) => {
      if (error instanceof IssuerCallError && error.code === "NODE_REMOVED")
        this.fail(removedError(this.config.nodeId));
    });
  }

  private fail(error: Error | IssuerCallError): void {
    this.logger.error({ err: error.message }, "the node cannot go on");
    for (const listener of this.fatalListeners) listener(error);
    this.fatalListeners.clear();
  }
}

/** Consecutive failed session attempts after which the node asks whether it was removed. */
const REMOVAL_CHECK_EVERY = 3;

function removedError(nodeId: string): NodeError {
  return new NodeError(
    "NODE_REMOVED",
    `node ${nodeId} was removed from the cluster; its state dir cannot come back. ` +
      "Join again with a fresh state dir and a join token",
  );
}

function normalizePem(pem: string): string {
  return pem.replace(/\s+/g, "");
}

function seedsOf(raft: RaftBinding): Map<number, MemberBinding> {
  return new Map(raft.peers.map((p) => [Number(p.raftId), { nodeId: p.nodeId, address: p.address }]));
}
