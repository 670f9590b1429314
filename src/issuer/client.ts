// The node side of the CA service, for the node daemon: join a cluster with a token,
// and renew over mutual TLS. Joining follows DESIGN.md "Join tokens": fetch the root
// over TLS without trusting it (that one call only), check its digest against the
// token and refuse, sending nothing else, on a mismatch; then send the CSR with the
// token over TLS verified against that root, and wait for the recorded certificate.
import { X509Certificate } from "node:crypto";
import { createSecureContext, type PeerCertificate, type SecureContext } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import {
  CertInvalidError,
  callErrorMessage,
  checkRootDigest,
  type NodeRole,
  parseJoinToken,
  parseNodeCertificate,
  refusalReasonOf,
  verifyServerNode,
} from "../ca/index.js";
import {
  type GetRootCACertificateResponse,
  IssuanceState,
  type IssueNodeCertificateResponse,
  NodeCAServiceClient,
  type NodeCertificateStatusResponse,
  type RaftBinding,
  type RenewNodeCertificateResponse,
} from "../gen/ca/v1/ca.js";
import { Role } from "../gen/fsm/v1/state.js";
import { PENDING_NODE_ID_METADATA_KEY, RETRY_AFTER_MS_METADATA_KEY } from "./errors.js";

/** A refusal or failure answered by a manager, with its stable reason code. */
export class IssuerCallError extends Error {
  constructor(
    /** The reason code the manager sent (e.g. TOKEN_ROTATED), or "UNAVAILABLE" when none came. */
    readonly code: string,
    message: string,
    readonly grpcStatus: grpc.status,
    readonly retryAfterMs?: number,
    /** A join the manager could not confirm but may still record: wait for this id on the status stream. */
    readonly pendingNodeId?: string,
  ) {
    super(message);
    this.name = "IssuerCallError";
  }

  static from(error: grpc.ServiceError): IssuerCallError {
    const retry = error.metadata?.get(RETRY_AFTER_MS_METADATA_KEY)[0];
    const pending = error.metadata?.get(PENDING_NODE_ID_METADATA_KEY)[0];
    const code = refusalReasonOf(error) ?? "UNAVAILABLE";
    const details = callErrorMessage(error, code);
    return new IssuerCallError(
      code,
      details,
      error.code,
      typeof retry === "string" ? Number(retry) : undefined,
      typeof pending === "string" ? pending : undefined,
    );
  }
}

export interface JoinClusterOptions {
  managerAddress: string;
  token: string;
  /** The node's CSR (DER), signed by its own key, which never leaves it. */
  csrDer: Uint8Array;
  /** Where this node serves, if it does (managers). */
  address?: string;
  /** Bound of the whole join. */
  timeoutMs?: number;
}

export interface JoinedNode {
  nodeId: string;
  role: NodeRole;
  clusterId: string;
  /** The node certificate followed by the intermediates to serve with it. */
  certificateChainPem: string;
  trustBundlePem: string;
  /** Managers: the Raft member id the log bound this node to, and the members to know. */
  raft?: RaftBinding;
  /** The node id of the manager that answered (its certificate's CN): the node's first session goes there. */
  managerNodeId: string;
}

export async function joinCluster(options: JoinClusterOptions): Promise<JoinedNode> {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  // Checked locally first: a malformed token never leaves the node.
  const token = parseJoinToken(options.token);
  const rootPem = await fetchRootUnverified(options.managerAddress, deadline);
  const root = parseRoot(rootPem);
  // Throws ROOT_DIGEST_MISMATCH: nothing else is sent to a manager of another cluster or an impostor.
  checkRootDigest(token, root.raw);
  const clusterId = organizationOf(root);
  let managerNodeId = "";
  const credentials = verifiedCredentials(rootPem, clusterId, (id) => {
    managerNodeId = id;
  });
  const client = new NodeCAServiceClient(options.managerAddress, credentials, {
    "grpc.ssl_target_name_override": "manager",
  });
  try {
    const nodeId = await unary<IssueNodeCertificateResponse>((cb) =>
      client.issueNodeCertificate(
        { token: options.token.trim(), csrDer: options.csrDer, address: options.address ?? "" },
        new grpc.Metadata(),
        { deadline },
        cb,
      ),
    ).then(
      (issued) => issued.nodeId,
      (error: unknown) => {
        // Unconfirmed, not refused: the entry may still be applied; the status stream tells.
        if (error instanceof IssuerCallError && error.pendingNodeId) return error.pendingNodeId;
        throw error;
      },
    );
    const status = await recordedStatus(client, nodeId, deadline);
    const chainPem = new TextDecoder().decode(status.certificateChainPem);
    const leaf = parseNodeCertificate(new X509Certificate(chainPem).raw);
    if (leaf.nodeId !== nodeId || leaf.clusterId !== clusterId)
      throw new CertInvalidError(
        `the manager returned a certificate for ${leaf.nodeId} of ${leaf.clusterId}`,
      );
    return {
      nodeId,
      role: leaf.role,
      clusterId,
      certificateChainPem: chainPem,
      trustBundlePem: new TextDecoder().decode(status.trustBundlePem),
      raft: status.raft,
      managerNodeId,
    };
  } finally {
    client.close();
  }
}

export interface RenewedCertificate {
  certificateChainPem: string;
  trustBundlePem: string;
  /** The role the cluster wants the node to have now. */
  role: NodeRole;
  /** Managers: the Raft member id the log bound this node to, and the members to know. */
  raft?: RaftBinding;
}

/** Renews over mutual TLS: `credentials` present the node's current certificate. */
export async function renewCertificate(options: {
  managerAddress: string;
  credentials: grpc.ChannelCredentials;
  csrDer: Uint8Array;
  timeoutMs?: number;
  channelOptions?: grpc.ChannelOptions;
  /**
   * An open channel to that manager to call on instead of a new one (the node's session
   * channel): the renewal then costs no connection and no handshake. Left open.
   */
  channel?: grpc.ChannelInterface;
}): Promise<RenewedCertificate> {
  const client = new NodeCAServiceClient(options.managerAddress, options.credentials, {
    "grpc.ssl_target_name_override": "manager",
    ...options.channelOptions,
    ...(options.channel ? { channelOverride: options.channel } : {}),
  });
  try {
    const deadline = Date.now() + (options.timeoutMs ?? 10_000);
    const response = await unary<RenewNodeCertificateResponse>((cb) =>
      client.renewNodeCertificate({ csrDer: options.csrDer }, new grpc.Metadata(), { deadline }, cb),
    );
    return {
      certificateChainPem: new TextDecoder().decode(response.certificateChainPem),
      trustBundlePem: new TextDecoder().decode(response.trustBundlePem),
      role: response.role === Role.ROLE_MANAGER ? "manager" : "worker",
      raft: response.raft,
    };
  } finally {
    // Closing a client closes its channel: a borrowed one stays with its owner.
    if (!options.channel) client.close();
  }
}

/**
 * What the cluster has on record for a node, asked without a client certificate (the
 * public status call): a removed node's certificate no longer completes a handshake, so
 * this is how its daemon learns it was removed. Resolves when the node is on record;
 * throws IssuerCallError (NODE_REMOVED for a removed node).
 */
export async function checkNodeOnRecord(options: {
  managerAddress: string;
  trustBundlePem: string;
  clusterId: string;
  nodeId: string;
  timeoutMs?: number;
}): Promise<void> {
  const credentials = verifiedCredentials(options.trustBundlePem, options.clusterId, () => undefined);
  const client = new NodeCAServiceClient(options.managerAddress, credentials, {
    "grpc.ssl_target_name_override": "manager",
  });
  try {
    await recordedStatus(client, options.nodeId, Date.now() + (options.timeoutMs ?? 5_000));
  } finally {
    client.close();
  }
}

/** The manager's root, over TLS that trusts anything: only its digest makes it trustworthy. */
async function fetchRootUnverified(address: string, deadline: number): Promise<string> {
  const insecure = grpc.credentials.createFromSecureContext(trustingNothing(), {
    rejectUnauthorized: false,
    checkServerIdentity: () => undefined,
  });
  const client = new NodeCAServiceClient(address, insecure, { "grpc.ssl_target_name_override": "manager" });
  try {
    const response = await unary<GetRootCACertificateResponse>((cb) =>
      client.getRootCaCertificate({}, new grpc.Metadata(), { deadline }, cb),
    );
    return new TextDecoder().decode(response.certificatePem);
  } finally {
    client.close();
  }
}

/**
 * A TLS context with no trusted root at all, made once: nothing is verified on the
 * unverified root fetch anyway. `createSsl(null)` would load the system's roots on every
 * call (grpc-js reads GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, set on Debian-based images: ~17 ms
 * a join here, most of a load generator's CPU during a 5,000-node join).
 */
let emptyTrust: SecureContext | undefined;
function trustingNothing(): SecureContext {
  // The cipher list an operator set for grpc-js (createSsl applies it; this must too).
  emptyTrust ??= createSecureContext({ ca: [], ciphers: process.env.GRPC_SSL_CIPHER_SUITES });
  return emptyTrust;
}

/** Verified against the checked root; the server must be a manager of that cluster. */
function verifiedCredentials(
  rootPem: string,
  clusterId: string,
  onServer: (nodeId: string) => void,
): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(Buffer.from(rootPem), null, null, {
    checkServerIdentity: (_host: string, cert: PeerCertificate) => {
      const server = verifyServerNode(cert, clusterId, "manager");
      if (server instanceof Error) return server;
      onServer(server.nodeId);
      return undefined;
    },
  });
}

/** Reads the status stream until the certificate is recorded (or refused). */
function recordedStatus(
  client: NodeCAServiceClient,
  nodeId: string,
  deadline: number,
): Promise<NodeCertificateStatusResponse> {
  return new Promise((resolve, reject) => {
    const stream = client.nodeCertificateStatus({ nodeId }, { deadline });
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      fn();
      stream.cancel();
    };
    stream.on("data", (message: NodeCertificateStatusResponse) => {
      if (message.state === IssuanceState.ISSUANCE_STATE_ISSUED) settle(() => resolve(message));
      else if (message.state === IssuanceState.ISSUANCE_STATE_REFUSED)
        settle(() =>
          reject(new IssuerCallError(message.reasonCode, message.message, grpc.status.PERMISSION_DENIED)),
        );
    });
    stream.on("error", (error: grpc.ServiceError) => settle(() => reject(IssuerCallError.from(error))));
    stream.on("end", () =>
      settle(() =>
        reject(
          new IssuerCallError(
            "UNAVAILABLE",
            "the status stream ended without a certificate",
            grpc.status.UNAVAILABLE,
          ),
        ),
      ),
    );
  });
}

function unary<T>(
  call: (callback: (error: grpc.ServiceError | null, response: T) => void) => unknown,
): Promise<T> {
  return new Promise((resolve, reject) => {
    call((error, response) => (error ? reject(IssuerCallError.from(error)) : resolve(response)));
  });
}

function parseRoot(pem: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (cause) {
    throw new CertInvalidError("the manager answered a root that is not a certificate; check the address", {
      cause,
    });
  }
}

/** The cluster id: the root's O (DESIGN.md profile: the root's subject is O=<cluster id>). */
function organizationOf(root: X509Certificate): string {
  const line = root.subject.split("\n").find((l) => l.startsWith("O="));
  if (!line) throw new CertInvalidError("the cluster's root names no cluster (no O in its subject)");
  return line.slice(2);
}
