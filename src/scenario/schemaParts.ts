/**
 * Building blocks of the scenario schema: durations, probabilities, distributions, selectors.
 * The schema is plain validation (no transforms), so it converts to JSON Schema for editors.
 */
import { z } from 'zod';
import { DURATION_PATTERN, DURATION_UNITS, parseDurationUs } from '../engine/time.js';

const durationRe = new RegExp(DURATION_PATTERN);

/** A duration string such as `250ms`, `15s`, `1h`. */
export const duration = z
  .string({ error: `expected a duration like 250ms, 15s or 1h (units: ${DURATION_UNITS})` })
  .regex(durationRe, { error: `expected a duration like 250ms, 15s or 1h (units: ${DURATION_UNITS})` })
  .refine((text) => parseDurationUs(text) !== undefined, { error: 'expected a duration below 285 years' })
  .meta({ description: `A duration: numbers with units (${DURATION_UNITS}), e.g. 250ms, 15s, 1h30m.` });

/** A duration above zero (periods: a 0 s period would loop at one instant). */
export const positiveDuration = duration.refine((text) => (parseDurationUs(text) ?? 0) > 0, { error: 'expected a duration above 0' });

/** A signed duration (`-2s` allowed), for clock skew. */
export const signedDuration = z
  .string({ error: 'expected a duration like 2s or -500ms' })
  .regex(new RegExp(DURATION_PATTERN.replace('^', '^\\s*-?')), { error: 'expected a duration like 2s or -500ms' })
  .refine((text) => parseDurationUs(text.replace('-', '')) !== undefined, { error: 'expected a duration below 285 years' });

export const probability = z
  .number({ error: 'expected a probability between 0 and 1' })
  .min(0, { error: 'expected a probability between 0 and 1' })
  .max(1, { error: 'expected a probability between 0 and 1' });

export const positiveInt = z
  .number({ error: 'expected a positive integer' })
  .int({ error: 'expected a positive integer' })
  .min(1, { error: 'expected a positive integer' });

export const nonNegativeInt = z
  .number({ error: 'expected a whole number ≥ 0' })
  .int({ error: 'expected a whole number ≥ 0' })
  .min(0, { error: 'expected a whole number ≥ 0' });

/** A distribution of durations (latencies, run times). A bare duration means constant. */
export const durationDist = z.union(
  [
    duration,
    z.strictObject({ dist: z.literal('constant'), value: duration }),
    z.strictObject({ dist: z.literal('uniform'), min: duration, max: duration }),
    z.strictObject({ dist: z.literal('exponential'), mean: duration, min: duration.optional() }),
    z.strictObject({ dist: z.literal('lognormal'), median: duration, p99: duration }),
  ],
  {
    error:
      'expected a duration, or { dist: constant, value } | { dist: uniform, min, max } | { dist: exponential, mean, min? } | { dist: lognormal, median, p99 }',
  },
);
export type DurationDistInput = z.infer<typeof durationDist>;

/** Actor names, `*` globs over names (`worker-*`), or role names (`mw.worker`). */
export const selector = z
  .string({ error: 'expected an actor name, a glob like worker-*, or a role' })
  .min(1, { error: 'expected an actor name, a glob like worker-*, or a role' });
export const selectors = z.union([selector, z.array(selector).min(1, { error: 'expected at least one actor selector' })], {
  error: 'expected an actor selector or a list of them',
});
