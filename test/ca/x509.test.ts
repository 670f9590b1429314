import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { expect } from "chai";
import { verifyChain } from "../../src/ca/chain.js";
import { checkNodeCsr, createNodeCsr } from "../../src/ca/csr.js";
import {
  CertExpiredError,
  CertInvalidError,
  NodeIdInvalidError,
  RoleInvalidError,
  UntrustedRootError,
} from "../../src/ca/errors.js";
import { parseNodeCertificate } from "../../src/ca/node-identity.js";
import type { NodeRole } from "../../src/ca/profile.js";
import { RootCA } from "../../src/ca/root-ca.js";
import { CheckedNewRoot, checkNewRoot } from "../../src/ca/root-import.js";
import { forgeLeaf } from "./forge.js";
import { opensslVerify, run, TempDir } from "./helpers.js";

const HOUR = 60 * 60 * 1000;

describe("ca: root, issuance and cross-signing (DESIGN.md Certificates)", () => {
  let dir: TempDir;
  const rootA = RootCA.create({ clusterId: "cluster-1" });
  const checkedB = CheckedNewRoot.generate({ clusterId: "cluster-1" });
  const rootB = checkedB.root;
  const crossSignedB = rootA.crossSignRoot(checkedB);
  const rotatingB = rootB.withIntermediates(crossSignedB);
  const nodeKey = createNodeCsr();
  const csr = checkNodeCsr(nodeKey.csrPem);

  before(async () => {
    dir = await TempDir.create();
  });
  after(async () => {
    await dir.remove();
  });

  it("creates a self-signed P-256 root with CA:true valid for 20 years", async () => {
    const cert = rootA.certificate;
    expect(cert.ca).to.equal(true);
    expect(cert.verify(cert.publicKey)).to.equal(true);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).to.equal("prime256v1");
    const years = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / (365.25 * 24 * HOUR);
    expect(years).to.be.closeTo(20, 0.01);
    const result = await opensslVerify(dir, { trusted: rootA.certificatePem, leaf: rootA.certificatePem });
    expect(result.code, result.stderr).to.equal(0);
  });

  it("issues node certificates with the profile: subject, SANs, EKU, serial, backdating, 24h default", async () => {
    const now = new Date();
    const issued = rootA.issueNodeCertificate({ csr, role: "manager", nodeId: "node-7", now });
    const cert = new X509Certificate(issued.certificatePem);
    expect(cert.subject).to.equal("O=cluster-1\nOU=manager\nCN=node-7");
    expect(cert.subjectAltName).to.equal("DNS:node-7, DNS:manager");
    expect(cert.keyUsage).to.have.members(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]);
    expect(cert.ca).to.equal(false);
    expect(cert.checkPrivateKey(nodeKey.privateKey)).to.equal(true);
    const serial = BigInt(`0x${cert.serialNumber}`);
    expect(serial > 0n && serial < 1n << 128n).to.equal(true);
    expect(now.getTime() - Date.parse(cert.validFrom)).to.be.within(4 * 60_000, 6 * 60_000);
    expect(Date.parse(cert.validTo) - now.getTime()).to.be.within(24 * HOUR - 1000, 24 * HOUR);
    expect(issued.serialNumber.replace(/^00/, "")).to.equal(cert.serialNumber.toLowerCase());
    const text = await run("openssl", ["x509", "-noout", "-text"], issued.certificatePem);
    expect(text.stdout).to.match(/Key Usage: critical\s+Digital Signature/);
    expect(text.stdout).to.match(/Basic Constraints: critical\s+CA:FALSE/);
  });

  it("gives each certificate a distinct serial", () => {
    const serials = new Set(
      Array.from(
        { length: 50 },
        () => rootA.issueNodeCertificate({ csr, role: "worker", nodeId: "w" }).serialNumber,
      ),
    );
    expect(serials.size).to.equal(50);
  });

  it("refuses to issue once the root itself has expired", () => {
    const afterRoot = new Date(Date.parse(rootA.certificate.validTo) + HOUR);
    expect(() => rootA.issueNodeCertificate({ csr, role: "worker", nodeId: "w8", now: afterRoot }))
      .to.throw(CertExpiredError)
      .with.property("code", "CERT_EXPIRED");
  });

  it("enforces the 1 minute minimum lifetime", () => {
    expect(() =>
      rootA.issueNodeCertificate({ csr, role: "worker", nodeId: "w", lifetimeMs: 59_000 }),
    ).to.throw(RangeError);
    const issued = rootA.issueNodeCertificate({ csr, role: "worker", nodeId: "w", lifetimeMs: 60_000 });
    expect(issued.notAfter.getTime() - Date.now()).to.be.within(55_000, 60_000);
  });

  it("is accepted by openssl verify -x509_strict for TLS client and server purposes", async () => {
    const issued = rootA.issueNodeCertificate({ csr, role: "worker", nodeId: "w1" });
    for (const purpose of ["sslclient", "sslserver"] as const) {
      const result = await opensslVerify(dir, {
        trusted: rootA.certificatePem,
        leaf: issued.certificatePem,
        purpose,
      });
      expect(result.code, result.stdout + result.stderr).to.equal(0);
    }
  });

  it("verifies both rotation paths with openssl: via the cross-signed intermediate to the old root, and directly to the new root", async () => {
    const issued = rotatingB.issueNodeCertificate({ csr, role: "worker", nodeId: "w2" });
    expect(issued.chainPem).to.equal(issued.certificatePem + crossSignedB);
    const viaOld = await opensslVerify(dir, {
      trusted: rootA.certificatePem,
      untrusted: crossSignedB,
      leaf: issued.certificatePem,
      purpose: "sslclient",
    });
    expect(viaOld.code, viaOld.stderr).to.equal(0);
    const direct = await opensslVerify(dir, {
      trusted: rootB.certificatePem,
      leaf: issued.certificatePem,
      purpose: "sslserver",
    });
    expect(direct.code, direct.stderr).to.equal(0);
    const intermediateItself = await opensslVerify(dir, {
      trusted: rootA.certificatePem,
      leaf: crossSignedB,
    });
    expect(intermediateItself.code, intermediateItself.stderr).to.equal(0);
  });

  it("verifies both rotation paths with our own chain check", () => {
    const issued = rotatingB.issueNodeCertificate({ csr, role: "worker", nodeId: "w2" });
    const viaOld = verifyChain(issued.chainPem, rootA.certificatePem);
    expect(viaOld.path.map((c) => c.subject)).to.have.length(3);
    expect(viaOld.root.fingerprint256).to.equal(rootA.certificate.fingerprint256);
    const direct = verifyChain(issued.chainPem, rootB.certificatePem);
    expect(direct.path).to.have.length(2);
    expect(direct.root.fingerprint256).to.equal(rootB.certificate.fingerprint256);
    expect(verifyChain(issued.chainPem, rootA.certificatePem + rootB.certificatePem).path.length).to.be.oneOf(
      [2, 3],
    );
  });

  it("rejects a certificate from another root, in openssl and in our chain check", async () => {
    const foreign = RootCA.create({ clusterId: "cluster-1" });
    const issued = foreign.issueNodeCertificate({ csr, role: "worker", nodeId: "w3" });
    const result = await opensslVerify(dir, { trusted: rootA.certificatePem, leaf: issued.certificatePem });
    expect(result.code).to.not.equal(0);
    expect(result.stdout + result.stderr).to.match(/unable to get local issuer certificate/);
    expect(() => verifyChain(issued.chainPem, rootA.certificatePem)).to.throw(UntrustedRootError);
    // The new-key leaf without its cross-signed intermediate does not reach the old root.
    const bare = rootB.issueNodeCertificate({ csr, role: "worker", nodeId: "w4" });
    expect(() => verifyChain(bare.chainPem, rootA.certificatePem)).to.throw(UntrustedRootError);
  });

  it("refuses an expired certificate with CERT_EXPIRED", () => {
    const issued = rootA.issueNodeCertificate({ csr, role: "worker", nodeId: "w5", lifetimeMs: 60_000 });
    const later = new Date(Date.now() + 2 * 60_000);
    expect(() => verifyChain(issued.chainPem, rootA.certificatePem, later))
      .to.throw(CertExpiredError)
      .with.property("code", "CERT_EXPIRED");
  });

  it("parses a peer certificate into cluster, role, node id, issuer key id and expiry", () => {
    const issued = rotatingB.issueNodeCertificate({ csr, role: "manager", nodeId: "m-1" });
    const identity = parseNodeCertificate(new X509Certificate(issued.certificatePem).raw);
    expect(identity).to.deep.include({ clusterId: "cluster-1", role: "manager", nodeId: "m-1" });
    expect(identity.issuerKeyId).to.equal(rootB.keyId).and.not.equal(rootA.keyId);
    expect(identity.notAfter.getTime()).to.equal(issued.notAfter.getTime());
    expect(identity.serialNumber).to.equal(issued.serialNumber);
    expect(() => parseNodeCertificate(rootA.certificateDer)).to.throw(CertInvalidError);
    expect(() => parseNodeCertificate(Buffer.from("garbage"))).to.throw(CertInvalidError);
  });

  it('reads a peer\'s CN strictly: one our CA would never issue ("2.0", "Member-1", a role) is refused', () => {
    for (const commonName of ["2.0", "Member-1", "manager", " 2", "nöde"]) {
      const forged = forgeLeaf(
        rootA,
        { organization: "cluster-1", organizationalUnit: "manager", commonName },
        ["manager"],
      );
      const der = new X509Certificate(forged.certificateChainPem).raw;
      expect(() => parseNodeCertificate(der), commonName).to.throw(CertInvalidError, /node id/);
    }
    const fine = forgeLeaf(
      rootA,
      { organization: "cluster-1", organizationalUnit: "manager", commonName: "0x2" },
      ["manager"],
    );
    expect(parseNodeCertificate(new X509Certificate(fine.certificateChainPem).raw).nodeId).to.equal("0x2");
  });

  it("reloads a root from PEM and refuses a key that is not the root's", () => {
    const reloaded = RootCA.fromPem({
      clusterId: "cluster-1",
      certificatePem: rootA.certificatePem,
      privateKeyPem: rootA.privateKeyPem(),
    });
    expect(reloaded.keyId).to.equal(rootA.keyId);
    const issued = reloaded.issueNodeCertificate({ csr, role: "worker", nodeId: "w6" });
    expect(verifyChain(issued.chainPem, rootA.certificatePem).root.fingerprint256).to.equal(
      rootA.certificate.fingerprint256,
    );
    expect(() =>
      RootCA.fromPem({
        clusterId: "cluster-1",
        certificatePem: rootA.certificatePem,
        privateKeyPem: rootB.privateKeyPem(),
      }),
    ).to.throw(CertInvalidError, /does not match/);
  });

  it("names an imported root by its own subject key id, which need not be the key's SHA-1", async () => {
    const keyFile = await dir.file("imported.key", rootB.privateKeyPem());
    const config = await dir.file(
      "imported.cnf",
      [
        "[req]",
        "distinguished_name = dn",
        "[dn]",
        "[root]",
        "subjectKeyIdentifier = 0102030405060708",
        "authorityKeyIdentifier = keyid:always",
        "basicConstraints = critical, CA:true, pathlen:1",
        "keyUsage = critical, keyCertSign, cRLSign",
        "",
      ].join("\n"),
    );
    const certFile = `${dir.path}/imported.crt`;
    const made = await run("openssl", [
      "req",
      "-x509",
      "-new",
      "-key",
      keyFile,
      "-subj",
      "/O=cluster-1/CN=imported-root",
      "-days",
      "365",
      "-config",
      config,
      "-extensions",
      "root",
      "-out",
      certFile,
    ]);
    expect(made.code, made.stderr).to.equal(0);
    const checked = checkNewRoot({
      clusterId: "cluster-1",
      certificatePem: await readFile(certFile, "utf8"),
      privateKeyPem: rootB.privateKeyPem(),
    });
    const imported = checked.root;
    expect(imported.keyId).to.equal("0102030405060708");
    const issued = imported.issueNodeCertificate({ csr, role: "worker", nodeId: "w7" });
    const direct = await opensslVerify(dir, {
      trusted: imported.certificatePem,
      leaf: issued.certificatePem,
    });
    expect(direct.code, direct.stdout + direct.stderr).to.equal(0);
    // Rotating to the imported root: its leaves reach the old root through the cross-signed twin.
    const viaOld = await opensslVerify(dir, {
      trusted: rootA.certificatePem,
      untrusted: rootA.crossSignRoot(checked),
      leaf: issued.certificatePem,
    });
    expect(viaOld.code, viaOld.stdout + viaOld.stderr).to.equal(0);
  });
});

describe("ca: issuance refuses a node id or role outside the profile", () => {
  const root = RootCA.create({ clusterId: "cluster-1" });
  const csr = checkNodeCsr(createNodeCsr().csrPem);
  const issue = (role: string, nodeId: string) =>
    // The cast stands for a caller that bypassed the type (JSON, a CLI flag): the check is at run time.
    root.issueNodeCertificate({ csr, role: role as NodeRole, nodeId });

  it("refuses a role that is not manager or worker (ROLE_INVALID)", () => {
    for (const role of ["admin", "", "Manager", "manager ", "operator"]) {
      expect(() => issue(role, "node-1"), JSON.stringify(role))
        .to.throw(RoleInvalidError)
        .with.property("code", "ROLE_INVALID");
    }
  });

  it("refuses a node id outside the DNS-label pattern or equal to a role name (NODE_ID_INVALID)", () => {
    const bad = [
      "",
      "manager",
      "worker",
      "nöde",
      "node.1",
      "2.0",
      "-node",
      "node-",
      "Node",
      "a b",
      "x".repeat(64),
    ];
    for (const nodeId of bad) {
      expect(() => issue("worker", nodeId), JSON.stringify(nodeId))
        .to.throw(NodeIdInvalidError)
        .with.property("code", "NODE_ID_INVALID");
    }
    // A worker must never get the SAN a manager's dialer checks for (DNS:manager).
    expect(() => issue("worker", "manager")).to.throw(NodeIdInvalidError);
    for (const nodeId of ["member-1", "0x2", "a", "x".repeat(63), "5f2kq0r7a1c9d3e8b6h4j2m0n"]) {
      const cert = new X509Certificate(issue("manager", nodeId).certificatePem);
      expect(cert.subject).to.equal(`O=cluster-1\nOU=manager\nCN=${nodeId}`);
    }
  });
});
