// `nodectl ca rotate`: starts a root rotation, then (unless --detach) follows it to its
// end through `ca status` reads: a progress bar per phase on a terminal, a plain line
// whenever the counts move otherwise. Ctrl-C stops the watching, not the rotation.
import { readFileSync } from "node:fs";
import { MIN_NODE_CERT_LIFETIME_MS } from "../ca/profile.js";
import type { CaStatusResponse } from "../gen/control/v1/messages.js";
import { type AdminOptions, openControl } from "./admin.js";
import { parseDurationMs } from "./duration.js";
import { UsageError } from "./errors.js";

export interface RotateOptions extends AdminOptions {
  certExpiry?: string;
  caCert?: string;
  caKey?: string;
  detach?: boolean;
}

const POLL_MS = 250;
/** Reads refused because the leader is changing are retried for this long (the rotation goes on under the next leader). */
const LEADER_CHANGE_GRACE_MS = 30_000;
const TRANSIENT_READ_CODES: ReadonlySet<string> = new Set(["LEADER_CHANGED", "NO_LEADER"]);
/** With no progress for this long, the pending nodes and why are printed (again). */
const STALL_REPORT_MS = 15_000;

export class RotationReplacedError extends Error {
  readonly code = "ROTATION_REPLACED";
}

export async function caRotate(options: RotateOptions): Promise<void> {
  const certExpiryS = options.certExpiry
    ? Math.ceil(parseDurationMs("--cert-expiry", options.certExpiry, MIN_NODE_CERT_LIFETIME_MS) / 1000)
    : 0;
  if ((options.caCert === undefined) !== (options.caKey === undefined))
    throw new UsageError("--ca-cert and --ca-key go together: give both, or neither");
  const read = (path: string | undefined) => (path ? new Uint8Array(readFileSync(path)) : new Uint8Array());
  const request = { certExpiryS, caCertPem: read(options.caCert), caKeyPem: read(options.caKey) };
  const started = await openControl(options).rotateRoot(request);
  const out = process.stdout;
  out.write(
    `Root rotation to ${started.newRootKeyId} started${started.replaced ? " (it replaces the rotation in progress)" : ""}: ` +
      `${started.nodes} nodes renew over ${(Number(started.spreadWindowMs) / 1000).toFixed(1)} s, then trust the new root alone.\n`,
  );
  if (options.detach) {
    out.write("Follow it with: nodectl ca status\n");
    return;
  }
  await follow(options, started.newRootKeyId, Date.now());
}

async function follow(options: AdminOptions, newKeyId: string, since: number): Promise<void> {
  const view = process.stdout.isTTY ? await BarView.create() : new LineView();
  let lastProgressAt = Date.now();
  let lastKey = "";
  let lastStallReport = 0;
  try {
    for (;;) {
      const status = await readStatus(options);
      const r = status.rotation;
      if (!r) {
        if (status.rootKeyId !== newKeyId) throw replaced(status);
        view.done(`Rotation done in ${seconds(since)}: every node trusts root ${newKeyId} alone.`);
        return;
      }
      if (r.newRootKeyId !== newKeyId) throw replaced(status);
      const key = `${r.phase}/${r.renewed}/${r.trusted}/${r.total}`;
      if (key !== lastKey) {
        lastKey = key;
        lastProgressAt = Date.now();
        view.update(r.phase, r.renewed, r.trusted, r.total, seconds(since));
      } else if (
        Date.now() - lastProgressAt > STALL_REPORT_MS &&
        Date.now() - lastStallReport > STALL_REPORT_MS
      ) {
        lastStallReport = Date.now();
        view.note(
          `waiting on ${r.pending.length} node(s):\n${r.pending.map((p) => `  ${p.id}: ${p.reason}`).join("\n")}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  } finally {
    view.stop();
  }
}

/** `ca status`, retried while a leader change makes reads fail (it also happens mid-rotation). */
async function readStatus(options: AdminOptions): Promise<CaStatusResponse> {
  const until = Date.now() + LEADER_CHANGE_GRACE_MS;
  for (;;) {
    try {
      return await openControl(options).caStatus();
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code !== "string" || !TRANSIENT_READ_CODES.has(code) || Date.now() > until) throw err;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
}

function replaced(status: CaStatusResponse): RotationReplacedError {
  const now = status.rotation ? `a rotation to ${status.rotation.newRootKeyId}` : `root ${status.rootKeyId}`;
  return new RotationReplacedError(
    `another ca rotate replaced this rotation; the cluster is now on ${now}. Follow it with nodectl ca status`,
  );
}

function seconds(since: number): string {
  return `${((Date.now() - since) / 1000).toFixed(1)} s`;
}

interface ProgressView {
  update(phase: string, renewed: number, trusted: number, total: number, elapsed: string): void;
  note(text: string): void;
  done(text: string): void;
  stop(): void;
}

class LineView implements ProgressView {
  update(phase: string, renewed: number, trusted: number, total: number, elapsed: string): void {
    process.stdout.write(
      `${phase} phase: renewed ${renewed}/${total}, trusted ${trusted}/${total} (${elapsed})\n`,
    );
  }
  note(text: string): void {
    process.stdout.write(`${text}\n`);
  }
  done(text: string): void {
    process.stdout.write(`${text}\n`);
  }
  stop(): void {}
}

/** Two bars (renewed, trusted) on a terminal; cli-progress is loaded only here. */
class BarView implements ProgressView {
  private constructor(
    private readonly multi: import("cli-progress").MultiBar,
    private readonly renewed: import("cli-progress").SingleBar,
    private readonly trusted: import("cli-progress").SingleBar,
  ) {}

  static async create(): Promise<BarView> {
    const { MultiBar, Presets } = (await import("cli-progress")).default;
    const multi = new MultiBar(
      {
        format: " {label} [{bar}] {value}/{total}  {phase} phase, {elapsed}",
        hideCursor: true,
        clearOnComplete: false,
      },
      Presets.shades_classic,
    );
    const renewed = multi.create(1, 0, { label: "renewed", phase: "renew", elapsed: "0.0 s" });
    const trusted = multi.create(1, 0, { label: "trusted", phase: "renew", elapsed: "0.0 s" });
    return new BarView(multi, renewed, trusted);
  }

  update(phase: string, renewed: number, trusted: number, total: number, elapsed: string): void {
    this.renewed.setTotal(total);
    this.trusted.setTotal(total);
    this.renewed.update(renewed, { phase, elapsed });
    this.trusted.update(trusted, { phase, elapsed });
  }
  note(text: string): void {
    this.multi.log(`${text}\n`);
  }
  done(text: string): void {
    this.multi.stop();
    process.stdout.write(`${text}\n`);
  }
  stop(): void {
    this.multi.stop();
  }
}
