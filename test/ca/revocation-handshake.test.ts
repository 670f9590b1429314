// A removed node's certificate must fail the TLS handshake itself on a manager, not only
// its calls afterwards: the manager's server loads revocation lists from its credential
// holder, and refuses a certificate that was sent but did not verify even though it
// admits clients with no certificate (the public methods). openssl s_client is the judge.
import * as grpc from "@grpc/grpc-js";
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate } from "@peculiar/asn1-x509";
import { expect } from "chai";
import { TlsHookUnavailableError } from "../../src/ca/errors.js";
import { privateKeyFromPem } from "../../src/ca/keys.js";
import { buildRevocationList } from "../../src/ca/revocation-list.js";
import { RootCA } from "../../src/ca/root-ca.js";
import { CheckedNewRoot } from "../../src/ca/root-import.js";
import { TlsCredentialHolder } from "../../src/ca/tls/credential-holder.js";
import { refuseUnverifiedClientCertificates } from "../../src/ca/tls/handshake-refusal.js";
import { silentLogger } from "../../src/log/logger.js";
import {
  callUnary,
  ECHO,
  freshClient,
  type IssuedNode,
  issueNode,
  openTicks,
  type RunningServer,
  startEchoServer,
} from "./echo-service.js";
import { TempDir, waitFor } from "./helpers.js";
import { sClient } from "./s-client.js";

const CLUSTER = "cluster-crl";

/** A list that names `named` as its issuer but is signed by `signer`'s key. */
function forgedList(named: RootCA, signer: RootCA): string {
  const parsed = AsnConvert.parse(named.certificateDer, Certificate).tbsCertificate;
  return buildRevocationList({
    issuer: parsed.subject,
    issuerKeyId: new Uint8Array(20).buffer,
    issuerNotAfter: new Date(named.certificate.validTo),
    signingKey: privateKeyFromPem(signer.privateKeyPem()),
    revoked: [],
    now: new Date(),
  });
}

describe("ca/tls: revocation lists refuse a removed node's certificate in the handshake", () => {
  const root = RootCA.create({ clusterId: CLUSTER });
  let holder: TlsCredentialHolder;
  let server: RunningServer;
  let dir: TempDir;
  let rootFile: string;

  beforeEach(async () => {
    holder = new TlsCredentialHolder({
      identity: issueNode(root, "manager", "m-1"),
      trustBundlePem: root.certificatePem,
      logger: silentLogger(),
    });
    dir = await TempDir.create();
    rootFile = await dir.file("root.pem", root.certificatePem);
    // As a manager serves: certificate-less clients admitted (public methods), sent certificates verified.
    server = await startEchoServer(holder.serverCredentials({ requireClientCertificate: false }));
    expect(refuseUnverifiedClientCertificates(server.server, silentLogger())).to.equal(1);
  });
  afterEach(async () => {
    await server.close();
    await dir.remove();
  });

  async function handshake(node: IssuedNode, name: string, extra: string[] = [], acceptedMarker?: string) {
    return sClient(
      [
        ...["-connect", server.target, "-alpn", "h2", "-CAfile", rootFile, "-verify_return_error"],
        // -cert sends the first certificate only; -cert_chain adds the intermediates (a cross-signed root).
        ...[
          "-cert",
          await dir.file(`${name}.crt`, node.certificateChainPem),
          "-cert_chain",
          `${dir.path}/${name}.crt`,
        ],
        ...["-key", await dir.file(`${name}.key`, node.privateKeyPem)],
        ...extra,
      ],
      undefined,
      acceptedMarker,
    );
  }

  /**
   * A client with no certificate, as a joining node fetching the root. (OpenSSL sends it no
   * session ticket, so s_client cannot tell acceptance: a gRPC call can.)
   */
  async function anonymousCall(): Promise<string> {
    const credentials = grpc.credentials.createSsl(Buffer.from(root.certificatePem));
    const client = freshClient(server.target, credentials, "manager");
    try {
      return await callUnary(client, ECHO.public);
    } finally {
      client.close();
    }
  }

  function revoke(node: IssuedNode, by: RootCA = root): string {
    return by.createRevocationList([{ serial: node.serialNumber, revokedAt: new Date() }]);
  }

  function revokeAll(nodes: IssuedNode[]): string {
    return root.createRevocationList(nodes.map((n) => ({ serial: n.serialNumber, revokedAt: new Date() })));
  }

  it("accepts a certificate before its serial is listed and refuses it after; others and no certificate still pass", async () => {
    const removed = issueNode(root, "worker", "w-1");
    const other = issueNode(root, "worker", "w-2");
    expect((await handshake(removed, "w1")).accepted, "before the push").to.equal(true);

    holder.replaceRevocationList(revoke(removed));

    const refused = await handshake(removed, "w1");
    expect(refused.accepted, refused.output).to.equal(false);
    expect(refused.exitCode).to.not.equal(0);
    expect((await handshake(other, "w2")).accepted, "another node").to.equal(true);
    expect(await anonymousCall(), "no certificate: public methods still answer").to.equal("public");
  });

  it("lists every certificate given, whatever the serial's leading zero octet", async () => {
    const nodes = Array.from({ length: 6 }, (_, i) => issueNode(root, "worker", `w-${i}`));
    // A set top bit gives a serial with a leading 00 octet: the list must name the same integer.
    expect(nodes.some((n) => n.serialNumber.startsWith("00"))).to.equal(true);
    holder.replaceRevocationList(revokeAll(nodes));
    for (const [i, node] of nodes.entries())
      expect((await handshake(node, `w${i}`)).accepted, `node ${i} (${node.serialNumber})`).to.equal(false);
  }).timeout(20_000);

  it("is hitless: an open stream of a third node goes on through the push, on the same connection", async () => {
    const third = new TlsCredentialHolder({
      identity: issueNode(root, "worker", "w-3"),
      trustBundlePem: root.certificatePem,
      logger: silentLogger(),
    });
    const client = freshClient(
      server.target,
      third.channelCredentials({ clusterId: CLUSTER, expectedServerRole: "manager" }),
      "manager",
    );
    const stream = openTicks(client);
    let ticks = 0;
    let ended: unknown;
    stream.on("data", () => ticks++);
    stream.on("error", (error) => (ended = error));
    stream.on("end", () => (ended = "end"));
    try {
      await waitFor("first ticks", () => ticks >= 3);
      holder.replaceRevocationList(revoke(issueNode(root, "worker", "w-1")));
      const atPush = ticks;
      await waitFor("ticks after the push", () => ticks >= atPush + 5);
      expect(ended).to.equal(undefined);
      // A unary call rides the same channel and connection: nothing reconnected.
      expect(await callUnary(client, ECHO.whoami)).to.equal(third.currentIdentity.serialNumber);
      expect(client.getChannel().getConnectivityState(false)).to.equal(grpc.connectivityState.READY);
    } finally {
      stream.cancel();
      client.close();
    }
  });

  it("a session ticket from before the push does not resume past the list", async () => {
    const removed = issueNode(root, "worker", "w-1");
    const saved = `${dir.path}/w1.session`;
    expect((await handshake(removed, "w1", ["-sess_out", saved])).accepted).to.equal(true);
    // The control: with no push in between the same ticket resumes (no certificate check at all).
    const resumed = await handshake(removed, "w1", ["-sess_in", saved], "Reused, TLSv1.3");
    expect(resumed.accepted, `resumption works at all\n${resumed.output}`).to.equal(true);

    holder.replaceRevocationList(revoke(removed));

    // Every push is a new server context with new ticket keys: the ticket is useless, the
    // handshake is a full one, and the list refuses it.
    const after = await handshake(removed, "w1", ["-sess_in", saved]);
    expect(after.accepted, after.output).to.equal(false);
    expect(after.output).to.not.match(/Reused, TLSv1\.3/);
  });

  it("refuses a list OpenSSL could not use and keeps the current one", async () => {
    const removed = issueNode(root, "worker", "w-1");
    holder.replaceRevocationList(revoke(removed));
    const foreign = RootCA.create({ clusterId: CLUSTER });
    expect(() => holder.replaceRevocationList(foreign.createRevocationList([]))).to.throw(
      /no revocation list is signed by a trusted root/,
    );
    expect(() => holder.replaceRevocationList(forgedList(root, foreign))).to.throw(/does not verify/);
    // Made "later" than now: OpenSSL would call it not yet valid and refuse every node.
    const future = new Date(Date.now() + 2 * 24 * 3_600_000);
    expect(() => holder.replaceRevocationList(root.createRevocationList([], future))).to.throw(
      /valid only from/,
    );
    expect(() => holder.replaceRevocationList("not a crl")).to.throw(/no PEM X509 CRL/);
    expect((await handshake(removed, "w1")).accepted, "the first list still holds").to.equal(false);
  });

  it("loads lists only when every trusted root has one (CRL_CHECK_ALL), then refuses again", async () => {
    const removed = issueNode(root, "worker", "w-1");
    const next = RootCA.create({ clusterId: CLUSTER });
    holder.replaceRevocationList(revoke(removed));
    // A second root trusted with no list from it: loading the first list alone would refuse
    // every node of the second root ("unable to get certificate CRL"), so none is loaded.
    holder.replaceTrustBundle(root.certificatePem + next.certificatePem);
    const nextNode = issueNode(next, "worker", "n-1");
    await dir.file("root.pem", root.certificatePem + next.certificatePem);
    expect((await handshake(nextNode, "n1")).accepted, "a node of the new root").to.equal(true);
    expect((await handshake(removed, "w1")).accepted, "fails open meanwhile").to.equal(true);

    holder.replaceRevocationList(revoke(removed) + next.createRevocationList([]));
    expect((await handshake(removed, "w1")).accepted, "covered again").to.equal(false);
    expect((await handshake(nextNode, "n1")).accepted, "the new root's node").to.equal(true);
  }).timeout(20_000);

  it("rotation: a chain through a cross-signed root needs the new root's list too, and gets it", async () => {
    // This manager trusts only the old root; a node renewed by the new root sends its leaf
    // with the cross-signed twin. CRL_CHECK_ALL wants a list from each issuer on that path.
    const checkedNext = CheckedNewRoot.generate({ clusterId: CLUSTER });
    const next = checkedNext.root;
    const rotating = next.withIntermediates(root.crossSignRoot(checkedNext));
    const renewed = issueNode(rotating, "worker", "r-1");
    const removed = issueNode(rotating, "worker", "r-2");
    expect((await handshake(renewed, "r1")).accepted, "no lists: the chain verifies").to.equal(true);

    holder.replaceRevocationList(root.createRevocationList([]));
    expect(
      (await handshake(renewed, "r1")).accepted,
      "the old root's list alone: no list for the leaf's issuer",
    ).to.equal(false);

    holder.replaceRevocationList(root.createRevocationList([]) + revoke(removed, next));
    expect((await handshake(renewed, "r1")).accepted, "both lists").to.equal(true);
    expect((await handshake(removed, "r2")).accepted, "revoked by the new root's list").to.equal(false);
  });

  it("refuses a certificate of an untrusted root too, and admits no certificate, without a list", async () => {
    const foreign = issueNode(RootCA.create({ clusterId: CLUSTER }), "worker", "f-1");
    expect((await handshake(foreign, "f1")).accepted).to.equal(false);
    expect(await anonymousCall()).to.equal("public");
  });
});

describe("ca/tls: the handshake hook fails closed", () => {
  it("refuses to guard a server with no TLS listener, with a stable code", async () => {
    const server = new grpc.Server();
    try {
      await new Promise<number>((resolve, reject) =>
        server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) =>
          e ? reject(e) : resolve(p),
        ),
      );
      expect(() => refuseUnverifiedClientCertificates(server, silentLogger()))
        .to.throw(TlsHookUnavailableError)
        .with.property("code", "TLS_HOOK_UNAVAILABLE");
    } finally {
      server.forceShutdown();
    }
  });
});
