// The cross-signed intermediate of a root rotation (issue 11): it makes every peer that
// still trusts the old root accept what the new key signs, so it must cover leaves
// only (pathLenConstraint 0) and only for the rotation window. The attack it stops: a
// CA made with the new root's key, and a leaf under it, reaching a manager-only method
// of a server that trusts only the old root. Checked with openssl verify and with a
// real grpc-js handshake, against a root made today (pathlen 1) and a legacy root made
// before roots had a limit (where the intermediate's own limit is the only defence).
import { X509Certificate } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { expect } from "chai";
import { verifyChain } from "../../src/ca/chain.js";
import { CaError, type CaErrorCode, UntrustedRootError } from "../../src/ca/errors.js";
import { DEFAULT_ROTATION_WINDOW_MS } from "../../src/ca/profile.js";
import { RootCA } from "../../src/ca/root-ca.js";
import { CheckedNewRoot, checkNewRoot } from "../../src/ca/root-import.js";
import { type AuthorizationPolicy, NodeAuthorizer } from "../../src/ca/tls/authorization.js";
import { TlsCredentialHolder } from "../../src/ca/tls/credential-holder.js";
import { silentLogger } from "../../src/log/logger.js";
import {
  callExpectingError,
  callUnary,
  ECHO,
  freshClient,
  issueNode,
  type RunningServer,
  startEchoServer,
} from "./echo-service.js";
import { opensslVerify, run, TempDir } from "./helpers.js";
import { buildCertificate, DAY_MS, heldCa, subCaAttack } from "./root-fixture.js";

const CLUSTER = "cluster-xsign";
const YEAR_MS = 365 * DAY_MS;

function expectCode(action: () => unknown, code: CaErrorCode): void {
  let refusal: unknown;
  try {
    action();
  } catch (error) {
    refusal = error;
  }
  expect(refusal, `expected ${code}`).to.be.instanceOf(CaError);
  expect((refusal as CaError).code).to.equal(code);
}

describe("ca: crossSignRoot, the intermediate of a root rotation (issue 11)", () => {
  const current = RootCA.create({ clusterId: CLUSTER });
  // Made before roots had a path length limit: the roots of clusters that exist today.
  const legacyBuilt = buildCertificate({
    subject: { organization: CLUSTER, commonName: "legacy-root" },
    basicConstraints: { cA: true },
    notAfter: new Date(Date.now() + 20 * YEAR_MS),
  });
  const legacy = RootCA.fromPem({
    clusterId: CLUSTER,
    certificatePem: legacyBuilt.certificatePem,
    privateKeyPem: legacyBuilt.privateKeyPem,
  });
  const next = CheckedNewRoot.generate({ clusterId: CLUSTER });
  const oldRoots = { "a root made today (pathlen 1)": current, "a legacy root (no pathlen)": legacy };
  /** What crossSignRoot made before issue 11: no path length limit, 20 years. */
  const unlimitedIntermediate = buildCertificate({
    subject: heldCa(next.root).subject,
    key: heldCa(next.root).key,
    issuer: { subject: legacyBuilt.subject, key: legacyBuilt.key },
    basicConstraints: { cA: true },
    notAfter: new Date(Date.now() + 20 * YEAR_MS),
  }).certificatePem;
  let dir: TempDir;

  before(async () => {
    dir = await TempDir.create();
  });
  after(async () => {
    await dir.remove();
  });

  it("makes an intermediate that signs leaves only (pathlen 0) and ends with the rotation window", async () => {
    const now = new Date();
    const pem = current.crossSignRoot(next, { rotationWindowMs: 2 * DAY_MS, now });
    const intermediate = new X509Certificate(pem);
    expect(intermediate.subject).to.equal(next.root.certificate.subject);
    expect(intermediate.issuer).to.equal(current.certificate.subject);
    expect(intermediate.publicKey.equals(next.root.certificate.publicKey)).to.equal(true);
    expect(Date.parse(intermediate.validTo)).to.be.closeTo(now.getTime() + 2 * DAY_MS, 1000);
    const text = await run("openssl", ["x509", "-noout", "-text"], pem);
    expect(text.stdout).to.match(/Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    const byDefault = new X509Certificate(current.crossSignRoot(next, { now }));
    expect(Date.parse(byDefault.validTo)).to.be.closeTo(now.getTime() + DEFAULT_ROTATION_WINDOW_MS, 1000);
  });

  it("caps the intermediate at the new root's and the old root's notAfter", () => {
    const now = new Date();
    const shortNew = buildCertificate({
      subject: { organization: CLUSTER, commonName: "short-new" },
      notAfter: new Date(now.getTime() + 40 * DAY_MS),
    });
    const checked = checkNewRoot({ ...shortNew, clusterId: CLUSTER, now });
    const capped = new X509Certificate(
      current.crossSignRoot(checked, { rotationWindowMs: 90 * DAY_MS, now }),
    );
    expect(capped.validTo).to.equal(checked.root.certificate.validTo);
    const endingOld = buildCertificate({
      subject: { organization: CLUSTER, commonName: "ending-old" },
      notAfter: new Date(now.getTime() + 3 * DAY_MS),
    });
    const old = RootCA.fromPem({ clusterId: CLUSTER, ...endingOld });
    const cappedByOld = new X509Certificate(old.crossSignRoot(next, { rotationWindowMs: 30 * DAY_MS, now }));
    expect(cappedByOld.validTo).to.equal(old.certificate.validTo);
  });

  for (const [name, oldRoot] of Object.entries(oldRoots)) {
    it(`verifies a new-key leaf with openssl -x509_strict against ${name} alone and the new root alone`, async () => {
      const intermediate = oldRoot.crossSignRoot(next);
      const issued = issueNode(next.root.withIntermediates(intermediate), "manager", "m-new");
      const leaf = new X509Certificate(issued.certificateChainPem).toString();
      for (const purpose of ["sslclient", "sslserver"] as const) {
        const viaOld = await opensslVerify(dir, {
          trusted: oldRoot.certificatePem,
          untrusted: intermediate,
          leaf,
          purpose,
        });
        expect(viaOld.code, viaOld.stdout + viaOld.stderr).to.equal(0);
        const direct = await opensslVerify(dir, { trusted: next.root.certificatePem, leaf, purpose });
        expect(direct.code, direct.stdout + direct.stderr).to.equal(0);
      }
      expect(verifyChain(issued.certificateChainPem, oldRoot.certificatePem).path).to.have.length(3);
    });

    it(`refuses a sub-CA made with the new key, and its leaf, against ${name} (openssl: path length)`, async () => {
      const { leaf, subCa } = subCaAttack(heldCa(next.root), CLUSTER);
      const verified = await opensslVerify(dir, {
        trusted: oldRoot.certificatePem,
        untrusted: subCa.certificatePem + oldRoot.crossSignRoot(next),
        leaf: leaf.certificatePem,
      });
      expect(verified.code).to.not.equal(0);
      expect(verified.stdout + verified.stderr).to.match(/path length constraint exceeded/);
      // Our own chain check (a node's check of the identity it is handed) agrees.
      const chain = leaf.certificatePem + subCa.certificatePem + oldRoot.crossSignRoot(next);
      expect(() => verifyChain(chain, oldRoot.certificatePem)).to.throw(UntrustedRootError);
    });
  }

  it("control: with the old unlimited intermediate the same sub-CA chain verified against the legacy root", async () => {
    const { leaf, subCa } = subCaAttack(heldCa(next.root), CLUSTER);
    const verified = await opensslVerify(dir, {
      trusted: legacy.certificatePem,
      untrusted: subCa.certificatePem + unlimitedIntermediate,
      leaf: leaf.certificatePem,
    });
    expect(verified.code, verified.stdout + verified.stderr).to.equal(0);
    const chain = leaf.certificatePem + subCa.certificatePem + unlimitedIntermediate;
    expect(verifyChain(chain, legacy.certificatePem).path).to.have.length(4);
  });

  it("refuses another cluster's root, the current root again, and a root of the same name (codes)", () => {
    const foreign = CheckedNewRoot.generate({ clusterId: "someone-else" });
    expectCode(() => current.crossSignRoot(foreign), "ROOT_WRONG_CLUSTER");
    const itself = checkNewRoot({
      certificatePem: current.certificatePem,
      privateKeyPem: current.privateKeyPem(),
      clusterId: CLUSTER,
    });
    expectCode(() => current.crossSignRoot(itself), "ROOT_NOT_NEW");
    const sameName = buildCertificate({ subject: legacyBuilt.subject });
    expectCode(() => legacy.crossSignRoot(checkNewRoot({ ...sameName, clusterId: CLUSTER })), "ROOT_NOT_NEW");
  });

  it("refuses a window outside 1 minute to 90 days, an expired current root, and a current root with pathlen 0", () => {
    for (const rotationWindowMs of [0, 30_000, 91 * DAY_MS, Number.NaN]) {
      expectCode(() => current.crossSignRoot(next, { rotationWindowMs }), "ROTATION_WINDOW_INVALID");
    }
    const afterExpiry = new Date(Date.parse(current.certificate.validTo) + DAY_MS);
    expectCode(() => current.crossSignRoot(next, { now: afterExpiry }), "ROOT_EXPIRED");
    const leavesOnly = buildCertificate({
      subject: { organization: CLUSTER, commonName: "leaves-only" },
      basicConstraints: { cA: true, pathLength: 0 },
    });
    expectCode(
      () => RootCA.fromPem({ clusterId: CLUSTER, ...leavesOnly }).crossSignRoot(next),
      "ROOT_PATH_LENGTH",
    );
  });

  it("why roots get pathlen 1, not 0: OpenSSL applies the old root's own limit to the cross-signed chain", async () => {
    const leavesOnly = buildCertificate({
      subject: { organization: CLUSTER, commonName: "leaves-only" },
      basicConstraints: { cA: true, pathLength: 0 },
    });
    const twin = buildCertificate({
      subject: heldCa(next.root).subject,
      key: heldCa(next.root).key,
      issuer: { subject: leavesOnly.subject, key: leavesOnly.key },
      basicConstraints: { cA: true, pathLength: 0 },
    });
    const leaf = new X509Certificate(issueNode(next.root, "worker", "w-1").certificateChainPem).toString();
    const verified = await opensslVerify(dir, {
      trusted: leavesOnly.certificatePem,
      untrusted: twin.certificatePem,
      leaf,
    });
    expect(verified.stdout + verified.stderr).to.match(/path length constraint exceeded/);
  });
});

describe("ca/tls: a server trusting only the old root refuses the sub-CA chain in the handshake", () => {
  const policy: AuthorizationPolicy = { [ECHO.managerOnly]: { roles: ["manager"] } };
  const next = CheckedNewRoot.generate({ clusterId: CLUSTER });
  const legacyBuilt = buildCertificate({
    subject: { organization: CLUSTER, commonName: "legacy-root" },
    basicConstraints: { cA: true },
  });
  const legacy = RootCA.fromPem({ clusterId: CLUSTER, ...legacyBuilt });
  const intermediate = legacy.crossSignRoot(next);
  const servers: RunningServer[] = [];
  const clients: grpc.Client[] = [];

  after(async () => {
    for (const client of clients) client.close();
    for (const server of servers) await server.close();
  });

  async function serverTrusting(root: RootCA): Promise<RunningServer> {
    const logger = silentLogger();
    const holder = new TlsCredentialHolder({
      identity: issueNode(root, "manager", "m-server"),
      trustBundlePem: root.certificatePem,
      logger,
    });
    const authorizer = new NodeAuthorizer({ clusterId: CLUSTER, policy, isNodeRemoved: () => false, logger });
    const server = await startEchoServer(holder.serverCredentials({ requireClientCertificate: true }), [
      authorizer.interceptor(),
    ]);
    servers.push(server);
    return server;
  }

  /** A client that presents exactly this key and chain (an attacker uses no code of ours). */
  function client(server: RunningServer, root: RootCA, privateKeyPem: string, chainPem: string): grpc.Client {
    const credentials = grpc.credentials.createSsl(
      Buffer.from(root.certificatePem),
      Buffer.from(privateKeyPem),
      Buffer.from(chainPem),
      { checkServerIdentity: () => undefined },
    );
    const made = freshClient(server.target, credentials, "manager");
    clients.push(made);
    return made;
  }

  it("admits a manager renewed by the new key, refuses the sub-CA's manager; the unlimited intermediate let it in", async () => {
    const server = await serverTrusting(legacy);
    const renewed = issueNode(next.root.withIntermediates(intermediate), "manager", "m-renewed");
    const admitted = client(server, legacy, renewed.privateKeyPem, renewed.certificateChainPem);
    expect(await callUnary(admitted, ECHO.managerOnly)).to.equal(renewed.serialNumber);

    const { leaf, subCa } = subCaAttack(heldCa(next.root), CLUSTER);
    const rogueChain = leaf.certificatePem + subCa.certificatePem + intermediate;
    const refused = await callExpectingError(
      client(server, legacy, leaf.privateKeyPem, rogueChain),
      ECHO.managerOnly,
    );
    expect(refused.code).to.equal(grpc.status.UNAVAILABLE);

    // The same chain through an intermediate without a path length limit (what crossSignRoot made before).
    const unlimited = buildCertificate({
      subject: heldCa(next.root).subject,
      key: heldCa(next.root).key,
      issuer: { subject: legacyBuilt.subject, key: legacyBuilt.key },
      basicConstraints: { cA: true },
    }).certificatePem;
    const before = client(
      server,
      legacy,
      leaf.privateKeyPem,
      leaf.certificatePem + subCa.certificatePem + unlimited,
    );
    expect(await callUnary(before, ECHO.managerOnly)).to.have.length.greaterThan(0);
  });

  it("refuses the sub-CA's manager at a server trusting only a root made today (pathlen 1)", async () => {
    const current = RootCA.create({ clusterId: CLUSTER });
    const server = await serverTrusting(current);
    const { leaf, subCa } = subCaAttack(heldCa(next.root), CLUSTER);
    const chain = leaf.certificatePem + subCa.certificatePem + current.crossSignRoot(next);
    const refused = await callExpectingError(
      client(server, current, leaf.privateKeyPem, chain),
      ECHO.managerOnly,
    );
    expect(refused.code).to.equal(grpc.status.UNAVAILABLE);
  });
});
