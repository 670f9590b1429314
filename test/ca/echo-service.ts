// A tiny gRPC service for the TLS tests, defined by hand with Buffer
// serializers so no proto is needed: who am I (as the server sees me), a
// ticking server stream, and methods with different authorization policies.
import * as grpc from "@grpc/grpc-js";
import { checkNodeCsr, createNodeCsr } from "../../src/ca/csr.js";
import { parseNodeCertificate } from "../../src/ca/node-identity.js";
import type { NodeRole } from "../../src/ca/profile.js";
import type { RootCA } from "../../src/ca/root-ca.js";
import type { NodeTlsIdentity } from "../../src/ca/tls/credential-holder.js";

export const ECHO = {
  whoami: "/test.Echo/Whoami",
  ticks: "/test.Echo/Ticks",
  managerOnly: "/test.Echo/ManagerOnly",
  public: "/test.Echo/Public",
  unlisted: "/test.Echo/Unlisted",
} as const;

export const TICK_PERIOD_MS = 20;

const identity = (b: Buffer): Buffer => b;

function method(path: string, responseStream: boolean): grpc.MethodDefinition<Buffer, Buffer> {
  return {
    path,
    requestStream: false,
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
  ManagerOnly: method(ECHO.managerOnly, false),
  Public: method(ECHO.public, false),
  Unlisted: method(ECHO.unlisted, false),
};

/** What the server saw of the caller: its certificate serial, or "none". */
function peerSerial(call: grpc.ServerUnaryCall<Buffer, Buffer>): Buffer {
  const raw = call.getAuthContext().sslPeerCertificate?.raw;
  return Buffer.from(raw ? parseNodeCertificate(raw).serialNumber : "none");
}

const handlers: grpc.UntypedServiceImplementation = {
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
  Ticks: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
    let tick = 0;
    const timer = setInterval(() => call.write(Buffer.from(String(tick++))), TICK_PERIOD_MS);
    const stop = (): void => clearInterval(timer);
    call.on("cancelled", stop);
    call.on("close", stop);
    call.on("error", stop);
  },
};

export interface RunningServer {
  port: number;
  target: string;
  close(): Promise<void>;
}

export async function startEchoServer(
  credentials: grpc.ServerCredentials,
  interceptors: grpc.ServerInterceptor[] = [],
): Promise<RunningServer> {
  const server = new grpc.Server({ interceptors });
  server.addService(definition, handlers);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync("127.0.0.1:0", credentials, (error, bound) => (error ? reject(error) : resolve(bound)));
  });
  return {
    port,
    target: `127.0.0.1:${port}`,
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

export function openTicks(client: grpc.Client): grpc.ClientReadableStream<Buffer> {
  return client.makeServerStreamRequest(ECHO.ticks, identity, identity, Buffer.alloc(0));
}

export interface IssuedNode extends NodeTlsIdentity {
  serialNumber: string;
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
  return { privateKeyPem, certificateChainPem: issued.chainPem, serialNumber: issued.serialNumber };
}
