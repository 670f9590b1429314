// The layer contract (.dependency-cruiser.cjs) must hold for the real tree and must
// catch each kind of violation when one is planted in a copy of it.
import { execFile } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";

const run = promisify(execFile);
const root = new URL("../..", import.meta.url).pathname;
const depcruise = join(root, "node_modules/.bin/depcruise");

async function cruise(cwd: string): Promise<{ code: number; output: string }> {
  try {
    const { stdout } = await run(
      depcruise,
      ["src", "--config", ".dependency-cruiser.cjs", "--output-type", "err"],
      {
        cwd,
        maxBuffer: 16 * 1024 * 1024,
      },
    );
    return { code: 0, output: stdout };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, output: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

/** Files planted in a copy of src/, each breaking one rule. */
const PLANTED: Record<string, { file: string; source: string }> = {
  "layer-raft": { file: "src/raft/runtime/planted-up.ts", source: 'export * from "../../ca/pem.js";\n' },
  "raft-core-pure": {
    file: "src/raft/core/planted-io.ts",
    source: 'import { readFileSync } from "node:fs";\nexport const planted = readFileSync;\n',
  },
  "raft-core-no-builtins": {
    file: "src/raft/core/planted-builtin.ts",
    source: 'import { EventEmitter } from "node:events";\nexport const planted = EventEmitter;\n',
  },
  "fsm-pure": {
    file: "src/fsm/planted-grpc.ts",
    source: 'import * as grpc from "@grpc/grpc-js";\nexport const planted = grpc.status;\n',
  },
  "layer-ca": { file: "src/ca/planted-fsm.ts", source: 'export * from "../fsm/planted-grpc.js";\n' },
  "src-not-dev-dependencies": {
    file: "src/log/planted-dev.ts",
    source: 'import { expect } from "chai";\nexport const planted = expect;\n',
  },
  "no-value-cycles": {
    file: "src/raft/runtime/planted-cycle-a.ts",
    source: 'import { b } from "./planted-cycle-b.js";\nexport const a = () => b;\n',
  },
  "production-not-simulator": {
    file: "src/raft/runtime/planted-sim.ts",
    source: 'export * from "../sim/heap.js";\n',
  },
};

describe("layers (DESIGN.md) checked by dependency-cruiser", function () {
  this.timeout(60_000);
  let copy = "";

  before(() => {
    copy = mkdtempSync(join(tmpdir(), "layers-"));
    for (const f of ["src", "tsconfig.json", "package.json", ".dependency-cruiser.cjs"])
      cpSync(join(root, f), join(copy, f), { recursive: true });
    symlinkSync(join(root, "node_modules"), join(copy, "node_modules"));
  });

  after(() => rmSync(copy, { recursive: true, force: true }));

  it("the real tree has no violation", async () => {
    const { code, output } = await cruise(root);
    expect(output).to.match(/no dependency violations found/);
    expect(code).to.equal(0);
  });

  it("each planted violation is reported under its rule and fails the check", async () => {
    for (const { file, source } of Object.values(PLANTED)) {
      mkdirSync(dirname(join(copy, file)), { recursive: true });
      writeFileSync(join(copy, file), source);
    }
    writeFileSync(
      join(copy, "src/raft/runtime/planted-cycle-b.ts"),
      'import { a } from "./planted-cycle-a.js";\nexport const b = () => a;\n',
    );
    const { code, output } = await cruise(copy);
    expect(code, output).to.not.equal(0);
    for (const [rule, { file }] of Object.entries(PLANTED)) {
      const line = output.split("\n").find((l) => l.includes(rule) && l.includes(file));
      expect(line, `rule ${rule} should flag ${file}:\n${output}`).to.not.equal(undefined);
    }
  });
});
