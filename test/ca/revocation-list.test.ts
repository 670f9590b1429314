// The revocation lists a manager builds, judged by openssl: signed by the root, current,
// v2 with the extensions RFC 5280 requires, and naming exactly the serials given.
import { expect } from "chai";
import { CertInvalidError } from "../../src/ca/errors.js";
import {
  checkRevocationLists,
  MAX_REVOCATION_LISTS,
  THIS_UPDATE_BACKDATE_MS,
} from "../../src/ca/revocation-list.js";
import { RootCA } from "../../src/ca/root-ca.js";
import { issueNode } from "./echo-service.js";
import { run, TempDir } from "./helpers.js";

describe("ca: certificate revocation lists", () => {
  const root = RootCA.create({ clusterId: "cluster-crl" });
  let dir: TempDir;
  before(async () => {
    dir = await TempDir.create();
  });
  after(async () => {
    await dir.remove();
  });

  it("openssl verifies the list against the root, sees v2, the dates and the revoked serials", async () => {
    const now = new Date();
    const removed = issueNode(root, "worker", "w-1");
    const crl = root.createRevocationList([{ serial: removed.serialNumber, revokedAt: now }], now);
    const rootFile = await dir.file("root.pem", root.certificatePem);
    const result = await run("openssl", ["crl", "-verify", "-noout", "-text", "-CAfile", rootFile], crl);
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stderr).to.match(/verify OK/);
    expect(result.stdout).to.match(/Version 2/);
    expect(result.stdout).to.include("X509v3 Authority Key Identifier");
    expect(result.stdout).to.include("X509v3 CRL Number");
    // nextUpdate is the root's own expiry: a list never regenerated must not go stale before its root.
    const nextUpdate = /Next Update: (.+)/.exec(result.stdout)?.[1];
    expect(new Date(nextUpdate ?? "").getTime()).to.equal(new Date(root.certificate.validTo).getTime());
    // Backdated a day: a clock stepped back must not make the list "not yet valid".
    const lastUpdate = new Date(/Last Update: (.+)/.exec(result.stdout)?.[1] ?? "");
    expect(now.getTime() - lastUpdate.getTime()).to.be.closeTo(THIS_UPDATE_BACKDATE_MS, 1_000);
    // openssl prints the serial's bytes (a leading 0 nibble kept); compare numbers, not text.
    const listed = [...result.stdout.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => BigInt(`0x${m[1]}`));
    expect(listed).to.deep.equal([BigInt(`0x${removed.serialNumber}`)]);
  });

  it("openssl verify -crl_check_all refuses the listed certificate only", async () => {
    const removed = issueNode(root, "worker", "w-1");
    const kept = issueNode(root, "worker", "w-2");
    const crl = await dir.file(
      "crl.pem",
      root.createRevocationList([{ serial: removed.serialNumber, revokedAt: new Date() }]),
    );
    const verify = async (leaf: string) =>
      run("openssl", [
        "verify",
        "-x509_strict",
        "-crl_check_all",
        "-CAfile",
        await dir.file("root.pem", root.certificatePem),
        "-CRLfile",
        crl,
        await dir.file("leaf.pem", leaf),
      ]);
    const refused = await verify(removed.certificateChainPem);
    expect(refused.code).to.not.equal(0);
    expect(refused.stdout + refused.stderr).to.match(/certificate revoked/);
    const accepted = await verify(kept.certificateChainPem);
    expect(accepted.code, accepted.stdout + accepted.stderr).to.equal(0);
  });

  it("an empty list verifies too, and serials are normalized and deduplicated", async () => {
    const rootFile = await dir.file("root.pem", root.certificatePem);
    const empty = await run(
      "openssl",
      ["crl", "-verify", "-noout", "-CAfile", rootFile],
      root.createRevocationList([]),
    );
    expect(empty.code, empty.stderr).to.equal(0);
    const at = new Date();
    const crl = root.createRevocationList([
      { serial: "00FF01", revokedAt: at },
      { serial: "ff01", revokedAt: at },
      { serial: "0a", revokedAt: at },
    ]);
    const text = await run("openssl", ["crl", "-noout", "-text"], crl);
    const listed = [...text.stdout.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => m[1]);
    expect(listed).to.have.members(["0A", "FF01"]).and.have.length(2);
    expect(() => root.createRevocationList([{ serial: "zz", revokedAt: at }])).to.throw(CertInvalidError);
    expect(() => root.createRevocationList([{ serial: "00", revokedAt: at }])).to.throw(CertInvalidError);
  });

  it("checks lists before use: signer, dates, count", () => {
    const now = new Date();
    const roots = [root.certificate];
    const [checked] = checkRevocationLists(root.createRevocationList([], now), roots, now);
    expect(checked?.issuer).to.equal(root.certificate);
    // Another issuer's list is no one's to refuse here: kept, marked as from an unknown issuer.
    const other = RootCA.create({ clusterId: "cluster-crl" });
    expect(checkRevocationLists(other.createRevocationList([], now), roots, now)[0]?.issuer).to.equal(
      undefined,
    );
    const later = new Date(now.getTime() + THIS_UPDATE_BACKDATE_MS + 3_600_000);
    expect(() => checkRevocationLists(root.createRevocationList([], later), roots, now)).to.throw(
      /valid only from/,
    );
    const pastRootExpiry = new Date(new Date(root.certificate.validTo).getTime() + 1_000);
    expect(() => checkRevocationLists(root.createRevocationList([], now), roots, pastRootExpiry)).to.throw(
      /expired/,
    );
    const many = root.createRevocationList([], now).repeat(MAX_REVOCATION_LISTS + 1);
    expect(() => checkRevocationLists(many, roots, now)).to.throw(/more than/);
  });
});
