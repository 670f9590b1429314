// Answering (pre-)vote requests at the request's term or ours.
import { type Message, MessageType } from "../../gen/raft/v1/raft.js";
import type { Raft } from "./raft.js";
import { makeMessage, NONE } from "./util.js";

export function handleVoteRequest(r: Raft, m: Message): void {
  const isPreVote = m.type === MessageType.MESSAGE_TYPE_PRE_VOTE;
  const respType = isPreVote
    ? MessageType.MESSAGE_TYPE_PRE_VOTE_RESPONSE
    : MessageType.MESSAGE_TYPE_VOTE_RESPONSE;
  // We can vote for whom we already voted for; for anyone if we have neither
  // voted nor know a leader; and pre-vote for any future term (hard case 5).
  const canVote = r.vote === m.from || (r.vote === NONE && r.lead === NONE) || (isPreVote && m.term > r.term);
  // Candidates outside our configuration get no vote (hard case 7).
  const candidateIsVoter = r.config.isVoter(m.from);
  const upToDate = r.knobs.voteWithoutUpToDateCheck || r.log.isUpToDate(m.index, m.logTerm);
  if (canVote && candidateIsVoter && upToDate) {
    // A granted pre-vote carries the request's term (hard case 3).
    r.send(makeMessage({ type: respType, to: m.from, term: m.term }));
    if (!isPreVote) {
      // Only a real vote is recorded and resets the election timer (hard case 5).
      r.electionElapsed = 0;
      r.vote = m.from;
    }
  } else {
    r.send(makeMessage({ type: respType, to: m.from, term: r.term, reject: true }));
  }
}
