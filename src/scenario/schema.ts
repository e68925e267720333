/**
 * The scenario file schema: defined once here, validated with zod, and written out as
 * `scenarios/scenario.schema.json` for editors (`npm run build`).
 */
import { z } from 'zod';
import { ORDERINGS } from '../engine/network.js';
import { FAMILIES } from './families/index.js';
import { duration, durationDist, nonNegativeInt, probability, selector, selectors, signedDuration } from './schemaParts.js';

const linkParams = {
  latency: durationDist.optional().meta({ description: 'Latency distribution (a bare duration is constant).' }),
  loss: probability.optional().meta({ description: 'Probability that a message is lost.' }),
  duplicate: probability
    .optional()
    .meta({ description: 'Probability that a message is delivered twice (needs ordering: unordered-duplicating).' }),
  ordering: z.enum(ORDERINGS, { error: `expected one of ${ORDERINGS.join(', ')}` }).optional(),
};

export const networkSchema = z
  .strictObject({
    ...linkParams,
    links: z
      .array(z.strictObject({ from: selectors, to: selectors, ...linkParams }))
      .default([])
      .meta({ description: 'Per-link overrides; later entries win.' }),
  })
  .default({ links: [] });

const group = z.union([z.literal('rest'), selectors], { error: 'expected a list of actor selectors, or rest' });

export const faultSchema = z
  .strictObject({
    at: duration.meta({ description: 'When the fault happens (virtual time).' }),
    crash: selectors.optional().meta({ description: 'Crash: volatile state lost, messages to it dropped.' }),
    restart: duration.optional().meta({ description: 'With crash: when the actor restarts from its durable state.' }),
    pause: selectors.optional().meta({ description: 'Pause: events wait until resume.' }),
    resume: duration.optional().meta({ description: 'With pause: when the actor resumes.' }),
    shutdown: selectors.optional().meta({ description: 'Graceful shutdown (the protocol says goodbye).' }),
    partition: z
      .union([z.array(group).min(2, { error: 'expected at least two groups' }), z.strictObject({ from: selectors, to: selectors })], {
        error: 'expected a list of groups ([[a, b], rest]) or a one-way { from, to }',
      })
      .optional()
      .meta({ description: 'Two-way between groups, or one-way { from, to }.' }),
    heal: duration.optional().meta({ description: 'With partition: when it heals.' }),
    hold: z.strictObject({ from: selectors, to: selectors }).optional().meta({ description: 'Hold messages on these links.' }),
    release: duration.optional().meta({ description: 'With hold: when held messages are delivered.' }),
    skew: selectors.optional().meta({ description: "Shift these actors' clocks." }),
    by: signedDuration.optional().meta({ description: 'With skew: by how much.' }),
    inject: z
      .strictObject({ from: z.string().min(1), to: selector, msg: z.looseObject({ type: z.string() }) })
      .optional()
      .meta({ description: 'Put a message on the network as if `from` sent it.' }),
  })
  .superRefine((f, ctx) => {
    const actions = (['crash', 'pause', 'shutdown', 'partition', 'hold', 'skew', 'inject'] as const).filter((k) => f[k] !== undefined);
    if (actions.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message:
          actions.length === 0
            ? 'expected exactly one of crash, pause, shutdown, partition, hold, skew, inject'
            : `expected exactly one fault, got ${actions.join(' and ')}`,
      });
      return;
    }
    const pairs: [string, string][] = [
      ['restart', 'crash'],
      ['resume', 'pause'],
      ['heal', 'partition'],
      ['release', 'hold'],
      ['by', 'skew'],
    ];
    for (const [k, owner] of pairs) {
      if ((f as Record<string, unknown>)[k] !== undefined && (f as Record<string, unknown>)[owner] === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: [k],
          message: `${k} goes with ${owner}${k === 'restart' && f.pause !== undefined ? ' (a pause ends with resume)' : ''}`,
        });
      }
    }
    if (f.skew !== undefined && f.by === undefined) ctx.addIssue({ code: 'custom', path: ['by'], message: 'skew needs by (a duration)' });
  });

const allRoles = FAMILIES.flatMap((f) => f.roles);
const roleNames = allRoles.map((r) => (r.shape.role as z.ZodLiteral<string>).value);

export const actorSchema = z.discriminatedUnion('role', allRoles as unknown as [z.ZodObject, ...z.ZodObject[]], {
  error: `expected role to be one of ${roleNames.join(', ')}`,
});

export const scenarioSchema = z.strictObject({
  $schema: z.string().optional(),
  name: z
    .string({ error: 'expected a name (text)' })
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, { error: "expected a name of letters, digits, '.', '_' and '-' (it names the run folder)" })
    .meta({ description: 'Names the run and its folder.' }),
  description: z.string().optional(),
  protocol: z.enum(FAMILIES.map((f) => f.protocol) as [string, ...string[]], {
    error: `expected one of ${FAMILIES.map((f) => f.protocol).join(', ')}`,
  }),
  mode: z.string().optional().meta({ description: 'The protocol mode (manager-worker: strict | balthazar; virdi: strict | virdi).' }),
  seed: nonNegativeInt.default(1).meta({ description: 'The seed: one scenario + one seed = one trace.' }),
  duration: duration.meta({ description: 'Virtual time the run may last.' }),
  stopWhen: z.enum(['duration', 'complete'], { error: 'expected duration or complete' }).default('duration').meta({
    description: "complete: stop as soon as the protocol's work is done (manager-worker: every task finished).",
  }),
  network: networkSchema,
  actors: z.array(actorSchema, { error: 'expected a list of actors' }).min(1, { error: 'expected at least one actor' }),
  faults: z.array(faultSchema).default([]),
  invariants: z.union([z.literal('all'), z.array(z.string())], { error: 'expected all, or a list of invariant ids' }).default('all'),
  expect: z
    .strictObject({
      violated: z.array(z.string()).default([]).meta({ description: 'Invariants this run must catch as violated.' }),
      held: z.array(z.string()).default([]).meta({ description: 'Invariants that must be exercised and hold.' }),
    })
    .default({ violated: [], held: [] })
    .meta({ description: 'Every other checked invariant must not be violated.' }),
});

export type Scenario = z.infer<typeof scenarioSchema>;
export type FaultEntry = z.infer<typeof faultSchema>;

/** The JSON Schema editors use (`# yaml-language-server: $schema=./scenario.schema.json`). */
export function scenarioJsonSchema(): unknown {
  return z.toJSONSchema(scenarioSchema, { io: 'input', unrepresentable: 'any' });
}
