// Helpers for the paper scenario tests (paper-*.test.ts): clusters whose nodes
// start from hand-written logs (Figures 7 and 8 of the Raft paper), and short
// queries over a TestCluster. Additive only: the harness itself is unchanged.
import { type Entry, EntryType, type Message, type MessageType } from "../../src/gen/raft/v1/raft.js";
import { bootstrapState, emptySnapshot } from "../../src/raft/core/bootstrap.js";
import { MemoryStorage } from "../../src/raft/memory-storage.js";
import { data, type NodeOptions, TestCluster } from "./harness.js";

export interface HandWrittenLog {
  /** Terms of the entries after the bootstrap entries, in index order. */
  terms: number[];
  /** The persisted current term; defaults to the last entry's term. */
  term?: number;
}

/**
 * A cluster whose nodes have the bootstrap entries (indexes 1..ids.length,
 * committed) followed by entries of the given terms. Entry data names its
 * term and index ("t4@9"), so applied data shows whose entry won.
 */
export function clusterWithLogs(
  ids: number[],
  logs: Record<number, HandWrittenLog>,
  options: NodeOptions = {},
  seed = 1,
): TestCluster {
  const c = new TestCluster(ids, options, seed);
  const boot = bootstrapState(ids);
  for (const id of ids) {
    const log = logs[id] ?? { terms: [] };
    const extra: Entry[] = log.terms.map((term, i) => {
      const index = boot.entries.length + 1 + i;
      return { term, index, type: EntryType.ENTRY_TYPE_NORMAL, data: data(`t${term}@${index}`) };
    });
    const lastTerm = extra.length > 0 ? extra[extra.length - 1].term : 1;
    c.crash(id);
    const node = c.node(id);
    node.storage = new MemoryStorage({
      hardState: { term: log.term ?? lastTerm, vote: 0, commit: boot.entries.length },
      snapshot: emptySnapshot(),
      entries: [...boot.entries, ...extra],
    });
    node.applied = [];
    c.restart(id);
  }
  return c;
}

/** The terms of a node's log entries after the bootstrap entries. */
export function termsAfterBootstrap(c: TestCluster, id: number, bootstrapEntries: number): number[] {
  return c
    .logTerms(id)
    .filter((e) => e.index > bootstrapEntries)
    .map((e) => e.term);
}

/** Messages of one type delivered (or dropped at delivery) so far, optionally filtered. */
export function deliveredOfType(
  c: TestCluster,
  type: MessageType,
  pick: (m: Message) => boolean = () => true,
): Message[] {
  return c.delivered.filter((m) => m.type === type && pick(m));
}

/** Ticks every live node until exactly one leader exists; throws after `maxTicks`. */
export function tickUntilLeader(c: TestCluster, maxTicks = 200): number {
  for (let i = 0; i < maxTicks; i++) {
    const leaders = c.leaders();
    if (leaders.length === 1) return leaders[0];
    c.tickAll();
  }
  throw new Error(`no single leader after ${maxTicks} ticks: ${c.leaders().join(",")}`);
}

/** How many live nodes hold an entry of `term` at `index`. */
export function replicasOf(c: TestCluster, index: number, term: number): number {
  let n = 0;
  for (const node of c.nodes.values()) if (node.raft?.log.term(index) === term) n++;
  return n;
}

/** Terms of all live nodes. */
export function liveTerms(c: TestCluster): number[] {
  return [...c.nodes.values()].filter((n) => n.raft).map((n) => n.raft!.term);
}
