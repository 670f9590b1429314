// Small helpers shared by the core's files.
import type { Message } from "../../gen/raft/v1/raft.js";
import type { DropReason, ProposeResult } from "./types.js";

/** "No node": ids start at 1. */
export const NONE = 0;

const EMPTY = new Uint8Array(0);

/** A message with every field at its default, then `fields` (cheaper than fromPartial). */
export function makeMessage(fields: Partial<Message>): Message {
  return {
    type: 0,
    to: 0,
    from: 0,
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    snapshot: undefined,
    reject: false,
    rejectHint: 0,
    rejectHintTerm: 0,
    context: EMPTY,
    transfer: false,
    target: 0,
    ...fields,
  };
}

/** A refused request, with the reason code and what the caller should do. */
export function dropped(reason: DropReason, message: string): ProposeResult {
  return { ok: false, reason, message };
}
