// An in-process cluster for the dispatcher tests: real RaftNodes on DiskStorage in a
// temp dir with ClusterState as their state machine (wired by an in-process Raft
// transport: the Raft transport is not what these tests are about), one gRPC server
// per manager on loopback with mutual TLS and the CA's authorization interceptor,
// serving the Dispatcher; and nodes holding certificates from a real RootCA.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { NodeAuthorizer, type NodeRole, RootCA, TlsCredentialHolder } from "../../src/ca/index.js";
import type { WeightedManager } from "../../src/dispatcher/index.js";
import {
  DISPATCHER_POLICY,
  Dispatcher,
  type DispatcherOptions,
  SessionClient,
} from "../../src/dispatcher/index.js";
import { ClusterState, joinSecretSha256, type Operation, proposeCommand } from "../../src/fsm/index.js";
import { DispatcherServiceClient, DispatcherServiceService } from "../../src/gen/dispatcher/v1/dispatcher.js";
import { type Node, NodeStatus, RaftMembership, Role } from "../../src/gen/fsm/v1/state.js";
import { silentLogger } from "../../src/log/logger.js";
import { bootstrapState } from "../../src/raft/core/bootstrap.js";
import { DiskStorage } from "../../src/raft/runtime/disk-storage.js";
import { encodeMemberContext } from "../../src/raft/runtime/members.js";
import { RaftNode } from "../../src/raft/runtime/node.js";
import { type IssuedNode, issueNode } from "../ca/echo-service.js";
import { waitFor } from "../ca/helpers.js";

import { LoopbackTransport } from "../helpers/loopback-transport.js";

export const CLUSTER_ID = "c-dispatch";
export { waitFor };

export interface TestManager {
  raftId: number;
  nodeId: string;
  address: string;
  raft: RaftNode;
  state: ClusterState;
  dispatcher: Dispatcher;
  server: grpc.Server;
  stopped: boolean;
}

export interface TestWorker {
  nodeId: string;
  identity: IssuedNode;
  holder: TlsCredentialHolder;
  client?: SessionClient;
  saved: WeightedManager[][];
}

type DispatcherTunables = Partial<
  Omit<DispatcherOptions, "selfNodeId" | "state" | "log" | "authorizer" | "logger">
>;

export class TestCluster {
  readonly root = RootCA.create({ clusterId: CLUSTER_ID });
  readonly managers: TestManager[] = [];
  readonly workers = new Map<string, TestWorker>();
  private readonly net = new Map<number, RaftNode>();
  private readonly base = mkdtempSync(join(tmpdir(), "dispatcher-test-"));

  /** `managers` founding voters, the cluster created, and `workers` joined (status unspecified). */
  static async start(
    managers: number,
    workers: string[],
    tunables: DispatcherTunables = {},
  ): Promise<TestCluster> {
    const cluster = new TestCluster();
    try {
      await cluster.startManagers(managers, tunables);
      await cluster.bootstrap(workers);
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  private async startManagers(count: number, tunables: DispatcherTunables): Promise<void> {
    const ids = Array.from({ length: count }, (_, i) => i + 1);
    const prepared = [];
    for (const raftId of ids) {
      const nodeId = `m${raftId}`;
      const state = new ClusterState();
      const identity = issueNode(this.root, "manager", nodeId);
      const holder = this.holderOf(identity);
      // A manager is a node too: it may hold a session (on another manager) like any node.
      this.workers.set(nodeId, { nodeId, identity, holder, saved: [] });
      const authorizer = new NodeAuthorizer({
        clusterId: CLUSTER_ID,
        policy: DISPATCHER_POLICY,
        isNodeRemoved: (id) => state.removedNode(id) !== undefined,
        logger: silentLogger(),
      });
      const server = new grpc.Server({ interceptors: [authorizer.interceptor()] });
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync(
          "127.0.0.1:0",
          holder.serverCredentials({ requireClientCertificate: true }),
          (e, p) => (e ? reject(e) : resolve(p)),
        ),
      );
      prepared.push({ raftId, nodeId, state, server, authorizer, address: `127.0.0.1:${port}` });
    }
    const contexts = new Map(
      prepared.map((p) => [p.raftId, encodeMemberContext({ nodeId: p.nodeId, address: p.address })]),
    );
    for (const p of prepared) {
      const storage = await DiskStorage.create(
        join(this.base, p.nodeId),
        p.raftId,
        bootstrapState(ids, contexts),
      );
      const raft = new RaftNode({
        id: p.raftId,
        storage,
        stateMachine: p.state,
        logger: silentLogger(),
        tickMs: 10,
        proposalTimeoutMs: 2_000,
      });
      const dispatcher = new Dispatcher({
        selfNodeId: p.nodeId,
        state: p.state,
        log: raft,
        authorizer: p.authorizer,
        leadership: raft,
        // As src/node/manager.ts wires it: a manager the Raft log hears is alive.
        managerHeard: (nodeId, withinMs) => {
          const raftId = p.state.node(nodeId)?.raftId ?? 0;
          return raftId !== 0 && raft.heardFrom(raftId, withinMs);
        },
        logger: silentLogger(),
        heartbeatPeriodMs: 100,
        transitionBatchMs: 20,
        transitionRetryMs: 50,
        ...tunables,
      });
      p.server.addService(DispatcherServiceService, dispatcher.service());
      this.net.set(p.raftId, raft);
      raft.start(new LoopbackTransport(p.raftId, this.net));
      this.managers.push({ ...p, raft, dispatcher, stopped: false });
    }
  }

  private async bootstrap(workers: string[]): Promise<void> {
    await waitFor("a leader", () => this.leader() !== undefined, 10_000);
    const first = this.managers[0]!;
    const at = Date.now();
    const rootPem = new TextEncoder().encode(this.root.certificatePem);
    await this.propose({
      $case: "createCluster",
      value: {
        cluster: {
          id: CLUSTER_ID,
          root: {
            certPem: rootPem,
            keyPem: new TextEncoder().encode(this.root.privateKeyPem()),
            keyId: this.root.keyId,
          },
          rotation: undefined,
          joinTokenSecrets: { worker: "w-secret", manager: "m-secret", rotatedSha256: [] },
          nodeCertLifetimeS: 3600,
          renewalGraceS: 3600,
          createdAtMs: at,
          nextRaftId: 0,
        },
        firstNode: this.nodeRecord(first.nodeId, Role.ROLE_MANAGER, first.address, first.raftId, at),
      },
    });
    for (const m of this.managers.slice(1)) await this.join(m.nodeId, Role.ROLE_MANAGER, m.address);
    for (const w of workers) {
      const identity = issueNode(this.root, "worker", w);
      this.workers.set(w, { nodeId: w, identity, holder: this.holderOf(identity), saved: [] });
      await this.join(w, Role.ROLE_WORKER, "");
    }
    await waitFor(
      "every manager to apply the bootstrap",
      () => this.managers.every((m) => m.state.nodes().length === this.managers.length + workers.length),
      10_000,
    );
  }

  private async join(nodeId: string, role: Role, address: string): Promise<void> {
    await this.propose({
      $case: "recordIssuance",
      value: {
        nodeId,
        role,
        certificate: this.certificateFacts(),
        join: true,
        address,
        atMs: Date.now(),
        joinSecretSha256: joinSecretSha256(role === Role.ROLE_MANAGER ? "m-secret" : "w-secret"),
      },
    });
  }

  private nodeRecord(id: string, role: Role, address: string, raftId: number, at: number): Node {
    return {
      id,
      role,
      desiredRole: role,
      raftId,
      membership: RaftMembership.RAFT_MEMBERSHIP_VOTER,
      status: NodeStatus.NODE_STATUS_UNSPECIFIED,
      statusChangedAtMs: at,
      address,
      certificate: this.certificateFacts(),
      session: undefined,
      joinedAtMs: at,
      earlierCertificates: [],
      trustedRootKeyId: "",
      heldIssuerKeyId: "",
    };
  }

  private certificateFacts() {
    return {
      serial: "01",
      notAfterMs: Date.now() + 3_600_000,
      issuerKeyId: this.root.keyId,
      der: new Uint8Array(),
    };
  }

  holderOf(identity: IssuedNode): TlsCredentialHolder {
    return new TlsCredentialHolder({
      identity,
      trustBundlePem: this.root.certificatePem,
      logger: silentLogger(),
    });
  }

  /** Puts a command through whichever manager leads. */
  async propose(operation: Operation): Promise<number> {
    const leader = this.leader();
    if (!leader) throw new Error("no leader");
    return proposeCommand(leader.raft, operation);
  }

  leader(): TestManager | undefined {
    const live = this.managers.filter((m) => !m.stopped);
    return live.find((m) => m.raft.leadership().isSelf);
  }

  manager(nodeId: string): TestManager {
    const m = this.managers.find((x) => x.nodeId === nodeId);
    if (!m) throw new Error(`no manager ${nodeId}`);
    return m;
  }

  managerList(): WeightedManager[] {
    return this.managers.map((m) => ({ nodeId: m.nodeId, address: m.address, weight: 100 }));
  }

  /** A persisted list that weighs only `nodeId`: a session on it. */
  listFavouring(nodeId: string): WeightedManager[] {
    return this.managerList().map((m) => ({ ...m, weight: m.nodeId === nodeId ? 100 : 0 }));
  }

  /** Waits until `m` took `count` more heartbeats than it has so far (steady time, counted in periods). */
  async moreHeartbeats(m: TestManager, count: number, timeoutMs = 5_000): Promise<void> {
    const start = m.dispatcher.heartbeatsReceived;
    await waitFor(
      `${count} more heartbeats on ${m.nodeId}`,
      () => m.dispatcher.heartbeatsReceived >= start + count,
      timeoutMs,
    );
  }

  /** Starts a SessionClient for a node (a worker, or a manager's own session), from the given persisted list (default: every manager). */
  async connect(
    workerId: string,
    managers = this.managerList(),
    random?: () => number,
  ): Promise<SessionClient> {
    const w = this.workers.get(workerId);
    if (!w) throw new Error(`no worker ${workerId}`);
    const client = new SessionClient({
      loadManagers: () => managers,
      saveManagers: (list) => {
        w.saved.push(list);
      },
      credentialsFor: (m) =>
        w.holder.channelCredentials({
          clusterId: CLUSTER_ID,
          expectedServerRole: "manager",
          expectedServerNodeId: m.nodeId,
        }),
      logger: silentLogger(),
      backoffBaseMs: 50,
      backoffMaxMs: 400,
      random,
    });
    w.client = client;
    await client.start();
    return client;
  }

  /** A raw dispatcher client for `nodeId`'s certificate on one manager (no heartbeats of its own). */
  rawClient(role: NodeRole, nodeId: string, manager: TestManager): DispatcherServiceClient {
    const identity = this.workers.get(nodeId)?.identity ?? issueNode(this.root, role, nodeId);
    const credentials = this.holderOf(identity).channelCredentials({
      clusterId: CLUSTER_ID,
      expectedServerRole: "manager",
      expectedServerNodeId: manager.nodeId,
    });
    // Named as the product's clients name a manager (its certificate's role SAN), not by IP.
    return new DispatcherServiceClient(manager.address, credentials, {
      "grpc.ssl_target_name_override": "manager",
    });
  }

  /** A state as every live manager sees it. */
  async converged(what: string, check: (state: ClusterState) => boolean, timeoutMs = 5_000): Promise<void> {
    await waitFor(
      what,
      () => this.managers.filter((m) => !m.stopped).every((m) => check(m.state)),
      timeoutMs,
    );
  }

  /** As a crash looks to the others: connections reset, no goodbye; then its timers are released. */
  async kill(m: TestManager): Promise<void> {
    m.stopped = true;
    this.workers.get(m.nodeId)?.client?.stop(); // its own session dies with it
    m.server.forceShutdown();
    this.net.delete(m.raftId);
    m.dispatcher.close();
    await m.raft.stop();
  }

  async stop(): Promise<void> {
    for (const w of this.workers.values()) w.client?.stop();
    for (const m of this.managers) if (!m.stopped) await this.kill(m);
    rmSync(this.base, { recursive: true, force: true });
  }
}
