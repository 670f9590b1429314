import * as grpc from "@grpc/grpc-js";
import { Command } from "commander";
import { nodeIdProblem } from "../ca/profile.js";
import { NodeAuthorizer } from "../ca/tls/authorization.js";
import { RaftTransportServiceService } from "../gen/raft/v1/transport.js";
import { KVServiceService } from "../gen/testbed/kv/v1/kv.js";
import { createLogger } from "../log/logger.js";
import { bootstrapState, joiningState } from "../raft/core/bootstrap.js";
import { DiskStorage } from "../raft/runtime/disk-storage.js";
import { GrpcTransport, RAFT_SERVER_OPTIONS } from "../raft/runtime/grpc-transport.js";
import { encodeMemberContext, type MemberBinding } from "../raft/runtime/members.js";
import { RaftNode } from "../raft/runtime/node.js";
import { loadCredentialHolder } from "./dev-pki.js";
import { kvService } from "./kv-service.js";
import { KVStateMachine } from "./kv-state-machine.js";
import { testbedPolicy } from "./policy.js";

const PEER = /^([1-9][0-9]{0,8})=([^@,=]+)@([^@,=]+)$/;

/** ID=NODE_ID@HOST:PORT,... : raft id, the CN its certificate has, where it listens. */
function parsePeers(spec: string): Map<number, MemberBinding> {
  const peers = new Map<number, MemberBinding>();
  for (const part of spec.split(",").filter(Boolean)) {
    const match = PEER.exec(part);
    if (!match) throw new Error(`bad --peers entry "${part}" (want ID=NODE_ID@HOST:PORT)`);
    const [, id, nodeId, address] = match as unknown as [string, string, string, string];
    const problem = nodeIdProblem(nodeId);
    if (problem) throw new Error(`bad --peers entry "${part}": node id ${problem}`);
    peers.set(Number.parseInt(id, 10), { nodeId, address });
  }
  return peers;
}

/** The founding voters' bootstrap entries carry who each of them is. */
function foundingContexts(peers: Map<number, MemberBinding>): Map<number, Uint8Array> {
  return new Map([...peers].map(([id, binding]) => [id, encodeMemberContext(binding)]));
}

async function main(): Promise<void> {
  const opts = new Command()
    .name("raft-member")
    .requiredOption("--id <n>", "this member's raft id")
    .requiredOption("--listen <host:port>", "address to serve on")
    .requiredOption("--data-dir <dir>", "raft state directory")
    .requiredOption("--tls-dir <dir>", "directory with node.key, node.crt, ca.crt")
    .requiredOption("--cluster-id <id>", "cluster id (the O of every certificate)")
    .requiredOption(
      "--peers <list>",
      "ID=NODE_ID@HOST:PORT,... of the founding voters (or known members with --join)",
    )
    .option("--bootstrap", "first start only: create this member's state as a founding voter of --peers")
    .option("--join", "first start only: create this member's state empty, to be added as a learner")
    .option("--exit-with-parent", "stop when standard input closes (the parent that piped it died)")
    .option("--tick-ms <ms>", "raft tick", "100")
    .option("--snapshot-every <n>", "compact the log every N applied entries", "100000")
    .option("--keep-entries <n>", "entries kept behind each snapshot for slow followers", "5000")
    .parse()
    .opts<{
      id: string;
      listen: string;
      dataDir: string;
      tlsDir: string;
      clusterId: string;
      peers: string;
      bootstrap?: boolean;
      join?: boolean;
      exitWithParent?: boolean;
      tickMs: string;
      snapshotEvery: string;
      keepEntries: string;
    }>();
  if (!/^[1-9][0-9]{0,8}$/.test(opts.id)) throw new Error(`bad --id "${opts.id}" (want a positive integer)`);
  const id = Number.parseInt(opts.id, 10);
  const peers = parsePeers(opts.peers);
  const logger = createLogger({ member: id });
  const credentials = loadCredentialHolder(opts.tlsDir, logger);
  const self = peers.get(id);
  if (self && self.nodeId !== credentials.currentIdentity.nodeId)
    throw new Error(
      `--peers names member ${id} ${self.nodeId}, but its certificate is ${credentials.currentIdentity.nodeId}`,
    );

  if (opts.bootstrap && opts.join) throw new Error("--bootstrap and --join exclude each other");
  // A restart names neither: a missing or empty directory is then refused, never re-created.
  const initial = opts.bootstrap
    ? bootstrapState([...peers.keys()], foundingContexts(peers))
    : opts.join
      ? joiningState()
      : undefined;
  const storage = initial
    ? await DiskStorage.create(opts.dataDir, id, initial, { logger })
    : await DiskStorage.open(opts.dataDir, id, { logger });
  const kv = new KVStateMachine();
  const node = new RaftNode({
    id,
    storage,
    stateMachine: kv,
    logger,
    tickMs: Number(opts.tickMs),
    snapshotEveryEntries: Number(opts.snapshotEvery),
    keepEntriesAfterSnapshot: Number(opts.keepEntries),
  });

  const authorizer = new NodeAuthorizer({
    clusterId: opts.clusterId,
    isNodeRemoved: () => false,
    logger,
    policy: testbedPolicy(),
  });
  const transport = new GrpcTransport({
    selfId: id,
    // Each member is dialled expecting exactly the node id the membership binds to it.
    credentialsFor: (nodeId) =>
      credentials.channelCredentials({
        clusterId: opts.clusterId,
        expectedServerRole: "manager",
        expectedServerNodeId: nodeId,
      }),
    events: node,
    logger,
    // A joining member knows nobody from its (empty) log yet: whoever admitted it says who is who.
    seeds: opts.join ? peers : undefined,
  });

  const server = new grpc.Server({ ...RAFT_SERVER_OPTIONS, interceptors: [authorizer.interceptor()] });
  server.addService(
    RaftTransportServiceService,
    transport.service((call) => authorizer.peerIdentity(call)?.nodeId),
  );
  server.addService(KVServiceService, kvService(node, kv));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      opts.listen,
      credentials.serverCredentials({ requireClientCertificate: true }),
      (err, p) => (err ? reject(err) : resolve(p)),
    ),
  );
  node.start(transport);
  process.stdout.write(`${JSON.stringify({ event: "listening", id, port })}\n`);

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "stopping");
    server.tryShutdown(() => undefined);
    node
      .stop()
      .then(() => process.exit(0))
      .catch((err: unknown) => {
        logger.error({ err }, "unclean stop");
        process.exit(1);
      });
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  if (opts.exitWithParent) {
    // The parent holds the other end of our stdin: EOF means it is gone, however it died.
    process.stdin.on("end", () => stop("parent exited"));
    process.stdin.on("error", () => stop("parent exited"));
    process.stdin.resume();
  }
  node.on("fatal", () => process.exit(1));
}

main().catch((err: unknown) => {
  const e = err as Error & { code?: string };
  process.stderr.write(`raft-member: ${e.code ? `${e.code}: ` : ""}${e.message}\n`);
  process.exit(1);
});
