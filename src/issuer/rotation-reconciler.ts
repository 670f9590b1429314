// Drives a root rotation on the leader (DESIGN.md "Root rotation"): once every node
// holds a certificate signed by the new key, the rotation enters its trust phase (the
// sessions then hand every node the new root alone); once every node confirmed it, the
// rotation finishes (the new root becomes the root, the cross-signed twin goes). Apply
// checks each condition again at its log position. Runs on every manager, acts only
// while leading, and starts from the replicated state each pass, so a new leader or a
// restarted manager picks up where the rotation is.
import { type ClusterState, FsmRefusal, proposeCommand, renewedFor, trustsOnly } from "../fsm/index.js";
import { RotationPhase } from "../gen/fsm/v1/state.js";
import type { Logger } from "../log/logger.js";
import type { LeadershipEvents, Proposer } from "../raft/runtime/seam.js";

const PASS_INTERVAL_MS = 250;

export class RootRotationReconciler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private readonly unsubscribe: (() => void)[] = [];
  private readonly logger: Logger;

  constructor(
    private readonly raft: Proposer & LeadershipEvents,
    private readonly state: ClusterState,
    logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.logger = logger.child({ component: "root-rotation" });
  }

  start(): void {
    this.unsubscribe.push(this.state.watch(() => this.kick()));
    this.unsubscribe.push(this.raft.onLeadershipChange(() => this.kick()));
    this.timer = setInterval(() => this.kick(), PASS_INTERVAL_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    for (const off of this.unsubscribe.splice(0)) off();
    await this.running;
  }

  private kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.pass()
      .catch((err: unknown) => {
        // Someone fell back or joined since the check: apply refused, the next pass looks again.
        if (err instanceof FsmRefusal && err.code === "ROTATION_PENDING") return;
        this.logger.warn({ err: String(err) }, "rotation step failed; retrying");
      })
      .finally(() => {
        this.running = undefined;
        if (this.again && !this.stopped) {
          this.again = false;
          this.kick();
        }
      });
  }

  private async pass(): Promise<void> {
    const rotation = this.state.cluster()?.rotation;
    const newKeyId = rotation?.newRoot?.keyId;
    if (!rotation || !newKeyId || !this.raft.leadership().isSelf) return;
    const nodes = this.state.nodes();
    if (
      rotation.phase === RotationPhase.ROTATION_PHASE_RENEW &&
      nodes.every((n) => renewedFor(n, newKeyId))
    ) {
      this.logger.info({ newKeyId, nodes: nodes.length }, "every node renewed: handing out the new root");
      await this.advance(newKeyId, RotationPhase.ROTATION_PHASE_TRUST);
    } else if (
      rotation.phase === RotationPhase.ROTATION_PHASE_TRUST &&
      nodes.every((n) => renewedFor(n, newKeyId) && trustsOnly(n, newKeyId))
    ) {
      this.logger.info({ newKeyId, nodes: nodes.length }, "every node trusts the new root: rotation done");
      await this.advance(newKeyId, RotationPhase.ROTATION_PHASE_UNSPECIFIED);
    }
  }

  private async advance(newKeyId: string, to: RotationPhase): Promise<void> {
    await proposeCommand(this.raft, {
      $case: "advanceRootRotation",
      value: { newKeyId, to, atMs: this.now() },
    });
  }
}
