// nodectl's side of the control API: one call over the manager's control.sock with a
// deadline, answered as a promise. Kept free of the daemon's modules (Raft, pino, the
// state machine) so an admin command loads little and answers fast.
import { existsSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import {
  type CaStatusResponse,
  ControlClient,
  type GetJoinTokenResponse,
  type NodeView,
} from "../gen/control/v1/control.js";

export const CONTROL_SOCKET_NAME = "control.sock";
const CALL_DEADLINE_MS = 10_000;

/** A call that did not succeed: `code` is the manager's reason code, or CONTROL_UNREACHABLE. */
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
  private readonly client: ControlClient;

  private constructor(
    private readonly stateDir: string,
    socketPath: string,
  ) {
    this.client = new ControlClient(`unix:${socketPath}`, grpc.credentials.createInsecure());
  }

  /** Refuses at once (CONTROL_UNREACHABLE) when the state dir has no control socket. */
  static open(stateDir: string): ControlConnection {
    const socketPath = join(stateDir, CONTROL_SOCKET_NAME);
    if (!existsSync(socketPath)) throw unreachable(stateDir, "it has no control.sock");
    return new ControlConnection(stateDir, socketPath);
  }

  close(): void {
    this.client.close();
  }

  async listNodes(): Promise<NodeView[]> {
    return (await this.call<object, { nodes: NodeView[] }>("listNodes", {})).nodes;
  }

  inspectNode(id: string): Promise<NodeView> {
    return this.call("inspectNode", { id });
  }

  getJoinToken(role: string, rotate: boolean): Promise<GetJoinTokenResponse> {
    return this.call("getJoinToken", { role, rotate });
  }

  caStatus(): Promise<CaStatusResponse> {
    return this.call("caStatus", {});
  }

  private call<Req, Res>(method: keyof typeof methods, request: Req): Promise<Res> {
    const deadline = new Date(Date.now() + CALL_DEADLINE_MS);
    const fn = methods[method] as unknown as (
      this: ControlClient,
      req: Req,
      metadata: grpc.Metadata,
      options: Partial<grpc.CallOptions>,
      callback: (err: grpc.ServiceError | null, res: Res) => void,
    ) => grpc.ClientUnaryCall;
    return new Promise((resolve, reject) => {
      fn.call(this.client, request, new grpc.Metadata(), { deadline }, (err, res) =>
        err ? reject(this.failure(err)) : resolve(res),
      );
    });
  }

  private failure(err: grpc.ServiceError): ControlCallError {
    const reason = err.metadata?.get("x-nodectl-reason")[0];
    if (typeof reason === "string") return new ControlCallError(reason, err.details);
    if (err.code === grpc.status.UNAVAILABLE) return unreachable(this.stateDir, err.details);
    if (err.code === grpc.status.DEADLINE_EXCEEDED)
      return new ControlCallError(
        "CONTROL_TIMEOUT",
        `the manager of ${this.stateDir} did not answer within ${CALL_DEADLINE_MS / 1000} s; check that it ` +
          "has a quorum of managers (its log says), then retry",
      );
    return new ControlCallError("CONTROL_FAILED", err.details || err.message);
  }
}

const methods = {
  listNodes: ControlClient.prototype.listNodes,
  inspectNode: ControlClient.prototype.inspectNode,
  getJoinToken: ControlClient.prototype.getJoinToken,
  caStatus: ControlClient.prototype.caStatus,
};

function unreachable(stateDir: string, detail: string): ControlCallError {
  return new ControlCallError(
    "CONTROL_UNREACHABLE",
    `no manager is running on state dir ${stateDir} (${detail}). Start it with ` +
      `nodectl run --state-dir ${stateDir}, or point --state-dir (or NODECTL_STATE_DIR) at a running manager's directory`,
  );
}
