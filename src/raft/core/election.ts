// Timers and campaigns: election and heartbeat ticks, PreVote and real
// elections, CheckQuorum.
import { EntryType, MessageType } from "../../gen/raft/v1/raft.js";
import { hasQuorum, voteResult } from "./quorum.js";
import type { Raft } from "./raft.js";
import { bcastHeartbeat } from "./step-leader.js";
import { makeMessage, NONE } from "./util.js";

export type CampaignKind = "preElection" | "election" | "transfer";

export function tickElection(r: Raft): void {
  r.electionElapsed++;
  if (r.promotable() && r.electionElapsed >= r.randomizedElectionTimeout) {
    r.electionElapsed = 0;
    hup(r, r.cfg.preVote ? "preElection" : "election");
  }
}

export function tickHeartbeat(r: Raft): void {
  r.heartbeatElapsed++;
  r.electionElapsed++;
  if (r.electionElapsed >= r.cfg.electionTimeoutTicks) {
    r.electionElapsed = 0;
    if (r.cfg.checkQuorum && !quorumActive(r)) {
      r.becomeFollower(r.term, NONE); // CheckQuorum: an isolated leader steps down
      return;
    }
    r.abortLeaderTransfer(); // a transfer gets one election timeout (hard case 14)
  }
  if (r.heartbeatElapsed >= r.cfg.heartbeatTicks) {
    r.heartbeatElapsed = 0;
    bcastHeartbeat(r);
  }
}

/** Whether a quorum was heard from since the last check; starts the next round. */
function quorumActive(r: Raft): boolean {
  const active = new Set<number>([r.id]);
  for (const [id, pr] of r.progress) {
    if (id === r.id) continue;
    if (pr.recentActive) active.add(id);
    pr.recentActive = false;
  }
  return hasQuorum(r.config.voters, active);
}

/** Starts a campaign if this node may. */
export function hup(r: Raft, kind: CampaignKind): void {
  if (r.role === "leader" || !r.promotable()) return;
  // No campaign while committed configuration changes are unapplied (hard case 9).
  for (let i = r.log.applied + 1; i <= r.log.committed; i++) {
    if (r.log.entryAt(i)?.type === EntryType.ENTRY_TYPE_CONF_CHANGE) return;
  }
  campaign(r, kind);
}

export function campaign(r: Raft, kind: CampaignKind): void {
  let voteType: MessageType;
  let term: number;
  if (kind === "preElection") {
    r.becomePreCandidate();
    voteType = MessageType.MESSAGE_TYPE_PRE_VOTE;
    term = r.term + 1; // not adopted until a real election
  } else {
    r.becomeCandidate();
    voteType = MessageType.MESSAGE_TYPE_VOTE;
    term = r.term;
  }
  if (r.knobs.selfVoteBeforePersist) {
    r.votes.set(r.id, true);
    if (pollVotes(r) === "won") {
      if (kind === "preElection") campaign(r, "election");
      else r.becomeLeader();
      return;
    }
  } else {
    // Our own (pre-)vote, counted once this Ready is durable (see Raft.advance).
    const respType =
      kind === "preElection"
        ? MessageType.MESSAGE_TYPE_PRE_VOTE_RESPONSE
        : MessageType.MESSAGE_TYPE_VOTE_RESPONSE;
    r.send(makeMessage({ type: respType, to: r.id, term }));
  }
  for (const id of r.config.voters) {
    if (id === r.id) continue;
    r.send(
      makeMessage({
        type: voteType,
        to: id,
        term,
        index: r.log.lastIndex(),
        logTerm: r.log.lastTerm(),
        transfer: kind === "transfer",
      }),
    );
  }
}

export function pollVotes(r: Raft): "won" | "lost" | "pending" {
  return voteResult(r.config.voters, r.votes);
}
