// One holder for a node's private key, certificate chain and trust bundle that
// grpc-js reads through its certificate-provider credentials. Every replacement
// is validated first and only then pushed: grpc-js does not roll back a bad push
// (it would fail every new handshake), so a rejected update keeps the last good
// value. Pushes change what new handshakes use; open connections and streams
// keep the secure context they were made with (grpc-js calls setSecureContext
// on the server and builds a fresh context per connection attempt on clients).
// The server side also loads the revocation lists the manager pushes (one per root,
// signed by it): a removed node's certificates then fail the TLS handshake itself.
import { createPrivateKey, type KeyObject, type X509Certificate } from "node:crypto";
import { createSecureContext, type PeerCertificate, type SecureContextOptions } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "../../log/logger.js";
import { trustBundleFromPem, verifyCertificates } from "../chain.js";
import { CaError, CredentialsRejectedError } from "../errors.js";
import { memoizeByString } from "../memo.js";
import { type NodeIdentity, parseNodeCertificate } from "../node-identity.js";
import { certificatesFromPem, pemOf } from "../pem.js";
import type { NodeRole } from "../profile.js";
import { type CheckedRevocationList, checkRevocationLists } from "../revocation-list.js";
import { type SecureContextSource, SourcedServerCredentials } from "./server-credentials.js";
import { verifyServerNode } from "./server-identity.js";

type CertificateProvider = grpc.experimental.CertificateProvider;
type CaListener = grpc.experimental.CaCertificateUpdateListener;
type IdentityListener = grpc.experimental.IdentityCertificateUpdateListener;

export interface NodeTlsIdentity {
  privateKeyPem: string;
  /** The leaf first, then the intermediates to send (the cross-signed root during a rotation). */
  certificateChainPem: string;
}

export interface TlsCredentialHolderOptions {
  identity: NodeTlsIdentity;
  trustBundlePem: string;
  logger: Logger;
  now?: () => Date;
}

export interface ChannelCredentialOptions {
  clusterId: string;
  /** The role the server must hold (its role SAN), e.g. "manager" for the dispatcher. */
  expectedServerRole: NodeRole;
  /** When set, the server's CN must be exactly this node id (a Raft member dials a given member). */
  expectedServerNodeId?: string;
  /** Told the identity of each server this channel completes a handshake with. */
  onServerIdentity?: (identity: NodeIdentity) => void;
}

export class TlsCredentialHolder implements CertificateProvider, SecureContextSource {
  // Assigned in the constructor from validateIdentity (which reads them first: undefined then).
  private identity!: NodeTlsIdentity;
  private privateKey!: KeyObject;
  private identityInfo: NodeIdentity;
  private trustBundlePem: string;
  private revocationLists: CheckedRevocationList[] = [];
  /** What the server loads: the lists when they cover every trusted root, else none (see servedRevocationLists). */
  private servedCrls: string[] = [];
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();
  private readonly serverContextListeners = new Set<() => void>();
  private readonly logger: Logger;
  private readonly now: () => Date;

  /** Throws CredentialsRejectedError if the initial material is unusable. */
  constructor(options: TlsCredentialHolderOptions) {
    this.logger = options.logger.child({ component: "tls-credentials" });
    this.now = options.now ?? (() => new Date());
    this.trustBundlePem = validateTrustBundle(options.trustBundlePem);
    [this.identity, this.identityInfo, this.privateKey] = this.validateIdentity(
      options.identity,
      this.trustBundlePem,
      undefined,
    );
  }

  /** The node identity new handshakes present. */
  get currentIdentity(): NodeIdentity {
    return this.identityInfo;
  }

  /** The private key new handshakes use (a renewal signs its CSR with it: the key stays). */
  get currentPrivateKey(): KeyObject {
    return this.privateKey;
  }

  get currentTrustBundlePem(): string {
    return this.trustBundlePem;
  }

  /** A renewed certificate (and possibly key). Throws CredentialsRejectedError and keeps the old one if invalid. */
  replaceIdentity(identity: NodeTlsIdentity): void {
    const [validated, info, key] = this.validateIdentity(
      identity,
      this.trustBundlePem,
      this.identityInfo.clusterId,
    );
    // All three together, once every check passed: a refused identity changes none of them.
    this.identity = validated;
    this.identityInfo = info;
    this.privateKey = key;
    this.logger.info(
      { nodeId: info.nodeId, role: info.role, serial: info.serialNumber, issuerKeyId: info.issuerKeyId },
      "node certificate replaced; new handshakes use it",
    );
    const update = this.identityUpdate();
    for (const listener of this.identityListeners) listener(update);
    this.serverContextChanged();
  }

  /** A renewed certificate for the key held now (renewals keep the key). Throws CredentialsRejectedError and keeps the old one if invalid. */
  replaceCertificate(certificateChainPem: string): void {
    this.replaceIdentity({ privateKeyPem: this.identity.privateKeyPem, certificateChainPem });
  }

  /** A new set of trusted roots (grown to old+new, or shrunk to new, during a root rotation). */
  replaceTrustBundle(trustBundlePem: string): void {
    try {
      this.trustBundlePem = validateTrustBundle(trustBundlePem);
    } catch (error) {
      throw this.rejected("trust bundle", error);
    }
    this.logger.info({ roots: trustBundleFromPem(this.trustBundlePem).length }, "trust bundle replaced");
    const update = this.caUpdate();
    for (const listener of this.caListeners) listener(update);
    // Lists re-checked against the new roots; a root with no list yet stops them all (servedRevocationLists).
    this.revocationLists = this.recheckRevocationLists();
    this.servedCrls = this.servedRevocationLists();
    this.serverContextChanged();
  }

  /**
   * The certificates the server must refuse in its handshakes, as X.509 CRLs (PEM, one per
   * root a client chain can pass through, each signed by it). Checked first: a list OpenSSL
   * cannot use (expired, not yet valid, a trusted root's name with a bad signature) would
   * refuse every client of that root, so such a push throws CredentialsRejectedError and
   * keeps the current lists, as does a push none of whose lists a trusted root signed.
   * New handshakes use the new lists; open connections stay.
   */
  replaceRevocationList(crlPem: string): void {
    let checked: CheckedRevocationList[];
    try {
      checked = checkRevocationLists(crlPem, this.signers(), this.now());
      if (!checked.some((crl) => crl.issuer))
        throw new CredentialsRejectedError("no revocation list is signed by a trusted root");
      // OpenSSL's own parse, as it will load them.
      createSecureContext({ ca: this.trustBundlePem, crl: checked.map((c) => c.pem) });
    } catch (error) {
      throw this.rejected("revocation list", error);
    }
    this.revocationLists = checked;
    this.servedCrls = this.servedRevocationLists();
    this.logger.info(
      {
        lists: checked.length,
        revoked: checked.reduce((n, c) => n + c.revokedCount, 0),
        served: this.servedCrls.length > 0,
      },
      "revocation lists replaced; new handshakes use them",
    );
    this.serverContextChanged();
  }

  // ---- SecureContextSource: what the TLS server loads ----------------------------

  serverContextOptions(): SecureContextOptions {
    return {
      ca: this.trustBundlePem,
      cert: this.identity.certificateChainPem,
      key: this.identity.privateKeyPem,
      // Given a CRL, Node sets CRL_CHECK | CRL_CHECK_ALL: every certificate of a client's
      // chain needs a list from its issuer, which servedRevocationLists guarantees.
      crl: this.servedCrls.length > 0 ? this.servedCrls : undefined,
    };
  }

  watchServerContext(listener: () => void): () => void {
    this.serverContextListeners.add(listener);
    return () => this.serverContextListeners.delete(listener);
  }

  /**
   * Server credentials. With requireClientCertificate false, a client
   * certificate is still requested and verified when sent; the authorization
   * interceptor then refuses certificate-less calls to non-public methods.
   */
  serverCredentials(options: { requireClientCertificate: boolean }): grpc.ServerCredentials {
    // Not grpc-js's certificate-provider credentials: they cannot carry revocation lists.
    return new SourcedServerCredentials(this, options.requireClientCertificate);
  }

  channelCredentials(options: ChannelCredentialOptions): grpc.ChannelCredentials {
    const checkServerIdentity = (_host: string, cert: PeerCertificate): Error | undefined => {
      const result = verifyServerNode(
        cert,
        options.clusterId,
        options.expectedServerRole,
        options.expectedServerNodeId,
      );
      if (result instanceof Error) {
        this.logger.warn(
          { code: (result as CaError).code, err: result.message },
          "refused server certificate",
        );
        return result;
      }
      options.onServerIdentity?.(result);
      return undefined;
    };
    return grpc.experimental.createCertificateProviderChannelCredentials(this, this, { checkServerIdentity });
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    // grpc-js registers its listeners before its own watcher: a synchronous first value would be lost.
    process.nextTick(() => {
      if (this.caListeners.has(listener)) listener(this.caUpdate());
    });
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    process.nextTick(() => {
      if (this.identityListeners.has(listener)) listener(this.identityUpdate());
    });
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }

  private serverContextChanged(): void {
    for (const listener of this.serverContextListeners) listener();
  }

  /** The current lists checked against the current roots; one a new root's name now refutes is dropped. */
  private recheckRevocationLists(): CheckedRevocationList[] {
    const kept: CheckedRevocationList[] = [];
    for (const crl of this.revocationLists) {
      try {
        kept.push(...checkRevocationLists(crl.pem, this.signers(), this.now()));
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        this.logger.warn(
          { code: "CERT_INVALID", err: reason },
          "dropped a revocation list the new roots refute",
        );
      }
    }
    return kept;
  }

  /** Known list signers: the trusted roots, and this node's own intermediates (a cross-signed root). */
  private signers(): X509Certificate[] {
    const [, ...intermediates] = certificatesFromPem(this.identity.certificateChainPem);
    return [...trustBundleFromPem(this.trustBundlePem), ...intermediates];
  }

  /**
   * The lists to load, all or none. With a CRL loaded OpenSSL checks every certificate of a
   * chain and refuses one whose issuer has no list ("unable to get certificate CRL"): a
   * trusted root without a list (a new root pushed before its list) would cut off all its
   * nodes. Then no list is loaded, and an error logged, until the lists cover the bundle:
   * a removed node's handshake completes meanwhile but the authorization interceptor still
   * refuses each of its calls.
   */
  private servedRevocationLists(): string[] {
    if (this.revocationLists.length === 0) return [];
    const roots = trustBundleFromPem(this.trustBundlePem);
    const uncovered = roots.filter(
      (root) => !this.revocationLists.some((crl) => crl.issuer && sameCa(crl.issuer, root)),
    );
    if (uncovered.length > 0) {
      this.logger.error(
        { code: "REVOCATION_LIST_MISSING", roots: uncovered.map((r) => r.subject.replaceAll("\n", ", ")) },
        "no revocation list for a trusted root: handshakes are not checked against any list until one is pushed",
      );
      return [];
    }
    return this.revocationLists.map((crl) => crl.pem);
  }

  private caUpdate(): grpc.experimental.CaCertificateUpdate {
    return { caCertificate: Buffer.from(this.trustBundlePem) };
  }

  private identityUpdate(): grpc.experimental.IdentityCertificateUpdate {
    return {
      certificate: Buffer.from(this.identity.certificateChainPem),
      privateKey: Buffer.from(this.identity.privateKeyPem),
    };
  }

  /** The identity to push (its chain re-encoded from what was checked) and what it says. */
  private validateIdentity(
    identity: NodeTlsIdentity,
    trustBundlePem: string,
    expectedClusterId: string | undefined,
  ): [NodeTlsIdentity, NodeIdentity, KeyObject] {
    try {
      const [leaf, ...intermediates] = certificatesFromPem(identity.certificateChainPem);
      if (!leaf) throw new CredentialsRejectedError("empty certificate chain");
      // OpenSSL also reads PEM labels our parser skips ("TRUSTED CERTIFICATE", "X509 CERTIFICATE"):
      // push only the certificates checked here, so the leaf OpenSSL serves is the one verified.
      const validated = {
        privateKeyPem: identity.privateKeyPem,
        certificateChainPem: pemOf([leaf, ...intermediates]),
      };
      let key = this.privateKey;
      if (!key || validated.privateKeyPem !== this.identity?.privateKeyPem) {
        // A new key: build the context OpenSSL would use (catches an unparseable key and a
        // key that does not match the leaf) and keep the parsed key for the renewals to come.
        createSecureContext({ key: validated.privateKeyPem, cert: validated.certificateChainPem });
        key = createPrivateKey(validated.privateKeyPem);
      } else if (!leaf.checkPrivateKey(key)) {
        // The same key (renewals keep it): a new context per renewal cost more than the rest
        // of a renewal on the node; the match is what could differ, checked against the key held.
        // (OpenSSL's load-time checks of the chain itself are not repeated: our CA signs with
        // SHA-256 on P-256, and verifyCertificates below checks the chain.)
        throw new CredentialsRejectedError("the certificate does not match this node's private key");
      }
      verifyCertificates(leaf, intermediates, trustBundleFromPem(trustBundlePem), this.now());
      const info = parseNodeCertificate(leaf.raw);
      if (expectedClusterId !== undefined && info.clusterId !== expectedClusterId) {
        throw new CredentialsRejectedError(
          `certificate is for cluster ${info.clusterId}, not ${expectedClusterId}`,
        );
      }
      return [validated, info, key];
    } catch (error) {
      throw this.rejected("node certificate", error);
    }
  }

  private rejected(what: string, error: unknown): CredentialsRejectedError {
    const reason = error instanceof Error ? error.message : String(error);
    const code = error instanceof CaError ? error.code : "TLS_ERROR";
    this.logger.warn({ code, err: reason }, `rejected new ${what}; keeping the current one`);
    return error instanceof CredentialsRejectedError
      ? error
      : new CredentialsRejectedError(`${what}: ${reason}`, { cause: error });
  }
}

/** The bundle to push: only the roots checked here, re-encoded, whatever else the input held. */
function validateTrustBundle(trustBundlePem: string): string {
  try {
    return validatedBundle(trustBundlePem);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new CredentialsRejectedError(`trust bundle: ${reason}`, { cause: error });
  }
}

// Once per distinct bundle: in a rotation every node of a process is handed the same one.
const validatedBundle = memoizeByString((trustBundlePem: string): string => {
  // OpenSSL would also trust blocks our parser skips ("TRUSTED CERTIFICATE", "X509 CERTIFICATE").
  const validated = pemOf(trustBundleFromPem(trustBundlePem));
  createSecureContext({ ca: validated });
  return validated;
});

/** Same CA for revocation purposes: same subject and key (a root and its cross-signed twin are). */
function sameCa(a: X509Certificate, b: X509Certificate): boolean {
  return a.subject === b.subject && a.publicKey.equals(b.publicKey);
}
