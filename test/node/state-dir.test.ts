// The daemon's small pieces that need no process: ids, flags, node.json checks.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { nodeIdProblem } from "../../src/ca/index.js";
import { parseDurationMs } from "../../src/cli/duration.js";
import { UsageError } from "../../src/cli/errors.js";
import { advertisedAddress, parseHostPort } from "../../src/node/address.js";
import { NodeError } from "../../src/node/errors.js";
import { randomId } from "../../src/node/ids.js";
import { readNodeConfig, requireFreshStateDir } from "../../src/node/state-dir.js";
import { lockStateDir } from "../../src/node/state-lock.js";

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe("node daemon: ids, flags and node.json", () => {
  const base = mkdtempSync(join(tmpdir(), "node-units-"));
  after(() => rmSync(base, { recursive: true, force: true }));

  it("node and cluster ids are 25 base-36 characters, valid node ids, and distinct", () => {
    const ids = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const id = randomId();
      expect(id).to.match(/^[0-9a-z]{25}$/);
      expect(nodeIdProblem(id)).to.equal(undefined);
      ids.add(id);
    }
    expect(ids.size).to.equal(200);
  });

  it("durations: 24h, 1h30m, 90s; refuses shapes it does not know and lifetimes under the minimum", () => {
    expect(parseDurationMs("--cert-expiry", "24h", 60_000)).to.equal(86_400_000);
    expect(parseDurationMs("--cert-expiry", "1h30m", 60_000)).to.equal(5_400_000);
    expect(parseDurationMs("--cert-expiry", "90s", 60_000)).to.equal(90_000);
    for (const bad of ["", "10", "1.5h", "h", "-1h", "1 h"])
      expect(() => parseDurationMs("--cert-expiry", bad, 60_000)).to.throw(UsageError);
    expect(() => parseDurationMs("--cert-expiry", "59s", 60_000)).to.throw(UsageError, /minimum/);
  });

  it("addresses: HOST:PORT with a port in range; a wildcard listen needs --advertise", () => {
    expect(parseHostPort("--listen", "127.0.0.1:4242")).to.deep.equal({ host: "127.0.0.1", port: 4242 });
    expect(parseHostPort("--listen", "[::1]:4242")).to.deep.equal({ host: "[::1]", port: 4242 });
    for (const bad of ["127.0.0.1", ":4242", "host:0", "host:65536", "a b:1"])
      expect(
        codeOf(() => parseHostPort("--listen", bad)),
        bad,
      ).to.equal("ADDRESS_INVALID");
    expect(advertisedAddress("127.0.0.1:1", undefined)).to.equal("127.0.0.1:1");
    expect(advertisedAddress("0.0.0.0:1", "10.0.0.5:1")).to.equal("10.0.0.5:1");
    expect(codeOf(() => advertisedAddress("0.0.0.0:1", undefined))).to.equal("ADDRESS_INVALID");
  });

  it("a state dir for init must be new or empty; run's node.json must be whole and of this version", () => {
    const fresh = join(base, "fresh");
    expect(() => requireFreshStateDir(fresh)).not.to.throw();
    const other = mkdtempSync(join(base, "other-"));
    writeFileSync(join(other, "notes.txt"), "mine");
    expect(codeOf(() => requireFreshStateDir(other))).to.equal("STATE_DIR_EXISTS");

    const dir = mkdtempSync(join(base, "node-"));
    const write = (value: unknown) => writeFileSync(join(dir, "node.json"), JSON.stringify(value));
    const good = {
      version: 1,
      nodeId: "n1",
      clusterId: "c1",
      role: "manager",
      raftId: 1,
      listen: "127.0.0.1:1",
      advertise: "127.0.0.1:1",
      managers: [],
    };
    write(good);
    expect(readNodeConfig(dir)).to.deep.equal(good);
    expect(codeOf(() => requireFreshStateDir(dir))).to.equal("STATE_DIR_EXISTS");
    write({ ...good, version: 2 });
    expect(codeOf(() => readNodeConfig(dir))).to.equal("STATE_DIR_FOREIGN");
    write({ ...good, role: "admin" });
    expect(codeOf(() => readNodeConfig(dir))).to.equal("STATE_DIR_CORRUPT");
    write({ ...good, raftId: -1 });
    expect(codeOf(() => readNodeConfig(dir))).to.equal("STATE_DIR_CORRUPT");
    writeFileSync(join(dir, "node.json"), "{");
    expect(() => readNodeConfig(dir)).to.throw(NodeError, /nothing was changed/);
    expect(codeOf(() => readNodeConfig(join(base, "absent")))).to.equal("STATE_DIR_MISSING");
  });
});

describe("node daemon: one process per state dir", () => {
  const base = mkdtempSync(join(tmpdir(), "node-lock-"));
  after(() => rmSync(base, { recursive: true, force: true }));

  it("a second lock on a dir is refused (STATE_DIR_LOCKED) until the first is released; other dirs are free", async () => {
    const dir = join(base, "a");
    mkdirSync(dir);
    mkdirSync(join(base, "b"));
    const first = await lockStateDir(dir);
    try {
      const refused = await lockStateDir(dir).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(refused).to.be.instanceOf(NodeError);
      expect((refused as NodeError).code).to.equal("STATE_DIR_LOCKED");
      expect((refused as NodeError).message).to.contain(dir);
      await (await lockStateDir(join(base, "b"))).release();
      // The same dir by another path is the same dir.
      const viaDot = await lockStateDir(join(base, ".", "a")).then(
        () => "locked twice",
        (err: unknown) => (err as NodeError).code,
      );
      expect(viaDot).to.equal("STATE_DIR_LOCKED");
      // A dir that does not exist yet (init and join lock before they create it) is locked too.
      const future = join(base, "not-yet");
      const held = await lockStateDir(future);
      try {
        const second = await lockStateDir(join(base, ".", "not-yet")).then(
          () => "locked twice",
          (err: unknown) => (err as NodeError).code,
        );
        expect(second).to.equal("STATE_DIR_LOCKED");
        expect(existsSync(future), "locking creates nothing").to.equal(false);
      } finally {
        await held.release();
      }
    } finally {
      await first.release();
    }
    await (await lockStateDir(dir)).release();
  });

  it("a process killed with SIGKILL leaves no lock behind", async () => {
    const dir = join(base, "killed");
    mkdirSync(dir);
    const script = `import { lockStateDir } from ${JSON.stringify(join(process.cwd(), "src/node/state-lock.ts"))};
await lockStateDir(${JSON.stringify(dir)}); process.stdout.write("locked\\n"); setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on("data", (d: Buffer) => d.toString().includes("locked") && resolve());
        child.once("exit", (code) => reject(new Error(`the child exited (${code}) before locking`)));
      });
      const held = await lockStateDir(dir).then(
        () => "not held",
        (err: unknown) => (err as NodeError).code,
      );
      expect(held).to.equal("STATE_DIR_LOCKED");
    } finally {
      child.kill("SIGKILL");
      await new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once("exit", resolve)));
    }
    await (await lockStateDir(dir)).release();
  });
});
