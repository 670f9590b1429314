// Join token secrets as the replicated state compares them: by SHA-256, so issuance
// commands carry a digest of the presented secret rather than the secret itself, and
// rotated secrets are remembered only as digests.
import { createHash } from "node:crypto";

/** How many rotated secrets' digests the cluster remembers (to answer TOKEN_ROTATED). */
export const MAX_ROTATED_SECRETS = 16;

/** SHA-256 of a join token's secret, lowercase hex. */
export function joinSecretSha256(secret: string): string {
  return createHash("sha256").update(secret, "utf8").digest("hex");
}
