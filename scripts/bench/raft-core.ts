// npm run bench:raft-core: proposals per second through the pure core alone,
// in one process: 3 voters, messages delivered in memory, every Ready
// persisted to MemoryStorage and applied. Prints one JSON line.

import type { Message } from "../../src/gen/raft/v1/raft.js";
import { bootstrapState } from "../../src/raft/core/bootstrap.js";
import { Raft } from "../../src/raft/core/raft.js";
import { SeededRng } from "../../src/raft/core/rand.js";
import { MemoryStorage } from "../../src/raft/memory-storage.js";

const PROPOSALS = Number(process.env.PROPOSALS ?? 200_000);
const BATCH = Number(process.env.BATCH ?? 64);
const ids = [1, 2, 3];
const storages = new Map(ids.map((id) => [id, new MemoryStorage(bootstrapState(ids))]));
const nodes = new Map(
  ids.map((id) => [id, new Raft({ id, rng: new SeededRng(id) }, storages.get(id)!.load())]),
);
let inflight: Message[] = [];
let applied = 0;

function drain(): void {
  do {
    for (const [id, r] of nodes) {
      while (r.hasReady()) {
        const rd = r.ready();
        inflight.push(...rd.messages);
        storages.get(id)!.persist(rd);
        inflight.push(...rd.messagesAfterPersist);
        if (id === 1) applied += rd.committedEntries.length;
        r.advance();
      }
    }
    const batch = inflight;
    inflight = [];
    for (const m of batch) nodes.get(m.to)!.step(m);
  } while (inflight.length > 0 || [...nodes.values()].some((r) => r.hasReady()));
}

const leader = nodes.get(1)!;
drain(); // apply the bootstrap configuration
leader.campaign();
drain();
if (leader.role !== "leader") throw new Error("no leader");
const payload = new Uint8Array(150).fill(120);
const base = applied;
const t0 = performance.now();
for (let sent = 0; sent < PROPOSALS; sent += BATCH) {
  for (let i = 0; i < BATCH; i++) leader.propose(payload);
  drain();
  // Keep the in-memory logs short, as the runtime's snapshots do.
  if (leader.log.applied - leader.log.snapshotIndex() > 50_000) {
    for (const [id, r] of nodes) storages.get(id)!.compact(r.compact(new Uint8Array()));
  }
}
const seconds = (performance.now() - t0) / 1000;
const done = applied - base;
process.stdout.write(
  `${JSON.stringify({ proposals: done, batch: BATCH, seconds: Number(seconds.toFixed(2)), proposals_per_s: Math.round(done / seconds) })}\n`,
);
