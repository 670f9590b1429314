// Refuses, at the end of the TLS handshake, a client that sent a certificate which failed
// verification (revoked, untrusted, expired), on a server that also admits clients with
// no certificate at all.
//
// A manager serves public methods (root fetch, token-bearing join, health) to clients
// without a certificate, so its TLS server cannot set rejectUnauthorized: Node then
// completes every handshake and only records the verdict (socket.authorized,
// authorizationError); OpenSSL is never told to fail it. A removed node's revoked
// certificate would so complete a handshake (the authorization interceptor refusing its
// calls afterwards). Here a certificate that was sent and did not verify closes the
// connection the moment the handshake completes, before any HTTP/2 byte, exactly as
// rejectUnauthorized does; a client that sent none goes on to the interceptor.
//
// grpc-js exposes neither its TLS servers nor a connection hook: this reaches its
// private `http2Servers` map (grpc-js 1.14). It fails closed: if that map is not what it
// was, the server refuses to start rather than silently skipping the check, and
// test/ca/revocation-handshake.test.ts fails.
import type { Duplex } from "node:stream";
import { TLSSocket, Server as TlsServer } from "node:tls";
import type * as grpc from "@grpc/grpc-js";
import type { Logger } from "../../log/logger.js";
import { TlsHookUnavailableError } from "../errors.js";

const hooked = new WeakSet<TlsServer>();

/**
 * Call once the server is bound (its listening sockets exist). Idempotent per listener.
 * Returns how many TLS listeners it guards.
 */
export function refuseUnverifiedClientCertificates(
  server: grpc.Server,
  logger: Logger,
  /** Told of every completed handshake: whether it was kept (false: refused here). */
  onHandshake?: (kept: boolean) => void,
): number {
  const listeners = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(listeners instanceof Map)) throw new TlsHookUnavailableError("no http2Servers map");
  let guarded = 0;
  for (const listener of listeners.keys()) {
    if (!(listener instanceof TlsServer)) continue; // a plaintext listener has no handshake to check
    guarded++;
    if (hooked.has(listener)) continue;
    hooked.add(listener);
    // Prepended: runs before the HTTP/2 layer makes a session of the connection.
    listener.prependListener("secureConnection", (socket: Duplex) => {
      if (!(socket instanceof TLSSocket)) return;
      // Checked first, on its own line: inside `onHandshake?.(...)` it would not run without a listener.
      const refused = refuseIfUnverified(socket, logger);
      onHandshake?.(!refused);
    });
  }
  if (guarded === 0) throw new TlsHookUnavailableError("no TLS listener found");
  return guarded;
}

/** Whether the connection was refused (destroyed). */
function refuseIfUnverified(socket: TLSSocket, logger: Logger): boolean {
  if (socket.authorized) return false;
  const peer = socket.getPeerCertificate();
  // No certificate sent: only public methods will answer it (the interceptor decides).
  if (!peer?.raw) return false;
  // Node types it as an Error; at run time it is OpenSSL's code, e.g. "CERT_REVOKED".
  const reason = String(socket.authorizationError);
  logger.warn(
    {
      code: reason === "CERT_REVOKED" ? "NODE_REMOVED" : "CERT_INVALID",
      reason,
      peerNodeId: peer.subject?.CN,
      serial: peer.serialNumber,
      remote: `${socket.remoteAddress}:${socket.remotePort}`,
    },
    "refused a client certificate at the TLS handshake",
  );
  socket.destroy();
  return true;
}
