// The control API's logic: linearizable reads through the Raft runtime's ReadIndex
// and writes proposed through it (a follower's proposal is forwarded to the leader by
// the runtime itself). It sees Raft only through the RaftService seam and the state
// only through ClusterState's read API.
import { X509Certificate } from "node:crypto";
import type * as grpc from "@grpc/grpc-js";
import { formatJoinToken, generateJoinSecret, rootCertificateDigest } from "../ca/index.js";
import { type ClusterState, proposeCommand } from "../fsm/index.js";
import type { ControlServer } from "../gen/control/v1/control.js";
import type {
  CaStatusResponse,
  GetJoinTokenRequest,
  GetJoinTokenResponse,
  NodeView,
  RemoveNodeResponse,
  RoleChangeResponse,
} from "../gen/control/v1/messages.js";
import { type Cluster, NodeStatus, Role } from "../gen/fsm/v1/state.js";
import type { Logger } from "../log/logger.js";
import type { RaftService } from "../raft/runtime/seam.js";
import { asControlError, ClusterNotReadyError, ControlError } from "./errors.js";
import { lookupNode } from "./node-lookup.js";
import { NodeWrites } from "./node-writes.js";
import { RootRotationControl, rotationViewOf } from "./rotation.js";
import { nodeView, roleFromName, roleName } from "./views.js";

export interface ControlApiOptions {
  raft: RaftService;
  state: ClusterState;
  logger: Logger;
  /** Milliseconds since the epoch, for timestamps that travel in commands (default Date.now). */
  now?: () => number;
  /** The last renewal this manager's CA service refused to a node (shown for a rotation's pending nodes). */
  renewalRefusal?: (nodeId: string) => { code: string; atMs: number } | undefined;
  /** This manager's node id: its address comes first where join-token names managers. */
  selfNodeId?: string;
}

export class ControlApi {
  private readonly log: Logger;
  private readonly writes: NodeWrites;
  private readonly rotation: RootRotationControl;

  constructor(private readonly options: ControlApiOptions) {
    this.log = options.logger.child({ component: "control" });
    this.writes = new NodeWrites(options, this.log);
    this.rotation = new RootRotationControl(options.raft, options.state, this.log);
  }

  async listNodes(): Promise<NodeView[]> {
    return this.read((state, leader) => {
      requireCluster(state);
      return state.nodes().map((n) => nodeView(n, leader));
    });
  }

  async inspectNode(id: string): Promise<NodeView> {
    return this.read((state, leader) => {
      requireCluster(state);
      const found = lookupNode(state, id);
      if (found.kind === "removed")
        throw new ControlError(
          "NODE_NOT_FOUND",
          `no node ${id} (it was removed from the cluster); nodectl ls lists the nodes`,
        );
      return nodeView(found.node, leader);
    });
  }

  /** Desired role manager; the node's daemon and the leader's reconciler do the rest. */
  promoteNode(id: string): Promise<RoleChangeResponse> {
    return this.writes.promote(id);
  }

  /** Desired role worker, unless that loses the last manager or a ready quorum. */
  demoteNode(id: string): Promise<RoleChangeResponse> {
    return this.writes.demote(id);
  }

  removeNode(id: string, force: boolean): Promise<RemoveNodeResponse> {
    return this.writes.remove(id, force);
  }

  async getJoinToken(request: GetJoinTokenRequest): Promise<GetJoinTokenResponse> {
    const role = roleFromName(request.role);
    if (role === undefined)
      throw new ControlError("INVALID_ARGUMENT", `role "${request.role}" is not worker or manager`);
    if (request.rotate) {
      const secret = generateJoinSecret();
      await proposeCommand(this.options.raft, { $case: "rotateJoinToken", value: { role, secret } });
      this.log.info({ role: request.role }, "join token rotated");
    }
    // Read after the rotation was applied: the answer is the latest token, whoever rotated last.
    return this.read((state) => {
      const cluster = requireCluster(state);
      const secrets = cluster.joinTokenSecrets;
      const secret = role === Role.ROLE_MANAGER ? secrets?.manager : secrets?.worker;
      if (!secret)
        throw new ControlError("INVALID_ARGUMENT", `the cluster has no ${request.role} join token`);
      return {
        token: formatJoinToken(rootDer(cluster), secret),
        role: roleName(role),
        // This manager first (the operator reached it), then those that are up.
        managerAddresses: state
          .nodes()
          .filter((n) => n.role === Role.ROLE_MANAGER && n.address)
          .map((n) => ({
            address: n.address,
            rank: n.id === this.options.selfNodeId ? 0 : n.status === NodeStatus.NODE_STATUS_READY ? 1 : 2,
          }))
          .sort((a, b) => a.rank - b.rank)
          .map((m) => m.address),
      };
    });
  }

  async caStatus(): Promise<CaStatusResponse> {
    return this.read((state) => {
      const cluster = requireCluster(state);
      const root = rootCertificate(cluster);
      return {
        clusterId: cluster.id,
        rootKeyId: cluster.root?.keyId ?? "",
        rootNotAfterMs: new Date(root.validTo).getTime(),
        rootDigest: rootCertificateDigest(root.raw),
        nodeCertLifetimeS: cluster.nodeCertLifetimeS,
        rotation: rotationViewOf(cluster, state.nodes(), this.options.renewalRefusal),
      };
    });
  }

  /** The gRPC face: every refusal becomes a status with its stable code in the trailer. */
  handlers(): ControlServer {
    return {
      listNodes: unary(this.log, "ListNodes", async () => ({ nodes: await this.listNodes() })),
      inspectNode: unary(this.log, "InspectNode", (req) => this.inspectNode(req.id)),
      getJoinToken: unary(this.log, "GetJoinToken", (req) => this.getJoinToken(req)),
      caStatus: unary(this.log, "CaStatus", () => this.caStatus()),
      promoteNode: unary(this.log, "PromoteNode", (req) => this.promoteNode(req.id)),
      demoteNode: unary(this.log, "DemoteNode", (req) => this.demoteNode(req.id)),
      removeNode: unary(this.log, "RemoveNode", (req) => this.removeNode(req.id, req.force)),
      rotateRoot: unary(this.log, "RotateRoot", (req) => this.rotation.rotate(req)),
    };
  }

  private read<T>(fn: (state: ClusterState, leaderRaftId: number) => T): Promise<T> {
    const { raft, state } = this.options;
    return raft.read(() => fn(state, raft.leadership().leader));
  }
}

function requireCluster(state: ClusterState): Cluster {
  const cluster = state.cluster();
  if (!cluster) throw new ClusterNotReadyError();
  return cluster;
}

function rootCertificate(cluster: Cluster): X509Certificate {
  if (!cluster.root) throw new ControlError("CLUSTER_NOT_READY", "the cluster record has no root CA");
  return new X509Certificate(Buffer.from(cluster.root.certPem));
}

function rootDer(cluster: Cluster): Uint8Array {
  return rootCertificate(cluster).raw;
}

function unary<Req, Res>(
  log: Logger,
  method: string,
  run: (request: Req) => Promise<Res>,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    run(call.request).then(
      (response) => callback(null, response),
      (error: unknown) => {
        const refusal = asControlError(error);
        log.warn({ method, code: refusal.code, reason: refusal.reason, err: refusal.message }, "refused");
        callback(refusal.toStatus());
      },
    );
  };
}
