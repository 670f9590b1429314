// The manager's revocation lists follow the replicated removed-node list: every unexpired
// certificate of a removed node is listed (its earlier one too), a pruned node leaves the
// list, unrelated changes push nothing, and a failure is logged without reaching apply.
import { expect } from "chai";
import { checkNodeCsr, createNodeCsr, RootCA, TlsCredentialHolder } from "../../src/ca/index.js";
import { ClusterState, joinSecretSha256 } from "../../src/fsm/index.js";
import type { Command } from "../../src/gen/fsm/v1/commands.js";
import { NodeStatus, RaftMembership, Role } from "../../src/gen/fsm/v1/state.js";
import { silentLogger } from "../../src/log/logger.js";
import { keepRevocationListsCurrent } from "../../src/node/revocation.js";
import { run } from "../ca/helpers.js";

const enc = new TextEncoder();
const CLUSTER = "cluster-rev";
const DAY_MS = 86_400_000;

function issue(root: RootCA, nodeId: string, role: "manager" | "worker", now = new Date()) {
  const { privateKeyPem, csrPem } = createNodeCsr();
  const issued = root.issueNodeCertificate({ csr: checkNodeCsr(csrPem), role, nodeId, now });
  return { ...issued, privateKeyPem };
}

function createCluster(root: RootCA, manager: ReturnType<typeof issue>): Command {
  return {
    command: {
      $case: "createCluster",
      value: {
        cluster: {
          id: CLUSTER,
          root: {
            certPem: enc.encode(root.certificatePem),
            keyPem: enc.encode(root.privateKeyPem()),
            keyId: root.keyId,
          },
          rotation: undefined,
          joinTokenSecrets: { worker: "w-secret", manager: "m-secret", rotatedSha256: [] },
          nodeCertLifetimeS: 86_400,
          renewalGraceS: 7 * 86_400,
          createdAtMs: Date.now(),
          nextRaftId: 0,
        },
        firstNode: {
          id: "m1",
          role: Role.ROLE_MANAGER,
          desiredRole: Role.ROLE_MANAGER,
          raftId: 1,
          membership: RaftMembership.RAFT_MEMBERSHIP_VOTER,
          status: NodeStatus.NODE_STATUS_READY,
          statusChangedAtMs: Date.now(),
          address: "127.0.0.1:1",
          certificate: {
            serial: manager.serialNumber,
            notAfterMs: manager.notAfter.getTime(),
            issuerKeyId: root.keyId,
            der: new Uint8Array(),
          },
          session: undefined,
          joinedAtMs: Date.now(),
          earlierCertificates: [],
          trustedRootKeyId: "",
          heldIssuerKeyId: "",
        },
      },
    },
  };
}

function recordIssuance(
  nodeId: string,
  issued: ReturnType<typeof issue>,
  join: boolean,
  atMs: number,
): Command {
  return {
    command: {
      $case: "recordIssuance",
      value: {
        nodeId,
        role: Role.ROLE_WORKER,
        join,
        address: "",
        atMs,
        certificate: {
          serial: issued.serialNumber,
          notAfterMs: issued.notAfter.getTime(),
          issuerKeyId: issued.issuerKeyId,
          der: new Uint8Array(),
        },
        joinSecretSha256: join ? joinSecretSha256("w-secret") : "",
      },
    },
  };
}

const asListed = (serial: string): string => BigInt(`0x${serial}`).toString(16).toUpperCase();

/** The serials (uppercase hex, no leading zeros) the holder's server would load, per list. openssl
 * prints a serial's bytes, keeping a leading 0 nibble: normalized through a number. */
async function loadedSerials(holder: TlsCredentialHolder): Promise<string[][]> {
  const lists = holder.serverContextOptions().crl;
  if (!lists) return [];
  const out: string[][] = [];
  for (const pem of lists as string[]) {
    const text = await run("openssl", ["crl", "-noout", "-text"], pem);
    out.push([...text.stdout.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => asListed(m[1] ?? "0")));
  }
  return out;
}

describe("node: revocation lists follow the removed nodes", () => {
  const root = RootCA.create({ clusterId: CLUSTER });
  const manager = issue(root, "m1", "manager");
  let holder: TlsCredentialHolder;
  let state: ClusterState;
  let pushes: number;
  let index: number;

  beforeEach(() => {
    holder = new TlsCredentialHolder({
      identity: { privateKeyPem: manager.privateKeyPem, certificateChainPem: manager.chainPem },
      trustBundlePem: root.certificatePem,
      logger: silentLogger(),
    });
    pushes = 0;
    holder.watchServerContext(() => pushes++);
    state = new ClusterState();
    index = 0;
  });

  function apply(command: Command): void {
    const result = state.applyCommand(++index, command);
    expect(result.ok, result.message).to.equal(true);
  }

  it("lists a removed node's current and earlier certificates, then nothing once it is pruned", async () => {
    const stop = keepRevocationListsCurrent(state, holder, silentLogger());
    try {
      expect(pushes, "no cluster yet: nothing to sign with").to.equal(0);
      apply(createCluster(root, manager));
      expect(await loadedSerials(holder)).to.deep.equal([[]]);

      const now = Date.now();
      const first = issue(root, "w1", "worker");
      const second = issue(root, "w1", "worker");
      const other = issue(root, "w2", "worker");
      apply(recordIssuance("w1", first, true, now));
      apply(recordIssuance("w2", other, true, now));
      // A renewal before the first expired: both are valid, and both must be refused.
      apply(recordIssuance("w1", second, false, now + 1_000));
      const before = pushes;
      apply({ command: { $case: "removeNode", value: { nodeId: "w1", force: false, atMs: now + 2_000 } } });
      expect(pushes).to.equal(before + 1);
      const [listed] = await loadedSerials(holder);
      expect(listed).to.have.members([asListed(first.serialNumber), asListed(second.serialNumber)]);
      expect(listed).to.not.include(asListed(other.serialNumber));

      const notAfter = state.removedNode("w1")!.certNotAfterMs;
      apply({ command: { $case: "pruneRemovedNodes", value: { nowMs: notAfter + 7 * DAY_MS + 1 } } });
      expect(await loadedSerials(holder)).to.deep.equal([[]]);
    } finally {
      stop();
    }
  });

  it("pushes on a snapshot install, not on changes that cannot alter the lists; stops when told", () => {
    apply(createCluster(root, manager));
    const snapshot = state.snapshot();
    const stop = keepRevocationListsCurrent(state, holder, silentLogger());
    expect(pushes, "on start").to.equal(1);
    apply(recordIssuance("w1", issue(root, "w1", "worker"), true, Date.now()));
    apply({
      command: {
        $case: "recordSessions",
        value: {
          transitions: [{ nodeId: "w1", status: NodeStatus.NODE_STATUS_READY, managerId: "m1", atMs: 1 }],
        },
      },
    });
    expect(pushes, "a join and a session change nothing").to.equal(1);
    state.restore(snapshot);
    expect(pushes, "a snapshot install").to.equal(2);
    stop();
    state.restore(snapshot);
    expect(pushes, "stopped").to.equal(2);
  });

  /** A logger whose component child records the fields of its error and debug lines. */
  function spyLogger(errors: unknown[], debugs: unknown[]) {
    const logger = silentLogger();
    return Object.assign(Object.create(logger), {
      child: () =>
        Object.assign(Object.create(logger), {
          error: (fields: unknown) => errors.push(fields),
          debug: (fields: unknown) => debugs.push(fields),
        }),
    });
  }

  it("a state whose roots this node does not trust (replaying from before a rotation) loads nothing and logs no error", () => {
    // This holder trusts a newer root than the state has reached.
    const newer = RootCA.create({ clusterId: CLUSTER });
    const newerManager = issue(newer, "m1", "manager");
    const aheadHolder = new TlsCredentialHolder({
      identity: { privateKeyPem: newerManager.privateKeyPem, certificateChainPem: newerManager.chainPem },
      trustBundlePem: newer.certificatePem,
      logger: silentLogger(),
    });
    const errors: unknown[] = [];
    const debugs: unknown[] = [];
    const stop = keepRevocationListsCurrent(state, aheadHolder, spyLogger(errors, debugs));
    try {
      apply(createCluster(root, manager));
      expect(errors).to.deep.equal([]);
      expect(debugs).to.have.length(1);
      expect(aheadHolder.serverContextOptions().crl).to.equal(undefined);
    } finally {
      stop();
    }
  });

  it("a list that cannot be made is logged and keeps the previous one; apply is unaffected", () => {
    const errors: unknown[] = [];
    const stop = keepRevocationListsCurrent(state, holder, spyLogger(errors, []));
    try {
      // The stored root's key is another root's: nothing can be signed with it.
      const command = createCluster(root, manager);
      const other = RootCA.create({ clusterId: CLUSTER });
      if (command.command?.$case === "createCluster" && command.command.value.cluster?.root)
        command.command.value.cluster.root.keyPem = enc.encode(other.privateKeyPem());
      apply(command);
      expect(errors).to.have.length(1);
      expect(errors[0]).to.have.property("code", "CERT_INVALID");
      expect(holder.serverContextOptions().crl).to.equal(undefined);
      expect(state.cluster()?.id).to.equal(CLUSTER);
    } finally {
      stop();
    }
  });
});
