import { X509Certificate } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { expect } from "chai";
import fc from "fast-check";
import { checkNodeCsr, createNodeCsr } from "../../src/ca/csr.js";
import { CsrInvalidError } from "../../src/ca/errors.js";
import { RootCA } from "../../src/ca/root-ca.js";
import { run, TempDir } from "./helpers.js";

function pemToDer(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64");
}

/** Runs check and demands that any failure is our typed, explained refusal. */
function checkOrRefuse(input: string | Uint8Array): "accepted" | "refused" {
  try {
    checkNodeCsr(input);
    return "accepted";
  } catch (error) {
    expect(error).to.be.instanceOf(CsrInvalidError);
    expect((error as CsrInvalidError).code).to.equal("CSR_INVALID");
    return "refused";
  }
}

describe("ca: CSR creation (node side) and checking (manager side)", () => {
  let dir: TempDir;
  before(async () => {
    dir = await TempDir.create();
  });
  after(async () => {
    await dir.remove();
  });

  it("creates a CSR that openssl req -verify accepts", async () => {
    const { csrPem } = createNodeCsr();
    const result = await run("openssl", ["req", "-verify", "-noout"], csrPem);
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stdout + result.stderr).to.match(/verify OK/);
  });

  it("accepts a P-256 CSR made by openssl and ignores the requested subject", async () => {
    const key = await dir.file(
      "p256.key",
      (await run("openssl", ["ecparam", "-name", "prime256v1", "-genkey"])).stdout,
    );
    const req = await run("openssl", [
      "req",
      "-new",
      "-key",
      key,
      "-subj",
      "/O=other-cluster/OU=manager/CN=admin",
    ]);
    expect(req.code, req.stderr).to.equal(0);
    const checked = checkNodeCsr(req.stdout);
    const root = RootCA.create({ clusterId: "c" });
    const issued = root.issueNodeCertificate({ csr: checked, role: "worker", nodeId: "n1" });
    expect(new X509Certificate(issued.certificatePem).subject).to.equal("O=c\nOU=worker\nCN=n1");
  });

  it("refuses RSA and P-384 keys, naming the problem", async () => {
    const rsa = await run("openssl", [
      "req",
      "-new",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      `${dir.path}/rsa.key`,
      "-subj",
      "/CN=x",
    ]);
    expect(() => checkNodeCsr(rsa.stdout)).to.throw(CsrInvalidError, /not ECDSA/);
    const p384 = await dir.file(
      "p384.key",
      (await run("openssl", ["ecparam", "-name", "secp384r1", "-genkey"])).stdout,
    );
    const req = await run("openssl", ["req", "-new", "-key", p384, "-subj", "/CN=x"]);
    expect(() => checkNodeCsr(req.stdout)).to.throw(CsrInvalidError, /P-256/);
  });

  it("refuses a CSR whose self-signature does not verify", () => {
    const der = pemToDer(createNodeCsr().csrPem);
    der[der.length - 5] = (der[der.length - 5] ?? 0) ^ 0x01; // inside the signature's s value
    expect(() => checkNodeCsr(der)).to.throw(CsrInvalidError, /self-signature/);
    // A signature made by another key over the same request is refused too.
    const other = pemToDer(createNodeCsr().csrPem);
    const mine = pemToDer(createNodeCsr().csrPem);
    const spliced = Buffer.concat([mine.subarray(0, mine.length - 72), other.subarray(other.length - 72)]);
    expect(checkOrRefuse(spliced)).to.equal("refused");
  });

  it("refuses garbage, empty and oversized input with a clear error", () => {
    expect(() => checkNodeCsr("")).to.throw(CsrInvalidError, /PEM/);
    expect(() => checkNodeCsr(new Uint8Array())).to.throw(CsrInvalidError, /empty/);
    expect(() => checkNodeCsr("hello")).to.throw(CsrInvalidError, /PEM/);
    expect(() => checkNodeCsr(new Uint8Array(5000))).to.throw(CsrInvalidError, /exceeds/);
    expect(() => checkNodeCsr("A".repeat(1_000_000))).to.throw(CsrInvalidError, /too large/);
    expect(() => checkNodeCsr(Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00]))).to.throw(CsrInvalidError);
  });

  it("refuses trailing bytes after the request's DER, as DER and inside PEM", () => {
    const { csrPem } = createNodeCsr();
    const der = pemToDer(csrPem);
    expect(() => checkNodeCsr(der)).to.not.throw();
    for (const tail of [[0x00], [0x30, 0x00], [...Buffer.from("extra data")]]) {
      const padded = Buffer.concat([der, Buffer.from(tail)]);
      expect(() => checkNodeCsr(padded), `DER + ${tail.length} bytes`).to.throw(CsrInvalidError, /trailing/);
      const pem = `-----BEGIN CERTIFICATE REQUEST-----\n${padded.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
      expect(() => checkNodeCsr(pem), `PEM + ${tail.length} bytes`).to.throw(CsrInvalidError, /trailing/);
    }
  });

  it("property: arbitrary bytes and strings are refused with CSR_INVALID, never a crash", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 6000 }), (bytes) => {
        expect(checkOrRefuse(bytes)).to.equal("refused");
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 3000 }), (text) => {
        expect(checkOrRefuse(text)).to.equal("refused");
      }),
      { numRuns: 300 },
    );
  });

  it("property: any mutation of a valid CSR is refused or still proves the same key", () => {
    const { csrPem } = createNodeCsr();
    const valid = pemToDer(csrPem);
    const original = checkNodeCsr(valid);
    const originalKey = Buffer.from(AsnConvert.serialize(original.subjectPublicKeyInfo));
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat({ max: valid.length - 1 }), fc.integer({ min: 1, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.nat({ max: valid.length }),
        (flips, cut) => {
          const mutated = Buffer.from(valid);
          for (const [at, xor] of flips) mutated[at] = (mutated[at] ?? 0) ^ xor;
          for (const candidate of [mutated, mutated.subarray(0, cut)]) {
            try {
              const checked = checkNodeCsr(candidate);
              // Only a change outside the signed key (e.g. the ignored subject) may survive, never a new key.
              expect(
                Buffer.from(AsnConvert.serialize(checked.subjectPublicKeyInfo)).equals(originalKey),
              ).to.equal(true);
            } catch (error) {
              expect(error).to.be.instanceOf(CsrInvalidError);
            }
          }
        },
      ),
      { numRuns: 1000 },
    );
  });
});
