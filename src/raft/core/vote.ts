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
  const upToDate = r.knobs.voteWithoutUpToDateCheck || r.log.isUpToDate(m.index, m.logTerm);
  if (canVote && upToDate && !outsideOwnConfiguration(r, m)) {
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

/**
 * Hard case 7: a candidate outside the latest configuration of its own log gets no vote.
 *
 * Our own configuration is no guide in general: it is the one we applied, which lags
 * the cluster's (commit reaches followers late; a learner promoted before it heard
 * anything knows no configuration at all), and refusing a candidate it does not list
 * can leave a cluster where no one can ever win (issue 9). etcd has no such check and
 * relies on PreVote and CheckQuorum, which we have too: while a leader is heard, a
 * stranger's (pre)votes are ignored (hard case 1), and a node that applied its own
 * removal never campaigns.
 *
 * What remains is a removed node that never learned its removal committed. We refuse
 * it only when we can prove it: its log ends exactly at our applied index with the
 * same term, so by log matching its whole log is the prefix we applied, and the
 * configuration we hold is the latest one in its log, which does not list it as a
 * voter. Had it applied its own log it would not be campaigning, so refusing it takes
 * away nothing the cluster's liveness depends on. (A shorter log loses the up-to-date
 * check anyway; a longer one may hold a change we have not applied, so it is not
 * judged by our configuration.)
 */
function outsideOwnConfiguration(r: Raft, m: Message): boolean {
  if (r.knobs.voteOnlyForConfiguredVoters) return !r.config.isVoter(m.from);
  return m.index === r.log.applied && r.log.term(m.index) === m.logTerm && !r.config.isVoter(m.from);
}
