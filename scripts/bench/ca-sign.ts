// Benchmark of the manager's signing hot path: check a node's CSR (parse,
// P-256 key, self-signature) and issue its certificate, on one thread (one core).
// CSRs are made up front: making them is the nodes' work, not the manager's.
// Prints one JSON line. Usage: npm run bench:ca-sign [-- --count N --warmup N]
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import { checkNodeCsr, createNodeCsr } from "../../src/ca/csr.js";
import { RootCA } from "../../src/ca/root-ca.js";

const { values } = parseArgs({
  options: {
    count: { type: "string", default: "5000" },
    warmup: { type: "string", default: "500" },
    csrs: { type: "string", default: "256" },
  },
});
const count = Number(values.count);
const warmup = Number(values.warmup);
const distinctCsrs = Number(values.csrs);

const root = RootCA.create({ clusterId: "bench-cluster" });
const csrPems = Array.from({ length: distinctCsrs }, () => createNodeCsr().csrPem);

function checkAndIssue(i: number): string {
  const csr = checkNodeCsr(csrPems[i % csrPems.length] as string);
  return root.issueNodeCertificate({ csr, role: i % 10 === 0 ? "manager" : "worker", nodeId: `node-${i}` })
    .certificatePem;
}

for (let i = 0; i < warmup; i++) checkAndIssue(i);

const durationsMs = new Float64Array(count);
let bytes = 0;
const started = process.hrtime.bigint();
for (let i = 0; i < count; i++) {
  const t0 = process.hrtime.bigint();
  bytes += checkAndIssue(i).length;
  durationsMs[i] = Number(process.hrtime.bigint() - t0) / 1e6;
}
const elapsedS = Number(process.hrtime.bigint() - started) / 1e9;
durationsMs.sort();
const percentile = (p: number): number =>
  durationsMs[Math.min(count - 1, Math.floor((p / 100) * count))] ?? 0;
const round = (x: number, digits = 3): number => Number(x.toFixed(digits));

process.stdout.write(
  `${JSON.stringify({
    bench: "ca-sign",
    operation: "checkNodeCsr+issueNodeCertificate",
    certs_per_s: round(count / elapsedS, 1),
    p50_ms: round(percentile(50)),
    p99_ms: round(percentile(99)),
    max_ms: round(durationsMs[count - 1] ?? 0),
    count,
    warmup,
    distinct_csrs: distinctCsrs,
    avg_cert_pem_bytes: Math.round(bytes / count),
    node: process.version,
    cpu: cpus()[0]?.model ?? "unknown",
  })}\n`,
);
