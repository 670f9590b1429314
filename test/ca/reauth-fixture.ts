// A manager-like gRPC server on loopback with mutual TLS and a NodeAuthorizer whose
// view of the cluster (removed nodes, current roles, certificates on record, clock)
// the test changes, plus client streams that record what they received and how they ended.
import type * as grpc from "@grpc/grpc-js";
import { expect } from "chai";
import { pino } from "pino";
import type { NodeRole } from "../../src/ca/profile.js";
import { RootCA } from "../../src/ca/root-ca.js";
import { type AuthorizationPolicy, NodeAuthorizer, refusalReasonOf } from "../../src/ca/tls/authorization.js";
import { TlsCredentialHolder } from "../../src/ca/tls/credential-holder.js";
import { silentLogger } from "../../src/log/logger.js";
import {
  ECHO,
  freshClient,
  type IssuedNode,
  issueNode,
  openChat,
  openTicks,
  type RunningServer,
  startEchoServer,
} from "./echo-service.js";
import { waitFor } from "./helpers.js";

export const CLUSTER = "cluster-reauth";

export const policy: AuthorizationPolicy = {
  [ECHO.whoami]: { roles: ["manager", "worker"] },
  [ECHO.slow]: { roles: ["manager", "worker"] },
  [ECHO.ticks]: { roles: ["manager", "worker"] },
  // Shaped like Raft: manager-only, and the bidi one like the transport's stream.
  [ECHO.managerTicks]: { roles: ["manager"] },
  [ECHO.chat]: { roles: ["manager"] },
  [ECHO.managerOnly]: { roles: ["manager"] },
};

/** A client stream and what it saw: messages, and the status it ended with. */
export interface StreamWatch {
  readonly what: string;
  messages: number;
  error: grpc.ServiceError | undefined;
  status: grpc.StatusObject | undefined;
  /** Makes the server send something (a bidi stream only answers what it is sent). */
  poke(): void;
  cancel(): void;
  /** Ends the client's side of a bidi stream; the echo handler then ends the call with OK. */
  halfClose(): void;
}

function watch(
  what: string,
  stream: grpc.ClientReadableStream<Buffer> | grpc.ClientDuplexStream<Buffer, Buffer>,
): StreamWatch {
  const watched: StreamWatch = {
    what,
    messages: 0,
    error: undefined,
    status: undefined,
    poke: () => {
      if ("write" in stream && watched.status === undefined) stream.write(Buffer.from("ping"));
    },
    cancel: () => stream.cancel(),
    halfClose: () => {
      if ("end" in stream) stream.end();
    },
  };
  stream.on("data", () => watched.messages++);
  stream.on("error", (error: grpc.ServiceError) => {
    watched.error = error;
  });
  stream.on("status", (status: grpc.StatusObject) => {
    watched.status = status;
  });
  return watched;
}

export interface LogLine {
  code?: string;
  openStream?: boolean;
}

export class ReauthFixture {
  readonly root = RootCA.create({ clusterId: CLUSTER });
  readonly removed = new Set<string>();
  readonly currentRoles = new Map<string, NodeRole>();
  readonly recorded = new Map<string, Date>();
  /** The authorizer's clock runs with real time, moved by this much. */
  offsetMs = 0;
  readonly refusals: string[] = [];
  readonly logLines: LogLine[] = [];
  readonly authorizer = new NodeAuthorizer({
    clusterId: CLUSTER,
    policy,
    isNodeRemoved: (nodeId) => this.removed.has(nodeId),
    currentRole: (nodeId) => this.currentRoles.get(nodeId),
    recordedNotAfter: (nodeId) => this.recorded.get(nodeId),
    logger: pino({ level: "info" }, { write: (s: string) => void this.logLines.push(JSON.parse(s)) }),
    now: () => new Date(Date.now() + this.offsetMs),
    onRefusal: (code) => this.refusals.push(code),
  });
  private readonly clients: grpc.Client[] = [];
  private readonly streams: StreamWatch[] = [];

  private runningServer: RunningServer | undefined;

  private constructor() {}

  static async start(): Promise<ReauthFixture> {
    const fixture = new ReauthFixture();
    const serverHolder = new TlsCredentialHolder({
      identity: issueNode(fixture.root, "manager", "m-server"),
      trustBundlePem: fixture.root.certificatePem,
      logger: silentLogger(),
    });
    fixture.runningServer = await startEchoServer(
      serverHolder.serverCredentials({ requireClientCertificate: true }),
      [fixture.authorizer.interceptor()],
    );
    return fixture;
  }

  get server(): RunningServer {
    if (!this.runningServer) throw new Error("the fixture's server is not started");
    return this.runningServer;
  }

  issue(role: NodeRole, nodeId: string, options: { lifetimeMs?: number; now?: Date } = {}): IssuedNode {
    return issueNode(this.root, role, nodeId, options);
  }

  /** A node's client on its own connection (the certificate it presents is fixed for that connection). */
  clientFor(identity: IssuedNode): grpc.Client {
    const holder = new TlsCredentialHolder({
      identity,
      trustBundlePem: this.root.certificatePem,
      logger: silentLogger(),
    });
    const client = freshClient(
      this.server.target,
      holder.channelCredentials({ clusterId: CLUSTER, expectedServerRole: "manager" }),
      "manager",
    );
    this.clients.push(client);
    return client;
  }

  /** Opens a server stream (ticks) or the bidi echo and waits until it delivers. */
  async open(client: grpc.Client, path: string, what: string): Promise<StreamWatch> {
    const watched = this.openWithoutWaiting(client, path, what);
    await expectAlive(watched);
    return watched;
  }

  openWithoutWaiting(client: grpc.Client, path: string, what: string): StreamWatch {
    const stream = path === ECHO.chat ? openChat(client) : openTicks(client, path);
    const watched = watch(what, stream);
    this.streams.push(watched);
    return watched;
  }

  /** Cancels the streams the test opened, but these. */
  cancelStreamsExcept(kept: readonly StreamWatch[]): void {
    for (const stream of this.streams) if (!kept.includes(stream)) stream.cancel();
    this.streams.splice(0, this.streams.length, ...kept);
  }

  async close(): Promise<void> {
    for (const stream of this.streams) stream.cancel();
    for (const client of this.clients) client.close();
    this.authorizer.close();
    await this.server.close();
  }
}

/** The stream goes on delivering: a few more messages arrive and it has not ended. */
export async function expectAlive(stream: StreamWatch, timeoutMs = 3_000): Promise<void> {
  const before = stream.messages;
  const deadline = Date.now() + timeoutMs;
  while (stream.messages < before + 3) {
    expect(stream.error, `${stream.what} ended: ${stream.error?.details}`).to.equal(undefined);
    if (Date.now() > deadline) throw new Error(`${stream.what} delivered nothing for ${timeoutMs} ms`);
    stream.poke();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  expect(stream.error, `${stream.what} ended: ${stream.error?.details}`).to.equal(undefined);
}

/** The stream was ended by the authorizer with this status and reason code, within the timeout. */
export async function expectClosed(
  stream: StreamWatch,
  status: grpc.status,
  reason: string,
  timeoutMs = 3_000,
): Promise<void> {
  await waitFor(`${stream.what} to be closed`, () => stream.error !== undefined, timeoutMs);
  const error = stream.error!;
  expect(error.code, `${stream.what}: ${error.details}`).to.equal(status);
  expect(error.details).to.match(new RegExp(`^${reason}: `));
  expect(refusalReasonOf(error), `${stream.what}'s reason trailer`).to.equal(reason);
}
