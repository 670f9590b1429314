// Figures 3 and 4 of issue 10, against a 3-manager cluster of real processes:
// - failover: kill -9 of the leader, then the first certificate issued through a
//   surviving manager (a join with the worker token: the product's joinCluster, the
//   issuance recorded in the log before the certificate is handed out). A new attempt
//   starts every 100 ms, alternating between the survivors, so a call stuck on the dead
//   leader does not hide the moment issuance works again. Also when a survivor's
//   metrics first report it leads. The killed manager is restarted with `nodectl run`
//   and the cluster waited healthy before the next trial.
// - issuance rate: renewals over mutual TLS at a fixed concurrency from holders of real
//   certificates (each holder joined once, then renews with a fresh key and switches to
//   the new certificate, as a node does; a new connection per renewal, as a node makes),
//   holder i asking manager i mod 3.
import { createNodeCsr, TlsCredentialHolder } from "../../src/ca/index.js";
import { IssuerCallError, joinCluster, renewCertificate } from "../../src/issuer/index.js";
import { silentLogger } from "../../src/log/logger.js";
import {
  cpuSeconds,
  joinToken,
  lsJson,
  type ManagerCluster,
  type ManagerProc,
  median,
  round,
  scrape,
  waitUntil,
} from "./cluster-driver.js";

export interface FailoverTrial {
  issuance_ms: number;
  leader_ms: number;
  attempts: number;
}

function errorCode(err: unknown): string {
  return err instanceof IssuerCallError ? err.code : err instanceof Error ? err.name : "ERROR";
}

/** Resolves with ms after `t0` at which a survivor's metrics first say it leads. */
async function newLeaderAfter(survivors: ManagerProc[], t0: number, deadline: number): Promise<number> {
  while (Date.now() < deadline) {
    for (const m of survivors)
      if ((await scrape(m.metricsPort, "nodectl_raft_is_leader", 500).catch(() => 0)) === 1)
        return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 25));
  }
  return Number.NaN;
}

export async function failoverTrial(cluster: ManagerCluster, deadlineMs = 30_000): Promise<FailoverTrial> {
  const leader = await waitUntil("a leader", 20_000, () => cluster.leader());
  const survivors = cluster.managers.filter((m) => m !== leader);
  const token = await joinToken(survivors[0]!.stateDir, "worker");
  const t0 = Date.now();
  const deadline = t0 + deadlineMs;
  leader.daemon.kill();
  const leaderAt = newLeaderAfter(survivors, t0, deadline);
  const pending: Promise<void>[] = [];
  let issuedAt: number | undefined;
  let attempts = 0;
  const errors = new Map<string, number>();
  while (issuedAt === undefined && Date.now() < deadline) {
    const via = survivors[attempts % survivors.length]!;
    attempts++;
    pending.push(
      joinCluster({
        managerAddress: via.listen,
        token,
        csrDer: createNodeCsr().csrDer,
        timeoutMs: 5_000,
      }).then(
        () => {
          issuedAt ??= Date.now();
        },
        (err: unknown) => {
          errors.set(errorCode(err), (errors.get(errorCode(err)) ?? 0) + 1);
        },
      ),
    );
    await Promise.race([new Promise((r) => setTimeout(r, 100)), ...pending.slice(-1)]);
  }
  await Promise.all(pending); // each is bounded by its own 5 s deadline
  const leaderMs = await leaderAt;
  if (issuedAt === undefined)
    throw new Error(
      `no issuance within ${deadlineMs} ms after the kill; errors: ${JSON.stringify([...errors])}`,
    );
  cluster.restart(leader);
  await cluster.waitHealthy(60_000);
  return { issuance_ms: issuedAt - t0, leader_ms: leaderMs, attempts };
}

export interface IssueRun {
  certificates_per_s: number;
  certificates: number;
  errors: Record<string, number>;
  latency_ms: { median: number; p99: number; max: number };
  /** nodectl_certificates_issued_total summed over the managers, over the same window. */
  metrics_issued_per_s: number;
  /** CPU used over the window, in cores (1 = one core busy the whole window). */
  cpu_cores: { managers: number[]; client: number };
  /** The three managers' CPU over the window divided by the certificates they signed. */
  manager_cpu_ms_per_certificate: number;
}

interface Holder {
  holder: TlsCredentialHolder;
  manager: ManagerProc;
}

/** Which managers the callers ask: all three (i mod 3), only the leader, or only the followers. */
export type IssueTarget = "all" | "leader" | "followers";

async function targets(cluster: ManagerCluster, target: IssueTarget): Promise<ManagerProc[]> {
  if (target === "all") return cluster.managers;
  const leader = await waitUntil("a leader", 20_000, () => cluster.leader());
  return target === "leader" ? [leader] : cluster.managers.filter((m) => m !== leader);
}

async function holders(cluster: ManagerCluster, count: number, target: IssueTarget): Promise<Holder[]> {
  const token = await joinToken(cluster.managers[0]!.stateDir, "worker");
  const asked = await targets(cluster, target);
  return Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const manager = asked[i % asked.length]!;
      const { privateKeyPem, csrDer } = createNodeCsr();
      const joined = await joinCluster({ managerAddress: manager.listen, token, csrDer, timeoutMs: 30_000 });
      const holder = new TlsCredentialHolder({
        identity: { privateKeyPem, certificateChainPem: joined.certificateChainPem },
        trustBundlePem: joined.trustBundlePem,
        logger: silentLogger(),
      });
      return { holder, manager };
    }),
  );
}

interface CpuMark {
  managers: number[];
  client: number;
}

function cpuMark(cluster: ManagerCluster): CpuMark {
  const self = process.cpuUsage();
  return {
    managers: cluster.managers.map((m) => cpuSeconds(m.daemon.pid)),
    client: (self.user + self.system) / 1e6,
  };
}

async function issuedTotal(cluster: ManagerCluster): Promise<number> {
  let sum = 0;
  for (const m of cluster.managers)
    sum += (await scrape(m.metricsPort, "nodectl_certificates_issued_total")) ?? 0;
  return sum;
}

export type IssueKind = "renew" | "join";

/** One certificate issued through `manager`: a renewal by `holder` (which then uses it), or a fresh join. */
function issuer(kind: IssueKind, token: string, managerIds: Map<string | null, string>) {
  return async ({ holder, manager }: Holder): Promise<void> => {
    const { privateKeyPem, csrDer } = createNodeCsr();
    if (kind === "join") {
      await joinCluster({ managerAddress: manager.listen, token, csrDer, timeoutMs: 10_000 });
      return;
    }
    const renewed = await renewCertificate({
      managerAddress: manager.listen,
      credentials: holder.channelCredentials({
        clusterId: holder.currentIdentity.clusterId,
        expectedServerRole: "manager",
        expectedServerNodeId: managerIds.get(manager.listen),
      }),
      csrDer,
      timeoutMs: 10_000,
    });
    holder.replaceIdentity({ privateKeyPem, certificateChainPem: renewed.certificateChainPem });
  };
}

export async function issueRun(
  cluster: ManagerCluster,
  kind: IssueKind,
  target: IssueTarget,
  concurrency: number,
  warmupS: number,
  seconds: number,
): Promise<IssueRun> {
  const all = await holders(cluster, concurrency, target);
  const token = await joinToken(cluster.managers[0]!.stateDir, "worker");
  const managerIds = new Map((await lsJson(cluster.managers[0]!.stateDir)).map((n) => [n.address, n.id]));
  const issueOnce = issuer(kind, token, managerIds);
  const from = Date.now() + warmupS * 1000;
  const until = from + seconds * 1000;
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  let before: number | undefined;
  let after: number | undefined;
  let cpuFrom: CpuMark | undefined;
  let cpuUntil: CpuMark | undefined;
  const loop = async (h: Holder): Promise<void> => {
    while (Date.now() < until) {
      const t = Date.now();
      try {
        await issueOnce(h);
        const done = Date.now();
        // Throughput: certificates that arrived inside the window.
        if (done >= from && done <= until) latencies.push(done - t);
      } catch (err) {
        if (t >= from) errors[errorCode(err)] = (errors[errorCode(err)] ?? 0) + 1;
      }
    }
  };
  const metricsWindow = (async () => {
    await new Promise((r) => setTimeout(r, from - Date.now()));
    cpuFrom = cpuMark(cluster);
    before = await issuedTotal(cluster);
    await new Promise((r) => setTimeout(r, until - Date.now()));
    cpuUntil = cpuMark(cluster);
    after = await issuedTotal(cluster);
  })();
  await Promise.all([...all.map(loop), metricsWindow]);
  latencies.sort((a, b) => a - b);
  const managersCpu = (cpuUntil?.managers ?? []).map((c, i) => c - (cpuFrom?.managers[i] ?? c));
  const issued = (after ?? Number.NaN) - (before ?? Number.NaN);
  return {
    certificates_per_s: round(latencies.length / seconds),
    certificates: latencies.length,
    errors,
    latency_ms: {
      median: round(median(latencies)),
      p99: latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))] ?? Number.NaN,
      max: latencies[latencies.length - 1] ?? Number.NaN,
    },
    metrics_issued_per_s: round(issued / seconds),
    cpu_cores: {
      managers: managersCpu.map((c) => round(c / seconds, 2)),
      client: round(((cpuUntil?.client ?? 0) - (cpuFrom?.client ?? 0)) / seconds, 2),
    },
    manager_cpu_ms_per_certificate: round((managersCpu.reduce((a, b) => a + b, 0) * 1000) / issued),
  };
}
