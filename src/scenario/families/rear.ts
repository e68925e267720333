/**
 * The REAR family in scenario files (`shared/protocols/rear.md`): providers with catalogues generated
 * from a few parameters, consumers (solvers) that arrive over a period and want flavors matching a
 * few filters (whole, or a partition), the invariant checker, completion (every solver ended) and
 * the summary metrics that answer "does my marketplace oversell, starve or leak held capacity?".
 */
import { z } from 'zod';
import type { ActorDefinition } from '../../engine/createSimulation.js';
import { RandomStream } from '../../engine/rng.js';
import { consumerMachine } from '../../actors/rear/consumer.machine.js';
import type { ConsumerInput, ConsumerObservation } from '../../actors/rear/consumer.machine.js';
import { authorityMachine } from '../../actors/rear/authority.machine.js';
import type { AuthorityInput } from '../../actors/rear/authority.machine.js';
import { providerMachine } from '../../actors/rear/provider.machine.js';
import type { ProviderInput, ProviderObservation } from '../../actors/rear/provider.machine.js';
import { createRearChecker, REAR_INVARIANTS } from '../../invariants/rear.js';
import type { RearFlavorInfo } from '../../invariants/rear.js';
import type { Filter, Flavor, Partition, Partitionability, RearMode, Selector } from '../../protocol/rear.js';
import { parseQuantity, parseRearRequest, REAR_MODES } from '../../protocol/rear.js';
import { duration, nonNegativeInt, positiveDuration, positiveInt, probability, selectors } from '../schemaParts.js';
import type { ProtocolFamily } from './types.js';

/** A Kubernetes quantity in a scenario file (`500m`, `4Gi`); `unit` as in parseQuantity. */
const quantity = (unit: 'one' | 'milli', description: string) =>
  // A bare number (`cpu: 2`) is a quantity without suffix.
  z
    .union([z.string(), z.number()], { error: 'expected a Kubernetes quantity such as 500m, 4 or 16Gi' })
    .superRefine((text, ctx) => {
      const r = parseQuantity(String(text), unit);
      if (!r.ok) ctx.addIssue({ code: 'custom', message: r.error });
    })
    .meta({ description });

const cpu = quantity('milli', 'CPU as a Kubernetes quantity: 500m, 2, 1.5.');
const memory = quantity('one', 'Memory as a Kubernetes quantity: 512Mi, 16Gi.');
const q = (text: string | number, unit: 'one' | 'milli'): number => (parseQuantity(String(text), unit) as { value: number }).value;

/** A range of a quantity: `{min, max}`, either optional; min ≤ max is checked. */
const range = (of: typeof cpu, unit: 'one' | 'milli') =>
  z.strictObject({ min: of.optional(), max: of.optional() }).superRefine((r, ctx) => {
    if (r.min === undefined || r.max === undefined) return;
    const [lo, hi] = [parseQuantity(String(r.min), unit), parseQuantity(String(r.max), unit)];
    if (lo.ok && hi.ok && lo.value > hi.value) ctx.addIssue({ code: 'custom', message: `min ${r.min} > max ${r.max}` });
  });

export const rearProviderRole = z.strictObject({
  role: z.literal('rear.provider'),
  count: positiveInt.default(1).meta({ description: 'How many providers of this kind.' }),
  name: z.string().min(1).optional().meta({ description: 'Name (count 1) or name prefix.' }),
  flavors: z
    .strictObject({
      count: positiveInt.default(1).meta({ description: 'Flavors in the catalogue (ids <name>-f0, -f1, …; prices price, price + 1, …).' }),
      cpu: cpu.default('4'),
      memory: memory.default('16Gi'),
      pods: nonNegativeInt.default(110),
      architecture: z.string().default('amd64'),
      price: z.number().min(0).default(10),
      partitionable: z
        .strictObject({
          cpuMin: cpu,
          memoryMin: memory,
          podsMin: nonNegativeInt.default(1),
          cpuStep: cpu,
          memoryStep: memory,
          podsStep: nonNegativeInt.default(1),
        })
        .optional()
        .meta({ description: 'The flavors can be cut into partitions of min + k·step per dimension.' }),
    })
    .superRefine((f, ctx) => {
      const p = f.partitionable;
      if (!p) return;
      const dims: [string, number, number, number][] = [
        ['cpu', q(f.cpu, 'milli'), q(p.cpuMin, 'milli'), q(p.cpuStep, 'milli')],
        ['memory', q(f.memory, 'one'), q(p.memoryMin, 'one'), q(p.memoryStep, 'one')],
        ['pods', f.pods, p.podsMin, p.podsStep],
      ];
      for (const [name, total, min, step] of dims) {
        if (Number.isNaN(total + min + step)) return;
        if (min > total)
          ctx.addIssue({ code: 'custom', path: ['partitionable', `${name}Min`], message: `${name}Min is above the flavor's ${name}` });
        if (step === 0) ctx.addIssue({ code: 'custom', path: ['partitionable', `${name}Step`], message: `${name}Step must be above 0` });
      }
    })
    .default({ count: 1, cpu: '4', memory: '16Gi', pods: 110, architecture: 'amd64', price: 10 }),
  ttp: positiveDuration.default('1h').meta({ description: 'Time To Purchase of a reservation.' }),
  sweep: positiveDuration.default('20s').meta({ description: 'Period of the expired-reservation sweep.' }),
  contractDays: positiveInt.default(365),
});

export const rearConsumerRole = z.strictObject({
  role: z.literal('rear.consumer'),
  count: positiveInt.default(1).meta({ description: 'How many consumers of this kind.' }),
  name: z.string().min(1).optional().meta({ description: 'Name (count 1) or name prefix.' }),
  providers: selectors.optional().meta({ description: 'Providers it knows (default: every provider).' }),
  want: z
    .strictObject({
      cpu: range(cpu, 'milli').optional(),
      memory: range(memory, 'one').optional(),
      architecture: z.string().optional(),
    })
    .default({})
    .meta({ description: 'Filters on the flavors it will take.' }),
  partition: z
    .strictObject({ cpu, memory, pods: nonNegativeInt.default(1) })
    .optional()
    .meta({ description: 'Buy a partition of a partitionable flavor instead of a whole one.' }),
  arriveOver: duration.default('0s').meta({ description: 'The consumers start one after another, evenly over this period.' }),
  givesUp: probability.default(0).meta({ description: 'Share of consumers that walk away after reserving (their reservation expires).' }),
  phaseTimeout: positiveDuration.default('2m').meta({ description: 'A solver phase running longer ends Timed Out.' }),
  forgeToken: z.boolean().default(false).meta({ description: 'Send a token the authority never issued (it is refused with 401).' }),
});

export const rearAuthorityRole = z.strictObject({
  role: z.literal('rear.authority'),
  count: z.literal(1, { error: 'expected one token authority' }).default(1),
  name: z.string().min(1).optional().meta({ description: 'Its name.' }),
  tokenLifetime: positiveDuration.default('1h').meta({ description: 'How long an issued token is valid.' }),
});

type ProviderRole = z.infer<typeof rearProviderRole>;
type ConsumerRole = z.infer<typeof rearConsumerRole>;

const rangeFilter = (r: { min?: string | number; max?: string | number } | undefined, unit: 'one' | 'milli'): Filter | undefined =>
  r && (r.min !== undefined || r.max !== undefined)
    ? { range: { ...(r.min !== undefined ? { min: q(r.min, unit) } : {}), ...(r.max !== undefined ? { max: q(r.max, unit) } : {}) } }
    : undefined;

/** A percentile of sorted numbers (nearest rank), or undefined for none. */
const percentile = (sorted: number[], p: number): number | undefined =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] : undefined;

export const rearFamily: ProtocolFamily = {
  protocol: 'rear',
  title: 'REAR marketplace (FLUIDOS)',
  modes: REAR_MODES,
  defaultMode: 'strict',
  roles: [rearProviderRole, rearConsumerRole, rearAuthorityRole],
  invariants: REAR_INVARIANTS,
  parseMessage: (input) => {
    const r = parseRearRequest(input);
    return r.ok ? { ok: true } : r;
  },

  build(ctx) {
    const mode = ctx.mode as RearMode;
    const providerNames = ctx.actors.filter((a) => a.role === 'rear.provider').map((a) => a.name);
    const consumerNames = ctx.actors.filter((a) => a.role === 'rear.consumer').map((a) => a.name);
    // With an authority, every reserve and purchase carries a token it issued (and checks).
    const authorities = ctx.actors.filter((a) => a.role === 'rear.authority');
    if (authorities.length > 1) ctx.fail(authorities[1].path, 'expected at most one rear.authority');
    const authority = authorities[0]?.name;
    const actors: ActorDefinition[] = [];
    const flavorInfos: RearFlavorInfo[] = [];
    const ms = (d: string): number => ctx.durationUs(d) / 1000;
    const arrival = new Map<unknown, number>();
    for (const a of ctx.actors) {
      const identity = {
        domain: 'fluidos.sim',
        nodeId: a.name,
        ip: `10.${(actors.length >> 16) & 255}.${(actors.length >> 8) & 255}.${actors.length & 255}`,
      };
      if (a.role === 'rear.authority') {
        const r = a.params as z.infer<typeof rearAuthorityRole>;
        const input: AuthorityInput = { name: a.name, lifetimeMs: ms(r.tokenLifetime) };
        actors.push({ name: a.name, role: a.role, machine: authorityMachine, input });
      } else if (a.role === 'rear.provider') {
        const r = a.params as ProviderRole;
        const f = r.flavors;
        const policy: Partitionability | undefined = f.partitionable && {
          cpuMinMilli: q(f.partitionable.cpuMin, 'milli'),
          memoryMinBytes: q(f.partitionable.memoryMin, 'one'),
          podsMin: f.partitionable.podsMin,
          cpuStepMilli: q(f.partitionable.cpuStep, 'milli'),
          memoryStepBytes: q(f.partitionable.memoryStep, 'one'),
          podsStep: f.partitionable.podsStep,
        };
        const flavors: Flavor[] = Array.from({ length: f.count }, (_, i) => ({
          flavorId: `${a.name}-f${i}`,
          providerId: a.name,
          timestamp: 0,
          type: {
            name: 'k8slice',
            characteristics: { architecture: f.architecture, cpuMilli: q(f.cpu, 'milli'), memoryBytes: q(f.memory, 'one'), pods: f.pods },
            ...(policy ? { partitionability: policy } : {}),
          },
          price: { amount: f.price + i, currency: 'EUR', period: 'hourly' },
          owner: identity,
          availability: true,
        }));
        for (const flavor of flavors) {
          const c = flavor.type.name === 'k8slice' ? flavor.type.characteristics : undefined;
          flavorInfos.push({
            provider: a.name,
            flavorId: flavor.flavorId,
            ...(policy && c ? { capacity: { cpuMilli: c.cpuMilli, memoryBytes: c.memoryBytes, pods: c.pods }, policy } : {}),
          });
        }
        const input: ProviderInput = {
          name: a.name,
          mode,
          identity,
          flavors,
          ttpMs: ms(r.ttp),
          sweepMs: ms(r.sweep),
          contractDays: r.contractDays,
          ...(authority ? { authority } : {}),
        };
        actors.push({ name: a.name, role: a.role, machine: providerMachine, input });
      } else {
        const r = a.params as ConsumerRole;
        // The k-th consumer of its entry starts at k · arriveOver / count.
        const k = arrival.get(r) ?? 0;
        arrival.set(r, k + 1);
        const filters: Selector['filters'] = {};
        const cpuFilter = rangeFilter(r.want.cpu, 'milli');
        const memoryFilter = rangeFilter(r.want.memory, 'one');
        if (cpuFilter) filters.cpu = cpuFilter;
        if (memoryFilter) filters.memory = memoryFilter;
        if (r.want.architecture !== undefined) filters.architecture = { match: r.want.architecture };
        const partition: Partition | undefined = r.partition && {
          cpuMilli: q(r.partition.cpu, 'milli'),
          memoryBytes: q(r.partition.memory, 'one'),
          pods: r.partition.pods,
        };
        const input: ConsumerInput = {
          name: a.name,
          mode,
          identity,
          providers: r.providers === undefined ? providerNames : ctx.select(r.providers, [...a.path, 'providers']),
          selector: { type: 'k8slice', filters },
          ...(partition ? { partition } : {}),
          startAfterMs: (k * ms(r.arriveOver)) / r.count,
          phaseTimeoutMs: ms(r.phaseTimeout),
          givesUpAfterReserve: r.givesUp > 0 && new RandomStream(ctx.seed, `rear.givesUp:${a.name}`).chance(r.givesUp),
          token: r.forgeToken ? `forged-${a.name}` : `token-${a.name}`,
          ...(authority ? { authority } : {}),
          forgeToken: r.forgeToken,
        };
        actors.push({ name: a.name, role: a.role, machine: consumerMachine, input });
      }
    }

    const checker = createRearChecker({ flavors: flavorInfos, enabled: ctx.enabledInvariants, recentTrace: ctx.recentTrace });

    const outcomes: Record<string, number> = {};
    const refusedReserves: Record<string, number> = {};
    const refusedPurchases: Record<string, number> = {};
    const contractsByProvider: Record<string, number> = {};
    const started = new Map<string, number>();
    const toContractUs: number[] = [];
    let contracts = 0;
    let expirations = 0;
    let heldNow = 0;
    let heldPeak = 0;
    const ended = new Set<string>();
    const metricsObserver = {
      onObserve(t: number, actor: string, obs: { kind: string }) {
        const o = obs as ProviderObservation | ConsumerObservation;
        switch (o.kind) {
          case 'rear.solver.phase':
            if (o.phase === 'discovery') started.set(actor, t);
            break;
          case 'rear.solver.end':
            ended.add(actor);
            outcomes[o.outcome] = (outcomes[o.outcome] ?? 0) + 1;
            if (o.outcome === 'solved') toContractUs.push(t - (started.get(actor) ?? t));
            break;
          case 'rear.reserved':
            if (!started.has(`tx:${o.transactionId}`)) {
              started.set(`tx:${o.transactionId}`, t);
              heldPeak = Math.max(heldPeak, ++heldNow);
            }
            break;
          case 'rear.sold':
            contracts++;
            heldNow--;
            contractsByProvider[actor] = (contractsByProvider[actor] ?? 0) + 1;
            break;
          case 'rear.expired':
            expirations++;
            heldNow--;
            break;
          case 'rear.refused': {
            const into = o.call === 'reserve' ? refusedReserves : refusedPurchases;
            into[o.status] = (into[o.status] ?? 0) + 1;
            break;
          }
          default:
        }
      },
    };

    return {
      actors,
      observers: [checker, metricsObserver],
      checker,
      isComplete: () => consumerNames.length > 0 && ended.size === consumerNames.length,
      metrics: () => {
        const sorted = [...toContractUs].sort((x, y) => x - y);
        const ms3 = (us: number | undefined) => (us === undefined ? undefined : Math.round(us / 1000));
        return {
          contracts,
          solvers: { ...outcomes },
          refusedReservesByStatus: { ...refusedReserves },
          refusedPurchasesByStatus: { ...refusedPurchases },
          expirations,
          heldTransactionsPeak: heldPeak,
          heldTransactionsAtEnd: heldNow,
          ...(sorted.length > 0
            ? { timeToContractMsP50: ms3(percentile(sorted, 0.5)), timeToContractMsP95: ms3(percentile(sorted, 0.95)) }
            : {}),
          contractsByProvider: { ...contractsByProvider },
        };
      },
    };
  },
};
