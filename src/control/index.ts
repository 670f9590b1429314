// src/control: the control API nodectl's admin commands use, served by every manager
// on its state dir's control.sock (unix socket, mode 0600). Reads are linearizable
// (ReadIndex through the RaftService seam); writes are proposed through the same seam,
// so a follower's are forwarded to the leader by the runtime. client.ts is nodectl's
// side and imports nothing of the daemon.
export { CONTROL_ERROR_CODES, ControlError, type ControlErrorCode } from "./errors.js";
export { CONTROL_SOCKET_MODE, ControlEndpoint, shutdown } from "./server.js";
export { ControlApi, type ControlApiOptions } from "./service.js";
export { nodeView, roleFromName, roleName } from "./views.js";
