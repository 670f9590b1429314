import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { expect } from "chai";
import { writeCertificateFile, writePrivateKeyFile } from "../../src/ca/atomic-file.js";
import { TempDir } from "./helpers.js";

describe("ca: atomic key and certificate files", () => {
  let dir: TempDir;
  beforeEach(async () => {
    dir = await TempDir.create();
  });
  afterEach(async () => {
    await dir.remove();
  });

  it("writes a private key with mode 0600 even when replacing a wider file", async () => {
    const path = join(dir.path, "node.key");
    await writeCertificateFile(path, "old");
    await writePrivateKeyFile(path, "secret key");
    expect(await readFile(path, "utf8")).to.equal("secret key");
    expect((await stat(path)).mode & 0o777).to.equal(0o600);
  });

  it("replaces a certificate in place and leaves no temp files behind", async () => {
    const path = join(dir.path, "node.crt");
    await writeCertificateFile(path, "first");
    await writeCertificateFile(path, "second");
    expect(await readFile(path, "utf8")).to.equal("second");
    expect((await stat(path)).mode & 0o777).to.equal(0o644);
    expect(await readdir(dir.path)).to.deep.equal(["node.crt"]);
  });

  it("fails cleanly when the directory does not exist", async () => {
    let failure: unknown;
    try {
      await writeCertificateFile(join(dir.path, "missing", "node.crt"), "x");
    } catch (error) {
      failure = error;
    }
    expect(failure).to.be.instanceOf(Error).with.property("code", "ENOENT");
  });
});
