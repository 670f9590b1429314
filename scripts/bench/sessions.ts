// What holding worker sessions costs one manager: RSS, live heap and CPU of a manager
// process (a one-member Raft cluster on disk with ClusterState, the Dispatcher behind
// the CA's authorization interceptor on loopback mutual TLS) while N nodes, in a child
// process so their memory is not counted, hold a session and heartbeat every period.
// Also checks that steady heartbeats add no log entry. RSS is reported as is: with 100
// sessions the marginal (~10 MB by the notes) is within the allocator's noise after the
// bootstrap, so compare `--sessions 0` and `--sessions 100` runs. Prints one JSON line.
// Usage: npm run bench:sessions [-- --sessions 100 --period-ms 5000 --window-s 20]
import { fork } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import {
  checkNodeCsr,
  createNodeCsr,
  NodeAuthorizer,
  RootCA,
  TlsCredentialHolder,
} from "../../src/ca/index.js";
import {
  DISPATCHER_POLICY,
  Dispatcher,
  SessionClient,
  type WeightedManager,
} from "../../src/dispatcher/index.js";
import { ClusterState, joinSecretSha256, type Operation, proposeCommand } from "../../src/fsm/index.js";
import { DispatcherServiceService } from "../../src/gen/dispatcher/v1/dispatcher.js";
import { NodeStatus, RaftMembership, Role } from "../../src/gen/fsm/v1/state.js";
import { silentLogger } from "../../src/log/logger.js";
import { bootstrapState } from "../../src/raft/core/bootstrap.js";
import { DiskStorage } from "../../src/raft/runtime/disk-storage.js";
import { encodeMemberContext } from "../../src/raft/runtime/members.js";
import { RaftNode } from "../../src/raft/runtime/node.js";

const CLUSTER_ID = "bench-sessions";

interface Identity {
  nodeId: string;
  privateKeyPem: string;
  certificateChainPem: string;
}

interface ClientJob {
  managers: WeightedManager[];
  trustBundlePem: string;
  identities: Identity[];
}

function issue(root: RootCA, role: "manager" | "worker", nodeId: string): Identity {
  const { privateKeyPem, csrPem } = createNodeCsr();
  const issued = root.issueNodeCertificate({ csr: checkNodeCsr(csrPem), role, nodeId });
  return { nodeId, privateKeyPem, certificateChainPem: issued.chainPem };
}

/** The child: one SessionClient per identity; tells the parent how many sessions are open. */
function runClients(): void {
  const clients: SessionClient[] = [];
  process.on("message", (job: ClientJob) => {
    for (const id of job.identities) {
      const holder = new TlsCredentialHolder({
        identity: id,
        trustBundlePem: job.trustBundlePem,
        logger: silentLogger(),
      });
      const client = new SessionClient({
        loadManagers: () => job.managers,
        saveManagers: () => {},
        credentialsFor: (m) =>
          holder.channelCredentials({
            clusterId: CLUSTER_ID,
            expectedServerRole: "manager",
            expectedServerNodeId: m.nodeId,
          }),
        logger: silentLogger(),
      });
      clients.push(client);
      void client.start();
    }
    const report = setInterval(() => {
      process.send?.({ open: clients.filter((c) => c.managerId !== undefined).length });
    }, 200);
    process.on("disconnect", () => {
      clearInterval(report);
      for (const c of clients) c.stop();
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Collects garbage twice around a pause, so the heap reflects what is live. */
async function settle(): Promise<void> {
  global.gc?.();
  await sleep(2_000);
  global.gc?.();
}

/** This process's CPU time (user + system) over a window of wall time. */
async function cpuOver(windowS: number): Promise<{ cpuMs: number; wallS: number }> {
  const before = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await sleep(windowS * 1_000);
  const used = process.cpuUsage(before);
  return { cpuMs: (used.user + used.system) / 1e3, wallS: Number(process.hrtime.bigint() - t0) / 1e9 };
}
const mb = (bytes: number) => Number((bytes / 1024 / 1024).toFixed(1));

async function runManager(sessions: number, periodMs: number, windowS: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "bench-sessions-"));
  const root = RootCA.create({ clusterId: CLUSTER_ID });
  const state = new ClusterState();
  const self = issue(root, "manager", "m1");
  const holder = new TlsCredentialHolder({
    identity: self,
    trustBundlePem: root.certificatePem,
    logger: silentLogger(),
  });
  const authorizer = new NodeAuthorizer({
    clusterId: CLUSTER_ID,
    policy: DISPATCHER_POLICY,
    isNodeRemoved: (id) => state.removedNode(id) !== undefined,
    logger: silentLogger(),
  });
  const server = new grpc.Server({ interceptors: [authorizer.interceptor()], "grpc.enable_channelz": 0 });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", holder.serverCredentials({ requireClientCertificate: true }), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  const address = `127.0.0.1:${port}`;
  const initial = bootstrapState([1], new Map([[1, encodeMemberContext({ nodeId: "m1", address })]]));
  const raft = new RaftNode({
    id: 1,
    storage: await DiskStorage.create(dir, 1, initial),
    stateMachine: state,
    logger: silentLogger(),
  });
  const dispatcher = new Dispatcher({
    selfNodeId: "m1",
    state,
    log: raft,
    authorizer,
    leadership: raft,
    logger: silentLogger(),
    heartbeatPeriodMs: periodMs,
  });
  server.addService(DispatcherServiceService, dispatcher.service());
  raft.start({ send: () => {}, setMembers: () => {}, close: async () => {} });
  let child: ReturnType<typeof fork> | undefined;
  try {
    while (!raft.leadership().isSelf) await sleep(20);
    const cert = {
      serial: "01",
      notAfterMs: Date.now() + 3_600_000,
      issuerKeyId: root.keyId,
      der: new Uint8Array(),
    };
    const enc = (s: string) => new TextEncoder().encode(s);
    const at = Date.now();
    const propose = (op: Operation) => proposeCommand(raft, op);
    await propose({
      $case: "createCluster",
      value: {
        cluster: {
          id: CLUSTER_ID,
          root: { certPem: enc(root.certificatePem), keyPem: enc(root.privateKeyPem()), keyId: root.keyId },
          rotation: undefined,
          joinTokenSecrets: { worker: "w", manager: "m", rotatedSha256: [] },
          nodeCertLifetimeS: 3600,
          renewalGraceS: 3600,
          createdAtMs: at,
          nextRaftId: 0,
        },
        firstNode: {
          id: "m1",
          role: Role.ROLE_MANAGER,
          desiredRole: Role.ROLE_MANAGER,
          raftId: 1,
          membership: RaftMembership.RAFT_MEMBERSHIP_VOTER,
          status: NodeStatus.NODE_STATUS_UNSPECIFIED,
          statusChangedAtMs: at,
          address,
          certificate: cert,
          session: undefined,
          joinedAtMs: at,
          earlierCertificates: [],
          trustedRootKeyId: "",
          heldIssuerKeyId: "",
        },
      },
    });
    const identities = Array.from({ length: sessions }, (_, i) => issue(root, "worker", `w${i}`));
    await Promise.all(
      identities.map((id) =>
        propose({
          $case: "recordIssuance",
          value: {
            nodeId: id.nodeId,
            role: Role.ROLE_WORKER,
            certificate: cert,
            join: true,
            joinSecretSha256: joinSecretSha256("w"),
            address: "",
            atMs: at,
          },
        }),
      ),
    );
    // Idle baseline: the same manager with no session, after the bootstrap's garbage is collected.
    await settle();
    const idle = process.memoryUsage();
    const idleCpu = await cpuOver(windowS / 2);

    let open = 0;
    child = fork(new URL(import.meta.url).pathname, ["--clients"], {
      stdio: ["ignore", "ignore", "inherit", "ipc"],
    });
    child.on("message", (m: { open: number }) => {
      open = m.open;
    });
    const job: ClientJob = {
      managers: [{ nodeId: "m1", address, weight: 100 }],
      trustBundlePem: root.certificatePem,
      identities,
    };
    child.send(job);
    const connectStart = Date.now();
    while (state.nodes().filter((n) => n.status === NodeStatus.NODE_STATUS_READY).length < sessions) {
      if (Date.now() - connectStart > 60_000)
        throw new Error(`only ${open} of ${sessions} sessions opened in 60 s`);
      await sleep(50);
    }
    const allReadyMs = Date.now() - connectStart;
    await sleep(Math.max(2 * periodMs, 2_000)); // the ready batch is in, every node has heartbeated
    await settle();
    const logBefore = raft.status().lastIndex;
    const heartbeatsBefore = dispatcher.heartbeatsReceived;
    const busy = await cpuOver(windowS);
    const steady = process.memoryUsage();
    const heartbeats = dispatcher.heartbeatsReceived - heartbeatsBefore;
    const wallS = busy.wallS;
    // Above idle (Raft ticks, timers): what the sessions and their heartbeats cost.
    const extraCpuMs = busy.cpuMs - (idleCpu.cpuMs / idleCpu.wallS) * wallS;
    process.stdout.write(
      `${JSON.stringify({
        bench: "sessions",
        sessions,
        open_sessions: dispatcher.openSessions,
        heartbeat_period_ms: periodMs,
        all_ready_ms: allReadyMs,
        window_s: windowS,
        rss_idle_mb: mb(idle.rss),
        rss_mb: mb(steady.rss),
        heap_used_idle_mb: mb(idle.heapUsed),
        heap_used_mb: mb(steady.heapUsed),
        heap_per_session_kb: Math.round((steady.heapUsed - idle.heapUsed) / 1024 / sessions),
        cpu_percent_one_core_idle: Number(((100 * idleCpu.cpuMs) / 1e3 / idleCpu.wallS).toFixed(2)),
        cpu_percent_one_core: Number(((100 * busy.cpuMs) / 1e3 / wallS).toFixed(2)),
        heartbeats_per_s: Number((heartbeats / wallS).toFixed(1)),
        extra_cpu_ms_per_heartbeat: heartbeats > 0 ? Number((extraCpuMs / heartbeats).toFixed(3)) : null,
        log_entries_during_window: raft.status().lastIndex - logBefore,
        node: process.version,
        cpu: cpus()[0]?.model ?? "unknown",
      })}\n`,
    );
  } finally {
    child?.disconnect();
    dispatcher.close();
    server.forceShutdown();
    await raft.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv.includes("--clients")) {
  runClients();
} else {
  const { values } = parseArgs({
    options: {
      sessions: { type: "string", default: "100" },
      "period-ms": { type: "string", default: "5000" },
      "window-s": { type: "string", default: "20" },
    },
  });
  await runManager(Number(values.sessions), Number(values["period-ms"]), Number(values["window-s"]));
}
