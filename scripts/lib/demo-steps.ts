// The demo's steps (scripts/start.ts runs them in order): form a cluster, show it,
// remove a worker, promote one, kill the leader. Each step prints what it does, checks
// that what should happen happened (bounded by a deadline: a step that does not happen
// fails the demo with a message naming it) and returns the figures it measured.
import type { DemoOutput } from "./demo-output.js";
import { type LocalNode, type LocalNodes, mapLimit, type NodeListEntry, waitFor } from "./local-nodes.js";

export interface DemoContext {
  nodes: LocalNodes;
  out: DemoOutput;
  /** Nodes that are managers now (started as managers, or promoted). */
  managers: LocalNode[];
  /** Nodes that are workers now. */
  workers: LocalNode[];
  heartbeatMs: number;
}

/** Workers joining at once: enough to overlap their start-up, few enough for 2 cores. */
const JOIN_CONCURRENCY = 5;

export const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** "w3 (7ruigu)": our name for a node and the start of its id, as `nodectl ls` shows it. */
export function who(node: LocalNode): string {
  return `${node.name} (${node.nodeId?.slice(0, 6) ?? "?"})`;
}

function running(list: LocalNode[]): LocalNode[] {
  return list.filter((n) => n.running);
}

function entryOf(list: NodeListEntry[], node: LocalNode): NodeListEntry | undefined {
  return list.find((e) => e.id === node.nodeId);
}

/** The "nodectl: CODE: message" line of a refused command. */
function refusalLine(stderr: string): string {
  return stderr.split("\n").find((l) => l.startsWith("nodectl: ")) ?? stderr.trim();
}

export interface Formed {
  joinMs: number;
  total: number;
}

/** init m1; m2 and m3 join as managers; the workers join spread over the three; all ready. */
export async function formCluster(d: DemoContext, workerCount: number): Promise<Formed> {
  const total = 3 + workerCount;
  const t0 = Date.now();
  const progress = d.out.joinProgress(total);
  const up = (n: LocalNode) => progress.nodeUp(n.name, n.startRole ?? "?", Date.now() - t0);
  try {
    const m1 = await d.nodes.init("m1");
    up(m1);
    d.managers.push(m1);
    const managerToken = await waitFor(
      "the new cluster to elect m1 and answer nodectl join-token",
      20_000,
      () => d.nodes.joinToken(m1, "manager"),
      200,
    );
    const workerToken = await d.nodes.joinToken(m1, "worker");
    // Managers join one at a time (Raft adds one member at a time), each through the last.
    for (const name of ["m2", "m3"]) {
      const m = await d.nodes.join(name, d.managers[d.managers.length - 1], managerToken);
      up(m);
      d.managers.push(m);
    }
    // A worker holds its session on the manager it joined through: spread them. The last
    // one gets a --listen address, so that it can be promoted later.
    const names = Array.from({ length: workerCount }, (_, i) => `w${i + 1}`);
    const workers = await mapLimit(names, JOIN_CONCURRENCY, async (name, i) => {
      const w = await d.nodes.join(name, d.managers[i % 3], workerToken, { listen: i === workerCount - 1 });
      up(w);
      return w;
    });
    d.workers.push(...workers);
    await waitFor(
      `all ${total} nodes to be ready in nodectl ls`,
      30_000,
      async () => {
        const list = await d.nodes.ls(m1);
        const ready = list.filter((n) => n.status === "ready").length;
        progress.ready(ready);
        return ready === total && list.length === total ? true : undefined;
      },
      250,
    );
    return { joinMs: Date.now() - t0, total };
  } finally {
    progress.stop();
  }
}

export async function showList(d: DemoContext, via: LocalNode): Promise<void> {
  d.out.line(`$ nodectl ls   (through ${via.name}'s control.sock)`);
  d.out.block(await d.nodes.admin(via, ["ls"]));
}

export interface Removal {
  name: string;
  refusedUp: string;
  refusedAfter: string;
}

/** rm of a running worker is refused; stopped, it is removed; it cannot come back. */
export async function removeWorker(d: DemoContext): Promise<Removal> {
  const victim = d.workers[0];
  const id = victim.nodeId!;
  const via = d.managers[1]; // a follower, most likely: writes are forwarded to the leader
  d.out.line(`Removing worker ${who(victim)}, through ${via.name}:`);
  const early = await d.nodes.nodectl(["rm", id], via);
  if (early.status !== 1 || !early.stderr.includes("NODE_UP"))
    throw new Error(
      `rm of a running worker should be refused with NODE_UP; got exit ${early.status}: ${early.stderr}`,
    );
  d.out.line(`  while it runs, rm is refused: ${refusalLine(early.stderr)}`);
  const stopped = await d.nodes.stop(victim);
  d.out.line(
    `  ${victim.name} stopped (SIGTERM, exit ${stopped.code ?? stopped.signal} after ${stopped.ms} ms)`,
  );
  const t0 = Date.now();
  const status = await waitFor(
    `nodectl ls to show ${victim.name} no longer ready`,
    15_000,
    async () => {
      const e = entryOf(await d.nodes.ls(via), victim);
      return e && e.status !== "ready" ? e.status : undefined;
    },
    250,
  );
  d.out.line(`  nodectl ls shows it ${status} ${secs(Date.now() - t0)} later`);
  d.out.line(`$ nodectl rm ${id}`);
  d.out.block(await d.nodes.admin(via, ["rm", id]));
  // Its certificate is still valid, but every manager refuses it now.
  const back = await d.nodes.nodectl(["run", "--state-dir", victim.stateDir], undefined, 20_000);
  if (back.status !== 1 || !back.stderr.includes("NODE_REMOVED"))
    throw new Error(
      `${victim.name} should be refused with NODE_REMOVED on restart; got exit ${back.status}: ${back.stderr.slice(-600)}`,
    );
  const refusedAfter = refusalLine(back.stderr);
  d.out.line(`$ nodectl run --state-dir <${victim.name}'s state dir>   (its old certificate and key)`);
  d.out.line(`    exit ${back.status}: ${refusedAfter}`);
  d.workers.splice(0, 1);
  return { name: victim.name, refusedUp: refusalLine(early.stderr), refusedAfter };
}

export interface Promotion {
  name: string;
  raftId: number;
  /** promote → manager certificate, learner, voter (ms after the command returned). */
  managerMs: number;
  voterMs: number;
}

/** promote the worker that has a --listen address; it becomes a Raft voter. */
export async function promoteWorker(d: DemoContext): Promise<Promotion> {
  const candidate = d.workers[d.workers.length - 1];
  const id = candidate.nodeId!;
  const via = d.managers[0];
  d.out.line(`Promoting worker ${who(candidate)} (joined with --listen ${candidate.listen}):`);
  d.out.line(`$ nodectl promote ${id}`);
  d.out.block(await d.nodes.admin(via, ["promote", id]));
  const t0 = Date.now();
  let managerMs: number | undefined;
  let learnerMs: number | undefined;
  const details = await waitFor(
    `${candidate.name} to become a manager and a Raft voter (nodectl inspect)`,
    30_000,
    async () => {
      const n = await d.nodes.inspect(via, id);
      if (n.role === "manager") managerMs ??= Date.now() - t0;
      if (n.membership === "learner") learnerMs ??= Date.now() - t0;
      return n.role === "manager" && n.membership === "voter" && n.raftId !== null ? n : undefined;
    },
    200,
  );
  const voterMs = Date.now() - t0;
  const steps = [
    `manager certificate after ${secs(managerMs ?? voterMs)}`,
    ...(learnerMs === undefined ? [] : [`learner after ${secs(learnerMs)}`]),
    `voter (Raft member ${details.raftId}) after ${secs(voterMs)}`,
  ];
  d.out.line(`  ${candidate.name}: ${steps.join(", ")}`);
  d.workers.pop();
  d.managers.push(candidate);
  return { name: candidate.name, raftId: details.raftId!, managerMs: managerMs ?? voterMs, voterMs };
}

export interface WorkerMove {
  name: string;
  before: string;
  after: string;
  connectsBefore: number;
  connectsAfter: number;
  orphaned: boolean;
  /** For a worker of the killed manager: its new session's connectedAt, in ms after the kill. */
  reconnectMs: number | undefined;
}

export interface Failover {
  killed: string;
  newLeader: string;
  failoverMs: number;
  recoverMs: number;
  moves: WorkerMove[];
}

async function connects(d: DemoContext, workers: LocalNode[]): Promise<Map<string, number>> {
  const values = await Promise.all(
    workers.map(
      async (w) => [w.name, (await d.nodes.metric(w, "nodectl_session_connects_total")) ?? -1] as const,
    ),
  );
  return new Map(values);
}

/** The first surviving manager whose metrics say it leads (polled every 50 ms). */
function firstNewLeader(d: DemoContext, survivors: LocalNode[]): Promise<LocalNode> {
  return waitFor(
    "a new leader among the surviving managers (nodectl_raft_is_leader)",
    10_000,
    async () => {
      const flags = await Promise.all(
        survivors.map((m) => d.nodes.metric(m, "nodectl_raft_is_leader", 500).catch(() => 0)),
      );
      return survivors[flags.indexOf(1)];
    },
    50,
  );
}

/** Waits until `nodectl ls` shows every worker ready with a session on a manager other than `killedId`. */
async function sessionsMovedOff(d: DemoContext, via: LocalNode, workers: LocalNode[], killedId: string) {
  await waitFor(
    "every worker to hold a session on a surviving manager (nodectl ls)",
    20_000,
    async () => {
      const list = await d.nodes.ls(via);
      const moved = workers.every((w) => {
        const e = entryOf(list, w);
        return e?.status === "ready" && e.session !== null && e.session.managerId !== killedId;
      });
      return moved ? true : undefined;
    },
    250,
  );
}

/** kill -9 of the leader: a new leader; only the killed manager's workers reconnect. */
export async function killLeader(d: DemoContext): Promise<Failover> {
  const before = await d.nodes.ls(running(d.managers)[0]);
  const leaderId = before.find((e) => e.leader)?.id;
  const leader = leaderId === undefined ? undefined : d.nodes.byId(leaderId);
  if (!leader || leaderId === undefined)
    throw new Error("nodectl ls names no leader among the demo's managers");
  const workers = running(d.workers);
  const nameOf = (nodeId: string | undefined) => (nodeId && d.nodes.byId(nodeId)?.name) || "-";
  const sessionBefore = new Map(workers.map((w) => [w.name, entryOf(before, w)?.session?.managerId]));
  const orphans = workers.filter((w) => sessionBefore.get(w.name) === leaderId);
  const connectsBefore = await connects(d, workers);
  d.out.line(
    `kill -9 ${who(leader)}, the leader, which holds the sessions of ${orphans.map((w) => w.name).join(", ") || "no worker"}`,
  );
  const t0 = Date.now();
  await d.nodes.kill(leader);
  const newLeader = await firstNewLeader(d, running(d.managers));
  const failoverMs = Date.now() - t0;
  d.out.line(`  new leader: ${who(newLeader)}, ${failoverMs} ms after the kill`);
  await sessionsMovedOff(d, newLeader, workers, leaderId);
  const recoverMs = Date.now() - t0;
  d.out.line(
    `  nodectl ls shows every worker ready on a surviving manager ${secs(recoverMs)} after the kill`,
  );
  // Give a reconnection that should not happen time to show: three heartbeat periods.
  await new Promise((r) => setTimeout(r, 3 * d.heartbeatMs));
  const after = await d.nodes.ls(newLeader);
  const connectsAfter = await connects(d, workers);
  const moves = workers.map((w) => ({
    reconnectMs: orphans.includes(w) ? sessionOpenedAfter(entryOf(after, w), t0) : undefined,
    name: w.name,
    before: nameOf(sessionBefore.get(w.name)),
    after: nameOf(entryOf(after, w)?.session?.managerId),
    connectsBefore: connectsBefore.get(w.name)!,
    connectsAfter: connectsAfter.get(w.name)!,
    orphaned: orphans.includes(w),
  }));
  return { killed: leader.name, newLeader: newLeader.name, failoverMs, recoverMs, moves };
}

function sessionOpenedAfter(entry: NodeListEntry | undefined, t0: number): number | undefined {
  const at = entry?.session ? Date.parse(entry.session.connectedAt) : Number.NaN;
  return Number.isNaN(at) ? undefined : at - t0;
}

/** Prints the sessions before and after, and fails if a worker moved that should not have. */
export function checkReconnects(d: DemoContext, f: Failover): void {
  d.out.line(`  sessions and nodectl_session_connects_total of each worker, before -> after:`);
  for (const m of f.moves)
    d.out.line(
      `    ${m.name.padEnd(4)} ${m.before.padEnd(3)} -> ${m.after.padEnd(3)}  connects ${m.connectsBefore} -> ${m.connectsAfter}${m.orphaned ? `  (${f.killed} was killed; new session ${m.reconnectMs ?? "?"} ms after)` : ""}`,
    );
  const stayed = f.moves.filter((m) => !m.orphaned && m.connectsAfter !== m.connectsBefore);
  if (stayed.length > 0)
    throw new Error(
      `workers of a surviving manager reconnected: ${stayed.map((m) => m.name).join(", ")} (a leader change must not move them)`,
    );
  const stuck = f.moves.filter((m) => m.orphaned && m.connectsAfter <= m.connectsBefore);
  if (stuck.length > 0)
    throw new Error(
      `workers of the killed manager did not open a new session: ${stuck.map((m) => m.name).join(", ")}`,
    );
}
