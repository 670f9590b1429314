import { execFileSync } from "node:child_process";
import { expect } from "chai";

describe("generated code", () => {
  it("src/gen matches proto/ (run `npm run gen` after editing a .proto)", function () {
    this.timeout(60_000);
    const out = execFileSync("node", ["scripts/gen-proto.mjs", "--check"], { encoding: "utf8" });
    expect(out).to.contain("up to date");
  });
});
