// Which Raft messages the server side delivers: only a message addressed to this
// member, from the member whose binding (membership configuration: raft id ->
// node id) names the caller's certificate CN. Everything else is dropped: a
// manager certificate that is not a member, a member claiming another member's
// id, a removed member, a message for someone else. Node ids are compared as the
// strings they are; nothing here reads a CN as a number. It also refuses the
// Members RPC to callers bound to no member, and counts the snapshot receiver's
// refusals. Refusals are counted and logged at most once per reason per
// interval, so a flood cannot flood logs.
import { type Message, MessageType } from "../../gen/raft/v1/raft.js";
import type { Logger } from "../../log/logger.js";
import type { MemberBinding, Membership } from "./members.js";

export const REFUSAL_REASONS = [
  /** The caller presented no certificate we could read (the authorizer should have stopped it). */
  "NO_IDENTITY",
  /** `to` is not this member. */
  "NOT_ADDRESSED_HERE",
  /** `from` is bound to no member here (not a member, removed, or not yet known). */
  "UNKNOWN_SENDER",
  /** `from` is bound to another node than the caller's certificate names. */
  "SENDER_MISMATCH",
  /** A Members call from a caller our log binds to no member. */
  "MEMBERS_NOT_A_MEMBER",
  /** A snapshot stream whose first request carries no snapshot header. */
  "SNAPSHOT_NO_HEADER",
  /** A snapshot stream past the size limit. */
  "SNAPSHOT_TOO_LARGE",
  /** A second snapshot stream from a sender that has one open already. */
  "SNAPSHOT_BUSY",
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

const LOG_INTERVAL_MS = 5_000;

export class InboundGuard {
  readonly refusals = Object.fromEntries(REFUSAL_REASONS.map((r) => [r, 0])) as Record<RefusalReason, number>;
  private readonly lastLoggedAt = new Map<RefusalReason, number>();
  private readonly unlogged = new Map<RefusalReason, number>();

  constructor(
    private readonly selfId: number,
    private readonly bindingOf: (raftId: number) => MemberBinding | undefined,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Why `m` from a caller whose certificate CN is `caller` must be dropped, or undefined to deliver it. */
  check(m: Message, caller: string | undefined): RefusalReason | undefined {
    if (caller === undefined) return this.refuse("NO_IDENTITY", m, caller);
    if (m.to !== this.selfId) return this.refuse("NOT_ADDRESSED_HERE", m, caller);
    const binding = this.bindingOf(m.from);
    if (!binding) return this.refuse("UNKNOWN_SENDER", m, caller);
    if (binding.nodeId !== caller) return this.refuse("SENDER_MISMATCH", m, caller);
    return undefined;
  }

  /** Why a Members call from `caller` must be refused: only a member our log binds is answered. */
  checkMembersCaller(caller: string | undefined, membership: Membership): RefusalReason | undefined {
    if (caller === undefined) return this.note("NO_IDENTITY", { caller, method: "Members" });
    for (const b of membership.members.values()) if (b.nodeId === caller) return undefined;
    return this.note("MEMBERS_NOT_A_MEMBER", { caller, method: "Members" });
  }

  /** Counts and (rate-limited) logs a refusal decided elsewhere (the snapshot receiver's). */
  note(
    reason: RefusalReason,
    fields: Record<string, unknown>,
    what = "refused a raft transport call",
  ): RefusalReason {
    this.refusals[reason]++;
    const suppressed = this.unlogged.get(reason) ?? 0;
    const last = this.lastLoggedAt.get(reason);
    const now = this.now();
    if (last !== undefined && now - last < LOG_INTERVAL_MS) {
      this.unlogged.set(reason, suppressed + 1);
      return reason;
    }
    this.lastLoggedAt.set(reason, now);
    this.unlogged.set(reason, 0);
    this.log.warn({ reason, ...fields, suppressed }, what);
    return reason;
  }

  private refuse(reason: RefusalReason, m: Message, caller: string | undefined): RefusalReason {
    const fields = {
      caller,
      from: m.from,
      to: m.to,
      type: MessageType[m.type],
      term: m.term,
      boundTo: this.bindingOf(m.from)?.nodeId,
    };
    return this.note(
      reason,
      fields,
      "dropped a raft message the caller's certificate does not entitle it to send",
    );
  }
}
