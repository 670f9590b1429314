// Shared by the storage tests: a normal entry, and a refusal expected with its code.
import { expect } from "chai";
import { type Entry, EntryType } from "../../../src/gen/raft/v1/raft.js";
import { RaftRuntimeError } from "../../../src/raft/runtime/errors.js";

export const entry = (index: number, term: number, s = `v${index}`): Entry => ({
  index,
  term,
  type: EntryType.ENTRY_TYPE_NORMAL,
  data: new TextEncoder().encode(s),
});

/** Awaits `p`, which must reject with a RaftRuntimeError carrying `code`; returns it. */
export async function expectCode(p: Promise<unknown>, code: string): Promise<RaftRuntimeError> {
  try {
    await p;
  } catch (err) {
    expect(err).to.be.instanceOf(RaftRuntimeError);
    expect((err as RaftRuntimeError).code).to.equal(code);
    return err as RaftRuntimeError;
  }
  throw new Error(`expected ${code}`);
}
