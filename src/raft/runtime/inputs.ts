// What a RaftNode queues between rounds, and how one round steps it into the core.
import type { ConfChange, Message } from "../../gen/raft/v1/raft.js";
import type { Raft } from "../core/raft.js";
import type { DropReason } from "../core/types.js";

export type Input =
  | { kind: "tick" }
  | { kind: "message"; message: Message }
  | { kind: "propose"; id: Buffer; data: Uint8Array }
  | { kind: "confChange"; id: Buffer; conf: ConfChange }
  | { kind: "read"; ctx: Buffer }
  | { kind: "transfer"; target: number }
  | { kind: "snapshotStatus"; to: number; ok: boolean }
  | { kind: "unreachable"; to: number };

/** Where the core's refusals go: each request's caller is told (keys are request ids in hex). */
export interface Refusals {
  refuseProposal(key: string, reason: DropReason, message: string): void;
  refuseRead(key: string, reason: DropReason, message: string): void;
}

type Proposal = Extract<Input, { kind: "propose" }>;

/** Steps one round's inputs into the core, in order. */
export function stepInputs(raft: Raft, inputs: readonly Input[], refusals: Refusals): void {
  // Consecutive commands go to the core as one append: one message per follower and
  // one acknowledgement back for the lot, instead of one each.
  let batch: Proposal[] = [];
  for (const input of inputs) {
    if (input.kind === "propose") {
      batch.push(input);
      continue;
    }
    if (batch.length > 0) proposeBatch(raft, batch, refusals);
    batch = [];
    stepInput(raft, input, refusals);
  }
  if (batch.length > 0) proposeBatch(raft, batch, refusals);
}

function proposeBatch(raft: Raft, batch: Proposal[], refusals: Refusals): void {
  const result = raft.proposeBatch(batch.map((p) => p.data));
  if (result.ok) return;
  for (const p of batch) refusals.refuseProposal(p.id.toString("hex"), result.reason, result.message);
}

function stepInput(raft: Raft, input: Input, refusals: Refusals): void {
  switch (input.kind) {
    case "tick":
      raft.tick();
      return;
    case "message":
      raft.step(input.message);
      return;
    case "propose": // batched by stepInputs()
      proposeBatch(raft, [input], refusals);
      return;
    case "confChange": {
      const result = raft.proposeConfChange(input.conf);
      if (!result.ok) refusals.refuseProposal(input.id.toString("hex"), result.reason, result.message);
      return;
    }
    case "read": {
      const result = raft.readIndex(input.ctx);
      if (!result.ok) refusals.refuseRead(input.ctx.toString("hex"), result.reason, result.message);
      return;
    }
    case "transfer":
      raft.transferLeader(input.target);
      return;
    case "snapshotStatus":
      raft.reportSnapshot(input.to, input.ok);
      return;
    case "unreachable":
      raft.reportUnreachable(input.to);
      return;
  }
}
