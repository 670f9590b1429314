// A member process creates its raft state only on its first start (--bootstrap or
// --join, passed by LocalCluster then and never again): a restart on a lost directory
// is refused, where it used to bootstrap again with no memory of its votes.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { LocalCluster, waitFor } from "../../src/testbed/local-cluster.js";

describe("test bed: a member's raft state is created on its first start only", function () {
  this.timeout(60_000);
  let cluster: LocalCluster | undefined;
  afterEach(async () => {
    await cluster?.close();
    cluster = undefined;
  });

  it("restarts from its directory, and refuses to start when that directory is lost (RAFT_STATE_MISSING)", async () => {
    const c = await LocalCluster.start({
      size: 1,
      baseDir: mkdtempSync(join(tmpdir(), "raft-restart-")),
      tickMs: 50,
    });
    cluster = c;
    await waitFor("a leader", 15_000, () => c.agreedLeader());
    await c.put(1, "k", "v");
    await c.stop(1);
    await c.startMember(1); // a restart: no --bootstrap
    await waitFor("a leader after the restart", 15_000, () => c.agreedLeader());
    expect(await c.get(1, "k")).to.deep.include({ found: true, value: "v" });
    await c.stop(1);

    const raftDir = join(c.members.get(1)!.dir, "raft");
    rmSync(raftDir, { recursive: true });
    const failed = await c.startMember(1).then(
      () => undefined,
      (err: Error) => err,
    );
    expect(failed?.message).to.match(/member 1 exited \(1\) before serving/);
    await waitFor("the refusal in the member's log", 5_000, () =>
      c.logOf(1).includes("RAFT_STATE_MISSING") ? true : undefined,
    );
    expect(c.logOf(1)).to.contain(raftDir);
    expect(existsSync(raftDir)).to.equal(false);
  });
});
