/**
 * Virtual time is an integer number of microseconds (exact in a JS number for 285 years).
 * Durations in files are strings such as `250ms`, `15s`, `1.5h`, `500us`, `2d`, `1h30m`.
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

const PART = '(\\d+(?:\\.\\d+)?)\\s*(us|µs|ms|min|s|m|h|d)';
/** A duration: one or more number+unit parts, largest first or not (`90s`, `1h30m`, `2m13.5s`). */
export const DURATION_PATTERN = `^\\s*(?:${PART}\\s*)+$`;
const DURATION_RE = new RegExp(DURATION_PATTERN);
const PART_RE = new RegExp(PART, 'g');

/** The units accepted by {@link parseDurationUs}, for error messages. */
export const DURATION_UNITS = 'us, ms, s, m (or min), h, d';

/** Durations parsed so far (bounded: cleared when full). */
const parsed = new Map<string, number | undefined>();

/**
 * Parses a duration such as `250ms` into integer microseconds; returns `undefined` when the text
 * is not a duration (the caller owns the error message).
 *
 * @example parseDurationUs('1.5s') // 1500000
 */
export function parseDurationUs(text: string): number | undefined {
  // A scenario repeats its few durations for every actor (a million workers: a million `5ms`).
  if (parsed.has(text)) return parsed.get(text);
  let us: number | undefined;
  if (DURATION_RE.test(text)) {
    us = 0;
    for (const m of text.matchAll(PART_RE)) us += Number(m[1]) * UNIT_US[m[2]];
    us = Math.round(us);
    if (!Number.isSafeInteger(us)) us = undefined;
  }
  if (parsed.size >= 4096) parsed.clear();
  parsed.set(text, us);
  return us;
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
