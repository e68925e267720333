/**
 * Virtual time is an integer number of microseconds (exact in a JS number for 285 years).
 * Durations in files are strings such as `250ms`, `15s`, `1.5h`, `500us`, `2d`.
 */

/** Microseconds per unit, for the unit suffixes accepted in duration strings. */
const UNIT_US: Record<string, number> = {
  us: 1,
  µs: 1,
  ms: 1_000,
  s: 1_000_000,
  m: 60_000_000,
  min: 60_000_000,
  h: 3_600_000_000,
  d: 86_400_000_000,
};

const DURATION_RE = /^\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s|min|m|h|d)\s*$/;

/** The units accepted by {@link parseDurationUs}, for error messages. */
export const DURATION_UNITS = 'us, ms, s, m (or min), h, d';

/**
 * Parses a duration such as `250ms` into integer microseconds; returns `undefined` when the text
 * is not a duration (the caller owns the error message).
 *
 * @example parseDurationUs('1.5s') // 1500000
 */
export function parseDurationUs(text: string): number | undefined {
  const m = DURATION_RE.exec(text);
  if (!m) return undefined;
  const us = Math.round(Number(m[1]) * UNIT_US[m[2]]);
  return Number.isSafeInteger(us) ? us : undefined;
}

/** Formats microseconds for people: `1h02m03.250s`, `15s`, `250ms`, `12us`. */
export function formatDurationUs(us: number): string {
  if (us < 1_000) return `${us}us`;
  if (us < 1_000_000) return `${trim(us / 1_000)}ms`;
  const totalS = us / 1_000_000;
  if (totalS < 60) return `${trim(totalS)}s`;
  const h = Math.floor(totalS / 3600);
  const m = Math.floor((totalS - h * 3600) / 60);
  const s = totalS - h * 3600 - m * 60;
  const sText = s === 0 ? '' : `${s < 10 ? '0' : ''}${trim(s)}s`;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m${sText}` : `${m}m${sText}`;
}

function trim(x: number): string {
  return String(Math.round(x * 1000) / 1000);
}
