// The control API's endpoint: a grpc-js server on the state dir's control.sock, a unix
// socket of mode 0600 with no TLS (the file's permissions are the authentication: only
// the user running the manager, or root, can connect). The socket is removed at stop;
// a stale one left by a crashed run is replaced (the caller holds the state dir's lock,
// so no live manager owns it).
import { chmodSync, lstatSync, unlinkSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { ControlService } from "../gen/control/v1/control.js";
import type { Logger } from "../log/logger.js";
import { ControlError } from "./errors.js";
import type { ControlApi } from "./service.js";

export const CONTROL_SOCKET_MODE = 0o600;
/** sun_path holds 108 bytes on Linux, the last one a NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

export class ControlEndpoint {
  private server: grpc.Server | undefined;
  private readonly log: Logger;

  constructor(
    private readonly socketPath: string,
    private readonly api: ControlApi,
    logger: Logger,
  ) {
    this.log = logger.child({ component: "control-endpoint" });
  }

  async start(): Promise<void> {
    if (Buffer.byteLength(this.socketPath) > MAX_SOCKET_PATH_BYTES)
      throw new ControlError(
        "CONTROL_SOCKET_PATH_TOO_LONG",
        `${this.socketPath} is longer than a unix socket path may be (${MAX_SOCKET_PATH_BYTES} bytes); ` +
          "nothing was started. Use a state dir with a shorter path",
      );
    removeStaleSocket(this.socketPath, this.log);
    const server = new grpc.Server();
    server.addService(ControlService, this.api.handlers());
    // The socket is created by bind with the process umask: narrow it for that instant so the
    // file is never connectable by others, then set the mode explicitly.
    const previousUmask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) =>
        server.bindAsync(`unix:${this.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) =>
          err ? reject(err) : resolve(),
        ),
      );
    } finally {
      process.umask(previousUmask);
    }
    chmodSync(this.socketPath, CONTROL_SOCKET_MODE);
    this.server = server;
    this.log.info({ socket: this.socketPath }, "control API listening");
  }

  /** Finishes calls in flight (bounded by `graceMs`), then removes the socket. */
  async stop(graceMs = 2_000): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await shutdown(server, graceMs);
    try {
      unlinkSync(this.socketPath);
    } catch {
      // Already gone.
    }
  }
}

export async function shutdown(server: grpc.Server, graceMs: number): Promise<void> {
  await new Promise<void>((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}

function removeStaleSocket(path: string, log: Logger): void {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // none
  }
  if (!isSocket)
    throw new ControlError(
      "CONTROL_SOCKET_BLOCKED",
      `${path} exists and is not a socket; nothing was changed. Move it away and start the manager again`,
    );
  unlinkSync(path);
  log.warn({ socket: path }, "replaced a stale control socket left by an earlier run");
}
