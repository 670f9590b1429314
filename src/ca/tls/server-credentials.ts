// grpc-js server credentials that take the whole TLS server context from one source (the
// node's TlsCredentialHolder): key, certificate chain, trusted roots and revocation lists.
//
// Why not grpc-js's certificate-provider credentials: grpc-js builds the server context
// from {ca, cert, key} only, so a revocation list has no way in. This class is the one
// place that speaks to grpc-js's ServerCredentials hooks, all declared in its .d.ts:
// the constructor's (serverOptions, contextOptions), `_getSecureContextOptions` (read when
// a server binds) and the protected `updateSecureContextOptions` (each call ends in the
// http2 server's `setSecureContext`: new handshakes use the new context, open connections
// keep theirs, the hitless promise). test/ca/revocation-handshake.test.ts fails if a
// grpc-js upgrade stops honouring them.
import type { SecureContextOptions } from "node:tls";
import * as grpc from "@grpc/grpc-js";

/** What a TLS server loads, and a way to hear that it changed. */
export interface SecureContextSource {
  /** Always usable: the source validates every replacement before it shows it. */
  serverContextOptions(): SecureContextOptions;
  /** `listener` runs after each change; returns the unsubscribe. */
  watchServerContext(listener: () => void): () => void;
}

type Watcher = Parameters<grpc.ServerCredentials["_addWatcher"]>[0];

export class SourcedServerCredentials extends grpc.ServerCredentials {
  private unwatchSource: (() => void) | undefined;
  private readonly watching = new Set<Watcher>();

  constructor(
    private readonly source: SecureContextSource,
    private readonly requireClientCertificate: boolean,
  ) {
    // A client certificate is always requested and verified when sent. Without
    // requireClientCertificate a client may send none (public methods only; the
    // authorization interceptor refuses the rest), and then OpenSSL completes the
    // handshake whatever the verification said: see handshake-refusal.ts.
    super({ requestCert: true, rejectUnauthorized: requireClientCertificate }, source.serverContextOptions());
  }

  // Read when a server binds: the source's current value, not the one at construction.
  override _getSecureContextOptions(): SecureContextOptions | null {
    return this.source.serverContextOptions();
  }

  override _addWatcher(watcher: Watcher): void {
    // Subscribed only while a server uses these credentials: the holder outlives them.
    this.unwatchSource ??= this.source.watchServerContext(() =>
      this.updateSecureContextOptions(this.source.serverContextOptions()),
    );
    this.watching.add(watcher);
    super._addWatcher(watcher);
  }

  override _removeWatcher(watcher: Watcher): void {
    this.watching.delete(watcher);
    super._removeWatcher(watcher);
    if (this.watching.size === 0) {
      this.unwatchSource?.();
      this.unwatchSource = undefined;
    }
  }

  override _equals(other: grpc.ServerCredentials): boolean {
    return (
      other === this ||
      (other instanceof SourcedServerCredentials &&
        other.source === this.source &&
        other.requireClientCertificate === this.requireClientCertificate)
    );
  }
}
