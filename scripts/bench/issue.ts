// Issuance throughput of the CA service in one process: one manager (a one-member
// Raft log on disk, fsync per write, behind the authorizer over loopback TLS) and
// `--concurrency` clients. Two figures:
// - issue: IssueNodeCertificate calls over one verified channel (token check, CSR
//   check, signing, the RecordIssuance entry committed and applied): the manager's path;
// - join: whole joinCluster calls (root fetched over a fresh TLS connection, digest
//   checked, issue, status stream), which add two client handshakes per node.
// Client and server share this process's thread, so the client's work counts against
// the figure. CSRs are made up front (the nodes' work). Prints one JSON line.
// Usage: npm run bench:issue [-- --seconds 5 --concurrency 16]
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { createNodeCsr } from "../../src/ca/csr.js";
import { NodeCAServiceClient } from "../../src/gen/ca/v1/ca.js";
import { joinCluster } from "../../src/issuer/index.js";
import { startCaServer } from "../../test/issuer/fixture.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    concurrency: { type: "string", default: "16" },
    csrs: { type: "string", default: "256" },
  },
});
const seconds = Number(values.seconds);
const concurrency = Number(values.concurrency);

const csrs = Array.from({ length: Number(values.csrs) }, () => {
  const pem = createNodeCsr().csrPem;
  return new Uint8Array(Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64"));
});
const csr = (i: number): Uint8Array => csrs[i % csrs.length] as Uint8Array;

interface Figure {
  per_s: number;
  p50_ms: number;
  p99_ms: number;
  count: number;
  errors: number;
}

/** Runs `op` from `concurrency` loops for `seconds` after a 1 s warm-up. */
async function measure(op: (i: number) => Promise<unknown>): Promise<Figure> {
  let next = 0;
  const run = async (untilMs: number, durations?: number[]): Promise<number> => {
    let errors = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (Date.now() < untilMs) {
          const t0 = performance.now();
          try {
            await op(next++);
            durations?.push(performance.now() - t0);
          } catch {
            errors++;
          }
        }
      }),
    );
    return errors;
  };
  await run(Date.now() + 1000);
  const durations: number[] = [];
  const started = performance.now();
  const errors = await run(Date.now() + seconds * 1000, durations);
  const elapsedS = (performance.now() - started) / 1000;
  durations.sort((a, b) => a - b);
  const pct = (p: number) =>
    durations[Math.min(durations.length - 1, Math.floor((p / 100) * durations.length))] ?? 0;
  const round = (x: number) => Number(x.toFixed(2));
  return {
    per_s: round(durations.length / elapsedS),
    p50_ms: round(pct(50)),
    p99_ms: round(pct(99)),
    count: durations.length,
    errors,
  };
}

const ca = await startCaServer();
try {
  const token = ca.token("worker");
  const client = new NodeCAServiceClient(
    ca.address,
    grpc.credentials.createSsl(Buffer.from(ca.root.certificatePem), null, null, {
      checkServerIdentity: () => undefined,
    }),
    { "grpc.ssl_target_name_override": "manager" },
  );
  const issue = await measure(
    (i) =>
      new Promise((resolve, reject) =>
        client.issueNodeCertificate({ token, csrDer: csr(i), address: "" }, (error, response) =>
          error ? reject(error) : resolve(response),
        ),
      ),
  );
  client.close();
  const join = await measure((i) => joinCluster({ managerAddress: ca.address, token, csrDer: csr(i) }));
  process.stdout.write(
    `${JSON.stringify({
      bench: "issue",
      concurrency,
      seconds,
      issue,
      join,
      nodes_recorded: ca.state.nodes().length,
      node: process.version,
      cpu: cpus()[0]?.model ?? "unknown",
    })}\n`,
  );
} finally {
  await ca.close();
}
