// Records, batched, what nodes confirmed over their heartbeat during a rotation: that
// they present a certificate of the new key, that they trust the new root alone. Only
// confirmations the state does not have yet are
// proposed; one that does not reach the log is dropped and comes again with the node's
// next heartbeat, so nothing here needs to be durable.
import { type CommandLog, proposeCommand } from "../fsm/index.js";
import type { Logger } from "../log/logger.js";

export class TrustRecorder {
  private readonly pending = new Map<string, { rootKeyId: string; heldIssuerKeyId: string }>();
  /** Nodes whose confirmation is on its way to the log, with the batch that carries it. */
  private readonly inFlight = new Map<string, number>();
  private batches = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly log: CommandLog,
    private readonly logger: Logger,
    private readonly batchMs = 50,
  ) {}

  confirm(nodeId: string, facts: { rootKeyId?: string; heldIssuerKeyId?: string }): void {
    if (this.closed || this.inFlight.has(nodeId)) return;
    const known = this.pending.get(nodeId);
    this.pending.set(nodeId, {
      rootKeyId: facts.rootKeyId || known?.rootKeyId || "",
      heldIssuerKeyId: facts.heldIssuerKeyId || known?.heldIssuerKeyId || "",
    });
    this.timer ??= setTimeout(() => this.flush(), this.batchMs);
  }

  /**
   * The known leader changed: a batch in flight may have gone to a leader that died with
   * it. Its nodes' next heartbeats are taken again rather than after the proposal timeout
   * (a confirmation recorded twice records the same fact).
   */
  leaderChanged(): void {
    this.inFlight.clear();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.pending.clear();
  }

  private flush(): void {
    this.timer = undefined;
    const confirmations = [...this.pending].map(([nodeId, facts]) => ({ nodeId, ...facts }));
    this.pending.clear();
    const batch = ++this.batches;
    for (const c of confirmations) this.inFlight.set(c.nodeId, batch);
    proposeCommand(this.log, { $case: "recordTrust", value: { confirmations } })
      .catch((err: unknown) =>
        this.logger.warn(
          { err: String(err), confirmations: confirmations.length },
          "trust confirmations not recorded; the next heartbeats bring them again",
        ),
      )
      .finally(() => {
        for (const c of confirmations)
          if (this.inFlight.get(c.nodeId) === batch) this.inFlight.delete(c.nodeId);
      });
  }
}
