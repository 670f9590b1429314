// Certificates for local clusters started by tests, benchmarks and the demo:
// one root, a manager certificate per member (CN = its node id, "member-<raft
// id>": a name the membership binds to the raft id, not the number itself), and
// the operator client's certificate, in the state-dir layout of DESIGN.md
// (certificates/node.key, node.crt, ca.crt).
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeCertificateFile, writePrivateKeyFile } from "../ca/atomic-file.js";
import { checkNodeCsr, createNodeCsr } from "../ca/csr.js";
import type { NodeRole } from "../ca/profile.js";
import { RootCA } from "../ca/root-ca.js";
import { TlsCredentialHolder } from "../ca/tls/credential-holder.js";
import type { Logger } from "../log/logger.js";

export interface DevPki {
  clusterId: string;
  root: RootCA;
}

export function createDevPki(clusterId: string): DevPki {
  return { clusterId, root: RootCA.create({ clusterId }) };
}

/** The node id (certificate CN) of the test bed's member with this raft id. */
export function memberNodeId(raftId: number): string {
  return `member-${raftId}`;
}

/**
 * The operator client's identity: a worker-role certificate, which the test bed's
 * authorization policy admits to the KV service only, never to the Raft transport.
 */
export const OPERATOR = { role: "worker", nodeId: "operator" } as const;

/** Writes node.key, node.crt and ca.crt for a manager with this member id into `dir`. */
export function writeMemberCertificates(pki: DevPki, memberId: number, dir: string): Promise<void> {
  return writeNodeCertificates(pki, { role: "manager", nodeId: memberNodeId(memberId) }, dir);
}

/** Writes node.key, node.crt and ca.crt for any identity the CA issues into `dir`. */
export async function writeNodeCertificates(
  pki: DevPki,
  identity: { role: NodeRole; nodeId: string },
  dir: string,
): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const { privateKeyPem, csrPem } = createNodeCsr();
  const issued = pki.root.issueNodeCertificate({ csr: checkNodeCsr(csrPem), ...identity });
  await writePrivateKeyFile(join(dir, "node.key"), privateKeyPem);
  await writeCertificateFile(join(dir, "node.crt"), issued.chainPem);
  await writeCertificateFile(join(dir, "ca.crt"), pki.root.certificatePem);
}

/** The credential holder for the node.key, node.crt and ca.crt in `dir`. */
export function loadCredentialHolder(dir: string, logger: Logger): TlsCredentialHolder {
  const read = (name: string) => readFileSync(join(dir, name), "utf8");
  return new TlsCredentialHolder({
    identity: { privateKeyPem: read("node.key"), certificateChainPem: read("node.crt") },
    trustBundlePem: read("ca.crt"),
    logger,
  });
}
