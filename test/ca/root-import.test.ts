// What may become a rotation's new root (issue 11, "What may be cross-signed is
// checked"): `ca rotate --ca-cert F --ca-key F` imports through checkNewRoot, and
// crossSignRoot takes only what it returns. Each refusal is its own code.
import { readFile } from "node:fs/promises";
import { KeyUsageFlags } from "@peculiar/asn1-x509";
import { expect } from "chai";
import { checkNodeCsr, createNodeCsr } from "../../src/ca/csr.js";
import { CaError, type CaErrorCode } from "../../src/ca/errors.js";
import { generateP256Key } from "../../src/ca/keys.js";
import { ROOT_PATH_LENGTH } from "../../src/ca/profile.js";
import { RootCA } from "../../src/ca/root-ca.js";
import { CheckedNewRoot, checkNewRoot, type NewRootInput } from "../../src/ca/root-import.js";
import { run, TempDir } from "./helpers.js";
import { buildCertificate, type CaCertificateOptions, DAY_MS, p384Key } from "./root-fixture.js";

const CLUSTER = "cluster-import";
const subject = { organization: CLUSTER, commonName: "imported-root" };

function input(options: Partial<CaCertificateOptions>, override: Partial<NewRootInput> = {}): NewRootInput {
  const built = buildCertificate({ subject, ...options });
  return {
    certificatePem: built.certificatePem,
    privateKeyPem: built.privateKeyPem,
    clusterId: CLUSTER,
    ...override,
  };
}

/** Asserts checkNewRoot refuses with `code` and a message that says what to do. */
function expectRefused(what: NewRootInput, code: CaErrorCode, advice: RegExp): void {
  let refusal: unknown;
  try {
    checkNewRoot(what);
  } catch (error) {
    refusal = error;
  }
  expect(refusal, `expected ${code}`).to.be.instanceOf(CaError);
  expect((refusal as CaError).code).to.equal(code);
  expect((refusal as CaError).message).to.match(advice);
}

describe("ca: checkNewRoot, the import check in front of cross-signing (issue 11)", () => {
  it("accepts this cluster's self-signed P-256 root with pathlen 1 and its key, and signs with it", () => {
    const now = new Date();
    const good = input({ notAfter: new Date(now.getTime() + 400 * DAY_MS) });
    const checked = checkNewRoot({ ...good, now });
    expect(checked.clusterId).to.equal(CLUSTER);
    expect(checked.notAfter.getTime()).to.be.closeTo(now.getTime() + 400 * DAY_MS, 1000);
    expect(checked.root.certificate.ca).to.equal(true);
    const issued = checked.root.issueNodeCertificate({
      csr: checkNodeCsr(createNodeCsr().csrPem),
      role: "worker",
      nodeId: "w-1",
    });
    expect(issued.issuerKeyId).to.equal(checked.root.keyId);
  });

  it("accepts a root made by openssl req with pathlen:1 (what an operator would bring)", async () => {
    const dir = await TempDir.create();
    try {
      const keyFile = await dir.file(
        "root.key",
        generateP256Key().export({ type: "pkcs8", format: "pem" }).toString(),
      );
      const made = await run("openssl", [
        "req",
        "-x509",
        "-new",
        "-key",
        keyFile,
        "-sha256",
        "-days",
        "365",
        "-subj",
        `/O=${CLUSTER}/CN=operator-root`,
        "-addext",
        "basicConstraints=critical,CA:true,pathlen:1",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        `${dir.path}/root.crt`,
      ]);
      expect(made.code, made.stderr).to.equal(0);
      const checked = checkNewRoot({
        certificatePem: await readFile(`${dir.path}/root.crt`, "utf8"),
        privateKeyPem: await readFile(keyFile, "utf8"),
        clusterId: CLUSTER,
      });
      expect(checked.root.certificate.subject).to.contain("CN=operator-root");
    } finally {
      await dir.remove();
    }
  });

  it("refuses a certificate that is not a CA (ROOT_NOT_CA)", () => {
    const advice = /CA:true.*keyCertSign/;
    expectRefused(input({ basicConstraints: { cA: false } }), "ROOT_NOT_CA", advice);
    expectRefused(input({ basicConstraints: null }), "ROOT_NOT_CA", advice);
    expectRefused(
      input({ basicConstraints: { cA: true, pathLength: 1, critical: false } }),
      "ROOT_NOT_CA",
      advice,
    );
    expectRefused(input({ keyUsage: null }), "ROOT_NOT_CA", advice);
    expectRefused(input({ keyUsage: KeyUsageFlags.digitalSignature }), "ROOT_NOT_CA", advice);
    expectRefused(input({ keyUsage: KeyUsageFlags.keyCertSign }), "ROOT_NOT_CA", /cRLSign/);
  });

  it(`refuses a root whose path length is not ${ROOT_PATH_LENGTH} (ROOT_PATH_LENGTH)`, () => {
    for (const pathLength of [undefined, 0, 2]) {
      expectRefused(input({ basicConstraints: { cA: true, pathLength } }), "ROOT_PATH_LENGTH", /pathlen:1/);
    }
  });

  it("refuses a key that is not the certificate's (ROOT_KEY_MISMATCH)", () => {
    const other = buildCertificate({ subject });
    expectRefused(
      { ...input({}), privateKeyPem: other.privateKeyPem },
      "ROOT_KEY_MISMATCH",
      /give the key the certificate was made for/,
    );
  });

  it("refuses a CA certificate signed by another key, even with its own key held (ROOT_NOT_SELF_SIGNED)", () => {
    const issuer = buildCertificate({ subject: { organization: CLUSTER, commonName: "someone-elses-ca" } });
    // Issued by another CA: the classic intermediate.
    expectRefused(
      input({ issuer: { subject: issuer.subject, key: issuer.key } }),
      "ROOT_NOT_SELF_SIGNED",
      /self-signed/,
    );
    // Self-issued (issuer name = subject name) but signed by another key.
    expectRefused(input({ issuer: { subject, key: issuer.key } }), "ROOT_NOT_SELF_SIGNED", /self-signed/);
  });

  it("refuses a root of another cluster, or with no organization (ROOT_WRONG_CLUSTER)", () => {
    const advice = new RegExp(`O=${CLUSTER}`);
    expectRefused(
      input({ subject: { organization: "someone-else", commonName: "r" } }),
      "ROOT_WRONG_CLUSTER",
      advice,
    );
    expectRefused(input({ subject: { commonName: "r" } }), "ROOT_WRONG_CLUSTER", advice);
    expectRefused(input({}, { clusterId: "another-cluster" }), "ROOT_WRONG_CLUSTER", /O=another-cluster/);
  });

  it("refuses an expired root (ROOT_EXPIRED), a post-dated one (ROOT_NOT_YET_VALID), one expiring soon (ROOT_EXPIRES_TOO_SOON)", () => {
    const now = Date.now();
    expectRefused(
      input({ notBefore: new Date(now - 400 * DAY_MS), notAfter: new Date(now - DAY_MS) }),
      "ROOT_EXPIRED",
      /make a new root/,
    );
    expectRefused(
      input({ notBefore: new Date(now + 60 * 60 * 1000) }),
      "ROOT_NOT_YET_VALID",
      /notBefore in the past/,
    );
    // A few minutes ahead is clock skew, not post-dating.
    checkNewRoot(input({ notBefore: new Date(now + 60 * 1000) }));
    expectRefused(input({ notAfter: new Date(now + 20 * DAY_MS) }), "ROOT_EXPIRES_TOO_SOON", /lives longer/);
    // The floor is 30 days, or the rotation window plus the node certificate lifetime if longer.
    const longWindow = { rotationWindowMs: 60 * DAY_MS, nodeCertLifetimeMs: 10 * DAY_MS };
    expectRefused(
      input({ notAfter: new Date(now + 65 * DAY_MS) }, longWindow),
      "ROOT_EXPIRES_TOO_SOON",
      /lives longer/,
    );
    checkNewRoot(input({ notAfter: new Date(now + 71 * DAY_MS) }, longWindow));
  });

  it("refuses keys other than ECDSA P-256, RSA included (ROOT_KEY_UNSUPPORTED)", async () => {
    const advice = /ECDSA P-256.*RSA roots are not supported/;
    expectRefused(input({ key: p384Key() }), "ROOT_KEY_UNSUPPORTED", advice);
    expectRefused({ ...input({}), privateKeyPem: "not a key" }, "ROOT_KEY_UNSUPPORTED", advice);
    const dir = await TempDir.create();
    try {
      const made = await run("openssl", [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-sha256",
        "-days",
        "365",
        "-subj",
        `/O=${CLUSTER}/CN=rsa-root`,
        "-addext",
        "basicConstraints=critical,CA:true,pathlen:1",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        `${dir.path}/rsa.key`,
        "-out",
        `${dir.path}/rsa.crt`,
      ]);
      expect(made.code, made.stderr).to.equal(0);
      const rsa = {
        certificatePem: await readFile(`${dir.path}/rsa.crt`, "utf8"),
        privateKeyPem: await readFile(`${dir.path}/rsa.key`, "utf8"),
        clusterId: CLUSTER,
      };
      expectRefused(rsa, "ROOT_KEY_UNSUPPORTED", /rsa 2048 bits/);
    } finally {
      await dir.remove();
    }
  });

  it("makes a fresh root for a rotation through the same checks, with pathlen 1", async () => {
    const checked = CheckedNewRoot.generate({ clusterId: CLUSTER });
    expect(checked.root.clusterId).to.equal(CLUSTER);
    const generated = await run("openssl", ["x509", "-noout", "-text"], checked.root.certificatePem);
    expect(generated.stdout).to.match(/CA:TRUE, pathlen:1/);
    // RootCA.create makes the same profile: a root made at init can be rotated away from.
    const text = await run(
      "openssl",
      ["x509", "-noout", "-text"],
      RootCA.create({ clusterId: CLUSTER }).certificatePem,
    );
    expect(text.stdout).to.match(/CA:TRUE, pathlen:1/);
  });
});
