// The renewal loop (DESIGN.md "Certificates"): a node renews its certificate at a
// random moment between 50 % and 80 % of its life, and when a manager tells it to (a
// role change, a root rotation), after the delay the manager chose. The key stays (the
// CSR is signed by it), so a renewal replaces one file atomically, node.crt, and a
// crash can never leave a key that does not match its certificate. New handshakes use
// the new certificate at once; open connections keep theirs (the hitless promise).

import type { KeyObject } from "node:crypto";
import type * as grpc from "@grpc/grpc-js";
import {
  csrDerFor,
  NOT_BEFORE_BACKDATE_MS,
  type TlsCredentialHolder,
  writeCertificateFile,
} from "../ca/index.js";
import { fullJitterDelayMs } from "../dispatcher/index.js";
import { IssuerCallError, type RenewedCertificate, renewCertificate } from "../issuer/index.js";
import type { Logger } from "../log/logger.js";
import type { ManagerAddress, StateDirPaths } from "./state-dir.js";

export interface RenewalLoopOptions {
  holder: TlsCredentialHolder;
  paths: StateDirPaths;
  clusterId: string;
  /** Managers to ask, the preferred one first (the manager holding this node's session). */
  managers(): ManagerAddress[];
  /**
   * The node's open session channel and its manager: a renewal asking that manager rides
   * it (no new connection or handshake, on either side). Absent: a new channel per renewal.
   */
  sessionChannel?(): { managerId: string; channel: grpc.ChannelInterface } | undefined;
  /** Called after the new certificate is on disk and in use; a role change is handled there. */
  onRenewed(renewed: RenewedCertificate): Promise<void>;
  /** The cluster refused this node for good (removed): the daemon stops. */
  onRefused(error: IssuerCallError): void;
  logger: Logger;
  random?: () => number;
  now?: () => number;
}

/** Codes after which retrying cannot help: the node was removed or is unknown. */
const FINAL_REFUSALS: ReadonlySet<string> = new Set(["NODE_REMOVED", "NODE_NOT_FOUND", "WRONG_CLUSTER"]);
const RETRY_BASE_MS = 500;
const RETRY_MAX_MS = 15_000;

export class RenewalLoop {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = true;
  private failures = 0;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly logger: Logger;
  private request: { key: KeyObject; der: Uint8Array } | undefined;
  /** Certificates this process obtained by renewal (nodectl_certificate_renewals_total). */
  renewals = 0;

  constructor(private readonly options: RenewalLoopOptions) {
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
    this.logger = options.logger.child({ component: "renewal" });
  }

  start(): void {
    // Made now, not when the renewal is due: a rotation then finds the request ready.
    this.requestFor(this.options.holder.currentPrivateKey);
    this.stopped = false;
    this.scheduleRegular();
  }

  /** Stops the timer and waits for a renewal in flight to settle. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** A manager said to renew (role change, rotation): after its delay, unless one is due sooner. */
  renewIn(delayMs: number, reason: string): void {
    if (this.stopped) return;
    this.logger.info({ delayMs, reason }, "told to renew");
    this.schedule(delayMs);
  }

  /** The next regular renewal: a random point between 50 % and 80 % of the certificate's life. */
  private scheduleRegular(): void {
    const id = this.options.holder.currentIdentity;
    const issuedAt = id.notBefore.getTime() + NOT_BEFORE_BACKDATE_MS;
    const life = Math.max(0, id.notAfter.getTime() - issuedAt);
    const at = issuedAt + life * (0.5 + 0.3 * this.random());
    this.schedule(Math.max(0, at - this.now()));
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.renew().finally(() => {
        this.running = undefined;
      });
    }, delayMs);
    this.timer.unref();
  }

  /**
   * The CSR for this key, made once: it only proves that the node holds the key (the
   * manager sets the whole subject), and the key stays across renewals, so the same
   * request serves each of them. Signing and encoding one cost more than the rest of a
   * renewal on the node.
   */
  private requestFor(key: KeyObject): Uint8Array {
    if (this.request?.key !== key) this.request = { key, der: csrDerFor(key) };
    return this.request.der;
  }

  private async renew(): Promise<void> {
    const { holder, paths } = this.options;
    const managers = this.options.managers();
    const manager = managers[this.failures % Math.max(1, managers.length)];
    try {
      if (!manager) throw new IssuerCallError("UNAVAILABLE", "no manager known", 14);
      const csrDer = this.requestFor(holder.currentPrivateKey);
      const open = this.options.sessionChannel?.();
      const renewed = await renewCertificate({
        managerAddress: manager.address,
        channel: open?.managerId === manager.nodeId ? open.channel : undefined,
        credentials: holder.channelCredentials({
          clusterId: this.options.clusterId,
          expectedServerRole: "manager",
          expectedServerNodeId: manager.nodeId,
        }),
        csrDer,
      });
      if (this.stopped) return;
      // Validated by the holder first: a certificate it refuses is never written.
      holder.replaceCertificate(renewed.certificateChainPem);
      await writeCertificateFile(paths.nodeCert, renewed.certificateChainPem);
      // The trust bundle is not taken from here: the session pushes it (one source, so a
      // renewal answered before a rotation's trust push cannot undo that push).
      this.renewals++;
      this.failures = 0;
      const id = holder.currentIdentity;
      this.logger.info(
        { manager: manager.nodeId, role: id.role, serial: id.serialNumber, notAfter: id.notAfter },
        "certificate renewed",
      );
      await this.options.onRenewed(renewed);
      this.scheduleRegular();
    } catch (error) {
      if (this.stopped) return;
      const refusal = error instanceof IssuerCallError ? error : undefined;
      if (refusal && FINAL_REFUSALS.has(refusal.code)) {
        this.logger.error({ code: refusal.code, err: refusal.message }, "renewal refused for good");
        this.options.onRefused(refusal);
        return;
      }
      this.failures++;
      const delay = Math.max(
        refusal?.retryAfterMs ?? 0,
        fullJitterDelayMs(this.failures, RETRY_BASE_MS, RETRY_MAX_MS, this.random),
      );
      this.logger.warn(
        { manager: manager?.nodeId, code: refusal?.code, err: (error as Error).message, retryInMs: delay },
        "renewal failed; retrying",
      );
      this.schedule(delay);
    }
  }
}
