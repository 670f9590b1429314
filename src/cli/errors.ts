// Exit statuses (DESIGN.md "CLI contract"): 0 success, 1 refused or failed (stderr
// says why and what to do), 2 usage error. Every failure carries a stable code,
// printed with its message.

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** A flag or argument the command cannot take; nothing was attempted. */
export class UsageError extends Error {
  readonly code = "USAGE";
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Codes of lower layers that are usage errors rather than refusals. */
const USAGE_CODES: ReadonlySet<string> = new Set(["USAGE", "ADDRESS_INVALID"]);

export function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : "FAILED";
}

export function exitStatusOf(error: unknown): number {
  return USAGE_CODES.has(codeOf(error)) ? EXIT_USAGE : EXIT_FAILED;
}

/** One line on stderr: `nodectl: CODE: message`. */
export function describeFailure(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return `nodectl: ${codeOf(error)}: ${message}\n`;
}
