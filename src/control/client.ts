// nodectl's side of the control API: one unary gRPC call over the manager's
// control.sock, answered as a promise. It speaks gRPC's HTTP/2 framing with node:http2
// itself instead of loading grpc-js (which alone costs an admin command 60-150 ms of
// its 0.3 s budget here), and imports nothing of the daemon (Raft, pino, the state
// machine). The server side is grpc-js (server.ts); test/node/manager.test.ts drives
// this client against it.
import { existsSync, readFileSync } from "node:fs";
import { connect as http2Connect, type IncomingHttpHeaders } from "node:http2";
import { connect as netConnect } from "node:net";
import { join } from "node:path";
import type { BinaryWriter } from "@bufbuild/protobuf/wire";
import {
  CaStatusRequest,
  CaStatusResponse,
  DemoteNodeRequest,
  GetJoinTokenRequest,
  GetJoinTokenResponse,
  InspectNodeRequest,
  ListNodesRequest,
  ListNodesResponse,
  NodeView,
  PromoteNodeRequest,
  RemoveNodeRequest,
  RemoveNodeResponse,
  RoleChangeResponse,
  RotateRootRequest,
  RotateRootResponse,
} from "../gen/control/v1/messages.js";

export const CONTROL_SOCKET_NAME = "control.sock";
const CALL_DEADLINE_MS = 10_000;
/** Far above any answer (10,000 nodes' views are ~2 MB); a larger one is refused, not buffered. */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;
const SERVICE = "/control.v1.Control";
/** gRPC status codes this client names (https://grpc.github.io/grpc/core/md_doc_statuscodes.html). */
const GRPC_OK = 0;
const GRPC_DEADLINE_EXCEEDED = 4;
const GRPC_UNAVAILABLE = 14;

interface MessageType<T> {
  encode(message: T): BinaryWriter;
  decode(input: Uint8Array): T;
}

/** A call that did not succeed: `code` is the manager's reason code, or CONTROL_UNREACHABLE and kin. */
export class ControlCallError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ControlCallError";
  }
}

export class ControlConnection {
  private constructor(
    private readonly stateDir: string,
    private readonly socketPath: string,
  ) {}

  /** Refuses at once (CONTROL_UNREACHABLE) when the state dir has no control socket. */
  static open(stateDir: string): ControlConnection {
    const socketPath = join(stateDir, CONTROL_SOCKET_NAME);
    if (!existsSync(socketPath)) throw unreachable(stateDir, "it has no control.sock");
    return new ControlConnection(stateDir, socketPath);
  }

  async listNodes(): Promise<NodeView[]> {
    return (await this.call("ListNodes", ListNodesRequest, {}, ListNodesResponse)).nodes;
  }

  inspectNode(id: string): Promise<NodeView> {
    return this.call("InspectNode", InspectNodeRequest, { id }, NodeView);
  }

  getJoinToken(role: string, rotate: boolean): Promise<GetJoinTokenResponse> {
    return this.call("GetJoinToken", GetJoinTokenRequest, { role, rotate }, GetJoinTokenResponse);
  }

  caStatus(): Promise<CaStatusResponse> {
    return this.call("CaStatus", CaStatusRequest, {}, CaStatusResponse);
  }

  promoteNode(id: string): Promise<RoleChangeResponse> {
    return this.call("PromoteNode", PromoteNodeRequest, { id }, RoleChangeResponse);
  }

  demoteNode(id: string): Promise<RoleChangeResponse> {
    return this.call("DemoteNode", DemoteNodeRequest, { id }, RoleChangeResponse);
  }

  removeNode(id: string, force: boolean): Promise<RemoveNodeResponse> {
    return this.call("RemoveNode", RemoveNodeRequest, { id, force }, RemoveNodeResponse);
  }

  rotateRoot(request: RotateRootRequest): Promise<RotateRootResponse> {
    return this.call("RotateRoot", RotateRootRequest, request, RotateRootResponse);
  }

  /** One unary call on its own HTTP/2 connection, closed when it ends. */
  private call<Req, Res>(
    method: string,
    requestType: MessageType<Req>,
    request: Req,
    responseType: MessageType<Res>,
  ): Promise<Res> {
    const session = http2Connect("http://localhost", { createConnection: () => netConnect(this.socketPath) });
    return new Promise<Res>((resolve, reject) => {
      const timer = setTimeout(() => {
        fail(
          new ControlCallError(
            "CONTROL_TIMEOUT",
            `the manager of ${this.stateDir} did not answer within ${CALL_DEADLINE_MS / 1000} s; check that it ` +
              "has a quorum of managers (its log says), then retry",
          ),
        );
      }, CALL_DEADLINE_MS);
      const fail = (error: ControlCallError) => {
        clearTimeout(timer);
        session.destroy();
        reject(error);
      };
      session.on("error", (err: Error) => fail(unreachable(this.stateDir, err.message)));
      const stream = session.request({
        ":method": "POST",
        ":path": `${SERVICE}/${method}`,
        "content-type": "application/grpc",
        te: "trailers",
        "grpc-timeout": `${CALL_DEADLINE_MS}m`,
      });
      stream.on("error", (err: Error) => fail(unreachable(this.stateDir, err.message)));
      let headers: IncomingHttpHeaders = {};
      let trailers: IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      let received = 0;
      stream.on("response", (h) => {
        headers = h;
      });
      stream.on("trailers", (t) => {
        trailers = t;
      });
      stream.on("data", (chunk: Buffer) => {
        received += chunk.length;
        if (received > MAX_RESPONSE_BYTES)
          fail(new ControlCallError("CONTROL_FAILED", `the answer exceeds ${MAX_RESPONSE_BYTES} bytes`));
        else chunks.push(chunk);
      });
      stream.on("end", () => {
        clearTimeout(timer);
        session.close();
        try {
          resolve(this.answer(responseType, Buffer.concat(chunks), { ...headers, ...trailers }));
        } catch (error) {
          reject(error);
        }
      });
      stream.end(frame(requestType.encode(request).finish()));
    });
  }

  private answer<Res>(type: MessageType<Res>, body: Buffer, meta: IncomingHttpHeaders): Res {
    // A trailers-only answer (every refusal) carries the status in the headers.
    const status = Number(meta["grpc-status"] ?? Number.NaN);
    if (status !== GRPC_OK) {
      const message = decodeGrpcMessage(meta["grpc-message"]);
      const reason = meta["x-nodectl-reason"];
      if (typeof reason === "string") throw new ControlCallError(reason, message);
      if (status === GRPC_UNAVAILABLE) throw unreachable(this.stateDir, message);
      if (status === GRPC_DEADLINE_EXCEEDED)
        throw new ControlCallError(
          "CONTROL_TIMEOUT",
          `the manager did not answer in time (${message}); retry`,
        );
      throw new ControlCallError(
        "CONTROL_FAILED",
        `the manager answered status ${meta["grpc-status"]}: ${message}`,
      );
    }
    if (body.length < 5 || body[0] !== 0 || body.readUInt32BE(1) !== body.length - 5)
      throw new ControlCallError(
        "CONTROL_FAILED",
        "the manager's answer is not one uncompressed gRPC message",
      );
    return type.decode(body.subarray(5));
  }
}

/** gRPC's length-prefixed message: a compression flag (0) and a big-endian length. */
function frame(message: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

function decodeGrpcMessage(value: string | string[] | undefined): string {
  const text = Array.isArray(value) ? value.join(",") : (value ?? "");
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function unreachable(stateDir: string, detail: string): ControlCallError {
  const elsewhere = "point --state-dir (or NODECTL_STATE_DIR) at a running manager's directory";
  const role = roleInStateDir(stateDir);
  const message =
    role === undefined
      ? `no node's state in ${stateDir} (${detail}): ${elsewhere}`
      : role === "worker"
        ? `the node of state dir ${stateDir} is a worker, which serves no admin commands: ${elsewhere}`
        : `no manager is running on state dir ${stateDir} (${detail}). Start it with ` +
          `nodectl run --state-dir ${stateDir}, or ${elsewhere}`;
  return new ControlCallError("CONTROL_UNREACHABLE", message);
}

/** The role node.json records, if the directory holds a node (for the message above only). */
function roleInStateDir(stateDir: string): string | undefined {
  try {
    const role = (JSON.parse(readFileSync(join(stateDir, "node.json"), "utf8")) as { role?: unknown }).role;
    return typeof role === "string" ? role : "unknown";
  } catch {
    return undefined;
  }
}
