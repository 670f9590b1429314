// Real GrpcTransports over mutual TLS in one process, each behind the test bed's
// authorization policy, with certificates for any identity (including ones our CA
// refuses to issue), and raw clients that send hand-made Raft messages.
import * as grpc from "@grpc/grpc-js";
import type { NodeRole } from "../../../src/ca/profile.js";
import { RootCA } from "../../../src/ca/root-ca.js";
import { NodeAuthorizer } from "../../../src/ca/tls/authorization.js";
import { type NodeTlsIdentity, TlsCredentialHolder } from "../../../src/ca/tls/credential-holder.js";
import { type Message, MessageType } from "../../../src/gen/raft/v1/raft.js";
import {
  type MembersResponse,
  RaftTransportServiceClient,
  RaftTransportServiceService,
  type SendRequest,
} from "../../../src/gen/raft/v1/transport.js";
import { silentLogger } from "../../../src/log/logger.js";
import { GrpcTransport, type GrpcTransportOptions } from "../../../src/raft/runtime/grpc-transport.js";
import type { MemberBinding, Membership } from "../../../src/raft/runtime/members.js";
import { testbedPolicy } from "../../../src/testbed/policy.js";
import { issueNode } from "../../ca/echo-service.js";
import { forgeLeaf } from "../../ca/forge.js";

export const CLUSTER = "c-transport";
export const root = RootCA.create({ clusterId: CLUSTER });

/** A certificate as our CA issues it, or (forge) exactly as asked even if the CA would refuse. */
export function identity(role: NodeRole, nodeId: string, forge = false): NodeTlsIdentity {
  if (!forge) return issueNode(root, role, nodeId);
  return forgeLeaf(root, { organization: CLUSTER, organizationalUnit: role, commonName: nodeId }, [role]);
}

export function holderOf(id: NodeTlsIdentity): TlsCredentialHolder {
  return new TlsCredentialHolder({
    identity: id,
    trustBundlePem: root.certificatePem,
    logger: silentLogger(),
  });
}

/** A membership view; every member is a voter unless `voters` says otherwise. */
export function membership(
  members: Record<number, MemberBinding>,
  removed: number[] = [],
  extra: { voters?: number[]; removedNodeIds?: string[] } = {},
): Membership {
  const bound = new Map(Object.entries(members).map(([id, b]) => [Number(id), b]));
  return {
    members: bound,
    removed: new Set(removed),
    voters: new Set(extra.voters ?? bound.keys()),
    removedNodeIds: new Set(extra.removedNodeIds),
  };
}

export function heartbeat(from: number, to: number, term = 5): Message {
  return {
    type: MessageType.MESSAGE_TYPE_HEARTBEAT,
    to,
    from,
    term,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    snapshot: undefined,
    reject: false,
    rejectHint: 0,
    rejectHintTerm: 0,
    context: new Uint8Array(),
    transfer: false,
    target: 0,
  };
}

export interface Member {
  transport: GrpcTransport;
  address: string;
  delivered: Message[];
  unreachable: number[];
  close(): Promise<void>;
}

/** A member: a GrpcTransport with its server (authorizer in front), listening on `address` or a free port. */
export async function startMember(
  selfId: number,
  id: NodeTlsIdentity,
  members: Membership,
  options: Partial<GrpcTransportOptions> & { address?: string } = {},
): Promise<Member> {
  const holder = holderOf(id);
  const delivered: Message[] = [];
  const unreachable: number[] = [];
  const transport = new GrpcTransport({
    selfId,
    credentialsFor: (nodeId) =>
      holder.channelCredentials({
        clusterId: CLUSTER,
        expectedServerRole: "manager",
        expectedServerNodeId: nodeId,
      }),
    events: {
      onMessage: (m) => delivered.push(m),
      onSnapshotStatus: () => undefined,
      onUnreachable: (to) => unreachable.push(to),
    },
    logger: silentLogger(),
    ...options,
  });
  const authorizer = new NodeAuthorizer({
    clusterId: CLUSTER,
    policy: testbedPolicy(),
    isNodeRemoved: () => false,
    logger: silentLogger(),
  });
  const server = new grpc.Server({ interceptors: [authorizer.interceptor()] });
  server.addService(
    RaftTransportServiceService,
    transport.service((call) => authorizer.peerIdentity(call)?.nodeId),
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      options.address ?? "127.0.0.1:0",
      holder.serverCredentials({ requireClientCertificate: true }),
      (err, p) => (err ? reject(err) : resolve(p)),
    ),
  );
  transport.setMembers(members);
  return {
    transport,
    address: `127.0.0.1:${port}`,
    delivered,
    unreachable,
    async close() {
      await transport.close();
      server.forceShutdown();
    },
  };
}

/** A client holding `id` that talks to the Raft service at `address` directly. */
export class RawClient {
  private readonly client: InstanceType<typeof RaftTransportServiceClient>;

  constructor(id: NodeTlsIdentity, address: string) {
    // Plain grpc-js credentials: our credential holder would refuse to present a forged certificate.
    const credentials = grpc.credentials.createSsl(
      Buffer.from(root.certificatePem),
      Buffer.from(id.privateKeyPem),
      Buffer.from(id.certificateChainPem),
    );
    this.client = new RaftTransportServiceClient(address, credentials, {
      "grpc.ssl_target_name_override": "manager",
      "grpc.use_local_subchannel_pool": 1,
    });
  }

  /** Sends the messages on one stream and ends it; resolves with the call's error, if any. */
  send(messages: Message[]): Promise<grpc.ServiceError | null> {
    return new Promise((resolve) => {
      const call = this.client.send((err) => resolve(err));
      call.write({ messages } satisfies SendRequest);
      call.end();
    });
  }

  /** A stream to keep writing on. */
  open(): { write(m: Message): void; end(): Promise<grpc.ServiceError | null> } {
    let ended: (err: grpc.ServiceError | null) => void = () => undefined;
    const done = new Promise<grpc.ServiceError | null>((r) => {
      ended = r;
    });
    const call = this.client.send((err) => ended(err));
    return {
      write: (m) => call.write({ messages: [m] }),
      end: () => {
        call.end();
        return done;
      },
    };
  }

  members(): Promise<MembersResponse | grpc.ServiceError> {
    return new Promise((resolve) =>
      this.client.members({}, new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (err, res) =>
        resolve(err ?? res),
      ),
    );
  }

  close(): void {
    this.client.close();
  }
}

/** Polls until `condition` holds, failing after `timeoutMs`: no sleep-and-hope. */
export async function until(
  what: string,
  condition: () => boolean,
  timeoutMs = 5_000,
  intervalMs = 10,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
