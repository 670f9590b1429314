// Managers serving the CA service in process: real RaftNodes on DiskStorage (temp dir)
// with ClusterState as their state machine (one member, or several wired by an
// in-process transport), bootstrapped with CreateCluster, each behind its own
// NodeAuthorizer over loopback TLS. Each records which methods reached its server, so a
// test can prove a client sent nothing.
import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import {
  checkNodeCsr,
  createNodeCsr,
  formatJoinToken,
  generateJoinSecret,
  NodeAuthorizer,
  RootCA,
  TlsCredentialHolder,
} from "../../src/ca/index.js";
import { ClusterState, type Operation, proposeCommand } from "../../src/fsm/index.js";
import { NodeCAServiceService } from "../../src/gen/ca/v1/ca.js";
import { NodeStatus, RaftMembership, Role } from "../../src/gen/fsm/v1/state.js";
import { caServicePolicy, type IssuanceLimits, NodeCAIssuer, newNodeId } from "../../src/issuer/index.js";
import { type Logger, silentLogger } from "../../src/log/logger.js";
import { bootstrapState } from "../../src/raft/core/bootstrap.js";
import { DiskStorage } from "../../src/raft/runtime/disk-storage.js";
import { RaftRuntimeError } from "../../src/raft/runtime/errors.js";
import { encodeMemberContext } from "../../src/raft/runtime/members.js";
import { RaftNode } from "../../src/raft/runtime/node.js";
import type { Applied, LinearizableReader, Proposer } from "../../src/raft/runtime/seam.js";
import { waitFor } from "../ca/helpers.js";
import { LoopbackTransport } from "../helpers/loopback-transport.js";

/** The Raft seam with a gate in front of proposals, to hold issuances in flight on purpose. */
export class GatedLog implements Proposer, LinearizableReader {
  private open = true;
  private readonly held: Array<() => void> = [];
  private answersToLose = 0;
  constructor(private readonly inner: RaftNode) {}

  /** Proposals waiting at the closed gate. */
  get waiting(): number {
    return this.held.length;
  }

  /** The next `n` proposals go through the log, but their answer is lost (PROPOSAL_TIMEOUT). */
  loseAnswers(n: number): void {
    this.answersToLose = n;
  }

  close(): void {
    this.open = false;
  }

  release(): void {
    this.open = true;
    for (const resume of this.held.splice(0)) resume();
  }

  async propose(command: Uint8Array): Promise<Applied> {
    if (!this.open) await new Promise<void>((resume) => this.held.push(resume));
    const applied = await this.inner.propose(command);
    if (this.answersToLose > 0) {
      this.answersToLose--;
      throw new RaftRuntimeError("PROPOSAL_TIMEOUT", "test: the answer was lost (the entry is applied)");
    }
    return applied;
  }

  read<T>(fn: () => T): Promise<T> {
    return this.inner.read(fn);
  }
}

export interface CaServer {
  address: string;
  /** This manager's node id (its certificate's CN). */
  nodeId: string;
  clusterId: string;
  root: RootCA;
  state: ClusterState;
  raft: RaftNode;
  log: GatedLog;
  issuer: NodeCAIssuer;
  /** Method paths of every call that reached this server, in arrival order. */
  calls: string[];
  token(role: "worker" | "manager"): string;
  /** The replicated state's bytes on this manager. */
  snapshot(): Buffer;
  /** Stops this manager (and, for startCaServer's, removes its state). */
  close(): Promise<void>;
}

export interface CaServerOptions {
  limits?: Partial<IssuanceLimits>;
  statusWaitMs?: number;
  /** The issuers' logger (default: silent). */
  logger?: Logger;
}

/** One manager: a one-member Raft log. */
export async function startCaServer(options: CaServerOptions = {}): Promise<CaServer> {
  const cluster = await startCaCluster(1, options);
  const [only] = cluster.managers as [CaServer];
  return { ...only, close: () => cluster.close() };
}

export interface CaCluster {
  managers: CaServer[];
  close(): Promise<void>;
}

/** `members` managers replicating one log (raft ids 1..n, founding voters), each serving the CA service. */
export async function startCaCluster(members: number, options: CaServerOptions = {}): Promise<CaCluster> {
  const dir = mkdtempSync(join(tmpdir(), "issuer-test-"));
  const clusterId = `c${newNodeId().slice(0, 10)}`;
  const root = RootCA.create({ clusterId });
  const ids = Array.from({ length: members }, (_, i) => i + 1);
  const identities = ids.map(() => managerIdentity(root));
  const contexts = new Map(
    ids.map((id, i) => [id, encodeMemberContext({ nodeId: identities[i]!.nodeId, address: "127.0.0.1:0" })]),
  );
  const net = new Map<number, RaftNode>();
  const managers: CaServer[] = [];
  const close = async () => {
    for (const m of managers) await m.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const id of ids) {
      const storage = await DiskStorage.create(join(dir, `raft-${id}`), id, bootstrapState(ids, contexts));
      managers.push(await startManager(id, storage, net, root, identities[id - 1]!, options));
    }
    await waitFor("a leader", () => managers.some((m) => m.raft.leaderId() === m.raft.status().id));
    await proposeCommand(managers[0]!.raft, createClusterCommand(root, identities[0]!));
    await waitFor("every manager to apply the cluster", () => managers.every((m) => m.state.cluster()));
  } catch (error) {
    await close();
    throw error;
  }
  return { managers, close };
}

interface ManagerIdentity {
  nodeId: string;
  privateKeyPem: string;
  certificatePem: string;
  chainPem: string;
  serial: string;
  notAfter: Date;
}

function managerIdentity(root: RootCA): ManagerIdentity {
  const nodeId = newNodeId();
  const key = createNodeCsr();
  const issued = root.issueNodeCertificate({ csr: checkNodeCsr(key.csrPem), role: "manager", nodeId });
  return {
    nodeId,
    privateKeyPem: key.privateKeyPem,
    certificatePem: issued.certificatePem,
    chainPem: issued.chainPem,
    serial: issued.serialNumber,
    notAfter: issued.notAfter,
  };
}

function createClusterCommand(root: RootCA, first: ManagerIdentity): Operation {
  const enc = new TextEncoder();
  const now = Date.now();
  return {
    $case: "createCluster",
    value: {
      cluster: {
        id: root.clusterId,
        root: {
          certPem: enc.encode(root.certificatePem),
          keyPem: enc.encode(root.privateKeyPem()),
          keyId: root.keyId,
        },
        rotation: undefined,
        joinTokenSecrets: { worker: generateJoinSecret(), manager: generateJoinSecret(), rotatedSha256: [] },
        nodeCertLifetimeS: 86_400,
        renewalGraceS: 7 * 86_400,
        createdAtMs: now,
        nextRaftId: 0,
      },
      firstNode: {
        id: first.nodeId,
        role: Role.ROLE_MANAGER,
        desiredRole: Role.ROLE_MANAGER,
        raftId: 1,
        membership: RaftMembership.RAFT_MEMBERSHIP_VOTER,
        status: NodeStatus.NODE_STATUS_READY,
        statusChangedAtMs: now,
        address: "127.0.0.1:0",
        certificate: {
          serial: first.serial,
          notAfterMs: first.notAfter.getTime(),
          issuerKeyId: root.keyId,
          der: new Uint8Array(new X509Certificate(first.certificatePem).raw),
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

async function startManager(
  id: number,
  storage: DiskStorage,
  net: Map<number, RaftNode>,
  root: RootCA,
  identity: ManagerIdentity,
  options: CaServerOptions,
): Promise<CaServer> {
  const logger = options.logger ?? silentLogger();
  const state = new ClusterState();
  const raft = new RaftNode({ id, storage, stateMachine: state, logger, tickMs: 10 });
  net.set(id, raft);
  raft.start(new LoopbackTransport(id, net));
  const holder = new TlsCredentialHolder({
    identity: { privateKeyPem: identity.privateKeyPem, certificateChainPem: identity.chainPem },
    trustBundlePem: root.certificatePem,
    logger,
  });
  const authorizer = new NodeAuthorizer({
    clusterId: root.clusterId,
    policy: caServicePolicy(),
    isNodeRemoved: (nodeId) => state.removedNode(nodeId) !== undefined,
    logger,
  });
  const log = new GatedLog(raft);
  const issuer = new NodeCAIssuer({
    state,
    raft: log,
    callerIdentity: (call) => authorizer.peerIdentity(call),
    logger,
    limits: options.limits,
    statusWaitMs: options.statusWaitMs,
  });
  const calls: string[] = [];
  const recordCalls: grpc.ServerInterceptor = (method, call) => {
    calls.push(method.path);
    return new grpc.ServerInterceptingCall(call);
  };
  const server = new grpc.Server({ interceptors: [recordCalls, authorizer.interceptor()] });
  server.addService(NodeCAServiceService, issuer.service());
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      holder.serverCredentials({ requireClientCertificate: false }),
      (error, p) => (error ? reject(error) : resolve(p)),
    ),
  );
  return {
    address: `127.0.0.1:${port}`,
    nodeId: identity.nodeId,
    clusterId: root.clusterId,
    root,
    state,
    raft,
    log,
    issuer,
    calls,
    token: (role) => {
      const current = state.cluster()?.joinTokenSecrets;
      return formatJoinToken(
        root.certificateDer,
        (role === "worker" ? current?.worker : current?.manager) ?? "",
      );
    },
    snapshot: () => Buffer.from(state.snapshot()),
    async close() {
      issuer.close();
      server.forceShutdown();
      await raft.stop();
      net.delete(id);
    },
  };
}
