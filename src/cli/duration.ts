// --cert-expiry DUR: "24h", "90m", "1h30m", "45s" (Go's time.ParseDuration units, whole numbers).
import { UsageError } from "./errors.js";

const UNIT_MS: Record<string, number> = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000 };
const DURATION = /^(?:[0-9]+[dhms])+$/;

export function parseDurationMs(flag: string, value: string, minimumMs: number): number {
  if (!DURATION.test(value))
    throw new UsageError(`${flag} "${value}" is not a duration like 24h, 90m, 1h30m or 45s`);
  let ms = 0;
  for (const [, amount, unit] of value.matchAll(/([0-9]+)([dhms])/g))
    ms += Number(amount) * (UNIT_MS[unit as string] as number);
  if (ms < minimumMs) throw new UsageError(`${flag} ${value} is below the minimum of ${minimumMs / 1000} s`);
  return ms;
}
