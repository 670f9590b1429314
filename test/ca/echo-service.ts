// A tiny gRPC service for the TLS tests, defined by hand with Buffer
// serializers so no proto is needed: who am I (as the server sees me), ticking
// server streams, a bidi echo (shaped like a Raft stream), a slow unary call, and
// methods with different authorization policies.
import * as grpc from "@grpc/grpc-js";
import { checkNodeCsr, createNodeCsr } from "../../src/ca/csr.js";
import { parseNodeCertificate } from "../../src/ca/node-identity.js";
import type { NodeRole } from "../../src/ca/profile.js";
import type { RootCA } from "../../src/ca/root-ca.js";
import type { NodeTlsIdentity } from "../../src/ca/tls/credential-holder.js";

export const ECHO = {
  whoami: "/test.Echo/Whoami",
  ticks: "/test.Echo/Ticks",
  managerTicks: "/test.Echo/ManagerTicks",
  chat: "/test.Echo/Chat",
  slow: "/test.Echo/Slow",
  managerOnly: "/test.Echo/ManagerOnly",
  public: "/test.Echo/Public",
  unlisted: "/test.Echo/Unlisted",
} as const;

export const TICK_PERIOD_MS = 20;
export const SLOW_CALL_MS = 300;

const identity = (b: Buffer): Buffer => b;

function method(
  path: string,
  responseStream: boolean,
  requestStream = false,
): grpc.MethodDefinition<Buffer, Buffer> {
  return {
    path,
    requestStream,
    responseStream,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  };
}

const definition: grpc.ServiceDefinition = {
  Whoami: method(ECHO.whoami, false),
  Ticks: method(ECHO.ticks, true),
  ManagerTicks: method(ECHO.managerTicks, true),
  Chat: method(ECHO.chat, true, true),
  Slow: method(ECHO.slow, false),
  ManagerOnly: method(ECHO.managerOnly, false),
  Public: method(ECHO.public, false),
  Unlisted: method(ECHO.unlisted, false),
};

/** What the server saw of the caller: its certificate serial, or "none". */
function peerSerial(call: grpc.ServerUnaryCall<Buffer, Buffer>): Buffer {
  const raw = call.getAuthContext().sslPeerCertificate?.raw;
  return Buffer.from(raw ? parseNodeCertificate(raw).serialNumber : "none");
}

/** What the handlers saw, per server: the ends of streams as the handler side sees them. */
export interface EchoServerObservations {
  /** 'cancelled' events seen by stream handlers (grpc-js 1.14 emits one on every end, an OK status included). */
  streamsCancelled: number;
  /** Slow unary calls that reached their handler. */
  slowCallsStarted: number;
  /** Called right after the Chat handler ended its call (the client half-closed). */
  afterChatEnded?: () => void;
}

function ticking(observations: EchoServerObservations) {
  return (call: grpc.ServerWritableStream<Buffer, Buffer>): void => {
    let tick = 0;
    const timer = setInterval(() => call.write(Buffer.from(String(tick++))), TICK_PERIOD_MS);
    const stop = (): void => clearInterval(timer);
    call.on("cancelled", () => {
      observations.streamsCancelled++;
      stop();
    });
    call.on("close", stop);
    call.on("error", stop);
  };
}

function handlers(observations: EchoServerObservations): grpc.UntypedServiceImplementation {
  return {
    ...unaryHandlers,
    Slow: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      observations.slowCallsStarted++;
      const serial = peerSerial(call);
      setTimeout(() => callback(null, serial), SLOW_CALL_MS);
    },
    Ticks: ticking(observations),
    ManagerTicks: ticking(observations),
    Chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on("data", (message: Buffer) => call.write(message));
      call.on("end", () => {
        call.end();
        observations.afterChatEnded?.();
      });
      call.on("cancelled", () => observations.streamsCancelled++);
      call.on("error", () => {});
    },
  };
}

const unaryHandlers: grpc.UntypedServiceImplementation = {
  Whoami: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
    callback(null, peerSerial(call));
  },
  ManagerOnly: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
    callback(null, peerSerial(call));
  },
  Public: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
    callback(null, Buffer.from("public"));
  },
  Unlisted: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
    callback(null, Buffer.from("unlisted"));
  },
};

export interface RunningServer {
  server: grpc.Server;
  port: number;
  target: string;
  observations: EchoServerObservations;
  close(): Promise<void>;
}

export async function startEchoServer(
  credentials: grpc.ServerCredentials,
  interceptors: grpc.ServerInterceptor[] = [],
): Promise<RunningServer> {
  const server = new grpc.Server({ interceptors });
  const observations: EchoServerObservations = { streamsCancelled: 0, slowCallsStarted: 0 };
  server.addService(definition, handlers(observations));
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync("127.0.0.1:0", credentials, (error, bound) => (error ? reject(error) : resolve(bound)));
  });
  return {
    server,
    port,
    target: `127.0.0.1:${port}`,
    observations,
    close: () =>
      new Promise((resolve) => {
        server.forceShutdown();
        resolve();
      }),
  };
}

/** A client on its own subchannel pool, so every new client makes a fresh TLS handshake. */
export function freshClient(
  target: string,
  credentials: grpc.ChannelCredentials,
  serverRole: NodeRole,
): grpc.Client {
  return new grpc.Client(target, credentials, {
    "grpc.use_local_subchannel_pool": 1,
    "grpc.ssl_target_name_override": serverRole,
  });
}

export function callUnary(client: grpc.Client, path: string, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      path,
      identity,
      identity,
      Buffer.alloc(0),
      new grpc.Metadata(),
      { deadline: Date.now() + timeoutMs },
      (error: grpc.ServiceError | null, response?: Buffer) => {
        if (error) reject(error);
        else resolve(response?.toString() ?? "");
      },
    );
  });
}

export async function callExpectingError(client: grpc.Client, path: string): Promise<grpc.ServiceError> {
  try {
    const response = await callUnary(client, path);
    throw new Error(`expected ${path} to be refused, got "${response}"`);
  } catch (error) {
    if ((error as grpc.ServiceError).code === undefined) throw error;
    return error as grpc.ServiceError;
  }
}

export function openTicks(client: grpc.Client, path: string = ECHO.ticks): grpc.ClientReadableStream<Buffer> {
  return client.makeServerStreamRequest(path, identity, identity, Buffer.alloc(0));
}

export function openChat(client: grpc.Client): grpc.ClientDuplexStream<Buffer, Buffer> {
  return client.makeBidiStreamRequest(ECHO.chat, identity, identity);
}

export interface IssuedNode extends NodeTlsIdentity {
  serialNumber: string;
  notAfter: Date;
}

/** A node key, CSR and certificate from `ca`, as the node would hold them. */
export function issueNode(
  ca: RootCA,
  role: NodeRole,
  nodeId: string,
  options: { lifetimeMs?: number; now?: Date } = {},
): IssuedNode {
  const { privateKeyPem, csrPem } = createNodeCsr();
  const issued = ca.issueNodeCertificate({
    csr: checkNodeCsr(csrPem),
    role,
    nodeId,
    lifetimeMs: options.lifetimeMs,
    now: options.now,
  });
  return {
    privateKeyPem,
    certificateChainPem: issued.chainPem,
    serialNumber: issued.serialNumber,
    notAfter: issued.notAfter,
  };
}
