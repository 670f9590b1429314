// Bindings the log has not given us yet ("hints"), and the rule for taking one.
// A member that missed the change adding a peer (it was down while the peer joined
// and took over as leader) must accept that peer's messages before its own log
// catches up, so it asks the members its log binds. Every answer is a claim, not a
// fact, so the rule fails closed:
// - only the voters our own log binds are asked (a joining member with an empty log
//   asks its seeds, whoever admitted it vouched for them): a member admitted by a
//   hint never vouches for the next one;
// - a binding is taken only when a majority of those voters (of our applied
//   configuration, or of the seeds while the log binds nobody) each list exactly it;
//   an answer that does not list it, or lists another binding, counts against;
// - one answer naming the id or the node id as removed vetoes it, and so does our
//   own log (a removed id or node id, a node id bound under another id);
// - a hint goes as soon as the log binds or removes its id or its node id, and it
//   expires after `ttlMs` unless a lookup re-confirms it (the transport asks again
//   while the peer keeps talking), so a planted or stale hint cannot live on.
import type { MembersResponse } from "../../gen/raft/v1/transport.js";
import type { MemberBinding, Membership } from "./members.js";

interface Hint {
  binding: MemberBinding;
  /** When it stops counting unless re-confirmed; Infinity for a seed while the log binds nobody. */
  expiresAt: number;
  confirmedAt: number;
}

/** One member's answer to Members, with the Raft id we asked it as. */
export interface MembersAnswer {
  from: number;
  response: MembersResponse;
}

export class MemberHints {
  private readonly hints = new Map<number, Hint>();
  private readonly seedIds = new Set<number>();

  constructor(
    private readonly selfId: number,
    private readonly ttlMs: number,
    private readonly now: () => number,
    seeds: ReadonlyMap<number, MemberBinding> = new Map(),
  ) {
    for (const [id, binding] of seeds) {
      if (id === selfId) continue;
      this.seedIds.add(id);
      this.hints.set(id, { binding, expiresAt: Number.POSITIVE_INFINITY, confirmedAt: now() });
    }
  }

  /** The hinted binding of `raftId`, if it is still valid against the log's `membership`. */
  get(raftId: number, membership: Membership): MemberBinding | undefined {
    const hint = this.hints.get(raftId);
    if (!hint || hint.expiresAt <= this.now() || !admissible(raftId, hint.binding, membership))
      return undefined;
    return hint.binding;
  }

  /** Whether a hinted binding is due for re-confirmation (half its life gone). */
  stale(raftId: number): boolean {
    const hint = this.hints.get(raftId);
    return hint !== undefined && this.now() - hint.confirmedAt >= this.ttlMs / 2;
  }

  ids(): number[] {
    return [...this.hints.keys()];
  }

  /** The log moved: drop what it now decides (bound or removed id or node id); seeds start to age. */
  follow(membership: Membership): void {
    const now = this.now();
    for (const [id, hint] of this.hints) {
      if (!admissible(id, hint.binding, membership) || hint.expiresAt <= now) this.hints.delete(id);
      else if (membership.members.size > 0 && hint.expiresAt === Number.POSITIVE_INFINITY)
        hint.expiresAt = now + this.ttlMs;
    }
  }

  /** Who to ask, and whose answers count: the voters the log binds, or the seeds while it binds nobody. */
  electorate(membership: Membership): { voters: ReadonlySet<number>; asked: Map<number, MemberBinding> } {
    const asked = new Map<number, MemberBinding>();
    if (membership.members.size > 0) {
      for (const id of membership.voters) {
        const binding = membership.members.get(id);
        if (binding && id !== this.selfId) asked.set(id, binding);
      }
      return { voters: membership.voters, asked };
    }
    for (const id of this.seedIds) {
      const binding = this.get(id, membership);
      if (binding) asked.set(id, binding);
    }
    return { voters: new Set([...this.seedIds, this.selfId]), asked };
  }

  /** Takes (or re-confirms) every binding a majority of the electorate affirms; returns the ids taken anew. */
  learn(answers: MembersAnswer[], membership: Membership): number[] {
    const { voters } = this.electorate(membership);
    const counted = answers.filter((a) => voters.has(a.from));
    const quorum = Math.floor(voters.size / 2) + 1;
    const vetoedIds = new Set(answers.flatMap((a) => a.response.removed));
    const vetoedNodes = new Set(answers.flatMap((a) => a.response.removedNodeIds));
    const claims = new Map<string, { raftId: number; binding: MemberBinding; count: number }>();
    for (const a of counted) {
      for (const m of a.response.members) {
        if (!m.nodeId || !m.address) continue;
        const key = JSON.stringify([m.raftId, m.nodeId, m.address]);
        const claim = claims.get(key) ?? {
          raftId: m.raftId,
          binding: { nodeId: m.nodeId, address: m.address },
          count: 0,
        };
        claim.count++;
        claims.set(key, claim);
      }
    }
    const taken: number[] = [];
    const now = this.now();
    for (const { raftId, binding, count } of claims.values()) {
      if (count < quorum || raftId === this.selfId || membership.members.has(raftId)) continue;
      if (vetoedIds.has(raftId) || vetoedNodes.has(binding.nodeId)) continue;
      if (!admissible(raftId, binding, membership) || this.heldElsewhere(raftId, binding.nodeId, now))
        continue;
      const had = this.get(raftId, membership);
      const same = had && had.nodeId === binding.nodeId && had.address === binding.address;
      this.hints.set(raftId, { binding, expiresAt: now + this.ttlMs, confirmedAt: now });
      if (!same) taken.push(raftId);
    }
    return taken;
  }

  /** Whether another live hint holds `nodeId` (one certificate never speaks for two ids). */
  private heldElsewhere(raftId: number, nodeId: string, now: number): boolean {
    for (const [id, h] of this.hints)
      if (id !== raftId && h.binding.nodeId === nodeId && h.expiresAt > now) return true;
    return false;
  }
}

/** A hint may stand only where the log says nothing about its id or its node id. */
function admissible(raftId: number, binding: MemberBinding, membership: Membership): boolean {
  if (membership.members.has(raftId) || membership.removed.has(raftId)) return false;
  if (membership.removedNodeIds.has(binding.nodeId)) return false;
  for (const b of membership.members.values()) if (b.nodeId === binding.nodeId) return false;
  return true;
}
