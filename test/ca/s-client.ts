// openssl s_client as an outside judge of our TLS servers' handshakes.
import { spawn } from "node:child_process";

// Under TLS 1.3 the server accepts the client certificate after the client's
// Finished, and only then sends its session tickets; so the ticket is the sign
// that the server accepted us, and an alert is the sign it did not.
const ACCEPTED = "Post-Handshake New Session Ticket arrived";

export interface Handshake {
  accepted: boolean;
  exitCode: number | null;
  output: string;
}

/** Runs openssl s_client with stdin held open until the server accepts or refuses (or the deadline passes). */
export function sClient(
  args: readonly string[],
  timeoutMs = 8_000,
  /** What counts as accepted; a resumed session gets no new ticket, so its test waits for "Reused". */
  acceptedMarker = ACCEPTED,
): Promise<Handshake> {
  return new Promise((resolve, reject) => {
    const child = spawn("openssl", ["s_client", ...args], { stdio: ["pipe", "pipe", "pipe"] });
    let output = "";
    let settled = false;
    const finish = (accepted: boolean, exitCode: number | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      resolve({ accepted, exitCode, output });
    };
    const deadline = setTimeout(() => {
      child.kill();
      reject(new Error(`s_client neither completed nor failed within ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    let accepted = false;
    const onData = (chunk: Buffer): void => {
      output += chunk.toString("latin1");
      if (!accepted && output.includes(acceptedMarker)) {
        accepted = true;
        // Closing stdin ends s_client cleanly, so what it writes at the end (-sess_out) is
        // on disk when this resolves; a kill stays the fallback.
        child.stdin.end();
        setTimeout(() => child.kill(), 2_000).unref();
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("error", reject);
    child.on("exit", (code) => finish(accepted, accepted ? null : code));
  });
}
