// Node ids the cluster draws for joining nodes: 128 random bits in base 36, 25
// lowercase characters. A valid DNS label (the certificate's CN and SAN) that can never
// be a role name, and unguessable, so a node id reveals nothing and collides never.
import { randomBytes } from "node:crypto";

export const NODE_ID_CHARS = 25;

export function newNodeId(): string {
  return BigInt(`0x${randomBytes(16).toString("hex")}`)
    .toString(36)
    .padStart(NODE_ID_CHARS, "0");
}
