// Which Raft messages the server side delivers: only a message addressed to this
// member, from the member whose binding (membership configuration: raft id ->
// node id) names the caller's certificate CN. Everything else is dropped: a
// manager certificate that is not a member, a member claiming another member's
// id, a removed member, a message for someone else. Node ids are compared as the
// strings they are; nothing here reads a CN as a number. Refusals are counted
// and logged at most once per reason per interval, so a flood cannot flood logs.
import { type Message, MessageType } from "../../gen/raft/v1/raft.js";
import type { Logger } from "../../log/logger.js";
import type { MemberBinding } from "./members.js";

export const REFUSAL_REASONS = [
  /** The caller presented no certificate we could read (the authorizer should have stopped it). */
  "NO_IDENTITY",
  /** `to` is not this member. */
  "NOT_ADDRESSED_HERE",
  /** `from` is bound to no member here (not a member, removed, or not yet known). */
  "UNKNOWN_SENDER",
  /** `from` is bound to another node than the caller's certificate names. */
  "SENDER_MISMATCH",
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

const LOG_INTERVAL_MS = 5_000;

export class InboundGuard {
  readonly refusals: Record<RefusalReason, number> = {
    NO_IDENTITY: 0,
    NOT_ADDRESSED_HERE: 0,
    UNKNOWN_SENDER: 0,
    SENDER_MISMATCH: 0,
  };
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

  private refuse(reason: RefusalReason, m: Message, caller: string | undefined): RefusalReason {
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
    this.log.warn(
      {
        reason,
        caller,
        from: m.from,
        to: m.to,
        type: MessageType[m.type],
        term: m.term,
        boundTo: this.bindingOf(m.from)?.nodeId,
        suppressed,
      },
      "dropped a raft message the caller's certificate does not entitle it to send",
    );
    return reason;
  }
}
