/**
 * REAR protocol types (`shared/protocols/rear.md`): flavors and their Kubernetes quantities,
 * selectors and filters, reservation, transaction, contract, node identity, the refresh and withdraw
 * notices, status codes and modes — and their validation. Pure data and functions: no engine, no
 * XState.
 *
 * Quantities are held as whole numbers in the smallest unit the protocol uses, so comparisons and
 * partitions are exact: CPU in millicores (`500m` → 500), memory and storage in bytes (`4Gi` →
 * 4 294 967 296), pods and GPU cores as counts.
 *
 * @example
 * parseQuantity('4Gi');                          // { ok: true, value: 4294967296 }
 * parseQuantity('500m', 'milli');                // { ok: true, value: 500 }
 * parseQuantity('4Gx');                          // { ok: false, error: 'malformed quantity "4Gx": …' }
 * matchesSelector(flavor, { type: 'k8slice', filters: { cpu: { range: { min: 1000, max: 4000 } } } });
 */
import { z } from 'zod';

/** `strict` follows the spec (404/409/408, availability checked at reserve, no oversell); `fluidos` reproduces the implementation. */
export const REAR_MODES = ['strict', 'fluidos'] as const;
export type RearMode = (typeof REAR_MODES)[number];

/** HTTP status codes of the binding (spec v2), with the implementation's 500 and 503. */
export const REAR_STATUS = {
  ok: 200,
  /** A malformed request (a filter with min > max, say); the binding lists none, the simulator answers 400. */
  badRequest: 400,
  unauthorized: 401,
  forbidden: 403,
  notFound: 404,
  expired: 408,
  conflict: 409,
  /** The implementation's answer to an unknown flavor or transaction, and to a repeated purchase. */
  internal: 500,
  /** A provider that is not ready yet. */
  unavailable: 503,
} as const;
export type RearStatus = (typeof REAR_STATUS)[keyof typeof REAR_STATUS];

// ---- quantities ----------------------------------------------------------------------------------

const BINARY: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
const DECIMAL: Record<string, number> = { n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 };
const QUANTITY = /^([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$/;
const SUFFIXES = 'm, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent such as e3';

export type QuantityResult = { ok: true; value: number } | { ok: false; error: string };

/**
 * Parses a Kubernetes quantity (`500m`, `4Gi`, `1.5`, `2e3`). `unit` is the unit of the result:
 * `'one'` (bytes, counts; the default) or `'milli'` (millicores). The result must be a whole,
 * non-negative, safe integer in that unit: `100m` of memory (a tenth of a byte) is refused, as is a
 * negative amount.
 */
export function parseQuantity(text: string, unit: 'one' | 'milli' = 'one'): QuantityResult {
  const m = QUANTITY.exec(text.trim());
  if (!m || text.trim() === '')
    return { ok: false, error: `malformed quantity ${JSON.stringify(text)}: expected a number with ${SUFFIXES}` };
  const [, sign, digits, exponent, suffix = ''] = m;
  if (sign === '-') return { ok: false, error: `quantity ${JSON.stringify(text)} is negative` };
  // Exact for every quantity a provider declares: the digits scaled by a power of 10 or 2, then
  // checked to land on a whole number of the result's unit.
  const [whole, frac = ''] = digits.split('.');
  const scale = unit === 'milli' ? 1000 : 1;
  let value: number;
  if (exponent !== undefined) value = Number(`${whole}.${frac}e${Number(exponent.slice(1))}`) * scale;
  else if (suffix in BINARY) value = Number(`${whole}.${frac || '0'}`) * BINARY[suffix] * scale;
  else {
    // Decimal suffixes: shift the decimal point instead of multiplying by an inexact 1e-3.
    const shift = Math.round(Math.log10(DECIMAL[suffix])) + (unit === 'milli' ? 3 : 0);
    value = Number(`${whole}.${frac || '0'}e${shift}`);
  }
  if (!Number.isFinite(value) || value > Number.MAX_SAFE_INTEGER)
    return { ok: false, error: `quantity ${JSON.stringify(text)} is too large` };
  if (!Number.isInteger(value))
    return { ok: false, error: `quantity ${JSON.stringify(text)} is not a whole number of ${unit === 'milli' ? 'millis (1m)' : 'units'}` };
  return { ok: true, value };
}

/** Formats a whole number as the shortest exact quantity: binary suffixes for bytes, `m` for millis. */
export function formatQuantity(value: number, unit: 'bytes' | 'milli' | 'count'): string {
  if (unit === 'milli') return value % 1000 === 0 ? String(value / 1000) : `${value}m`;
  if (unit === 'bytes' && value > 0) {
    for (const suffix of ['Ei', 'Pi', 'Ti', 'Gi', 'Mi', 'Ki'])
      if (value % BINARY[suffix] === 0) return `${value / BINARY[suffix]}${suffix}`;
  }
  return String(value);
}

// ---- identities, flavors ---------------------------------------------------------------------------

/** A node of the FLUIDOS network. */
export interface NodeIdentity {
  domain: string;
  nodeId: string;
  ip: string;
}

export const FLAVOR_TYPES = ['k8slice', 'vm', 'service', 'sensor'] as const;
export type FlavorTypeName = (typeof FLAVOR_TYPES)[number];

/** A Kubernetes slice: CPU in millicores, memory and storage in bytes. */
export interface K8SliceCharacteristics {
  architecture: string;
  cpuMilli: number;
  memoryBytes: number;
  pods: number;
  gpu?: { model: string; cores: number; memoryBytes: number };
  storageBytes?: number;
}

/** How a k8slice may be cut: each dimension `min + k·step` (the spec's `policies.partitionability`). */
export interface Partitionability {
  cpuMinMilli: number;
  memoryMinBytes: number;
  podsMin: number;
  cpuStepMilli: number;
  memoryStepBytes: number;
  podsStep: number;
}

export type FlavorData =
  | { name: 'k8slice'; characteristics: K8SliceCharacteristics; partitionability?: Partitionability }
  | { name: 'vm'; cpu: number; memory: number; storage: number; aggregatable?: { minCount: number; maxCount: number } }
  | { name: 'service'; category: string }
  | { name: 'sensor'; sensorType: string };

export interface Flavor {
  flavorId: string;
  providerId: string;
  /** Virtual time (µs) the flavor was published or last refreshed. */
  timestamp: number;
  location?: string;
  type: FlavorData;
  price: { amount: number; currency: string; period: string };
  owner: NodeIdentity;
  availability: boolean;
}

/** A partition of a partitionable k8slice, in the flavor's units. */
export interface Partition {
  cpuMilli: number;
  memoryBytes: number;
  pods: number;
}

// ---- selectors -------------------------------------------------------------------------------------

/** One filter: `match` a string, `exact` a number, or a `range` (inclusive). */
export type Filter = { match: string } | { exact: number } | { range: { min?: number; max?: number } };

/** Filter keys of k8slice and vm flavors (numbers in the flavor's units: millicores, bytes, counts). */
export const FILTER_KEYS = ['architecture', 'cpu', 'memory', 'gpu', 'storage', 'pods'] as const;
export type FilterKey = (typeof FILTER_KEYS)[number];

export interface Selector {
  type?: FlavorTypeName;
  filters?: Partial<Record<FilterKey, Filter>>;
}

/** The value a filter key reads off a flavor (undefined: the flavor has no such characteristic). */
export function characteristic(flavor: Flavor, key: FilterKey): string | number | undefined {
  const t = flavor.type;
  if (t.name === 'k8slice') {
    const c = t.characteristics;
    return {
      architecture: c.architecture,
      cpu: c.cpuMilli,
      memory: c.memoryBytes,
      gpu: c.gpu?.cores,
      storage: c.storageBytes,
      pods: c.pods,
    }[key];
  }
  if (t.name === 'vm')
    return { architecture: undefined, cpu: t.cpu, memory: t.memory, gpu: undefined, storage: t.storage, pods: undefined }[key];
  return undefined;
}

function passes(value: string | number | undefined, filter: Filter): boolean {
  if ('match' in filter) return typeof value === 'string' && value === filter.match;
  if (typeof value !== 'number') return false;
  if ('exact' in filter) return value === filter.exact;
  const { min, max } = filter.range;
  return (min === undefined || value >= min) && (max === undefined || value <= max);
}

/** Does `flavor` match `selector` (its type, and every filter)? Availability is the provider's business. */
export function matchesSelector(flavor: Flavor, selector: Selector | undefined): boolean {
  if (!selector) return true;
  if (selector.type !== undefined && flavor.type.name !== selector.type) return false;
  for (const [key, filter] of Object.entries(selector.filters ?? {}) as [FilterKey, Filter][]) {
    if (!passes(characteristic(flavor, key), filter)) return false;
  }
  return true;
}

/** Why a selector is malformed (undefined: it is well formed). */
export function selectorProblem(selector: Selector): string | undefined {
  if (selector.type !== undefined && !(FLAVOR_TYPES as readonly string[]).includes(selector.type))
    return `type: unknown flavor type ${JSON.stringify(selector.type)} (expected one of ${FLAVOR_TYPES.join(', ')})`;
  for (const [key, filter] of Object.entries(selector.filters ?? {}) as [string, Filter][]) {
    if (!(FILTER_KEYS as readonly string[]).includes(key))
      return `filters.${key}: unknown filter key (expected one of ${FILTER_KEYS.join(', ')})`;
    if ('range' in filter) {
      const { min, max } = filter.range;
      if (min === undefined && max === undefined) return `filters.${key}.range: needs min, max or both`;
      if (min !== undefined && max !== undefined && min > max) return `filters.${key}.range: min ${min} > max ${max}`;
    }
    if (key === 'architecture' && !('match' in filter)) return `filters.architecture: expected {match: string}`;
    if (key !== 'architecture' && 'match' in filter) return `filters.${key}: expected {exact} or {range}, got {match}`;
  }
  return undefined;
}

// ---- partitions ------------------------------------------------------------------------------------

/** Is `value` on the grid `min + k·step` (k ≥ 0)? A step of 0 allows the minimum only. */
export function onGrid(value: number, min: number, step: number): boolean {
  if (value < min) return false;
  if (step === 0) return value === min;
  return (value - min) % step === 0;
}

/**
 * Why `partition` cannot be cut from a k8slice with `left` capacity under `policy` (strict mode;
 * undefined: it can). The remainder must stay non-negative.
 */
export function partitionProblem(partition: Partition, policy: Partitionability, left: Partition): string | undefined {
  const dims: [keyof Partition, number, number, string][] = [
    ['cpuMilli', policy.cpuMinMilli, policy.cpuStepMilli, 'cpu'],
    ['memoryBytes', policy.memoryMinBytes, policy.memoryStepBytes, 'memory'],
    ['pods', policy.podsMin, policy.podsStep, 'pods'],
  ];
  for (const [k, min, step, name] of dims) {
    if (!onGrid(partition[k], min, step)) return `${name} ${partition[k]} is off the grid ${min} + k·${step}`;
    if (partition[k] > left[k]) return `${name} ${partition[k]} exceeds the ${left[k]} left`;
  }
  return undefined;
}

// ---- messages ----------------------------------------------------------------------------------------

/** A reservation request (`POST /reservations`): a configuration asks for a partition. */
export interface Reservation {
  flavorId: string;
  buyer: NodeIdentity;
  configuration?: { type: 'k8slice'; data: Partition };
}

/** An open reservation; `expirationTimeUs` is its Time To Purchase deadline. */
export interface Transaction {
  transactionId: string;
  flavorId: string;
  buyer: NodeIdentity;
  expirationTimeUs: number;
}

export interface Contract {
  contractId: string;
  transactionId: string;
  flavor: Flavor;
  buyer: NodeIdentity;
  seller: NodeIdentity;
  expirationTimeUs: number;
  credentials: string;
  /** The partition bought (a partitionable flavor). */
  partition?: Partition;
}

// Requests carry `rid`; every answer carries `re` = the request's rid and a status.
export type ListFlavors = { type: 'ListFlavors'; rid: number; selector?: Selector; token?: string };
export type ListAnswer = { type: 'ListAnswer'; re: number; status: RearStatus; flavors: Flavor[] };
export type ReserveFlavor = { type: 'ReserveFlavor'; rid: number; reservation: Reservation; token: string };
export type ReserveAnswer = { type: 'ReserveAnswer'; re: number; status: RearStatus; transaction?: Transaction; error?: string };
export type PurchaseFlavor = { type: 'PurchaseFlavor'; rid: number; transactionId: string; token: string };
export type PurchaseAnswer = { type: 'PurchaseAnswer'; re: number; status: RearStatus; contract?: Contract; error?: string };
/** Opens the subscription channel of one flavor: the provider pushes Refresh and Withdraw on it. */
export type SubscribeFlavor = { type: 'SubscribeFlavor'; rid: number; flavorId: string };
export type SubscribeAnswer = { type: 'SubscribeAnswer'; re: number; status: RearStatus; flavorId: string; error?: string };
/**
 * The offer is still valid, with a new expiry; `modified` when it changed. A partition sold leaves
 * a remainder offered as a new flavor: its Refresh names the flavor it `replaces`.
 */
export type Refresh = { type: 'Refresh'; flavor: Flavor; expiresAtUs: number; modified: boolean; replaces?: string };
/** The offer is gone (withdrawn by its provider, or sold out). */
export type Withdraw = { type: 'Withdraw'; flavorId: string; reason: string };
/**
 * The provider's operator takes a flavor off the market (a scenario injects it): subscribers get a
 * Withdraw, open transactions on it are cancelled, and no later reserve of it succeeds.
 */
export type WithdrawFlavor = { type: 'WithdrawFlavor'; flavorId: string; reason: string };
/** The token authority: issue and validate. */
export type IssueToken = { type: 'IssueToken'; rid: number; node: NodeIdentity };
export type TokenIssued = { type: 'TokenIssued'; re: number; token: string; expiresAtUs: number };
export type ValidateToken = { type: 'ValidateToken'; rid: number; token: string };
export type TokenVerdict = {
  type: 'TokenVerdict';
  re: number;
  valid: boolean;
  node?: NodeIdentity;
  reason?: 'unknown' | 'expired' | 'forged';
};

export type RearMessage =
  | ListFlavors
  | ListAnswer
  | ReserveFlavor
  | ReserveAnswer
  | PurchaseFlavor
  | PurchaseAnswer
  | SubscribeFlavor
  | SubscribeAnswer
  | Refresh
  | Withdraw
  | WithdrawFlavor
  | IssueToken
  | TokenIssued
  | ValidateToken
  | TokenVerdict;

// ---- validation of messages from outside (scenario `inject`, live transports) ---------------------

const count = z.number().int().nonnegative();
const nodeIdentity = z.strictObject({ domain: z.string().min(1), nodeId: z.string().min(1), ip: z.string().min(1) });
const filter = z.union([
  z.strictObject({ match: z.string() }),
  z.strictObject({ exact: z.number() }),
  z.strictObject({ range: z.strictObject({ min: z.number().optional(), max: z.number().optional() }) }),
]);
const selector = z
  .strictObject({ type: z.enum(FLAVOR_TYPES).optional(), filters: z.record(z.string(), filter).optional() })
  .superRefine((s, ctx) => {
    const problem = selectorProblem(s as Selector);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
const partition = z.strictObject({ cpuMilli: count, memoryBytes: count, pods: count });

/** Schemas of the requests a scenario may inject (answers and notices come from the actors), and the operator's WithdrawFlavor. */
export const rearRequestSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('ListFlavors'), rid: count, selector: selector.optional(), token: z.string().optional() }),
  z.strictObject({
    type: z.literal('ReserveFlavor'),
    rid: count,
    reservation: z.strictObject({
      flavorId: z.string().min(1),
      buyer: nodeIdentity,
      configuration: z.strictObject({ type: z.literal('k8slice'), data: partition }).optional(),
    }),
    token: z.string(),
  }),
  z.strictObject({ type: z.literal('PurchaseFlavor'), rid: count, transactionId: z.string().min(1), token: z.string() }),
  z.strictObject({ type: z.literal('SubscribeFlavor'), rid: count, flavorId: z.string().min(1) }),
  z.strictObject({ type: z.literal('WithdrawFlavor'), flavorId: z.string().min(1), reason: z.string().min(1) }),
  z.strictObject({ type: z.literal('IssueToken'), rid: count, node: nodeIdentity }),
  z.strictObject({ type: z.literal('ValidateToken'), rid: count, token: z.string() }),
]);

/** Validates a REAR request from outside: the message, or the first problem with its field path. */
export function parseRearRequest(input: unknown): { ok: true; msg: RearMessage } | { ok: false; error: string } {
  const r = rearRequestSchema.safeParse(input);
  if (r.success) return { ok: true, msg: r.data as RearMessage };
  const issue = r.error.issues[0];
  return { ok: false, error: `${issue.path.length ? `${issue.path.join('.')}: ` : ''}${issue.message}` };
}
