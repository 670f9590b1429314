// Virtual time for the runtime simulator. One scheduler holds every pending event
// (a timer, a delivery, a sync finishing) in time order, ties by insertion, so a
// run replays exactly from its seed. Each member's process owns the events it
// started: they die with it at a crash and wait while it is paused (SIGSTOP).
import type { Rng } from "../core/rand.js";
import type { RuntimeClock, Timer } from "../runtime/clock.js";
import { EventQueue } from "./heap.js";

/** An event's callback; it returns false when it turned out to do nothing (a cancelled timer). */
export type SimEvent = () => boolean | undefined;

export class SimScheduler {
  now = 0;
  private readonly queue = new EventQueue<SimEvent>();

  constructor(readonly rng: Rng) {}

  at(time: number, fn: SimEvent): void {
    this.queue.push(Math.max(time, this.now), fn);
  }

  after(ms: number, fn: SimEvent): void {
    this.at(this.now + ms, fn);
  }

  pop(): { at: number; value: SimEvent } | undefined {
    return this.queue.pop();
  }

  /** Seeded bytes: RaftNode's entropy in a simulated run. */
  randomBytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.rng.intn(256);
    return out;
  }
}

/** One incarnation of a member's process. */
export class SimProcess {
  /** Gone: crashed, or exited after a graceful stop. Its events never run. */
  dead = false;
  /** Killed (kill -9): its callers saw their connections drop, not an answer. */
  crashed = false;
  pausedUntil = 0;

  constructor(
    readonly sched: SimScheduler,
    readonly nodeId: number,
  ) {}

  get paused(): boolean {
    return this.sched.now < this.pausedUntil;
  }

  /** Runs `fn` at `time` in this process: never once it is dead, after the pause while it is paused. */
  at(time: number, fn: () => void): void {
    this.sched.at(time, () => this.run(fn));
  }

  /** Runs `fn` now (or when the pause ends) in this process. */
  run(fn: () => void): boolean {
    if (this.dead) return false;
    if (this.paused) {
      this.sched.at(this.pausedUntil, () => this.run(fn));
      return false;
    }
    fn();
    return true;
  }
}

class SimTimer implements Timer {
  cancelled = false;

  cancel(): void {
    this.cancelled = true;
  }
}

/** RaftNode's clock inside a simulated process. */
export class SimClock implements RuntimeClock {
  constructor(private readonly proc: SimProcess) {}

  every(ms: number, fn: () => void): Timer {
    const timer = new SimTimer();
    const fire = () => {
      if (timer.cancelled) return;
      fn();
      this.proc.at(this.proc.sched.now + ms, fire);
    };
    this.proc.at(this.proc.sched.now + ms, fire);
    return timer;
  }

  after(ms: number, fn: () => void): Timer {
    const timer = new SimTimer();
    this.proc.sched.at(this.proc.sched.now + ms, () => {
      if (timer.cancelled) return false;
      return this.proc.run(() => {
        if (!timer.cancelled) fn();
      });
    });
    return timer;
  }

  /** A round's own cost: usually nothing, sometimes a millisecond (so inputs pile up behind it). */
  nextTurn(fn: () => void): void {
    const cost = this.proc.sched.rng.intn(4) === 0 ? 1 : 0;
    this.proc.at(this.proc.sched.now + cost, fn);
  }
}
