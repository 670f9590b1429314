// Joining nodes waiting for their certificate to be recorded on this manager. One
// subscription to the replicated state's change events serves every waiter (not one
// per stream), the number of waiters is bounded, and every waiter ends: recorded,
// removed, its deadline, its caller gone, or the service closing.
import type { ChangeEvent, ClusterState } from "../fsm/index.js";
import { IssuerRefusal } from "./errors.js";

export type IssuanceOutcome = "issued" | "removed" | "timeout" | "cancelled" | "closed";

interface Waiter {
  nodeId: string;
  finish(outcome: IssuanceOutcome): void;
}

export class IssuanceStatusWatch {
  private readonly waiters = new Map<string, Set<Waiter>>();
  private count = 0;
  private readonly unwatch: () => void;

  constructor(
    private readonly state: ClusterState,
    private readonly maxWaiters: number,
  ) {
    this.unwatch = state.watch((events) => this.onChanges(events));
  }

  /** What the state says now: issued (a certificate is recorded), removed, or undefined (not yet). */
  outcomeNow(nodeId: string): "issued" | "removed" | undefined {
    if (this.state.removedNode(nodeId)) return "removed";
    return (this.state.node(nodeId)?.certificate?.der.length ?? 0) > 0 ? "issued" : undefined;
  }

  /** Resolves when the node's certificate is recorded or it is removed, or at the deadline. */
  wait(nodeId: string, timeoutMs: number, signal: AbortSignal): Promise<IssuanceOutcome> {
    const now = this.outcomeNow(nodeId);
    if (now) return Promise.resolve(now);
    if (this.count >= this.maxWaiters)
      throw new IssuerRefusal(
        "OVERLOADED",
        `${this.count} nodes are already waiting for their certificate on this manager; retry shortly`,
        1000,
      );
    return new Promise((resolve) => {
      const timer = setTimeout(() => waiter.finish("timeout"), timeoutMs);
      const onAbort = () => waiter.finish("cancelled");
      const waiter: Waiter = {
        nodeId,
        finish: (outcome) => {
          clearTimeout(timer);
          signal.removeEventListener("abort", onAbort);
          const set = this.waiters.get(nodeId);
          if (!set?.delete(waiter)) return; // already finished
          this.count--;
          if (set.size === 0) this.waiters.delete(nodeId);
          resolve(outcome);
        },
      };
      const set = this.waiters.get(nodeId) ?? new Set<Waiter>();
      this.waiters.set(nodeId, set);
      set.add(waiter);
      this.count++;
      signal.addEventListener("abort", onAbort, { once: true });
      if (signal.aborted) onAbort();
    });
  }

  get waiting(): number {
    return this.count;
  }

  close(): void {
    this.unwatch();
    for (const set of [...this.waiters.values()]) for (const waiter of [...set]) waiter.finish("closed");
  }

  private onChanges(events: readonly ChangeEvent[]): void {
    if (this.count === 0) return;
    for (const event of events) {
      if (event.kind === "restored") {
        // A snapshot replaced everything: look at every waiter again.
        for (const nodeId of [...this.waiters.keys()]) this.settle(nodeId);
      } else if (event.kind === "node") this.settle(event.node.id);
      else if (event.kind === "nodeRemoved") this.settle(event.removed.id);
    }
  }

  private settle(nodeId: string): void {
    const set = this.waiters.get(nodeId);
    if (!set) return;
    const outcome = this.outcomeNow(nodeId);
    if (outcome) for (const waiter of [...set]) waiter.finish(outcome);
  }
}
