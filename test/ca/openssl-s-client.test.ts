import { expect } from "chai";
import { RootCA } from "../../src/ca/root-ca.js";
import { TlsCredentialHolder } from "../../src/ca/tls/credential-holder.js";
import { silentLogger } from "../../src/log/logger.js";
import { issueNode, type RunningServer, startEchoServer } from "./echo-service.js";
import { TempDir } from "./helpers.js";
import { sClient } from "./s-client.js";

describe("ca/tls: openssl s_client handshakes with a grpc-js server", () => {
  const root = RootCA.create({ clusterId: "cluster-ssl" });
  const holder = new TlsCredentialHolder({
    identity: issueNode(root, "manager", "m-1"),
    trustBundlePem: root.certificatePem,
    logger: silentLogger(),
  });
  let server: RunningServer;
  let dir: TempDir;
  let rootFile: string;

  before(async () => {
    dir = await TempDir.create();
    rootFile = await dir.file("root.pem", root.certificatePem);
    server = await startEchoServer(holder.serverCredentials({ requireClientCertificate: true }));
  });
  after(async () => {
    await server.close();
    await dir.remove();
  });

  function baseArgs(): string[] {
    return [
      "-connect",
      server.target,
      "-alpn",
      "h2",
      "-servername",
      "manager",
      "-CAfile",
      rootFile,
      "-verify_return_error",
      "-x509_strict",
      "-verify_hostname",
      "manager",
    ];
  }

  it("completes mutual TLS with an issued certificate, verifying the server strictly", async () => {
    const node = issueNode(root, "worker", "w-1");
    const result = await sClient([
      ...baseArgs(),
      "-cert",
      await dir.file("w.crt", node.certificateChainPem),
      "-key",
      await dir.file("w.key", node.privateKeyPem),
    ]);
    expect(result.accepted, result.output).to.equal(true);
    expect(result.output).to.include("Verify return code: 0 (ok)");
    expect(result.output).to.include("ALPN protocol: h2");
    expect(result.output).to.match(/subject=O = cluster-ssl, OU = manager, CN = m-1/);
  });

  it("fails without a client certificate", async () => {
    const result = await sClient(baseArgs());
    expect(result.accepted).to.equal(false);
    expect(result.exitCode).to.not.equal(0);
    expect(result.output).to.match(/alert certificate required/);
  });

  it("fails with a certificate from another root", async () => {
    const foreign = issueNode(RootCA.create({ clusterId: "cluster-ssl" }), "worker", "w-2");
    const result = await sClient([
      ...baseArgs(),
      "-cert",
      await dir.file("f.crt", foreign.certificateChainPem),
      "-key",
      await dir.file("f.key", foreign.privateKeyPem),
    ]);
    expect(result.accepted).to.equal(false);
    expect(result.exitCode).to.not.equal(0);
    // Node's server drops the socket on an untrusted client certificate; OpenSSL reports an alert or the EOF.
    expect(result.output, result.output).to.match(/alert [a-z ]+|unexpected eof/);
  });
});
