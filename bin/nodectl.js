#!/usr/bin/env node
// nodectl's executable: loads the compiled CLI (dist/, built by `npm run build`, which
// `npm ci` runs through the `prepare` script) so a call never compiles TypeScript.
import { existsSync } from "node:fs";

const entry = new URL("../dist/cli/main.js", import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write(
    "nodectl: NOT_BUILT: dist/ is missing; run `npm run build` (npm ci runs it) and retry\n",
  );
  process.exit(1);
}
const { main } = await import(entry.href);
const status = await main(process.argv);
process.exitCode = status;
// A daemon that stopped has closed everything it opened and exits now on its own. If
// something was left open anyway, do not hang: exit after a grace period.
setTimeout(() => {
  process.stderr.write("nodectl: handles were still open after the stop; exiting\n");
  process.exit(status);
}, 5_000).unref();
