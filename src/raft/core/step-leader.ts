// The leader: replication with flow control, commit, reads, transfers.
import {
  ConfChange,
  ConfChangeType,
  type Entry,
  EntryType,
  type Message,
  MessageType,
} from "../../gen/raft/v1/raft.js";
import { entrySizeBytes } from "./log.js";
import { hasQuorum, quorumMatchedIndex } from "./quorum.js";
import type { Raft } from "./raft.js";
import type { ProposeResult } from "./types.js";
import { dropped, makeMessage, NONE } from "./util.js";

export function stepLeader(r: Raft, m: Message): void {
  switch (m.type) {
    case MessageType.MESSAGE_TYPE_PROPOSE: {
      // Membership changes are proposed on the leader only (Raft.proposeEntries): a
      // forwarded one would let any member, a learner included, bind a stranger.
      if (m.from !== r.id && m.entries.some((e) => e.type === EntryType.ENTRY_TYPE_CONF_CHANGE)) return;
      const result = appendProposal(r, m.entries);
      if (!result.ok && result.reason === "TRANSFER_IN_PROGRESS" && m.from !== r.id)
        holdForwardedProposal(r, m);
      return;
    }
    case MessageType.MESSAGE_TYPE_READ_INDEX:
      if (!r.readOnly.full()) handleReadIndex(r, m);
      return;
    case MessageType.MESSAGE_TYPE_TRANSFER_LEADER:
      handleTransferLeader(r, m.target);
      return;
    case MessageType.MESSAGE_TYPE_APPEND_RESPONSE:
      handleAppendResponse(r, m);
      return;
    case MessageType.MESSAGE_TYPE_HEARTBEAT_RESPONSE:
      handleHeartbeatResponse(r, m);
      return;
    default:
      return;
  }
}

/** Most forwarded proposals held at once during a transfer; more are dropped (their callers time out). */
export const MAX_HELD_PROPOSALS = 1024;

/**
 * A forwarded proposal refused only because a transfer is in progress: held, and appended
 * or passed on to the new leader when the transfer ends (forwarding.ts says why).
 */
function holdForwardedProposal(r: Raft, m: Message): void {
  if (r.knobs.dropForwardedDuringTransfer || r.heldProposals.length >= MAX_HELD_PROPOSALS) return;
  if (r.heldProposals.length === 0) r.heldSinceTicks = 0;
  r.heldProposals.push(m);
}

export function appendProposal(r: Raft, proposed: Entry[]): ProposeResult {
  if (r.leadTransferee !== NONE) {
    // Proposals stop during a transfer so the target can catch up (hard cases 13, 14).
    return dropped(
      "TRANSFER_IN_PROGRESS",
      `leadership is being transferred to ${r.leadTransferee}; retry shortly`,
    );
  }
  let bytes = 0;
  for (const e of proposed) bytes += entrySizeBytes(e);
  if (r.uncommittedBytes > 0 && r.uncommittedBytes + bytes > r.cfg.maxUncommittedBytes) {
    return dropped("UNCOMMITTED_LIMIT", "too many uncommitted entries; retry when the cluster catches up");
  }
  let confIndex = 0;
  const first = r.log.lastIndex() + 1;
  for (let i = 0; i < proposed.length; i++) {
    if (proposed[i].type !== EntryType.ENTRY_TYPE_CONF_CHANGE) continue;
    if (confIndex !== 0 || r.pendingConfIndex > r.log.applied) {
      return dropped(
        "CONF_CHANGE_PENDING",
        "another membership change is in progress; retry when it is applied",
      );
    }
    let cc: ConfChange;
    try {
      cc = ConfChange.decode(proposed[i].data);
    } catch {
      return dropped("INVALID_CONF_CHANGE", "the membership change could not be decoded");
    }
    const why = r.config.validate(cc);
    if (why) return dropped("INVALID_CONF_CHANGE", why);
    const lagging = cc.type === ConfChangeType.CONF_CHANGE_TYPE_PROMOTE_VOTER && learnerLag(r, cc.nodeId);
    if (lagging) return dropped("LEARNER_NOT_READY", lagging);
    const stranding =
      cc.type === ConfChangeType.CONF_CHANGE_TYPE_REMOVE_NODE && strandsSurvivor(r, cc.nodeId);
    if (stranding) return dropped("INVALID_CONF_CHANGE", stranding);
    if (cc.type !== ConfChangeType.CONF_CHANGE_TYPE_REMOVE_NODE && r.removedThisTerm.has(cc.nodeId)) {
      // Its old replies could pass for the new member's (hard case 29).
      return dropped(
        "INVALID_CONF_CHANGE",
        `node ${cc.nodeId} was removed in this term; re-add it after a leader change`,
      );
    }
    confIndex = first + i;
  }
  const entries = proposed.map((e, i) => ({ term: r.term, index: first + i, type: e.type, data: e.data }));
  r.log.append(entries);
  r.uncommittedBytes += bytes;
  if (confIndex !== 0) r.pendingConfIndex = confIndex;
  bcastAppend(r);
  return { ok: true, index: first, term: r.term };
}

/**
 * Why a learner is not ready to become a voter, or undefined (etcd-server's "learner
 * not ready"). A voter that lacks committed entries adds to the quorum a member that
 * cannot help commit until it catches up, and may not even know the configuration it
 * votes in; so a learner is promoted only once it holds every committed entry.
 */
function learnerLag(r: Raft, learner: number): string | undefined {
  if (r.knobs.promoteLaggingLearners) return undefined;
  const match = r.progress.get(learner)?.match ?? 0;
  if (match >= r.log.committed) return undefined;
  return (
    `learner ${learner} has replicated up to index ${match} of the ${r.log.committed} committed; ` +
    "retry the promotion once it has caught up"
  );
}

/**
 * Why removing `target` would strand the other voter, or undefined. A leader that removes
 * itself from two voters hands over and goes quiet once it applies the change; the survivor
 * may not know yet that the change committed, so it campaigns under the old pair and needs
 * the removed node's vote, which never comes (etcd-io/etcd#10563; second reading, F2).
 */
function strandsSurvivor(r: Raft, target: number): string | undefined {
  if (r.knobs.removeLeaderFromTwoVoters) return undefined;
  if (target !== r.id || r.config.voters.size !== 2 || !r.config.isVoter(target)) return undefined;
  const other = [...r.config.voters].find((id) => id !== r.id);
  return (
    `removing the leader (node ${r.id}) from two voters could leave node ${other} unable to elect itself; ` +
    `transfer leadership to node ${other} first, then remove node ${r.id}`
  );
}

/** Advances the commit index from the voters' matches; true if it moved. */
export function maybeCommit(r: Raft): boolean {
  const mci = quorumMatchedIndex(r.config.voters, (id) => r.progress.get(id)?.match ?? 0);
  if (mci <= r.log.committed) return false;
  // Figure 8: only an entry of the current term is committed by counting replicas (hard case 25).
  if (r.log.term(mci) !== r.term && !r.knobs.commitOldTermEntries) return false;
  const before = r.log.committed;
  r.log.commitTo(mci);
  for (let i = before + 1; i <= mci; i++) {
    const e = r.log.entryAt(i);
    if (e && e.term === r.term) r.uncommittedBytes = Math.max(0, r.uncommittedBytes - entrySizeBytes(e));
  }
  releasePendingReads(r);
  return true;
}

export function bcastAppend(r: Raft): void {
  for (const id of r.progress.keys()) if (id !== r.id) sendAppend(r, id, true);
}

export function bcastHeartbeat(r: Raft): void {
  const context = r.readOnly.lastContext() ?? new Uint8Array(0);
  const uncapped = r.knobs.heartbeatCommitCappedByVerified || r.knobs.followerCommitBeyondVerified;
  for (const [id, pr] of r.progress) {
    if (id === r.id) continue;
    // A heartbeat verifies nothing of the follower's log, so it carries no more of the
    // commit index than the follower has acknowledged in this term (hard case 27, as
    // etcd does). That is all a restarted follower needs to apply what it holds: a
    // caught-up follower gets no append until the next write.
    const commit = uncapped ? r.log.committed : Math.min(pr.match, r.log.committed);
    r.send(makeMessage({ type: MessageType.MESSAGE_TYPE_HEARTBEAT, to: id, commit, context }));
  }
}

/** Sends entries (or a snapshot) to one follower if its flow control allows; true if sent. */
export function sendAppend(r: Raft, to: number, sendIfEmpty: boolean): boolean {
  const pr = r.progress.get(to);
  if (!pr || pr.isPaused()) return false;
  const prevIndex = pr.next - 1;
  const prevTerm = r.log.term(prevIndex);
  const entries = r.log.slice(pr.next, r.log.lastIndex() + 1, r.cfg.maxMsgBytes);
  if (prevTerm === undefined || entries === undefined) {
    // The follower needs entries we compacted: send the snapshot, never a guessed term (hard case 15).
    const snapshot = r.log.snapshot;
    r.send(makeMessage({ type: MessageType.MESSAGE_TYPE_SNAPSHOT, to, snapshot }));
    pr.becomeSnapshot(snapshot.metadata!.index);
    return true;
  }
  if (entries.length === 0 && !sendIfEmpty) return false;
  r.send(
    makeMessage({
      type: MessageType.MESSAGE_TYPE_APPEND,
      to,
      index: prevIndex,
      logTerm: prevTerm,
      entries,
      commit: r.log.committed,
    }),
  );
  pr.sentCommit = Math.max(pr.sentCommit, r.log.committed);
  if (pr.state === "replicate" && entries.length > 0) {
    const last = entries[entries.length - 1].index;
    pr.next = last + 1;
    pr.inflights.add(last);
  } else if (pr.state === "probe") {
    pr.probeSent = true;
  }
  return true;
}

export function sendTimeoutNow(r: Raft, to: number): void {
  r.send(makeMessage({ type: MessageType.MESSAGE_TYPE_TIMEOUT_NOW, to }));
}

function handleAppendResponse(r: Raft, m: Message): void {
  const pr = r.progress.get(m.from);
  if (!pr) return;
  pr.recentActive = true;
  if (m.reject) {
    let next = m.rejectHint;
    if (m.rejectHintTerm > 0) next = r.log.findConflictByTerm(m.rejectHint, m.rejectHintTerm).index;
    if (pr.maybeDecrTo(m.index, next)) {
      if (pr.state === "replicate") pr.becomeProbe();
      sendAppend(r, m.from, true);
    }
    return;
  }
  const advanced = pr.maybeUpdate(m.index);
  if (!advanced && !(pr.state === "probe" && pr.match === m.index)) return; // stale ack (hard case 29)
  if (pr.state === "probe") {
    pr.becomeReplicate();
  } else if (pr.state === "snapshot") {
    if (pr.match + 1 >= r.log.firstIndex()) {
      pr.becomeProbe();
      pr.becomeReplicate();
    }
  } else {
    pr.inflights.freeLE(m.index);
  }
  if (maybeCommit(r)) {
    if (!r.cfg.lazyCommit) bcastAppend(r);
  } else if (!r.cfg.lazyCommit && m.from !== r.id && pr.sentCommit < Math.min(pr.match, r.log.committed)) {
    // This follower has entries we committed but was never told: tell it now, not at the next heartbeat.
    sendAppend(r, m.from, true);
  }
  while (sendAppend(r, m.from, false)) {
    // keep filling the follower's inflight window
  }
  if (m.from === r.leadTransferee && pr.match === r.log.lastIndex()) sendTimeoutNow(r, m.from);
}

function handleHeartbeatResponse(r: Raft, m: Message): void {
  const pr = r.progress.get(m.from);
  if (!pr) return;
  pr.recentActive = true;
  pr.probeSent = false;
  // A full window whose acks were lost would stall forever: free one slot (hard case 20).
  if (pr.state === "replicate" && pr.inflights.full()) pr.inflights.freeFirstOne();
  // A caught-up-looking follower stuck in probe gets an append (hard case 21).
  if (pr.match < r.log.lastIndex()) sendAppend(r, m.from, true);
  if (m.context.byteLength === 0 || !r.config.isVoter(m.from)) return;
  const acks = r.readOnly.recvAck(m.from, m.context);
  if (!acks || !hasQuorum(r.config.voters, acks)) return;
  for (const read of r.readOnly.advance(m.context)) answerRead(r, read.request, read.index);
}

/**
 * After the voters changed: answer the queued reads that a quorum of the new voters has
 * already confirmed. Otherwise a read queued just before a shrink to the leader alone
 * waits for a heartbeat response that no voter is left to send (second reading, F3).
 */
export function reconfirmReads(r: Raft): void {
  if (r.knobs.keepReadsAcrossConfChange) return;
  const context = r.readOnly.newestConfirmed((acks) => hasQuorum(r.config.voters, acks));
  if (!context) return;
  for (const read of r.readOnly.advance(context)) answerRead(r, read.request, read.index);
}

/** ReadIndex on the leader: confirm leadership with a heartbeat round first. */
export function handleReadIndex(r: Raft, m: Message): void {
  const singleVoter = r.config.voters.size === 1 && r.config.isVoter(r.id);
  if (singleVoter && r.knobs.singleVoterReadBeforeTermCommit) {
    answerRead(r, m, r.log.committed);
    return;
  }
  // A new leader's commit index may lag the cluster's until it commits an entry of its
  // term (hard case 11). A single voter too: its durable commit index may lag what it
  // acknowledged before a restart (commit-only writes are deferred).
  if (r.log.term(r.log.committed) !== r.term && !r.knobs.readIndexBeforeTermCommit) {
    r.pendingReadRequests.push(m);
    return;
  }
  if (singleVoter) {
    answerRead(r, m, r.log.committed); // no one else to confirm leadership with
    return;
  }
  r.readOnly.add(r.log.committed, m);
  r.readOnly.recvAck(r.id, m.context);
  bcastHeartbeat(r);
}

function releasePendingReads(r: Raft): void {
  if (r.pendingReadRequests.length === 0 || r.log.term(r.log.committed) !== r.term) return;
  const pending = r.pendingReadRequests;
  r.pendingReadRequests = [];
  for (const m of pending) handleReadIndex(r, m);
}

function answerRead(r: Raft, request: Message, index: number): void {
  if (request.from === r.id || request.from === NONE) {
    r.readStates.push({ index, context: request.context });
  } else {
    r.send(
      makeMessage({
        type: MessageType.MESSAGE_TYPE_READ_INDEX_RESPONSE,
        to: request.from,
        index,
        context: request.context,
      }),
    );
  }
}

function handleTransferLeader(r: Raft, target: number): void {
  // Learners and strangers cannot lead (hard case 14).
  if (!r.config.isVoter(target) || target === r.id) return;
  if (r.leadTransferee === target) return;
  r.abortLeaderTransfer();
  r.electionElapsed = 0; // the transfer must finish within one election timeout
  r.leadTransferee = target;
  const pr = r.progress.get(target)!;
  // Catch the target up first; TimeoutNow only once it matches our last index (hard case 13).
  if (pr.match === r.log.lastIndex()) sendTimeoutNow(r, target);
  else sendAppend(r, target, true);
}
