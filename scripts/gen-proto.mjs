#!/usr/bin/env node
// Generates TypeScript from proto/ with ts-proto through the buf npm package
// (no system protoc). `--check` regenerates into a temp dir and fails if the
// committed src/gen differs, so a stale commit is caught by the test suite.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const buf = join(root, "node_modules/.bin/buf");
const check = process.argv.includes("--check");

function listFiles(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...listFiles(path));
    else out.push(path);
  }
  return out.sort();
}

if (!check) {
  rmSync(join(root, "src/gen"), { recursive: true, force: true });
  execFileSync(buf, ["generate"], { cwd: root, stdio: "inherit" });
  process.exit(0);
}

const out = mkdtempSync(join(tmpdir(), "gen-proto-"));
try {
  execFileSync(buf, ["generate", "--output", out], { cwd: root, stdio: "inherit" });
  const fresh = listFiles(join(out, "src/gen")).map((p) => relative(join(out, "src/gen"), p));
  const committed = listFiles(join(root, "src/gen")).map((p) => relative(join(root, "src/gen"), p));
  const stale = [];
  for (const f of new Set([...fresh, ...committed])) {
    const a = fresh.includes(f) ? readFileSync(join(out, "src/gen", f), "utf8") : null;
    const b = committed.includes(f) ? readFileSync(join(root, "src/gen", f), "utf8") : null;
    if (a !== b) stale.push(f);
  }
  if (stale.length > 0) {
    console.error(`src/gen is stale (${stale.join(", ")}): run \`npm run gen\` and commit the result.`);
    process.exit(1);
  }
  console.log("src/gen is up to date with proto/");
} finally {
  rmSync(out, { recursive: true, force: true });
}
