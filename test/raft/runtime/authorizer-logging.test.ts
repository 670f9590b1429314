// A refused caller retrying in a loop cannot flood the logs: the authorizer logs
// each refusal code at most once per 5 s, with how many it did not log, and still
// counts every refusal (onRefusal). (Second reading, F6.)
import * as grpc from "@grpc/grpc-js";
import { expect } from "chai";
import { pino } from "pino";
import { NodeAuthorizer } from "../../../src/ca/tls/authorization.js";
import { RaftTransportServiceService } from "../../../src/gen/raft/v1/transport.js";
import { silentLogger } from "../../../src/log/logger.js";
import { GrpcTransport } from "../../../src/raft/runtime/grpc-transport.js";
import { testbedPolicy } from "../../../src/testbed/policy.js";
import { CLUSTER, heartbeat, holderOf, identity, membership, RawClient } from "./transport-fixture.js";

describe("authorization: refusals are logged rate-limited and counted", function () {
  this.timeout(20_000);

  it("logs the first of 50 refused Raft calls, counts all 50, and reports the suppressed ones later", async () => {
    const lines: { code?: string; suppressed?: number }[] = [];
    const logger = pino({ level: "info" }, { write: (s: string) => void lines.push(JSON.parse(s)) });
    let skewMs = 0;
    const counted: string[] = [];
    const authorizer = new NodeAuthorizer({
      clusterId: CLUSTER,
      policy: testbedPolicy(),
      isNodeRemoved: () => false,
      logger,
      now: () => new Date(Date.now() + skewMs),
      onRefusal: (code) => counted.push(code),
    });
    const transport = new GrpcTransport({
      selfId: 1,
      credentialsFor: () => grpc.credentials.createInsecure(),
      events: {
        onMessage: () => undefined,
        onSnapshotStatus: () => undefined,
        onUnreachable: () => undefined,
      },
      logger: silentLogger(),
    });
    transport.setMembers(membership({ 1: { nodeId: "member-1", address: "" } }));
    const server = new grpc.Server({ interceptors: [authorizer.interceptor()] });
    server.addService(
      RaftTransportServiceService,
      transport.service((c) => authorizer.peerIdentity(c)?.nodeId),
    );
    const holder = holderOf(identity("manager", "member-1"));
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", holder.serverCredentials({ requireClientCertificate: true }), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    const worker = new RawClient(identity("worker", "w1"), `127.0.0.1:${port}`);
    try {
      for (let i = 0; i < 50; i++)
        expect((await worker.send([heartbeat(2, 1)]))?.code).to.equal(grpc.status.PERMISSION_DENIED);
      expect(counted).to.have.length(50);
      expect(lines.filter((l) => l.code === "WRONG_ROLE")).to.have.length(1);
      skewMs = 5_000; // the interval is over: the next refusal is logged with the count of the unlogged ones
      await worker.send([heartbeat(2, 1)]);
      expect(lines.filter((l) => l.code === "WRONG_ROLE").map((l) => l.suppressed)).to.deep.equal([0, 49]);
      expect(counted).to.have.length(51);
    } finally {
      worker.close();
      await transport.close();
      server.forceShutdown();
    }
  });
});
