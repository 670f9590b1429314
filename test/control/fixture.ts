// Managers serving the control API in process: real RaftNodes on DiskStorage (temp dir)
// with ClusterState as their state machine, wired by the in-process Raft transport, each
// with its ControlEndpoint on its own state dir's control.sock. The cluster's nodes are
// recorded through the log (CreateCluster, joins, Raft memberships, session transitions)
// as the daemon would; no daemon, reconciler or dispatcher runs, so nothing but the test
// writes to the log and a refusal can be shown to change nothing.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RootCA } from "../../src/ca/index.js";
import { ControlConnection } from "../../src/control/client.js";
import { ControlApi, ControlEndpoint } from "../../src/control/index.js";
import { ClusterState, joinSecretSha256, type Operation, proposeCommand } from "../../src/fsm/index.js";
import { type Node, NodeStatus, RaftMembership, Role } from "../../src/gen/fsm/v1/state.js";
import { silentLogger } from "../../src/log/logger.js";
import { bootstrapState } from "../../src/raft/core/bootstrap.js";
import { DiskStorage } from "../../src/raft/runtime/disk-storage.js";
import { encodeMemberContext } from "../../src/raft/runtime/members.js";
import { RaftNode } from "../../src/raft/runtime/node.js";
import { waitFor } from "../ca/helpers.js";
import { LoopbackTransport } from "../helpers/loopback-transport.js";

const WORKER_SECRET = "worker-secret";
const MANAGER_SECRET = "manager-secret";
const CERT_LIFETIME_MS = 3_600_000;

export interface ControlManager {
  raftId: number;
  nodeId: string;
  stateDir: string;
  raft: RaftNode;
  state: ClusterState;
  endpoint: ControlEndpoint;
  control(): ControlConnection;
}

export interface NodeSpec {
  role?: Role;
  address?: string;
  status?: NodeStatus;
}

export class ControlCluster {
  readonly managers: ControlManager[] = [];
  private readonly net = new Map<number, RaftNode>();
  private readonly root = RootCA.create({ clusterId: "c-control" });

  private constructor(private readonly base: string) {}

  /** `members` founding voters m1..mN, every one a ready manager in the replicated state. */
  static async start(members: number): Promise<ControlCluster> {
    const cluster = new ControlCluster(mkdtempSync(join(tmpdir(), "control-writes-")));
    try {
      await cluster.startManagers(members);
      await cluster.propose(cluster.createClusterCommand());
      for (const m of cluster.managers.slice(1)) {
        await cluster.join(m.nodeId, { role: Role.ROLE_MANAGER, status: NodeStatus.NODE_STATUS_READY });
        await cluster.propose({
          $case: "setRaftMembership",
          value: { nodeId: m.nodeId, raftId: m.raftId, membership: RaftMembership.RAFT_MEMBERSHIP_VOTER },
        });
      }
      await cluster.converged();
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  get leader(): ControlManager {
    const leader = this.managers.find((m) => m.raft.leadership().isSelf);
    if (!leader) throw new Error("no leader");
    return leader;
  }

  /** A manager that is not the leader. */
  get follower(): ControlManager {
    const follower = this.managers.find((m) => !m.raft.leadership().isSelf);
    if (!follower) throw new Error("no follower");
    return follower;
  }

  async propose(operation: Operation): Promise<void> {
    await proposeCommand(this.leader.raft, operation);
  }

  /** Records a join (address: none unless given), then the node's status if one is given. */
  async join(nodeId: string, spec: NodeSpec = {}): Promise<void> {
    const role = spec.role ?? Role.ROLE_WORKER;
    const atMs = Date.now();
    await this.propose({
      $case: "recordIssuance",
      value: {
        nodeId,
        role,
        join: true,
        address: spec.address ?? "",
        atMs,
        certificate: {
          serial: `s-${nodeId}`,
          notAfterMs: atMs + CERT_LIFETIME_MS,
          issuerKeyId: this.root.keyId,
          der: new Uint8Array(),
        },
        joinSecretSha256: joinSecretSha256(role === Role.ROLE_MANAGER ? MANAGER_SECRET : WORKER_SECRET),
      },
    });
    if (spec.status !== undefined) await this.setStatus(nodeId, spec.status);
  }

  async setStatus(nodeId: string, status: NodeStatus): Promise<void> {
    const managerId = status === NodeStatus.NODE_STATUS_READY ? this.managers[0]!.nodeId : "";
    await this.propose({
      $case: "recordSessions",
      value: { transitions: [{ nodeId, status, managerId, atMs: Date.now() }] },
    });
  }

  /** Every manager applied everything the leader has; resolves with the one state they share. */
  async converged(): Promise<Buffer> {
    let shared = Buffer.alloc(0);
    await waitFor(
      "every manager to apply the same state",
      () => {
        const applied = this.managers.map((m) => m.raft.status().applied);
        const [first, ...rest] = this.managers.map((m) => Buffer.from(m.state.snapshot()));
        if (!first || rest.some((s) => !s.equals(first))) return false;
        if (applied.some((a) => a !== this.leader.raft.status().lastIndex)) return false;
        shared = first;
        return true;
      },
      5_000,
    );
    return shared;
  }

  /** The last log index of every member: unchanged by a request that proposed nothing. */
  lastIndexes(): number[] {
    return this.managers.map((m) => m.raft.status().lastIndex);
  }

  node(nodeId: string): Node | undefined {
    return this.leader.state.node(nodeId);
  }

  async stop(): Promise<void> {
    for (const m of this.managers) {
      await m.endpoint.stop(500);
      await m.raft.stop();
    }
    rmSync(this.base, { recursive: true, force: true });
  }

  private async startManagers(members: number): Promise<void> {
    const ids = Array.from({ length: members }, (_, i) => i + 1);
    const contexts = new Map(
      ids.map((id) => [id, encodeMemberContext({ nodeId: `m${id}`, address: `127.0.0.1:${4000 + id}` })]),
    );
    for (const raftId of ids) {
      const stateDir = join(this.base, `m${raftId}`);
      mkdirSync(stateDir);
      const storage = await DiskStorage.create(join(stateDir, "raft"), raftId, bootstrapState(ids, contexts));
      const state = new ClusterState();
      const raft = new RaftNode({
        id: raftId,
        storage,
        stateMachine: state,
        logger: silentLogger(),
        tickMs: 10,
      });
      this.net.set(raftId, raft);
      raft.start(new LoopbackTransport(raftId, this.net));
      const endpoint = new ControlEndpoint(
        join(stateDir, "control.sock"),
        new ControlApi({ raft, state, logger: silentLogger() }),
        silentLogger(),
      );
      const manager = {
        raftId,
        nodeId: `m${raftId}`,
        stateDir,
        raft,
        state,
        endpoint,
        control: () => ControlConnection.open(stateDir),
      };
      this.managers.push(manager);
      await endpoint.start();
    }
    await waitFor("a leader", () => this.managers.some((m) => m.raft.leadership().isSelf), 10_000);
  }

  private createClusterCommand(): Operation {
    const enc = new TextEncoder();
    const now = Date.now();
    return {
      $case: "createCluster",
      value: {
        cluster: {
          id: this.root.clusterId,
          root: {
            certPem: enc.encode(this.root.certificatePem),
            keyPem: enc.encode("k"),
            keyId: this.root.keyId,
          },
          rotation: undefined,
          joinTokenSecrets: { worker: WORKER_SECRET, manager: MANAGER_SECRET, rotatedSha256: [] },
          nodeCertLifetimeS: CERT_LIFETIME_MS / 1000,
          renewalGraceS: 0,
          createdAtMs: now,
          nextRaftId: 0,
        },
        firstNode: {
          id: "m1",
          role: Role.ROLE_MANAGER,
          desiredRole: Role.ROLE_MANAGER,
          raftId: 1,
          membership: RaftMembership.RAFT_MEMBERSHIP_VOTER,
          status: NodeStatus.NODE_STATUS_READY,
          statusChangedAtMs: now,
          address: "127.0.0.1:4001",
          certificate: {
            serial: "s-m1",
            notAfterMs: now + CERT_LIFETIME_MS,
            issuerKeyId: this.root.keyId,
            der: new Uint8Array(),
          },
          session: undefined,
          joinedAtMs: now,
          earlierCertificates: [],
          trustedRootKeyId: "",
          heldIssuerKeyId: "",
        },
      },
    };
  }
}
