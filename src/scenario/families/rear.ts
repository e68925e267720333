/**
 * The REAR family in scenario files (`shared/protocols/rear.md`): providers with catalogues generated
 * from a few parameters, consumers (solvers) that arrive over a period and want flavors matching a
 * few filters (whole, or a partition), the invariant checker, completion (every solver ended) and
 * the summary metrics that answer "does my marketplace oversell, starve or leak held capacity?".
 */
import { z } from 'zod';
import type { ActorDefinition, FaultAction } from '../../engine/createSimulation.js';
import { RandomStream } from '../../engine/rng.js';
import { consumerMachine } from '../../actors/rear/consumer.machine.js';
import type { ConsumerInput, ConsumerObservation } from '../../actors/rear/consumer.machine.js';
import { authorityMachine } from '../../actors/rear/authority.machine.js';
import type { AuthorityInput } from '../../actors/rear/authority.machine.js';
import { durableOf, providerMachine } from '../../actors/rear/provider.machine.js';
import type { ProviderDurable, ProviderInput, ProviderObservation } from '../../actors/rear/provider.machine.js';
import { createRearChecker, REAR_INVARIANTS } from '../../invariants/rear.js';
import type { RearFlavorInfo } from '../../invariants/rear.js';
import type { Filter, Flavor, FlavorData, NodeIdentity, Partition, Partitionability, RearMode, Selector } from '../../protocol/rear.js';
import { FLAVOR_TYPES, formatQuantity, onGrid, parseQuantity, parseRearRequest, REAR_MODES } from '../../protocol/rear.js';
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

/** One value, or a list to pick from. */
const oneOrMore = <T extends z.ZodType>(of: T) => z.union([of, z.array(of).min(1, { error: 'expected at least one value' })]);
const listOf = <T>(v: T | T[]): T[] => (Array.isArray(v) ? v : [v]);

/**
 * A range of a quantity: `{min, max}`, either optional, each one value or a list to pick from per
 * consumer (a demand distribution); every min must be ≤ every max.
 */
const range = (of: typeof cpu, unit: 'one' | 'milli') =>
  z.strictObject({ min: oneOrMore(of).optional(), max: oneOrMore(of).optional() }).superRefine((r, ctx) => {
    if (r.min === undefined || r.max === undefined) return;
    const values = (v: string | number | (string | number)[]) => listOf(v).map((x) => parseQuantity(String(x), unit));
    const [lows, highs] = [values(r.min), values(r.max)];
    if (![...lows, ...highs].every((x) => x.ok)) return;
    const lo = Math.max(...lows.map((x) => (x as { value: number }).value));
    const hi = Math.min(...highs.map((x) => (x as { value: number }).value));
    const text = (v: string | number | (string | number)[]): string => (Array.isArray(v) ? `[${v.join(', ')}]` : String(v));
    if (lo > hi) ctx.addIssue({ code: 'custom', message: `min ${text(r.min)} > max ${text(r.max)}` });
  });

export const rearProviderRole = z.strictObject({
  role: z.literal('rear.provider'),
  count: positiveInt.default(1).meta({ description: 'How many providers of this kind.' }),
  name: z.string().min(1).optional().meta({ description: 'Name (count 1) or name prefix.' }),
  flavors: z
    .strictObject({
      count: positiveInt.default(1).meta({ description: 'Flavors in the catalogue (ids <name>-f0, -f1, …; prices price, price + 1, …).' }),
      type: z
        .enum(FLAVOR_TYPES, { error: `expected a flavor type: ${FLAVOR_TYPES.join(', ')}` })
        .default('k8slice')
        .meta({ description: 'k8slice (cpu, memory, pods; may be partitionable), vm (whole cores, memory, storage), service or sensor.' }),
      storage: memory.default('100Gi').meta({ description: 'Storage of a vm flavor.' }),
      aggregatable: z
        .strictObject({ minCount: positiveInt, maxCount: positiveInt })
        .optional()
        .meta({ description: 'A vm flavor bought in counts from minCount to maxCount.' }),
      category: z.string().min(1).default('database').meta({ description: 'What a service flavor offers.' }),
      sensorType: z.string().min(1).default('temperature').meta({ description: 'What a sensor flavor measures.' }),
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
      if (f.type === 'vm' && parseQuantity(String(f.cpu), 'milli').ok && q(f.cpu, 'milli') % 1000 !== 0)
        ctx.addIssue({ code: 'custom', path: ['cpu'], message: `a vm has whole cores, got ${f.cpu}` });
      if (f.aggregatable && f.aggregatable.minCount > f.aggregatable.maxCount)
        ctx.addIssue({
          code: 'custom',
          path: ['aggregatable'],
          message: `minCount ${f.aggregatable.minCount} > maxCount ${f.aggregatable.maxCount}`,
        });
      const p = f.partitionable;
      if (!p) return;
      if (f.type !== 'k8slice') {
        ctx.addIssue({ code: 'custom', path: ['partitionable'], message: `only k8slice flavors are partitionable, not ${f.type}` });
        return;
      }
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
    .default({
      count: 1,
      type: 'k8slice',
      cpu: '4',
      memory: '16Gi',
      pods: 110,
      architecture: 'amd64',
      price: 10,
      storage: '100Gi',
      category: 'database',
      sensorType: 'temperature',
    }),
  ttp: positiveDuration.default('1h').meta({ description: 'Time To Purchase of a reservation.' }),
  sweep: positiveDuration.default('20s').meta({ description: 'Period of the expired-reservation sweep.' }),
  refresh: positiveDuration
    .default('5m')
    .meta({ description: 'Strict: how often subscribers of an available flavor get a Refresh (its new expiry is one period on).' }),
  allocation: duration
    .default('2s')
    .meta({ description: 'Fluidos: how long after a sale the listing still shows the flavor (the asynchronous allocation).' }),
  contractDays: positiveInt.default(365),
});

export const rearConsumerRole = z.strictObject({
  role: z.literal('rear.consumer'),
  count: positiveInt.default(1).meta({ description: 'How many consumers of this kind.' }),
  name: z.string().min(1).optional().meta({ description: 'Name (count 1) or name prefix.' }),
  providers: selectors.optional().meta({ description: 'Providers it knows (default: every provider).' }),
  want: z
    .strictObject({
      type: z
        .enum(FLAVOR_TYPES, { error: `expected a flavor type: ${FLAVOR_TYPES.join(', ')}` })
        .default('k8slice')
        .meta({ description: 'The flavor type it lists and buys.' }),
      cpu: range(cpu, 'milli').optional(),
      memory: range(memory, 'one').optional(),
      architecture: z.string().optional(),
    })
    .superRefine((w, ctx) => {
      if ((w.type === 'service' || w.type === 'sensor') && (w.cpu || w.memory || w.architecture !== undefined))
        ctx.addIssue({ code: 'custom', message: `cpu, memory and architecture filter k8slice and vm flavors, not ${w.type}` });
    })
    .default({ type: 'k8slice' })
    .meta({ description: 'Filters on the flavors it will take.' }),
  partition: z
    .strictObject({
      cpu: oneOrMore(cpu),
      memory: oneOrMore(memory),
      pods: oneOrMore(nonNegativeInt).default(1),
      share: probability.default(1).meta({ description: 'Share of the consumers that buy a partition; the others buy whole flavors.' }),
    })
    .optional()
    .meta({
      description:
        'Buy a partition of a partitionable flavor instead of a whole one. A list in a dimension: each consumer picks one of its values at random.',
    }),
  startAt: duration.default('0s').meta({ description: 'When the first of them starts.' }),
  arriveOver: duration.default('0s').meta({ description: 'The consumers start over this period (see arrivals), from startAt.' }),
  arrivals: z
    .enum(['even', 'poisson'], { error: 'expected even or poisson' })
    .default('even')
    .meta({ description: 'even: one after another at equal gaps; poisson: random gaps, count / arriveOver per unit of time on average.' }),
  givesUp: probability.default(0).meta({ description: 'Share of consumers that walk away after reserving (their reservation expires).' }),
  stall: duration
    .default('0s')
    .meta({ description: 'How long it waits between a successful reserve and the purchase (past the TTP: 408).' }),
  patience: duration
    .optional()
    .meta({ description: 'Gives up (walking away from any reservation) when still without a contract this long after starting.' }),
  subscribe: z.boolean().default(false).meta({ description: 'Subscribe to each flavor it tries, and keep listening after its contract.' }),
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

/** A range filter in the flavor's units (`per`: how many of the quantity's units make one, e.g. 1000 millicores a vm core). */
const rangeFilter = (
  r: { min?: string | number; max?: string | number } | undefined,
  unit: 'one' | 'milli',
  per = 1,
): Filter | undefined =>
  r && (r.min !== undefined || r.max !== undefined)
    ? {
        range: {
          ...(r.min !== undefined ? { min: q(r.min, unit) / per } : {}),
          ...(r.max !== undefined ? { max: q(r.max, unit) / per } : {}),
        },
      }
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
    const identities = new Map<string, NodeIdentity>(
      ctx.actors.map((a, i) => [
        a.name,
        { domain: 'fluidos.sim', nodeId: a.name, ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` },
      ]),
    );
    // Partition policies by provider, for the consumers' partitions (checked against the grid here).
    const policies = new Map<string, Partitionability>();
    for (const a of ctx.actors)
      if (a.role === 'rear.provider') {
        const policy = policyOf(a.params as ProviderRole);
        if (policy) policies.set(a.name, policy);
      }
    // One selector object per distinct selector: the checker's listing cache keys on it.
    const selectors = new Map<string, Selector>();
    const selectorFor = (r: ConsumerRole, name: string): Selector => {
      const selector = selectorOf(r.want, pickerOf(new RandomStream(ctx.seed, `rear.want:${name}`)));
      const key = JSON.stringify(selector);
      if (!selectors.has(key)) selectors.set(key, selector);
      return selectors.get(key)!;
    };
    const arrivals = new Map<unknown, { k: number; atMs: number; rng: RandomStream }>();
    for (const a of ctx.actors) {
      const identity = identities.get(a.name)!;
      if (a.role === 'rear.authority') {
        const r = a.params as z.infer<typeof rearAuthorityRole>;
        const input: AuthorityInput = { name: a.name, lifetimeMs: ms(r.tokenLifetime) };
        actors.push({ name: a.name, role: a.role, machine: authorityMachine, input });
      } else if (a.role === 'rear.provider') {
        const r = a.params as ProviderRole;
        const policy = policies.get(a.name);
        const flavors: Flavor[] = Array.from({ length: r.flavors.count }, (_, i) => ({
          flavorId: `${a.name}-f${i}`,
          providerId: a.name,
          timestamp: 0,
          type: flavorData(r.flavors, policy),
          price: { amount: r.flavors.price + i, currency: 'EUR', period: 'hourly' },
          owner: identity,
          availability: true,
        }));
        for (const flavor of flavors) {
          const c = flavor.type.name === 'k8slice' ? flavor.type.characteristics : undefined;
          flavorInfos.push({
            provider: a.name,
            flavorId: flavor.flavorId,
            cpuMilli: c ? c.cpuMilli : flavor.type.name === 'vm' ? flavor.type.cpu * 1000 : 0,
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
          refreshMs: ms(r.refresh),
          allocationMs: ms(r.allocation),
          ...(authority ? { authority } : {}),
        };
        // A restart brings back what the provider made durable: its sales and withdrawals.
        const restartInput = (k: number, restore: unknown): ProviderInput => ({
          ...input,
          incarnation: k,
          ...(restore ? { restore: restore as ProviderDurable } : {}),
        });
        actors.push({ name: a.name, role: a.role, machine: providerMachine, input, durable: durableOf, restartInput });
      } else {
        const r = a.params as ConsumerRole;
        const known = r.providers === undefined ? providerNames : ctx.select(r.providers, [...a.path, 'providers']);
        // Arrivals: the k-th consumer of its entry starts at k · arriveOver / count (even), or after
        // exponential gaps of mean arriveOver / count (poisson), from the entry's own random stream.
        const arr = arrivals.get(r) ?? { k: 0, atMs: 0, rng: new RandomStream(ctx.seed, `rear.arrivals:${a.path.join('.')}`) };
        arrivals.set(r, arr);
        const startAfterMs =
          ms(r.startAt) +
          (r.arrivals === 'even'
            ? (arr.k * ms(r.arriveOver)) / r.count
            : (arr.atMs += (-Math.log(1 - arr.rng.next()) * ms(r.arriveOver)) / r.count));
        arr.k++;
        const partition = r.partition && partitionOf(r.partition, new RandomStream(ctx.seed, `rear.partition:${a.name}`));
        if (r.partition && arr.k === 1) checkGrid(r.partition, known, policies, [...a.path, 'partition'], ctx.fail);
        const input: ConsumerInput = {
          name: a.name,
          mode,
          identity,
          providers: known,
          selector: selectorFor(r, a.name),
          ...(partition ? { partition } : {}),
          startAfterMs,
          phaseTimeoutMs: ms(r.phaseTimeout),
          givesUpAfterReserve: r.givesUp > 0 && new RandomStream(ctx.seed, `rear.givesUp:${a.name}`).chance(r.givesUp),
          stallMs: ms(r.stall),
          patienceMs: r.patience === undefined ? 0 : ms(r.patience),
          subscribe: r.subscribe,
          token: r.forgeToken ? `forged-${a.name}` : `token-${a.name}`,
          ...(authority ? { authority } : {}),
          forgeToken: r.forgeToken,
        };
        actors.push({ name: a.name, role: a.role, machine: consumerMachine, input });
      }
    }

    const checker = createRearChecker({
      flavors: flavorInfos,
      sweepUs: new Map(actors.filter((a) => a.role === 'rear.provider').map((a) => [a.name, (a.input as ProviderInput).sweepMs * 1000])),
      enabled: ctx.enabledInvariants,
      recentTrace: ctx.recentTrace,
    });

    const metrics = rearMetrics(flavorInfos);

    return {
      actors,
      observers: [checker, metrics.observer],
      checker,
      isComplete: () => consumerNames.length > 0 && metrics.ended.size === consumerNames.length,
      metrics: metrics.summary,
    };
  },
};

/** The partition policy of a provider's flavors (undefined: not partitionable). */
function policyOf(r: ProviderRole): Partitionability | undefined {
  const p = r.flavors.partitionable;
  return (
    p && {
      cpuMinMilli: q(p.cpuMin, 'milli'),
      memoryMinBytes: q(p.memoryMin, 'one'),
      podsMin: p.podsMin,
      cpuStepMilli: q(p.cpuStep, 'milli'),
      memoryStepBytes: q(p.memoryStep, 'one'),
      podsStep: p.podsStep,
    }
  );
}

/** A generated flavor's type and characteristics. */
function flavorData(f: ProviderRole['flavors'], policy: Partitionability | undefined): FlavorData {
  switch (f.type) {
    case 'vm':
      return {
        name: 'vm',
        cpu: q(f.cpu, 'milli') / 1000,
        memory: q(f.memory, 'one'),
        storage: q(f.storage, 'one'),
        ...(f.aggregatable ? { aggregatable: f.aggregatable } : {}),
      };
    case 'service':
      return { name: 'service', category: f.category };
    case 'sensor':
      return { name: 'sensor', sensorType: f.sensorType };
    default:
      return {
        name: 'k8slice',
        characteristics: { architecture: f.architecture, cpuMilli: q(f.cpu, 'milli'), memoryBytes: q(f.memory, 'one'), pods: f.pods },
        ...(policy ? { partitionability: policy } : {}),
      };
  }
}

type Quantity = string | number;

/** The selector of what a consumer wants: its type and filters (a vm's CPU in whole cores), a bound from a list picked by `pick`. */
function selectorOf(want: ConsumerRole['want'], pick: <T>(v: T | T[]) => T): Selector {
  const filters: Selector['filters'] = {};
  const bounds = (r: { min?: Quantity | Quantity[]; max?: Quantity | Quantity[] } | undefined) =>
    r && {
      ...(r.min !== undefined ? { min: pick(r.min) } : {}),
      ...(r.max !== undefined ? { max: pick(r.max) } : {}),
    };
  const cpuFilter = rangeFilter(bounds(want.cpu), 'milli', want.type === 'vm' ? 1000 : 1);
  const memoryFilter = rangeFilter(bounds(want.memory), 'one');
  if (cpuFilter) filters.cpu = cpuFilter;
  if (memoryFilter) filters.memory = memoryFilter;
  if (want.architecture !== undefined) filters.architecture = { match: want.architecture };
  return { type: want.type, ...(Object.keys(filters).length > 0 ? { filters } : {}) };
}

/** Picks one value of a list (a single value is itself, and draws nothing). */
const pickerOf =
  (rng: RandomStream) =>
  <T>(v: T | T[]): T => {
    const list = listOf(v);
    return list.length === 1 ? list[0] : list[rng.int(list.length)];
  };

/** A consumer's partition — or none, for the consumers beyond `share` — one value per dimension picked from its list. */
function partitionOf(p: NonNullable<ConsumerRole['partition']>, rng: RandomStream): Partition | undefined {
  if (p.share < 1 && !rng.chance(p.share)) return undefined;
  const pick = pickerOf(rng);
  return { cpuMilli: q(pick(p.cpu), 'milli'), memoryBytes: q(pick(p.memory), 'one'), pods: pick(p.pods) };
}

/**
 * A partition value off the grid (`min + k·step`) of every partitionable provider a consumer knows
 * can never be bought: refused here, naming the value and the grids.
 */
function checkGrid(
  p: NonNullable<ConsumerRole['partition']>,
  known: string[],
  policies: Map<string, Partitionability>,
  path: (string | number)[],
  fail: (path: (string | number)[], message: string) => void,
): void {
  const grids = known.filter((n) => policies.has(n)).map((n) => [n, policies.get(n)!] as const);
  if (grids.length === 0) return;
  const dims = [
    ['cpu', 'milli', (g: Partitionability) => [g.cpuMinMilli, g.cpuStepMilli], (v: number) => formatQuantity(v, 'milli')],
    ['memory', 'one', (g: Partitionability) => [g.memoryMinBytes, g.memoryStepBytes], (v: number) => formatQuantity(v, 'bytes')],
    ['pods', 'one', (g: Partitionability) => [g.podsMin, g.podsStep], (v: number) => String(v)],
  ] as const;
  for (const [dim, unit, gridOf, fmt] of dims) {
    const values = listOf(p[dim] as string | number | (string | number)[]);
    values.forEach((v, i) => {
      const value = q(v, unit);
      if (grids.some(([, g]) => onGrid(value, ...(gridOf(g) as [number, number])))) return;
      const [name, g] = grids[0];
      const [min, step] = gridOf(g);
      fail(
        Array.isArray(p[dim]) ? [...path, dim, i] : [...path, dim],
        `${dim} ${v} is off the partition grid of every provider it knows (${name}: ${fmt(min)} + k·${fmt(step)})`,
      );
    });
  }
}

/** The summary metrics, from the providers' and solvers' observations. */
function rearMetrics(flavorInfos: RearFlavorInfo[]) {
  const HOUR_US = 3_600_000_000;
  const outcomes: Record<string, number> = {};
  const endReasons: Record<string, number> = {};
  const refusedReserves: Record<string, number> = {};
  const refusedPurchases: Record<string, number> = {};
  const contractsByProvider: Record<string, number> = {};
  const notices: Record<string, number> = {};
  const started = new Map<string, number>();
  const toContractUs: number[] = [];
  const ended = new Set<string>();
  // Utilisation: what each provider has to sell, and what it sold (CPU of partitionable slices, else flavors).
  const capacity = new Map<string, number>();
  const soldOf = new Map<string, number>();
  const sliceCpu = new Map<string, number>();
  for (const f of flavorInfos) {
    capacity.set(f.provider, (capacity.get(f.provider) ?? 0) + (f.capacity ? f.capacity.cpuMilli : 1));
    if (f.capacity) sliceCpu.set(`${f.provider}|${f.flavorId}`, f.capacity.cpuMilli);
  }
  let contracts = 0;
  let expirations = 0;
  let cancellations = 0;
  const withdrawals: Record<string, number> = {};
  /** Open transactions per provider, with the CPU each holds (a crash forgets them). */
  const openAt = new Map<string, Map<string, number>>();
  /** The CPU a whole reservation holds: the flavor's (a remainder counts its flavor's whole CPU). */
  const flavorCpu = new Map(flavorInfos.map((f) => [`${f.provider}|${f.flavorId}`, f.cpuMilli ?? 0]));
  let forgotten = 0;
  let heldNow = 0;
  let heldPeak = 0;
  let heldCpuNow = 0;
  const heldPeakByHour: number[] = [0];
  const heldCpuPeakByHour: number[] = [0];
  /** Held transactions and held CPU change by `by` and `cpu` at `t`: the peaks per hour follow. */
  const held = (t: number, by: number, cpu: number): void => {
    heldNow += by;
    heldCpuNow += cpu;
    heldPeak = Math.max(heldPeak, heldNow);
    const h = Math.floor(t / HOUR_US);
    while (heldPeakByHour.length <= h) heldPeakByHour.push(heldNow - by);
    while (heldCpuPeakByHour.length <= h) heldCpuPeakByHour.push(heldCpuNow - cpu);
    heldPeakByHour[h] = Math.max(heldPeakByHour[h], heldNow);
    heldCpuPeakByHour[h] = Math.max(heldCpuPeakByHour[h], heldCpuNow);
  };
  /** A transaction no longer held (bought, expired, cancelled). */
  const release = (t: number, provider: string, transactionId: string): void => {
    const open = openAt.get(provider);
    const cpu = open?.get(transactionId);
    if (cpu === undefined) return;
    open!.delete(transactionId);
    held(t, -1, -cpu);
  };
  const observer = {
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
          else endReasons[o.reason] = (endReasons[o.reason] ?? 0) + 1;
          break;
        case 'rear.solver.notice':
          notices[o.notice] = (notices[o.notice] ?? 0) + 1;
          break;
        case 'rear.reserved':
          if (!started.has(`tx:${o.transactionId}`)) {
            started.set(`tx:${o.transactionId}`, t);
            const cpu = o.partition?.cpuMilli ?? flavorCpu.get(`${actor}|${o.flavorId}`) ?? 0;
            held(t, 1, cpu);
            if (!openAt.has(actor)) openAt.set(actor, new Map());
            openAt.get(actor)!.set(o.transactionId, cpu);
          }
          break;
        case 'rear.sold':
          contracts++;
          release(t, actor, o.transactionId);
          contractsByProvider[actor] = (contractsByProvider[actor] ?? 0) + 1;
          {
            // A remainder (a new flavor id) has the capacity of the flavor it came from.
            const whole = sliceCpu.get(`${actor}|${o.flavorId}`);
            if (o.remainder !== undefined && whole !== undefined) {
              sliceCpu.set(`${actor}|${o.remainder}`, whole);
              flavorCpu.set(`${actor}|${o.remainder}`, whole);
            }
            soldOf.set(actor, (soldOf.get(actor) ?? 0) + (whole === undefined ? 1 : (o.partition?.cpuMilli ?? whole)));
          }
          break;
        case 'rear.expired':
          expirations++;
          release(t, actor, o.transactionId);
          break;
        case 'rear.cancelled':
          cancellations++;
          release(t, actor, o.transactionId);
          break;
        case 'rear.withdrawn':
          withdrawals[o.reason] = (withdrawals[o.reason] ?? 0) + 1;
          break;
        case 'rear.refused': {
          const into = o.call === 'reserve' ? refusedReserves : refusedPurchases;
          const key = `${o.status} ${o.cause}`;
          into[key] = (into[key] ?? 0) + 1;
          break;
        }
        default:
      }
    },
    onFault(t: number, action: FaultAction, names: string[]) {
      // A crashed (or shut down) provider's open transactions lived in memory: they are gone, and hold nothing.
      if (action.kind !== 'crash' && action.kind !== 'restart' && action.kind !== 'shutdown') return;
      for (const name of names) {
        const open = openAt.get(name);
        if (!open) continue;
        forgotten += open.size;
        for (const id of [...open.keys()]) release(t, name, id);
      }
    },
  };
  const summary = (): Record<string, unknown> => {
    const sorted = [...toContractUs].sort((x, y) => x - y);
    const ms3 = (us: number | undefined) => (us === undefined ? undefined : Math.round(us / 1000));
    const utilisation: Record<string, number> = {};
    for (const [p, cap] of capacity) utilisation[p] = Math.round((1000 * (soldOf.get(p) ?? 0)) / cap) / 10;
    return {
      contracts,
      solvers: { ...outcomes },
      solverEndsByReason: { ...endReasons },
      refusedReserves: { ...refusedReserves },
      refusedPurchases: { ...refusedPurchases },
      expirations,
      ...(cancellations > 0 ? { cancellations } : {}),
      ...(Object.keys(withdrawals).length > 0 ? { withdrawalsByReason: { ...withdrawals } } : {}),
      ...(forgotten > 0 ? { transactionsLostWithProvider: forgotten } : {}),
      ...(Object.keys(notices).length > 0 ? { noticesReceived: { ...notices } } : {}),
      heldTransactionsPeak: heldPeak,
      heldTransactionsAtEnd: heldNow,
      heldTransactionsPeakByHour: [...heldPeakByHour],
      heldCpuPeakByHour: heldCpuPeakByHour.map((m) => m / 1000),
      ...(sorted.length > 0
        ? { timeToContractMsP50: ms3(percentile(sorted, 0.5)), timeToContractMsP95: ms3(percentile(sorted, 0.95)) }
        : {}),
      contractsByProvider: { ...contractsByProvider },
      utilisationPercentByProvider: utilisation,
    };
  };
  return { observer, summary, ended };
}
