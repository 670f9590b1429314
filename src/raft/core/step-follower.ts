// How followers and (pre-)candidates react to messages at their term.
import { type Message, MessageType } from "../../gen/raft/v1/raft.js";
import { assert } from "./assert.js";
import { campaign, hup, pollVotes } from "./election.js";
import { passOnForwardedProposal } from "./forwarding.js";
import type { Raft } from "./raft.js";
import { makeMessage, NONE } from "./util.js";

export function stepFollower(r: Raft, m: Message): void {
  switch (m.type) {
    case MessageType.MESSAGE_TYPE_PROPOSE:
      // Forwarded to us while we led (a transfer just ended): passed on once, never bounced.
      passOnForwardedProposal(r, m);
      return;
    case MessageType.MESSAGE_TYPE_READ_INDEX:
    case MessageType.MESSAGE_TYPE_TRANSFER_LEADER:
      // Only requests made on this node are forwarded (see Raft.forwardToLeader);
      // a request forwarded to us by mistake is dropped, never bounced around.
      return;
    case MessageType.MESSAGE_TYPE_APPEND:
      r.electionElapsed = 0;
      r.lead = m.from;
      handleAppend(r, m);
      return;
    case MessageType.MESSAGE_TYPE_HEARTBEAT:
      r.electionElapsed = 0;
      r.lead = m.from;
      handleHeartbeat(r, m);
      return;
    case MessageType.MESSAGE_TYPE_SNAPSHOT:
      r.electionElapsed = 0;
      r.lead = m.from;
      handleSnapshot(r, m);
      return;
    case MessageType.MESSAGE_TYPE_TIMEOUT_NOW:
      // A leadership transfer: campaign at once, skipping PreVote (hard case 14).
      hup(r, "transfer");
      return;
    case MessageType.MESSAGE_TYPE_READ_INDEX_RESPONSE:
      r.readStates.push({ index: m.index, context: m.context });
      return;
    default:
      return;
  }
}

export function stepCandidate(r: Raft, m: Message): void {
  const myResponse =
    r.role === "preCandidate"
      ? MessageType.MESSAGE_TYPE_PRE_VOTE_RESPONSE
      : MessageType.MESSAGE_TYPE_VOTE_RESPONSE;
  switch (m.type) {
    case MessageType.MESSAGE_TYPE_APPEND:
      r.becomeFollower(m.term, m.from);
      handleAppend(r, m);
      return;
    case MessageType.MESSAGE_TYPE_HEARTBEAT:
      r.becomeFollower(m.term, m.from);
      handleHeartbeat(r, m);
      return;
    case MessageType.MESSAGE_TYPE_SNAPSHOT:
      r.becomeFollower(m.term, m.from);
      handleSnapshot(r, m);
      return;
    default:
      break;
  }
  // Only answers to this campaign count: a stale pre-vote is not a vote (hard case 6).
  if (m.type !== myResponse) return;
  if (!r.votes.has(m.from)) r.votes.set(m.from, !m.reject);
  const result = pollVotes(r);
  if (result === "won") {
    if (r.role === "preCandidate") campaign(r, "election");
    else r.becomeLeader();
  } else if (result === "lost") {
    r.becomeFollower(r.term, NONE);
  }
}

function handleAppend(r: Raft, m: Message): void {
  const reply = (fields: Partial<Message>) =>
    r.send(makeMessage({ type: MessageType.MESSAGE_TYPE_APPEND_RESPONSE, to: m.from, ...fields }));
  if (m.index < r.log.committed) {
    // Everything up to our commit index matches; say where we are (hard case 17).
    reply({ index: r.log.committed });
    return;
  }
  const lastNew = r.log.maybeAppend(m.index, m.logTerm, m.entries);
  if (lastNew === undefined) {
    const hint = r.log.findConflictByTerm(Math.min(m.index, r.log.lastIndex()), m.logTerm);
    reply({ index: m.index, reject: true, rejectHint: hint.index, rejectHintTerm: hint.term });
    return;
  }
  // Within one term the leader's entries never change, so what it verified stays verified.
  r.verifiedIndex = Math.max(r.verifiedIndex, lastNew);
  commitVerified(r, m.commit);
  reply({ index: lastNew });
}

/** Commit only what the current leader's appends verified of our log (hard case 27). */
function commitVerified(r: Raft, leaderCommit: number): void {
  const verified = r.knobs.followerCommitBeyondVerified ? r.log.lastIndex() : r.verifiedIndex;
  r.log.commitTo(Math.min(leaderCommit, verified));
}

function handleHeartbeat(r: Raft, m: Message): void {
  // A heartbeat proves nothing about our log; its commit index is capped by the leader
  // at what we acknowledged to it in this term (see bcastHeartbeat), which our durable
  // log holds even across a restart.
  if (r.knobs.heartbeatCommitCappedByVerified || r.knobs.followerCommitBeyondVerified) {
    commitVerified(r, m.commit);
  } else {
    if (m.commit > r.log.lastIndex()) {
      assert(
        false,
        `leader ${m.from} commits index ${m.commit} past our last index ${r.log.lastIndex()}: ` +
          "was this member's raft log lost or truncated?",
      );
    }
    r.log.commitTo(m.commit);
  }
  r.send(makeMessage({ type: MessageType.MESSAGE_TYPE_HEARTBEAT_RESPONSE, to: m.from, context: m.context }));
}

function handleSnapshot(r: Raft, m: Message): void {
  const snap = m.snapshot;
  const meta = snap?.metadata;
  if (!snap || !meta) return;
  const reply = (index: number) =>
    r.send(makeMessage({ type: MessageType.MESSAGE_TYPE_APPEND_RESPONSE, to: m.from, index }));
  if (meta.index <= r.log.committed) {
    reply(r.log.committed); // old or duplicate snapshot (hard case 16)
    return;
  }
  if (r.log.matchTerm(meta.index, meta.term)) {
    // Our log already has it: keep the entries after it, just commit.
    r.verifiedIndex = Math.max(r.verifiedIndex, meta.index);
    r.log.commitTo(meta.index);
    // Only up to the commit index is known to match; our tail may still conflict.
    reply(r.log.committed);
    return;
  }
  r.log.restore(snap);
  r.verifiedIndex = meta.index;
  r.restoreConfig(meta.confState);
  reply(r.log.lastIndex());
}
