// The rotation's trust confirmations, batched: one in flight per node, and taken again
// at once after a leader change (the batch may have gone to a leader that died).
import { expect } from "chai";
import { TrustRecorder } from "../../src/dispatcher/trust-recorder.js";
import type { CommandLog } from "../../src/fsm/index.js";
import { Command } from "../../src/gen/fsm/v1/commands.js";
import { silentLogger } from "../../src/log/logger.js";
import { waitFor } from "./fixture.js";

/** Every proposal waits for its release (then times out, as one sent to a leader that died). */
class HangingLog implements CommandLog {
  readonly batches: string[][] = [];
  readonly hung: (() => void)[] = [];

  async propose(command: Uint8Array): Promise<{ index: number; result: Uint8Array }> {
    const decoded = Command.decode(command).command;
    if (decoded?.$case !== "recordTrust") throw new Error("unexpected command");
    this.batches.push(decoded.value.confirmations.map((c) => c.nodeId));
    await new Promise<void>((resolve) => this.hung.push(resolve));
    throw new Error("proposal timed out");
  }
}

describe("dispatcher: trust confirmations", () => {
  it("keeps one confirmation per node in flight, and takes it again at once after a leader change", async () => {
    const log = new HangingLog();
    const recorder = new TrustRecorder(log, silentLogger(), 5);
    const settle = () => new Promise((r) => setTimeout(r, 30));
    try {
      recorder.confirm("w1", { rootKeyId: "new" });
      await waitFor("the batch sent to the leader that dies", () => log.batches.length === 1);
      recorder.confirm("w1", { rootKeyId: "new" });
      await settle();
      expect(log.batches, "w1 is in flight: its next heartbeat adds nothing").to.have.length(1);
      recorder.leaderChanged();
      recorder.confirm("w1", { rootKeyId: "new" });
      await waitFor("w1 sent again", () => log.batches.length === 2);
      // The old proposal settles first: w1's second one is still in flight.
      log.hung.shift()!();
      await settle();
      recorder.confirm("w1", { rootKeyId: "new" });
      await settle();
      expect(log.batches).to.deep.equal([["w1"], ["w1"]]);
    } finally {
      for (const release of log.hung.splice(0)) release();
      recorder.close();
    }
  });
});
