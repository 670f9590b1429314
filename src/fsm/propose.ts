// How the services above (issuer, dispatcher, control) put a command through the log:
// encode, propose, and turn the state machine's answer into a result or an FsmRefusal.
// The log is any Raft proposer (src/raft/runtime/seam.ts's Proposer fits); this file
// does not import the runtime (fsm stays below it).
import { Command, CommandResult } from "../gen/fsm/v1/commands.js";
import { FsmRefusal, isFsmErrorCode } from "./errors.js";

/** What proposing needs of the Raft runtime (structurally its `Proposer`). */
export interface CommandLog {
  propose(command: Uint8Array): Promise<{ index: number; result: Uint8Array }>;
}

export type Operation = NonNullable<Command["command"]>;

export function encodeCommand(operation: Operation): Uint8Array {
  return Command.encode({ command: operation }).finish();
}

/**
 * Replicates one command and resolves with its log index once it is applied on this
 * member; rejects with FsmRefusal when the state machine refused it (nothing changed),
 * or with the runtime's error when it never entered the log or timed out.
 */
export async function proposeCommand(log: CommandLog, operation: Operation): Promise<number> {
  const { index, result } = await log.propose(encodeCommand(operation));
  const answer = CommandResult.decode(result);
  if (answer.ok) return index;
  throw new FsmRefusal(isFsmErrorCode(answer.code) ? answer.code : "INVALID_COMMAND", answer.message);
}
