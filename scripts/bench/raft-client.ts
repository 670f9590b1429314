// The benchmark's client process: drives KV puts of fixed-size values through
// the real write path at a given concurrency for a fixed time, then prints one
// JSON line. `--system etcd` speaks etcd's KV.Put (3.4 wire format) instead.
import { readFileSync } from "node:fs";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import * as grpc from "@grpc/grpc-js";
import { Command } from "commander";
import { KVServiceClient } from "../../src/gen/testbed/kv/v1/kv.js";
import { silentLogger } from "../../src/log/logger.js";
import { loadCredentialHolder } from "../../src/testbed/dev-pki.js";

const opts = new Command()
  .requiredOption("--target <host:port>")
  .requiredOption("--concurrency <n>")
  .option("--system <name>", "nodectl or etcd", "nodectl")
  .option("--seconds <s>", "measured time", "5")
  .option("--warmup-seconds <s>", "unmeasured time first", "1")
  .option("--payload-bytes <n>", "value size", "150")
  .option("--cert-dir <dir>", "client node.key/node.crt/ca.crt (nodectl)")
  .option("--cluster-id <id>", "cluster id (nodectl)")
  .option("--etcd-ca <file>", "etcd CA (enables TLS)")
  .option("--etcd-cert <file>", "etcd client certificate")
  .option("--etcd-key <file>", "etcd client key")
  .parse()
  .opts<{
    target: string;
    concurrency: string;
    system: string;
    seconds: string;
    warmupSeconds: string;
    payloadBytes: string;
    certDir?: string;
    clusterId?: string;
    etcdCa?: string;
    etcdCert?: string;
    etcdKey?: string;
  }>();

type Put = (key: string, value: Uint8Array) => Promise<void>;

function nodectlPut(): Put {
  const holder = loadCredentialHolder(opts.certDir!, silentLogger());
  const client = new KVServiceClient(
    opts.target,
    holder.channelCredentials({ clusterId: opts.clusterId!, expectedServerRole: "manager" }),
    { "grpc.ssl_target_name_override": "manager", "grpc.default_authority": "manager" },
  );
  return (key, value) =>
    new Promise((resolve, reject) => client.put({ key, value }, (err) => (err ? reject(err) : resolve())));
}

function etcdPut(): Put {
  const identity = (b: Buffer) => b;
  const Client = grpc.makeGenericClientConstructor(
    {
      put: {
        path: "/etcdserverpb.KV/Put",
        requestStream: false,
        responseStream: false,
        requestSerialize: identity,
        requestDeserialize: identity,
        responseSerialize: identity,
        responseDeserialize: identity,
      },
    },
    "KV",
  );
  const credentials = opts.etcdCa
    ? grpc.credentials.createSsl(
        readFileSync(opts.etcdCa),
        readFileSync(opts.etcdKey!),
        readFileSync(opts.etcdCert!),
      )
    : grpc.credentials.createInsecure();
  const client = new Client(opts.target, credentials);
  const enc = new TextEncoder();
  return (key, value) => {
    // etcdserverpb.PutRequest: key = 1, value = 2.
    const req = Buffer.from(
      new BinaryWriter().uint32(10).bytes(enc.encode(key)).uint32(18).bytes(value).finish(),
    );
    return new Promise((resolve, reject) =>
      (client as unknown as { put: (r: Buffer, cb: (e: Error | null) => void) => void }).put(req, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
  };
}

async function main(): Promise<void> {
  const put = opts.system === "etcd" ? etcdPut() : nodectlPut();
  const concurrency = Number(opts.concurrency);
  const value = new Uint8Array(Number(opts.payloadBytes)).fill(120);
  const start = performance.now();
  const measureFrom = start + Number(opts.warmupSeconds) * 1000;
  const end = measureFrom + Number(opts.seconds) * 1000;
  const latencies: number[] = [];
  let errors = 0;
  let seq = 0;
  const worker = async (w: number) => {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        await put(`k${w}-${seq++ % 10_000}`, value);
      } catch {
        errors++;
        continue;
      }
      if (t0 >= measureFrom) latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  latencies.sort((a, b) => a - b);
  const q = (p: number) =>
    Number((latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0).toFixed(2));
  const seconds = Number(opts.seconds);
  process.stdout.write(
    `${JSON.stringify({
      system: opts.system,
      concurrency,
      writes_per_s: Math.round(latencies.length / seconds),
      p50_ms: q(0.5),
      p99_ms: q(0.99),
      errors,
    })}\n`,
  );
  process.exit(0);
}

main().catch((err: unknown) => {
  process.stderr.write(`raft-client: ${(err as Error).message}\n`);
  process.exit(1);
});
