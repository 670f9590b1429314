// Puts the CreateCluster command that init wrote (pending-cluster.bin) through the log
// once this manager leads, and removes the file once the cluster is in the applied
// state. Idempotent across crashes: on restart, a file still present means the command
// may or may not be in the log; it is proposed again, and a CLUSTER_EXISTS answer for
// the same cluster id counts as done (apply refuses a second creation, so the state
// holds exactly one).
import { existsSync, readFileSync, unlinkSync } from "node:fs";
import { type ClusterState, FsmRefusal, proposeCommand } from "../fsm/index.js";
import { Command } from "../gen/fsm/v1/commands.js";
import type { Logger } from "../log/logger.js";
import type { RaftService } from "../raft/runtime/seam.js";
import { NodeError } from "./errors.js";

const RETRY_MS = 500;

export class ClusterCreation {
  private command: Command | undefined;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void)[] = [];
  private inFlight = false;
  private readonly log: Logger;

  constructor(
    private readonly pendingPath: string,
    private readonly clusterId: string,
    private readonly raft: RaftService,
    private readonly state: ClusterState,
    logger: Logger,
  ) {
    this.log = logger.child({ component: "cluster-creation" });
  }

  /** Does nothing when no creation is pending (the usual restart). */
  start(): void {
    if (!existsSync(this.pendingPath)) return;
    try {
      this.command = Command.decode(readFileSync(this.pendingPath));
    } catch (cause) {
      throw new NodeError(
        "STATE_DIR_CORRUPT",
        `${this.pendingPath} is unreadable; nothing was changed. Remove the state dir and run nodectl init again`,
        { cause },
      );
    }
    const id = this.command.command?.$case === "createCluster" ? this.command.command.value.cluster?.id : "";
    if (id !== this.clusterId)
      throw new NodeError(
        "STATE_DIR_CORRUPT",
        `${this.pendingPath} creates cluster "${id}", not this node's ${this.clusterId}; remove the state dir and run nodectl init again`,
      );
    this.unsubscribe.push(
      this.state.watch(() => this.checkApplied()),
      this.raft.onLeadershipChange(() => this.attempt()),
    );
    this.timer = setInterval(() => this.attempt(), RETRY_MS);
    this.attempt();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const off of this.unsubscribe) off();
    this.unsubscribe = [];
    this.command = undefined;
  }

  private attempt(): void {
    const command = this.command;
    if (!command?.command || this.inFlight || this.checkApplied()) return;
    if (!this.raft.leadership().isSelf) return;
    this.inFlight = true;
    proposeCommand(this.raft, command.command)
      .then(
        () => this.log.info({ clusterId: this.clusterId }, "cluster created"),
        (err: unknown) => {
          if (err instanceof FsmRefusal && err.code === "CLUSTER_EXISTS") return; // checkApplied tells whose
          this.log.warn({ err }, "proposing the cluster's creation failed; retrying");
        },
      )
      .finally(() => {
        this.inFlight = false;
        this.checkApplied();
      });
  }

  /** True once the applied state holds the cluster; then the pending file goes. */
  private checkApplied(): boolean {
    const cluster = this.state.cluster();
    if (!cluster || !this.command) return false;
    if (cluster.id !== this.clusterId) {
      this.log.error(
        { expected: this.clusterId, found: cluster.id },
        "the log holds another cluster than this state dir's node.json; leaving pending-cluster.bin in place",
      );
      this.stop();
      return true;
    }
    try {
      unlinkSync(this.pendingPath);
    } catch {
      // Already removed.
    }
    this.log.info({ clusterId: cluster.id }, "cluster record applied; pending creation removed");
    this.stop();
    return true;
  }
}
