// Identifiers the cluster chooses: node ids and cluster ids are 25 random base-36
// characters (about 129 bits), lowercase so they are valid DNS labels (a node id is
// its certificate's CN and DNS SAN) and never equal to a role name.
import { randomInt } from "node:crypto";

const ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz";
export const RANDOM_ID_LENGTH = 25;

export function randomId(length = RANDOM_ID_LENGTH): string {
  let id = "";
  // randomInt draws without modulo bias.
  for (let i = 0; i < length; i++) id += ALPHABET[randomInt(ALPHABET.length)];
  return id;
}
