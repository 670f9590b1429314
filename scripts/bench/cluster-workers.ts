// The child of `bench:cluster --figure join --mode in-process`: N workers in one
// process, each the product's own code path of `nodectl join` (joinNode: key, CSR,
// root fetched and checked against the token, issuance recorded in the log, state dir
// written; then NodeDaemon.start: TLS identity, session, renewal loop), all started at
// once. Used when N separate node processes would not fit the machine. A join refused
// with OVERLOADED or UNAVAILABLE is retried after the manager's hint (counted), as a
// script driving `nodectl join` would; any other refusal fails the run.
// Prints `{"event":"started","at":EPOCH_MS}` before the first join call, then
// `{"event":"joined","count":N,"retries":R,"at":EPOCH_MS}` once every daemon runs; stops them all on
// SIGTERM and exits.
import { join } from "node:path";
import { parseArgs } from "node:util";
import { IssuerCallError } from "../../src/issuer/index.js";
import { silentLogger } from "../../src/log/logger.js";
import { joinNode, NodeDaemon } from "../../src/node/index.js";

const { values } = parseArgs({
  options: {
    manager: { type: "string" },
    token: { type: "string" },
    dir: { type: "string" },
    count: { type: "string" },
    "deadline-ms": { type: "string", default: "300000" },
  },
});
const manager = values.manager ?? "";
const token = values.token ?? "";
const dir = values.dir ?? "";
const count = Number(values.count);
const deadline = Date.now() + Number(values["deadline-ms"]);
if (!manager || !token || !dir || !Number.isInteger(count) || count < 1) {
  process.stderr.write("usage: cluster-workers.ts --manager H:P --token T --dir DIR --count N\n");
  process.exit(2);
}

const logger = silentLogger();
const daemons: NodeDaemon[] = [];
let retries = 0;

async function startWorker(i: number): Promise<void> {
  const stateDir = join(dir, `w${i}`);
  for (;;) {
    try {
      const joined = await joinNode({ stateDir, token, manager, logger, timeoutMs: 60_000 });
      const heartbeat = Number(process.env.NODECTL_HEARTBEAT_MS);
      daemons.push(
        await NodeDaemon.start({
          stateDir,
          config: joined.config,
          logger,
          heartbeatPeriodMs: Number.isInteger(heartbeat) && heartbeat >= 50 ? heartbeat : undefined,
        }),
      );
      return;
    } catch (err) {
      const retriable =
        err instanceof IssuerCallError && (err.code === "OVERLOADED" || err.code === "UNAVAILABLE");
      if (!retriable || Date.now() > deadline) throw err;
      retries++;
      const wait = err.retryAfterMs ?? 200;
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

async function stopAll(): Promise<void> {
  await Promise.allSettled(daemons.map((d) => d.stop()));
}

process.once("SIGTERM", () => {
  stopAll().finally(() => process.exit(0));
});

async function main(): Promise<void> {
  process.stdout.write(`${JSON.stringify({ event: "started", at: Date.now() })}\n`);
  const results = await Promise.allSettled(Array.from({ length: count }, (_, i) => startWorker(i + 1)));
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed.length > 0) {
    const first = failed[0]?.reason;
    throw new Error(
      `${failed.length} of ${count} workers failed to join; first: ${first instanceof Error ? first.message : String(first)}`,
    );
  }
  process.stdout.write(`${JSON.stringify({ event: "joined", count, retries, at: Date.now() })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`cluster-workers: ${err instanceof Error ? err.message : String(err)}\n`);
  stopAll().finally(() => process.exit(1));
});
