// The reaper: a tiny process that outlives the script that started it just long enough
// to stop what that script spawned. nodectl daemons have no "exit with parent" switch
// (and must not: they run under supervisors), so a script killed with SIGKILL would leave
// them running. The script writes "+PID" when it spawns a process and "-PID" when that
// process exits, one per line, on our stdin; when stdin ends (the script closed it, or
// died and the kernel closed it) we SIGTERM every pid still registered, SIGKILL those
// still alive after the grace period, and exit.
//
//   node reaper.mjs GRACE_MS MARKER
//
// MARKER is a string every managed process's command line contains (the script's
// temporary directory): on Linux a pid whose command line lacks it is never signalled,
// so a pid reused by an unrelated process after ours exited is left alone.
// Plain JavaScript, no tsx: it starts in tens of milliseconds.
import { readFileSync } from "node:fs";

const graceMs = Number(process.argv[2]) > 0 ? Number(process.argv[2]) : 5_000;
const marker = process.argv[3] ?? "";
const pids = new Set();
let pending = "";
let reaping = false;

function owned(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(marker);
  } catch (err) {
    // No /proc (not Linux): trust the registration. ENOENT on Linux: it is gone.
    return err.code !== "ENOENT" && process.platform !== "linux";
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return owned(pid);
  } catch {
    return false;
  }
}

function signal(pid, sig) {
  try {
    process.kill(pid, sig);
  } catch {
    // exited meanwhile
  }
}

async function reap() {
  if (reaping) return;
  reaping = true;
  const targets = [...pids].filter(alive);
  for (const pid of targets) signal(pid, "SIGTERM");
  const until = Date.now() + graceMs;
  while (targets.some(alive) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
  for (const pid of targets.filter(alive)) signal(pid, "SIGKILL");
  process.exit(0);
}

process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  pending += chunk;
  for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
    const line = pending.slice(0, nl).trim();
    pending = pending.slice(nl + 1);
    const pid = Number(line.slice(1));
    if (!Number.isInteger(pid) || pid <= 0) continue;
    if (line.startsWith("+")) pids.add(pid);
    else if (line.startsWith("-")) pids.delete(pid);
  }
});
process.stdin.on("end", reap);
process.stdin.on("close", reap);
process.stdin.on("error", reap);
// The end of our stdin decides, not a terminal's signals (we run in our own session).
process.on("SIGINT", () => undefined);
process.on("SIGHUP", () => undefined);
process.on("SIGTERM", reap);
