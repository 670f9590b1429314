// Join tokens, exactly as DESIGN.md ("Join tokens") specifies:
//   SWMTKN-1-<digest>-<secret>
// digest: SHA-256 of the root certificate's DER in base 36, left-padded to 50;
// secret: 128 random bits in base 36, 25 characters. The digest lets a joining
// node authenticate the root it fetched over unverified TLS; the secret admits it.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { RootDigestMismatchError, TokenInvalidError, TokenRotatedError } from "./errors.js";
import type { NodeRole } from "./profile.js";

const PREFIX = "SWMTKN";
const VERSION = "1";
const DIGEST_CHARS = 50;
const SECRET_CHARS = 25;
const TOKEN_CHARS = PREFIX.length + VERSION.length + DIGEST_CHARS + SECRET_CHARS + 3;
const BASE36 = /^[0-9a-z]+$/;

export interface JoinToken {
  rootDigest: string;
  secret: string;
}

export function rootCertificateDigest(rootCertificateDer: Uint8Array): string {
  return base36(createHash("sha256").update(rootCertificateDer).digest(), DIGEST_CHARS);
}

export function generateJoinSecret(): string {
  return base36(randomBytes(16), SECRET_CHARS);
}

export function formatJoinToken(rootCertificateDer: Uint8Array, secret: string): string {
  assertBase36(secret, SECRET_CHARS, 128, "secret");
  return `${PREFIX}-${VERSION}-${rootCertificateDigest(rootCertificateDer)}-${secret}`;
}

export function parseJoinToken(input: string): JoinToken {
  const token = input.trim(); // tokens get pasted with a trailing newline
  if (token.length !== TOKEN_CHARS) {
    throw new TokenInvalidError(`it has ${token.length} characters, a token has ${TOKEN_CHARS}`);
  }
  const parts = token.split("-");
  if (parts.length !== 4)
    throw new TokenInvalidError(`it has ${parts.length} dash-separated parts, expected 4`);
  const [prefix, version, rootDigest, secret] = parts as [string, string, string, string];
  if (prefix !== PREFIX) throw new TokenInvalidError(`it does not start with "${PREFIX}-"`);
  if (version !== VERSION) {
    // Refusals are logged: never echo token text, since a mangled paste can put the secret in
    // any part. A short number cannot be a secret, and naming it helps ("version 2").
    const shown = /^[0-9]{1,2}$/.test(version) ? ` "${version}"` : "";
    throw new TokenInvalidError(`format version${shown} is not supported (expected ${VERSION})`);
  }
  assertBase36(rootDigest, DIGEST_CHARS, 256, "root digest");
  assertBase36(secret, SECRET_CHARS, 128, "secret");
  return { rootDigest, secret };
}

/** Node side: refuse a root whose digest does not match the token's. */
export function checkRootDigest(token: JoinToken, rootCertificateDer: Uint8Array): void {
  const actual = rootCertificateDigest(rootCertificateDer);
  if (!constantTimeEqual(actual, token.rootDigest))
    throw new RootDigestMismatchError(token.rootDigest, actual);
}

export interface JoinSecrets {
  worker: string;
  manager: string;
  /** Secrets replaced by `join-token --rotate`, kept only to tell the joiner why it is refused. */
  rotated?: readonly string[];
}

/** Manager side: which role the token admits; refused if the secret matches no current one. */
export function roleForJoinToken(token: JoinToken, secrets: JoinSecrets): NodeRole {
  // Compare against every candidate so timing does not reveal which one matched.
  const isManager = constantTimeEqual(token.secret, secrets.manager);
  const isWorker = constantTimeEqual(token.secret, secrets.worker);
  if (isManager) return "manager";
  if (isWorker) return "worker";
  const wasRotated = (secrets.rotated ?? []).some((old) => constantTimeEqual(token.secret, old));
  if (wasRotated) throw new TokenRotatedError();
  throw new TokenInvalidError("its secret matches no current join token of this cluster");
}

function constantTimeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  // Lengths are public (fixed by the format); only the contents must not leak.
  return left.length === right.length && timingSafeEqual(left, right);
}

function base36(bytes: Uint8Array, width: number): string {
  return BigInt(`0x${Buffer.from(bytes).toString("hex")}`)
    .toString(36)
    .padStart(width, "0");
}

function assertBase36(value: string, width: number, bits: number, what: string): void {
  if (value.length !== width)
    throw new TokenInvalidError(`${what} has ${value.length} characters, expected ${width}`);
  if (!BASE36.test(value)) throw new TokenInvalidError(`${what} contains characters outside 0-9a-z`);
  const parsed = [...value].reduce((acc, c) => acc * 36n + BigInt(Number.parseInt(c, 36)), 0n);
  if (parsed >= 1n << BigInt(bits)) throw new TokenInvalidError(`${what} is larger than ${bits} bits`);
}
