// Drives a root rotation on the leader (DESIGN.md "Root rotation"): once every node
// holds a certificate signed by the new key, the rotation enters its trust phase (the
// sessions then hand every node the new root alone); once every node confirmed it, the
// rotation finishes (the new root becomes the root, the cross-signed twin goes). Apply
// checks each condition again at its log position. Runs on every manager, acts only
// while leading, and starts from the replicated state each pass, so a new leader or a
// restarted manager picks up where the rotation is.
import {
  type ClusterState,
  FsmRefusal,
  proposeCommand,
  ReconcileLoop,
  renewedFor,
  trustsOnly,
} from "../fsm/index.js";
import { type Node, RotationPhase } from "../gen/fsm/v1/state.js";
import type { Logger } from "../log/logger.js";
import type { LeadershipEvents, Proposer } from "../raft/runtime/seam.js";

const PASS_INTERVAL_MS = 250;

export class RootRotationReconciler {
  private readonly loop: ReconcileLoop;
  private readonly logger: Logger;

  constructor(
    private readonly raft: Proposer & LeadershipEvents,
    private readonly state: ClusterState,
    logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.logger = logger.child({ component: "root-rotation" });
    this.loop = new ReconcileLoop({
      state,
      onLeadershipChange: (listener) => raft.onLeadershipChange(listener),
      pass: () => this.pass(),
      onError: (err) => {
        // Someone fell back or joined since the check: apply refused, the next pass looks again.
        if (err instanceof FsmRefusal && err.code === "ROTATION_PENDING") return;
        this.logger.warn({ err: String(err) }, "rotation step failed; retrying");
      },
      intervalMs: PASS_INTERVAL_MS,
    });
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  private async pass(): Promise<void> {
    const rotation = this.state.cluster()?.rotation;
    const newKeyId = rotation?.newRoot?.keyId;
    if (!rotation || !newKeyId || !this.raft.leadership().isSelf) return;
    // A pass runs on every applied change: a scan that stops at the first pending node, no sort.
    const every = (done: (n: Node) => boolean) => {
      for (const n of this.state.unorderedNodes()) if (!done(n)) return false;
      return true;
    };
    if (rotation.phase === RotationPhase.ROTATION_PHASE_RENEW && every((n) => renewedFor(n, newKeyId))) {
      this.logger.info(
        { newKeyId, nodes: this.state.nodeCount },
        "every node renewed: handing out the new root",
      );
      await this.advance(newKeyId, RotationPhase.ROTATION_PHASE_TRUST);
    } else if (
      rotation.phase === RotationPhase.ROTATION_PHASE_TRUST &&
      every((n) => renewedFor(n, newKeyId) && trustsOnly(n, newKeyId))
    ) {
      this.logger.info(
        { newKeyId, nodes: this.state.nodeCount },
        "every node trusts the new root: rotation done",
      );
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
