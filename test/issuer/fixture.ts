// One manager serving the CA service in process: a real one-member RaftNode on
// DiskStorage (temp dir) with ClusterState as its state machine, bootstrapped with
// CreateCluster, behind the NodeAuthorizer over loopback TLS. It records which methods
// reached the server, so a test can prove a client sent nothing.
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
import { ClusterState, proposeCommand } from "../../src/fsm/index.js";
import { NodeCAServiceService } from "../../src/gen/ca/v1/ca.js";
import { NodeStatus, RaftMembership, Role } from "../../src/gen/fsm/v1/state.js";
import { caServicePolicy, type IssuanceLimits, NodeCAIssuer, newNodeId } from "../../src/issuer/index.js";
import { silentLogger } from "../../src/log/logger.js";
import { bootstrapState } from "../../src/raft/core/bootstrap.js";
import { DiskStorage } from "../../src/raft/runtime/disk-storage.js";
import { encodeMemberContext } from "../../src/raft/runtime/members.js";
import { RaftNode } from "../../src/raft/runtime/node.js";
import type { Applied, LinearizableReader, Proposer } from "../../src/raft/runtime/seam.js";
import type { Transport } from "../../src/raft/runtime/types.js";
import { waitFor } from "../ca/helpers.js";

/** A single voter sends no messages; it still persists, commits and applies through the real runtime. */
const soloTransport: Transport = { send() {}, setMembers() {}, async close() {} };

/** The Raft seam with a gate in front of proposals, to hold issuances in flight on purpose. */
export class GatedLog implements Proposer, LinearizableReader {
  private open = true;
  private readonly held: Array<() => void> = [];
  constructor(private readonly inner: RaftNode) {}

  close(): void {
    this.open = false;
  }

  release(): void {
    this.open = true;
    for (const resume of this.held.splice(0)) resume();
  }

  async propose(command: Uint8Array): Promise<Applied> {
    if (!this.open) await new Promise<void>((resume) => this.held.push(resume));
    return this.inner.propose(command);
  }

  read<T>(fn: () => T): Promise<T> {
    return this.inner.read(fn);
  }
}

export interface CaServer {
  address: string;
  clusterId: string;
  root: RootCA;
  state: ClusterState;
  raft: RaftNode;
  log: GatedLog;
  issuer: NodeCAIssuer;
  /** Method paths of every call that reached the server, in arrival order. */
  calls: string[];
  token(role: "worker" | "manager"): string;
  /** The replicated state's bytes. */
  snapshot(): Buffer;
  close(): Promise<void>;
}

export async function startCaServer(
  options: { limits?: Partial<IssuanceLimits>; statusWaitMs?: number } = {},
): Promise<CaServer> {
  const logger = silentLogger();
  const dir = mkdtempSync(join(tmpdir(), "issuer-test-"));
  const clusterId = `c${newNodeId().slice(0, 10)}`;
  const root = RootCA.create({ clusterId });
  const managerId = newNodeId();
  const managerKey = createNodeCsr();
  const managerCert = root.issueNodeCertificate({
    csr: checkNodeCsr(managerKey.csrPem),
    role: "manager",
    nodeId: managerId,
  });

  const state = new ClusterState();
  const storage = await DiskStorage.create(
    join(dir, "raft"),
    1,
    bootstrapState([1], new Map([[1, encodeMemberContext({ nodeId: managerId, address: "127.0.0.1:0" })]])),
  );
  const raft = new RaftNode({ id: 1, storage, stateMachine: state, logger, tickMs: 10 });
  raft.start(soloTransport);
  await waitFor("the single member to lead", () => raft.leaderId() === 1);

  const secrets = { worker: generateJoinSecret(), manager: generateJoinSecret(), rotatedSha256: [] };
  const enc = new TextEncoder();
  await proposeCommand(raft, {
    $case: "createCluster",
    value: {
      cluster: {
        id: clusterId,
        root: {
          certPem: enc.encode(root.certificatePem),
          keyPem: enc.encode(root.privateKeyPem()),
          keyId: root.keyId,
        },
        rotation: undefined,
        joinTokenSecrets: secrets,
        nodeCertLifetimeS: 86_400,
        renewalGraceS: 7 * 86_400,
        createdAtMs: Date.now(),
      },
      firstNode: {
        id: managerId,
        role: Role.ROLE_MANAGER,
        desiredRole: Role.ROLE_MANAGER,
        raftId: 1,
        membership: RaftMembership.RAFT_MEMBERSHIP_VOTER,
        status: NodeStatus.NODE_STATUS_READY,
        statusChangedAtMs: Date.now(),
        address: "127.0.0.1:0",
        certificate: {
          serial: managerCert.serialNumber,
          notAfterMs: managerCert.notAfter.getTime(),
          issuerKeyId: managerCert.issuerKeyId,
          der: new Uint8Array(new X509Certificate(managerCert.certificatePem).raw),
        },
        session: undefined,
        joinedAtMs: Date.now(),
      },
    },
  });

  const holder = new TlsCredentialHolder({
    identity: { privateKeyPem: managerKey.privateKeyPem, certificateChainPem: managerCert.chainPem },
    trustBundlePem: root.certificatePem,
    logger,
  });
  const authorizer = new NodeAuthorizer({
    clusterId,
    policy: caServicePolicy(),
    isNodeRemoved: (id) => state.removedNode(id) !== undefined,
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
    clusterId,
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
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
