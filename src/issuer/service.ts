// The CA service every manager serves (proto/ca/v1/ca.proto). Any manager signs: the
// root key is in the replicated Cluster object. A certificate reaches its node only
// after the entry recording it (fsm RecordIssuance, with the certificate's DER) is
// applied, and apply re-checks what could change meanwhile (a rotated join token, a
// removed node). Followers serve too: proposals are forwarded to the leader by the
// runtime. Every refusal has a stable code, is logged, and changes nothing.
import { X509Certificate } from "node:crypto";
import type * as grpc from "@grpc/grpc-js";
import {
  checkNodeCsr,
  type IssuedNodeCertificate,
  type NodeAuthorizer,
  type NodeIdentity,
  type NodeRole,
  nodeIdProblem,
  parseJoinToken,
  RootDigestMismatchError,
  roleForJoinToken,
  rootCertificateDigest,
  TokenInvalidError,
  TokenRotatedError,
} from "../ca/index.js";
import { type ClusterState, joinSecretSha256, proposeCommand } from "../fsm/index.js";
import {
  IssuanceState,
  type IssueNodeCertificateRequest,
  type IssueNodeCertificateResponse,
  type NodeCAServiceServer,
  type NodeCertificateStatusRequest,
  type NodeCertificateStatusResponse,
  type RaftBinding,
  type RenewNodeCertificateResponse,
} from "../gen/ca/v1/ca.js";
import { type Cluster, RaftMembership, Role } from "../gen/fsm/v1/state.js";
import type { Logger } from "../log/logger.js";
import type { LinearizableReader, Proposer } from "../raft/runtime/seam.js";
import { asIssuerRefusal, IssuerRefusal } from "./errors.js";
import {
  DEFAULT_ISSUANCE_LIMITS,
  type IssuanceLimiter,
  type IssuanceLimits,
  IssuanceLimiter as Limiter,
} from "./limiter.js";
import { newNodeId } from "./node-id.js";
import { ClusterSigner } from "./signer.js";
import { IssuanceStatusWatch } from "./status-watch.js";

export interface NodeCAIssuerOptions {
  /** This manager's applied replicated state (the Raft state machine). */
  state: ClusterState;
  /** The Raft seam: issuance goes through the log; renewal reads the desired role linearizably. */
  raft: Proposer & LinearizableReader;
  /** The verified caller of a mutual-TLS call (the authorizer's `peerIdentity`). */
  callerIdentity: (call: CallerSource) => NodeIdentity | undefined;
  logger: Logger;
  limits?: Partial<IssuanceLimits>;
  /** How long a status stream waits for an issuance this manager has not applied yet. */
  statusWaitMs?: number;
  maxStatusWaiters?: number;
  now?: () => Date;
}

const encoder = new TextEncoder();
/** Renewal refusals remembered for `ca status` (the oldest go first). */
const MAX_REMEMBERED_REFUSALS = 10_000;

/** What the authorizer reads a caller's certificate from (NodeAuthorizer.peerIdentity's argument). */
export type CallerSource = Parameters<NodeAuthorizer["peerIdentity"]>[0];

/** What every server call offers: its peer, and the event when its caller goes away. */
interface SurfaceCall {
  getPeer(): string;
  on(event: "cancelled", listener: () => void): unknown;
}

export class NodeCAIssuer {
  private readonly limiter: IssuanceLimiter;
  private readonly signer = new ClusterSigner();
  private readonly statusWatch: IssuanceStatusWatch;
  private readonly logger: Logger;
  private readonly now: () => Date;
  private issued = 0;
  private readonly renewalRefusals = new Map<string, { code: string; atMs: number }>();

  constructor(private readonly options: NodeCAIssuerOptions) {
    this.limiter = new Limiter({ ...DEFAULT_ISSUANCE_LIMITS, ...options.limits });
    this.statusWatch = new IssuanceStatusWatch(options.state, options.maxStatusWaiters ?? 4096);
    this.logger = options.logger.child({ component: "issuer" });
    this.now = options.now ?? (() => new Date());
  }

  stats(): {
    issued: number;
    inFlight: number;
    queued: number;
    refusedOverloaded: number;
    statusWaiters: number;
  } {
    const l = this.limiter.stats();
    return {
      issued: this.issued,
      inFlight: l.inFlight,
      queued: l.queued,
      refusedOverloaded: l.refused,
      statusWaiters: this.statusWatch.waiting,
    };
  }

  /** Ends every queued request and status stream; in-flight proposals settle on their own. */
  close(): void {
    this.limiter.close();
    this.statusWatch.close();
  }

  service(): NodeCAServiceServer {
    return {
      getRootCaCertificate: (call, callback) =>
        this.answer("GetRootCACertificate", call, callback, async () => ({
          certificatePem: this.requireCluster().root?.certPem ?? new Uint8Array(),
        })),
      issueNodeCertificate: (call, callback) =>
        this.answer("IssueNodeCertificate", call, callback, () =>
          this.join(call.request, cancelSignal(call)),
        ),
      renewNodeCertificate: (call, callback) =>
        this.answer("RenewNodeCertificate", call, callback, () =>
          this.renew(call, cancelSignal(call)).then(
            (response) => {
              this.renewalRefusals.delete(this.options.callerIdentity(call)?.nodeId ?? "");
              return response;
            },
            (error: unknown) => {
              this.noteRenewalRefusal(call, error);
              throw error;
            },
          ),
        ),
      nodeCertificateStatus: (call) => {
        this.streamStatus(call).catch((error: unknown) => {
          const refusal = this.refusalOf("NodeCertificateStatus", call, error);
          call.emit("error", refusal.toServiceError());
        });
      },
    };
  }

  // ---- IssueNodeCertificate --------------------------------------------------------

  private async join(
    request: IssueNodeCertificateRequest,
    signal: AbortSignal,
  ): Promise<IssueNodeCertificateResponse> {
    // Cheap checks first, outside the CSR bound: a wrong token never takes a slot.
    const token = parseJoinToken(request.token);
    const cluster = this.requireCluster();
    const role = roleForToken(token, cluster);
    if (role === "manager" && !request.address)
      throw new IssuerRefusal(
        "ADDRESS_INVALID",
        "the token admits a manager, which must serve Raft and the CA: join with --listen HOST:PORT " +
          "(the address it serves on); nothing was recorded",
      );
    return this.limiter.run(async () => {
      const csr = checkNodeCsr(request.csrDer);
      const current = this.requireCluster();
      const nodeId = newNodeId();
      const now = this.now();
      const issued = this.signer.issue(current, { csr, role, nodeId, now });
      const recording = proposeCommand(this.options.raft, {
        $case: "recordIssuance",
        value: {
          nodeId,
          role: roleOf(role),
          join: true,
          joinSecretSha256: joinSecretSha256(token.secret),
          address: request.address,
          atMs: now.getTime(),
          certificate: certificateFacts(issued),
        },
      });
      await recording.catch((error: unknown) => {
        const refusal = asIssuerRefusal(error);
        // No answer in time is not a refusal (NO_LEADER and the like are): the entry may
        // still be applied. Tell the node its id, so it waits on the status stream rather
        // than joining twice.
        if (refusal && (error as { code?: unknown }).code === "PROPOSAL_TIMEOUT")
          refusal.pendingNodeId = nodeId;
        throw refusal ?? error;
      });
      this.issued++;
      this.logger.info({ nodeId, role, serial: issued.serialNumber }, "node joined: certificate recorded");
      return { nodeId, role: roleOf(role) };
    }, signal);
  }

  // ---- RenewNodeCertificate --------------------------------------------------------

  private async renew(
    call: grpc.ServerUnaryCall<{ csrDer: Uint8Array }, RenewNodeCertificateResponse>,
    signal: AbortSignal,
  ): Promise<RenewNodeCertificateResponse> {
    const caller = this.options.callerIdentity(call);
    if (!caller)
      throw new IssuerRefusal("CERT_MISSING", "renewal needs the node's current certificate (mutual TLS)");
    const nodeId = caller.nodeId;
    return this.limiter.run(async () => {
      const csr = checkNodeCsr(call.request.csrDer);
      // Linearizable: a promote or demote acknowledged before this call decides the role.
      const { node, removed, cluster } = await this.options.raft.read(() => ({
        node: this.options.state.node(nodeId),
        removed: this.options.state.removedNode(nodeId) !== undefined,
        cluster: this.options.state.cluster(),
      }));
      if (!cluster)
        throw new IssuerRefusal("NO_CLUSTER", "the cluster is not initialized on this manager yet");
      if (removed)
        throw new IssuerRefusal(
          "NODE_REMOVED",
          `node ${nodeId} was removed from the cluster: it cannot renew; join again`,
        );
      if (!node)
        throw new IssuerRefusal("NODE_NOT_FOUND", `no node ${nodeId} in the cluster: join it with a token`);
      const role = roleName(node.desiredRole);
      // A demoted manager leaves Raft before it gets a worker certificate: while it is still a
      // member its peers must keep accepting it (the leader's reconciler removes it first).
      if (
        node.desiredRole === Role.ROLE_WORKER &&
        node.membership !== RaftMembership.RAFT_MEMBERSHIP_UNSPECIFIED
      )
        throw new IssuerRefusal(
          "RAFT_MEMBER",
          `node ${nodeId} is being demoted and is still a Raft member; it renews as a worker once removed (retry)`,
        );
      // The caller gave up while this waited (its deadline, a lost connection): recording a
      // certificate nobody will receive only doubles the work when it retries.
      if (signal.aborted)
        throw new IssuerRefusal(
          "UNAVAILABLE",
          `node ${nodeId} went away before its renewal was recorded; retry`,
        );
      const now = this.now();
      const issued = this.signer.issue(cluster, { csr, role, nodeId, now });
      const certificate = certificateFacts(issued);
      await proposeCommand(this.options.raft, {
        $case: "recordIssuance",
        value: {
          nodeId,
          role: node.desiredRole,
          join: false,
          joinSecretSha256: "",
          address: "",
          atMs: now.getTime(),
          certificate,
        },
      });
      this.issued++;
      this.logger.info({ nodeId, role, serial: issued.serialNumber }, "certificate renewed and recorded");
      return {
        certificateChainPem: encoder.encode(issued.chainPem),
        trustBundlePem: encoder.encode(this.signer.trustBundlePem(cluster)),
        role: node.desiredRole,
        raft: raftBindingOf(this.options.state, nodeId),
      };
    }, signal);
  }

  // ---- NodeCertificateStatus -------------------------------------------------------

  private async streamStatus(
    call: grpc.ServerWritableStream<NodeCertificateStatusRequest, NodeCertificateStatusResponse>,
  ): Promise<void> {
    const nodeId = call.request.nodeId;
    const problem = nodeIdProblem(nodeId);
    if (problem) throw new IssuerRefusal("NODE_ID_INVALID", `node id refused: ${problem}`);
    let outcome = this.statusWatch.outcomeNow(nodeId);
    if (!outcome) {
      call.write(statusMessage(IssuanceState.ISSUANCE_STATE_PENDING));
      const waited = await this.statusWatch.wait(
        nodeId,
        this.options.statusWaitMs ?? 30_000,
        cancelSignal(call),
      );
      if (waited === "cancelled") return;
      if (waited === "closed")
        throw new IssuerRefusal("UNAVAILABLE", "this manager's CA service stopped; ask another manager");
      if (waited === "timeout")
        throw new IssuerRefusal(
          "NODE_NOT_FOUND",
          `no certificate recorded for node ${nodeId} on this manager; join again`,
        );
      outcome = waited;
    }
    const cluster = this.requireCluster();
    const node = this.options.state.node(nodeId);
    if (outcome === "removed" || !node?.certificate) {
      this.logger.warn({ nodeId, code: "NODE_REMOVED" }, "status of a removed node refused");
      call.write({
        ...statusMessage(IssuanceState.ISSUANCE_STATE_REFUSED),
        reasonCode: "NODE_REMOVED",
        message: `node ${nodeId} was removed from the cluster; join again with a fresh join token`,
      });
    } else {
      call.write({
        ...statusMessage(IssuanceState.ISSUANCE_STATE_ISSUED),
        certificateChainPem: encoder.encode(this.signer.chainPem(cluster, node.certificate)),
        trustBundlePem: encoder.encode(this.signer.trustBundlePem(cluster)),
        clusterId: cluster.id,
        role: node.role,
        raft: raftBindingOf(this.options.state, nodeId),
      });
    }
    call.end();
  }

  /**
   * The last renewal this manager refused to a node, and when (kept until the node renews
   * here; bounded): `ca status` shows it for a node a rotation waits for.
   */
  lastRenewalRefusal(nodeId: string): { code: string; atMs: number } | undefined {
    return this.renewalRefusals.get(nodeId);
  }

  private noteRenewalRefusal(call: CallerSource, error: unknown): void {
    const nodeId = this.options.callerIdentity(call)?.nodeId;
    if (!nodeId) return;
    const code = asIssuerRefusal(error)?.code ?? "UNAVAILABLE";
    if (this.renewalRefusals.size >= MAX_REMEMBERED_REFUSALS && !this.renewalRefusals.has(nodeId)) {
      const oldest = this.renewalRefusals.keys().next().value;
      if (oldest !== undefined) this.renewalRefusals.delete(oldest);
    }
    this.renewalRefusals.delete(nodeId);
    this.renewalRefusals.set(nodeId, { code, atMs: this.now().getTime() });
  }

  // ---- common ----------------------------------------------------------------------

  private requireCluster(): Cluster {
    const cluster = this.options.state.cluster();
    if (!cluster)
      throw new IssuerRefusal("NO_CLUSTER", "the cluster is not initialized on this manager yet; retry");
    return cluster;
  }

  private answer<Req, Res>(
    method: string,
    call: grpc.ServerUnaryCall<Req, Res>,
    callback: grpc.sendUnaryData<Res>,
    work: () => Promise<Res>,
  ): void {
    work().then(
      (response) => callback(null, response),
      (error: unknown) => callback(this.refusalOf(method, call, error).toServiceError()),
    );
  }

  /** Logs the refusal (or the bug) and returns what to answer. */
  private refusalOf(method: string, call: SurfaceCall, error: unknown): IssuerRefusal {
    const refusal = asIssuerRefusal(error);
    if (refusal) {
      this.logger.warn({ method, code: refusal.code, peer: call.getPeer() }, refusal.message);
      return refusal;
    }
    this.logger.error({ method, err: error, peer: call.getPeer() }, "CA call failed unexpectedly");
    return new IssuerRefusal(
      "UNAVAILABLE",
      "the CA service failed unexpectedly (logged on the manager); retry",
    );
  }
}

/** The role a token admits, telling a rotated token (remembered by digest) from a wrong one. */
function roleForToken(token: { rootDigest: string; secret: string }, cluster: Cluster): NodeRole {
  const root = cluster.root;
  const rootDer = root ? new X509Certificate(root.certPem).raw : new Uint8Array();
  const actual = rootCertificateDigest(rootDer);
  if (actual !== token.rootDigest) throw new RootDigestMismatchError(token.rootDigest, actual);
  const secrets = cluster.joinTokenSecrets;
  try {
    return roleForJoinToken(token, { worker: secrets?.worker ?? "", manager: secrets?.manager ?? "" });
  } catch (error) {
    if (error instanceof TokenInvalidError && secrets?.rotatedSha256.includes(joinSecretSha256(token.secret)))
      throw new TokenRotatedError();
    throw error;
  }
}

function certificateFacts(issued: IssuedNodeCertificate) {
  return {
    serial: issued.serialNumber,
    notAfterMs: issued.notAfter.getTime(),
    issuerKeyId: issued.issuerKeyId,
    der: issued.certificateDer,
  };
}

function roleOf(role: NodeRole): Role {
  return role === "manager" ? Role.ROLE_MANAGER : Role.ROLE_WORKER;
}

function roleName(role: Role): NodeRole {
  return role === Role.ROLE_MANAGER ? "manager" : "worker";
}

function statusMessage(state: IssuanceState): NodeCertificateStatusResponse {
  return {
    state,
    certificateChainPem: new Uint8Array(),
    trustBundlePem: new Uint8Array(),
    clusterId: "",
    role: Role.ROLE_UNSPECIFIED,
    reasonCode: "",
    message: "",
    raft: undefined,
  };
}

/** A manager's Raft member id (assigned in the log with its manager certificate) and the members it must know. */
function raftBindingOf(state: ClusterState, nodeId: string): RaftBinding | undefined {
  const node = state.node(nodeId);
  if (!node || node.role !== Role.ROLE_MANAGER || node.raftId === 0) return undefined;
  const peers = state
    .nodes()
    .filter(
      (n) => n.id !== nodeId && n.raftId !== 0 && n.membership !== RaftMembership.RAFT_MEMBERSHIP_UNSPECIFIED,
    )
    .map((n) => ({ raftId: n.raftId, nodeId: n.id, address: n.address }));
  return { raftId: node.raftId, peers };
}

/** Aborted when the caller goes away, so a queued request or a status wait ends with it. */
function cancelSignal(call: SurfaceCall): AbortSignal {
  const controller = new AbortController();
  call.on("cancelled", () => controller.abort());
  return controller.signal;
}
