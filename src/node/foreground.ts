// The daemon in the foreground: it runs until SIGTERM or SIGINT (or until it cannot go
// on: removed from the cluster, its Raft member failed), then stops gracefully.
// Resolves with the exit status.
import type { Logger } from "../log/logger.js";
import type { NodeDaemon } from "./daemon.js";

export function serveUntilSignal(daemon: NodeDaemon, logger: Logger): Promise<number> {
  return new Promise((resolve) => {
    let finishing = false;
    const finish = (status: number, why: string, err?: Error) => {
      if (finishing) return;
      finishing = true;
      process.off("SIGTERM", onSigterm);
      process.off("SIGINT", onSigint);
      if (err) {
        logger.error({ err }, why);
        const code = (err as { code?: unknown }).code;
        process.stderr.write(`nodectl: ${typeof code === "string" ? code : "FAILED"}: ${err.message}\n`);
      } else logger.info({ reason: why }, "stopping");
      daemon.stop().then(
        () => {
          logger.info("stopped");
          resolve(status);
        },
        (stopError: unknown) => {
          logger.error({ err: stopError }, "unclean stop");
          resolve(1);
        },
      );
    };
    const onSigterm = () => finish(0, "SIGTERM");
    const onSigint = () => finish(0, "SIGINT");
    process.on("SIGTERM", onSigterm);
    process.on("SIGINT", onSigint);
    daemon.onFatal((err) => finish(1, "the node cannot go on", err));
  });
}
