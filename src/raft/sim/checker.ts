// Safety invariants checked while a simulation runs. Each violation is a
// sentence naming the guarantee, the node and the index.
import { type Entry, EntryType } from "../../gen/raft/v1/raft.js";
import type { Raft } from "../core/raft.js";

export function entryKey(e: Entry): string {
  return `${e.term}:${e.type}:${Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength).toString("base64")}`;
}

export function chainHash(prev: number, e: Entry): number {
  let h = prev ^ 0x811c9dc5;
  const key = e.type === EntryType.ENTRY_TYPE_NORMAL ? e.data : e.data;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key[i], 0x01000193);
  h = Math.imul(h ^ e.term, 0x01000193);
  return h >>> 0;
}

export class SafetyChecker {
  readonly violations: string[] = [];
  private readonly leaderOfTerm = new Map<number, number>();
  /** The entry every node must have applied at each index (state-machine safety). */
  private readonly appliedKey = new Map<number, string>();
  private readonly hashAt = new Map<number, number>();
  /** Highest index of a write whose client was told it succeeded. */
  ackedIndex = 0;

  fail(what: string): void {
    if (this.violations.length < 20) this.violations.push(what);
  }

  onLeader(r: Raft): void {
    const other = this.leaderOfTerm.get(r.term);
    if (other !== undefined && other !== r.id) {
      this.fail(`election safety: nodes ${other} and ${r.id} both led term ${r.term}`);
    } else if (other === r.id) {
      // A second leadership of the same term (after a restart that lost the term) could
      // hand out a second, different entry at an (index, term) the first one used.
      this.fail(`election safety: node ${r.id} became leader of term ${r.term} twice`);
    }
    this.leaderOfTerm.set(r.term, r.id);
    // Leader completeness: every applied (hence committed) entry is in the new leader's log.
    for (const [index, key] of this.appliedKey) {
      if (index < r.log.firstIndex()) continue;
      const e = r.log.entryAt(index);
      if (!e || entryKey(e) !== key) {
        this.fail(`leader completeness: leader ${r.id} of term ${r.term} lacks committed entry ${index}`);
        return;
      }
    }
  }

  onApply(nodeId: number, e: Entry, hashAfter: number): void {
    const key = entryKey(e);
    const known = this.appliedKey.get(e.index);
    if (known === undefined) this.appliedKey.set(e.index, key);
    else if (known !== key) {
      this.fail(`state-machine safety: node ${nodeId} applied a different entry at index ${e.index}`);
    }
    this.checkHash(nodeId, e.index, hashAfter);
  }

  checkHash(nodeId: number, index: number, hash: number): void {
    const known = this.hashAt.get(index);
    if (known === undefined) this.hashAt.set(index, hash);
    else if (known !== hash)
      this.fail(`state-machine safety: node ${nodeId} state differs at index ${index}`);
  }

  onAck(index: number): void {
    if (index > this.ackedIndex) this.ackedIndex = index;
  }

  /** A read that began after writes up to `ackedAtStart` were acknowledged was given `readIndex`. */
  onReadIndex(nodeId: number, readIndex: number, ackedAtStart: number): void {
    if (readIndex < ackedAtStart) {
      this.fail(
        `linearizable read: node ${nodeId} got read index ${readIndex} below acknowledged write ${ackedAtStart}`,
      );
    }
  }

  /** Log matching: same (index, term) implies identical prefixes. */
  checkLogMatching(a: Raft, b: Raft): void {
    const lo = Math.max(a.log.firstIndex(), b.log.firstIndex());
    let i = Math.min(a.log.lastIndex(), b.log.lastIndex());
    while (i >= lo && a.log.term(i) !== b.log.term(i)) i--;
    for (; i >= lo; i--) {
      const ea = a.log.entryAt(i)!;
      const eb = b.log.entryAt(i)!;
      if (ea.term !== eb.term || entryKey(ea) !== entryKey(eb)) {
        this.fail(`log matching: nodes ${a.id} and ${b.id} differ at index ${i} below a matching entry`);
        return;
      }
    }
  }
}
