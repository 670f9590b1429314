// The loop every reconciler of the replicated state runs (the leader's membership and
// root-rotation reconcilers): a pass on every applied change, every leadership change
// and every interval, never two at once (a change during a pass asks for one more),
// errors logged and retried by the next pass, stop() waiting for the pass in flight.
import type { ClusterState } from "./cluster-state.js";
import type { ChangeEvent } from "./events.js";

export interface ReconcileLoopOptions {
  state: ClusterState;
  /** Subscribes to leadership changes; returns the unsubscribe. */
  onLeadershipChange(listener: () => void): () => void;
  pass(): Promise<void>;
  /** Which applied changes call for a pass (default: all); the interval and leadership changes always do. */
  relevant?(events: readonly ChangeEvent[]): boolean;
  /** A failed pass: log it (or not) and let the next pass retry. */
  onError(error: unknown): void;
  intervalMs: number;
}

export class ReconcileLoop {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private readonly unsubscribe: (() => void)[] = [];

  constructor(private readonly options: ReconcileLoopOptions) {}

  start(): void {
    const relevant = this.options.relevant;
    this.unsubscribe.push(
      this.options.state.watch((events) => {
        if (!relevant || relevant(events)) this.kick();
      }),
    );
    this.unsubscribe.push(this.options.onLeadershipChange(() => this.kick()));
    this.timer = setInterval(() => this.kick(), this.options.intervalMs);
    this.timer.unref();
  }

  get isStopped(): boolean {
    return this.stopped;
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
    this.running = this.options
      .pass()
      .catch((error: unknown) => this.options.onError(error))
      .finally(() => {
        this.running = undefined;
        if (this.again && !this.stopped) {
          this.again = false;
          this.kick();
        }
      });
  }
}
