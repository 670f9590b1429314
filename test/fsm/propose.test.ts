import { expect } from "chai";
import { ClusterState, type CommandLog, FsmRefusal, proposeCommand } from "../../src/fsm/index.js";
import { Role } from "../../src/gen/fsm/v1/state.js";
import { createCluster } from "./helpers.js";

/** A log of one member that applies at once: enough to test the encoding round trip. */
function applyingLog(state: ClusterState): CommandLog {
  let index = 0;
  return {
    async propose(command) {
      index++;
      return { index, result: state.apply(index, command) };
    },
  };
}

describe("fsm: proposing commands through a log", () => {
  it("resolves with the index of an applied command and rejects a refused one with its code", async () => {
    const state = new ClusterState();
    const log = applyingLog(state);
    expect(await proposeCommand(log, createCluster().command!)).to.equal(1);
    let refusal: unknown;
    try {
      await proposeCommand(log, { $case: "rotateJoinToken", value: { role: Role.ROLE_WORKER, secret: "" } });
    } catch (err) {
      refusal = err;
    }
    expect(refusal).to.be.instanceOf(FsmRefusal);
    expect((refusal as FsmRefusal).code).to.equal("INVALID_COMMAND");
  });
});
