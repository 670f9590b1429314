// One pino logger for the whole process: JSON lines by default, pretty when
// stderr is a TTY (unless LOG_FORMAT=json). Layers take a child logger with
// their own bindings (node id, component) instead of creating their own.
import { type Logger, pino } from "pino";

export type { Logger };

export interface LoggerOptions {
  level?: string;
  pretty?: boolean;
}

export function createLogger(bindings: Record<string, unknown> = {}, options: LoggerOptions = {}): Logger {
  const level = options.level ?? process.env.LOG_LEVEL ?? "info";
  const pretty = options.pretty ?? (process.stderr.isTTY === true && process.env.LOG_FORMAT !== "json");
  const transport = pretty
    ? pino.transport({ target: "pino-pretty", options: { destination: 2, colorize: true } })
    : undefined;
  const base = transport ? pino({ level }, transport) : pino({ level }, pino.destination(2));
  return base.child(bindings);
}

/** A logger that drops everything: for tests and the deterministic simulator. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
