import { createHash } from "node:crypto";
import { expect } from "chai";
import fc from "fast-check";
import { RootDigestMismatchError, TokenInvalidError, TokenRotatedError } from "../../src/ca/errors.js";
import {
  checkRootDigest,
  formatJoinToken,
  generateJoinSecret,
  parseJoinToken,
  roleForJoinToken,
  rootCertificateDigest,
} from "../../src/ca/join-token.js";
import { RootCA } from "../../src/ca/root-ca.js";

describe("ca: join tokens (DESIGN.md Join tokens)", () => {
  const root = RootCA.create({ clusterId: "c" });
  const workerSecret = generateJoinSecret();
  const managerSecret = generateJoinSecret();
  const workerToken = formatJoinToken(root.certificateDer, workerSecret);

  it("has the exact format SWMTKN-1-<50 char base36 digest>-<25 char base36 secret>", () => {
    expect(workerToken).to.match(/^SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}$/);
    const digestHex = createHash("sha256").update(root.certificateDer).digest("hex");
    const digest = workerToken.split("-")[2] ?? "";
    expect(BigInt(`0x${digestHex}`).toString(36).padStart(50, "0")).to.equal(digest);
    expect(rootCertificateDigest(root.certificateDer)).to.equal(digest);
    expect(workerToken.endsWith(`-${workerSecret}`)).to.equal(true);
  });

  it("left-pads small values with zeros", () => {
    const secrets = Array.from({ length: 200 }, generateJoinSecret);
    for (const s of secrets) expect(s).to.have.length(25);
    // 128 random bits have a leading base-36 zero about 1 time in 5, so padding is exercised.
    expect(secrets.some((s) => s.startsWith("0"))).to.equal(true);
  });

  it("parses, checks the root digest and maps the secret to its role", () => {
    const parsed = parseJoinToken(`  ${workerToken}\n`);
    checkRootDigest(parsed, root.certificateDer);
    expect(roleForJoinToken(parsed, { worker: workerSecret, manager: managerSecret })).to.equal("worker");
    const managerToken = parseJoinToken(formatJoinToken(root.certificateDer, managerSecret));
    expect(roleForJoinToken(managerToken, { worker: workerSecret, manager: managerSecret })).to.equal(
      "manager",
    );
  });

  it("refuses a root whose digest does not match (ROOT_DIGEST_MISMATCH)", () => {
    const impostor = RootCA.create({ clusterId: "c" });
    expect(() => checkRootDigest(parseJoinToken(workerToken), impostor.certificateDer))
      .to.throw(RootDigestMismatchError, /impostor/)
      .with.property("code", "ROOT_DIGEST_MISMATCH");
  });

  it("tells a rotated token (TOKEN_ROTATED) from an unknown one (TOKEN_INVALID)", () => {
    const rotatedSecrets = { worker: generateJoinSecret(), manager: managerSecret, rotated: [workerSecret] };
    expect(() => roleForJoinToken(parseJoinToken(workerToken), rotatedSecrets))
      .to.throw(TokenRotatedError)
      .with.property("code", "TOKEN_ROTATED");
    const stranger = parseJoinToken(formatJoinToken(root.certificateDer, generateJoinSecret()));
    expect(() => roleForJoinToken(stranger, rotatedSecrets)).to.throw(
      TokenInvalidError,
      /matches no current/,
    );
  });

  it("says what is wrong with a malformed token", () => {
    const digest = rootCertificateDigest(root.certificateDer);
    const cases: Array<[string, RegExp]> = [
      ["", /0 characters/],
      ["SWMTKN-1-abc", /characters, a token has 85/],
      [`SWMTKN-2-${digest}-${workerSecret}`, /version "2"/],
      [`XXXXXX-1-${digest}-${workerSecret}`, /does not start with "SWMTKN-"/],
      [`SWMTKN-1-${digest.toUpperCase()}-${workerSecret}`, /outside 0-9a-z/],
      [`SWMTKN-1-${digest}-zzzzzzzzzzzzzzzzzzzzzzzzz`, /secret is larger than 128 bits/],
      [`SWMTKN-1-${"z".repeat(50)}-${workerSecret}`, /root digest is larger than 256 bits/],
      [`SWMTKN-1-${digest.slice(0, 49)}--${workerSecret}`, /5 dash-separated parts/],
      [`SWMTKN-1-${digest}${workerSecret}-`, /digest has 75 characters/],
      [`SWMTKN-1-${"x".repeat(10_000_000)}`, /characters, a token has 85/],
    ];
    for (const [token, message] of cases) {
      expect(() => parseJoinToken(token), token.slice(0, 40))
        .to.throw(TokenInvalidError, message)
        .with.property("code", "TOKEN_INVALID");
    }
  });

  it("never repeats token text in its refusal: a mangled token's secret stays out of logs", () => {
    const digest = rootCertificateDigest(root.certificateDer);
    const leaks = (message: string): string | undefined => {
      for (const part of [workerSecret, digest])
        for (let i = 0; i + 6 <= part.length; i++) if (message.includes(part.slice(i, i + 6))) return part;
      return undefined;
    };
    const refusal = (token: string): string => {
      try {
        parseJoinToken(token);
      } catch (error) {
        expect(error).to.be.instanceOf(TokenInvalidError);
        return (error as Error).message;
      }
      return "";
    };
    // A dash lost in pasting, with the parts in another order, still 85 characters long.
    const mangled = [
      `SWMTKN-${workerSecret}-${digest}-1`,
      `SWMTKN-1${digest}-${workerSecret}-`,
      `SWMTKN-${digest}-1-${workerSecret}`,
    ];
    for (const token of mangled) {
      const message = refusal(token);
      expect(message, token).to.not.equal("");
      expect(leaks(message), message).to.equal(undefined);
    }
    const alphabet = fc.constantFrom(..."0123456789abcdefghijklmnopqrstuvwxyzSWMTKN-_ ".split(""));
    fc.assert(
      fc.property(
        fc.nat({ max: 3 }),
        fc.nat({ max: workerToken.length }),
        alphabet,
        fc.shuffledSubarray(["1", digest, workerSecret], { minLength: 3, maxLength: 3 }),
        (dash, at, extra, order) => {
          // Drop one of the three dashes, put a stray character anywhere: the length stays 85.
          const parts = ["SWMTKN", ...order];
          const joined = parts
            .map((p, i) => (i === dash ? p : `${p}-`))
            .join("")
            .replace(/-$/, "");
          const token = joined.slice(0, at) + extra + joined.slice(at);
          const message = refusal(token);
          if (message) expect(leaks(message), message).to.equal(undefined);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("property: any string either parses to a token that formats back identically, or is refused with TOKEN_INVALID", () => {
    const alphabet = fc.constantFrom(..."0123456789abcdefghijklmnopqrstuvwxyzSWMTKN-Z_ \n".split(""));
    const tokenish = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.string({ unit: alphabet, minLength: 80, maxLength: 90 }),
      fc
        .tuple(
          fc.string({ unit: alphabet, minLength: 50, maxLength: 50 }),
          fc.string({ unit: alphabet, minLength: 25, maxLength: 25 }),
        )
        .map(([d, s]) => `SWMTKN-1-${d}-${s}`),
    );
    fc.assert(
      fc.property(tokenish, (token) => {
        try {
          const parsed = parseJoinToken(token);
          expect(`SWMTKN-1-${parsed.rootDigest}-${parsed.secret}`).to.equal(token.trim());
        } catch (error) {
          expect(error).to.be.instanceOf(TokenInvalidError);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("property: every generated token round-trips", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 2000 }), (rootDer) => {
        const secret = generateJoinSecret();
        const parsed = parseJoinToken(formatJoinToken(rootDer, secret));
        expect(parsed.secret).to.equal(secret);
        checkRootDigest(parsed, rootDer);
      }),
      { numRuns: 300 },
    );
  });
});
