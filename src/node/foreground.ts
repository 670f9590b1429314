// The daemon in the foreground: it runs until SIGTERM or SIGINT (or a fatal error of
// its Raft member), then stops gracefully. Resolves with the exit status.
import type { Logger } from "../log/logger.js";
import type { Manager } from "./manager.js";

export function serveUntilSignal(manager: Manager, logger: Logger): Promise<number> {
  return new Promise((resolve) => {
    let finishing = false;
    const finish = (status: number, why: string, err?: unknown) => {
      if (finishing) return;
      finishing = true;
      process.off("SIGTERM", onSigterm);
      process.off("SIGINT", onSigint);
      manager.raft.off("fatal", onFatal);
      if (err) logger.error({ err }, why);
      else logger.info({ reason: why }, "stopping");
      manager.stop().then(
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
    const onFatal = (err: unknown) => finish(1, "raft member failed", err);
    process.on("SIGTERM", onSigterm);
    process.on("SIGINT", onSigint);
    manager.raft.on("fatal", onFatal);
  });
}
