// Applying a committed configuration change (apply-time activation, hard case 9).
import { ConfChange, type Entry, EntryType } from "../../gen/raft/v1/raft.js";
import { Progress } from "./progress.js";
import type { Raft } from "./raft.js";
import { bcastAppend, maybeCommit, reconfirmReads, sendTimeoutNow } from "./step-leader.js";
import { NONE } from "./util.js";

export function applyConfEntry(r: Raft, e: Entry): void {
  if (e.type !== EntryType.ENTRY_TYPE_CONF_CHANGE) return;
  r.config = r.config.apply(ConfChange.decode(e.data));
  if (r.role !== "leader") {
    if (!r.promotable() && r.role !== "follower") r.becomeFollower(r.term, NONE);
    return;
  }
  for (const id of r.config.members()) {
    if (!r.progress.has(id)) {
      const pr = new Progress(r.log.lastIndex() + 1, r.cfg.maxInflightMsgs);
      pr.recentActive = true;
      r.progress.set(id, pr);
    }
  }
  for (const id of [...r.progress.keys()]) {
    if (r.config.isMember(id)) continue;
    r.progress.delete(id);
    r.removedThisTerm.add(id);
  }
  if (r.leadTransferee !== NONE && !r.config.isVoter(r.leadTransferee)) r.abortLeaderTransfer();
  if (!r.promotable()) {
    // The leader removed itself: hand over to an up-to-date voter, then step down (hard case 10).
    const successor = [...r.config.voters].find((id) => r.progress.get(id)?.match === r.log.lastIndex());
    if (successor !== undefined) sendTimeoutNow(r, successor);
    r.becomeFollower(r.term, NONE);
    return;
  }
  if (maybeCommit(r)) bcastAppend(r);
  reconfirmReads(r);
}
