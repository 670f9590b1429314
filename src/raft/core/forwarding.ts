// Proposals forwarded by followers that arrive while they cannot be appended here.
// A leader refuses new entries during a leadership transfer (hard cases 13, 14); a local
// caller hears TRANSFER_IN_PROGRESS at once and retries, but a follower that forwarded a
// proposal hears nothing and its caller waits for the whole proposal timeout (measured:
// a write stalled 2 s, its client's deadline, in 2 of 5 transfers on an idle machine).
// So the leader holds forwarded proposals during the transfer and, when it ends, appends
// them (it is still leader) or forwards them to the new leader; likewise a follower that
// receives a proposal forwarded to a leader it no longer is passes it on once.
import type { Message } from "../../gen/raft/v1/raft.js";
import type { Raft } from "./raft.js";
import { appendProposal } from "./step-leader.js";
import { NONE } from "./util.js";

/** `Message.index` of a proposal that was passed on once already: never again (no loops). */
const PASSED_ON = 1;

/** A follower got a proposal meant for the leader: pass it on once to the leader it knows. */
export function passOnForwardedProposal(r: Raft, m: Message): void {
  if (r.knobs.dropForwardedDuringTransfer) return;
  if (m.index === PASSED_ON || r.lead === NONE || r.lead === m.from || r.lead === r.id) return;
  r.send({ ...m, to: r.lead, index: PASSED_ON });
}

/**
 * Called every tick: once the transfer is over, held proposals are appended (still the
 * leader) or passed on to the leader now known; held longer than two election timeouts
 * with no leader, they are dropped (their callers time out, as for any lost proposal).
 */
export function releaseHeldProposals(r: Raft): void {
  if (r.heldProposals.length === 0) return;
  r.heldSinceTicks++;
  if (r.role === "leader" && r.leadTransferee !== NONE) return;
  const known = r.role === "leader" || (r.role === "follower" && r.lead !== NONE);
  if (!known) {
    if (r.heldSinceTicks > 2 * r.cfg.electionTimeoutTicks) r.heldProposals = [];
    return;
  }
  const held = r.heldProposals;
  r.heldProposals = [];
  for (const m of held) {
    if (r.role === "leader") appendProposal(r, m.entries);
    else r.send({ ...m, to: r.lead, index: PASSED_ON });
  }
}
