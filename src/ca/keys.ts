// ECDSA P-256 keys, generated where they are used: a node's key never leaves
// the node, the root key lives only in the managers' replicated state.
import { createPrivateKey, generateKeyPairSync, type KeyObject } from "node:crypto";

export function generateP256Key(): KeyObject {
  return generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
}

export function privateKeyToPem(key: KeyObject): string {
  return key.export({ type: "pkcs8", format: "pem" }).toString();
}

export function privateKeyFromPem(pem: string): KeyObject {
  const key = createPrivateKey(pem);
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw new TypeError("private key is not an ECDSA P-256 key");
  }
  return key;
}
