// The demo's output: plain lines everywhere, plus a live progress bar while nodes join
// when stdout is a terminal. In a pipe (a log, a test, `| tee`) every event is one line
// instead, so the output reads the same afterwards as it did live.
import cliProgress from "cli-progress";

export interface JoinProgress {
  /** One node is up (its daemon said so). */
  nodeUp(name: string, role: string, ms: number): void;
  /** How many nodes `ls` shows ready now. */
  ready(count: number): void;
  /** Removes the bar (TTY); idempotent. */
  stop(): void;
}

export class DemoOutput {
  private bar: cliProgress.SingleBar | undefined;

  constructor(readonly tty: boolean = process.stdout.isTTY === true) {}

  line(text = ""): void {
    if (this.bar) {
      // Keep the bar below the text: clear it, write, draw it again.
      process.stdout.write(`\r\x1b[2K${text}\n`);
      this.bar.render();
    } else process.stdout.write(`${text}\n`);
  }

  /**
   * Removes a progress bar still shown (the demo is ending in the middle of a step): it
   * hid the cursor and turned line wrapping off, which the terminal must get back.
   */
  endProgress(): void {
    const bar = this.bar;
    this.bar = undefined;
    bar?.stop();
    if (bar) process.stdout.write("\n");
  }

  /** Text indented under the step that printed it (command output). */
  block(text: string, indent = "    "): void {
    for (const l of text.replace(/\n+$/, "").split("\n")) this.line(`${indent}${l}`);
  }

  joinProgress(total: number): JoinProgress {
    if (!this.tty) {
      let lastReady = -1;
      return {
        nodeUp: (name, role, ms) => this.line(`  ${name} up as ${role} (${(ms / 1000).toFixed(1)} s)`),
        ready: (count) => {
          if (count !== lastReady && count === total) this.line(`  ${count}/${total} nodes ready`);
          lastReady = count;
        },
        stop: () => undefined,
      };
    }
    const bar = new cliProgress.SingleBar(
      {
        format: "  joining |{bar}| {value}/{total} up, {ready} ready  {last}",
        stream: process.stdout,
        hideCursor: true,
        clearOnComplete: true,
        barsize: 26,
      },
      cliProgress.Presets.shades_classic,
    );
    this.bar = bar;
    let up = 0;
    bar.start(total, 0, { ready: 0, last: "" });
    return {
      nodeUp: (name, role) => {
        up++;
        bar.update(up, { last: `${name} (${role})` });
      },
      ready: (count) => bar.update(up, { ready: count }),
      stop: () => {
        if (this.bar !== bar) return;
        this.bar = undefined;
        bar.stop();
      },
    };
  }
}
