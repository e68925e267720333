/**
 * The buffer/rate core's state: structure of arrays, one typed array per field, laid out in one
 * block of memory — WebAssembly linear memory for the WASM core, an ordinary ArrayBuffer for the
 * TypeScript reference. Both implementations read and write exactly these arrays, so a differential
 * test compares them byte for byte.
 *
 * Amounts are whole units held in f64 (exact up to 2⁵³). The server's estimate of a client's buffer
 * and the client's real buffer decay continuously, so they are kept in *scaled units*: 1 unit =
 * 60 000 scaled, so a rate in units per minute times a step in milliseconds is a whole number of
 * scaled units — every value stays an integer and both cores compute it identically.
 *
 * assembly/step.ts reads the same table of field addresses ({@link FIELDS} order).
 */

/** Scaled units per unit (ms per minute). */
export const SCALE = 60_000;

/** Edge kinds written to the output array as (kind, index) pairs. */
export const Edge = {
  /** The global buffer of resource `index` reached its limit (after production). */
  GlobalFull: 1,
  /** The global buffer of resource `index` went from full to below its limit. */
  GlobalNotFull: 2,
  /** Producer `index`'s stream must be aborted (RESOURCE_EXHAUSTED); the core has closed it. */
  ProduceAborted: 3,
  /** Consumer `index`'s estimate is at 25 % and there was nothing to send (it waits for units). */
  Starved: 4,
  /** Consumer `index`'s client buffer became full. */
  ClientFull: 5,
} as const;
export type EdgeKind = (typeof Edge)[keyof typeof Edge];

/** Step flags. */
export const StepFlag = {
  /** Fair distribution: extra units continue round the shuffled order (strict mode, invariant 8). */
  Fair: 1,
  /** Once the global buffer is full, later chunks in the step are refused, not accepted (strict). */
  RefuseWhenFull: 2,
} as const;

/** Indices into the totals array. */
export const Total = {
  /** Units accepted from producers. */
  produced: 0,
  /** Units sent to clients. */
  delivered: 1,
  /** Units lost (virdi mode: a leaving consumer's server-side buffer). */
  lost: 2,
  /** Chunks refused because the global buffer was full (strict mode). */
  refusedChunks: 3,
  /** Distributions that needed a shuffle. */
  shuffles: 4,
} as const;
export const TOTALS = 8;

type Kind = 'f64' | 'i32';
type Count = 'R' | 'P' | 'C' | 'E' | 'T';

/** Fields in table order: name, element type, length. */
export const FIELDS = [
  // Resources (R).
  ['gAmount', 'f64', 'R'],
  ['gLimit', 'f64', 'R'],
  ['gFull', 'i32', 'R'],
  ['memStart', 'i32', 'R'],
  ['memCount', 'i32', 'R'],
  ['prodStart', 'i32', 'R'],
  ['prodCount', 'i32', 'R'],
  ['spread', 'i32', 'R'],
  // Producers (P), grouped by resource through prodList.
  ['prodList', 'i32', 'P'],
  ['pOpen', 'i32', 'P'],
  ['pChunk', 'f64', 'P'],
  ['pInterval', 'f64', 'P'],
  ['pCountdown', 'f64', 'P'],
  // Consumers (C), grouped by resource through memList.
  ['memList', 'i32', 'C'],
  ['cActive', 'i32', 'C'],
  ['cResource', 'i32', 'C'],
  ['cMaxRate', 'f64', 'C'],
  ['cLimit', 'f64', 'C'],
  ['cServer', 'f64', 'C'],
  ['cEstimate', 'f64', 'C'],
  ['cClient', 'f64', 'C'],
  ['cDrain', 'f64', 'C'],
  ['cFlags', 'i32', 'C'],
  ['cSent', 'f64', 'C'],
  // Scratch for distribution (C each).
  ['order', 'i32', 'C'],
  ['given', 'f64', 'C'],
  // Output: (kind, index) pairs.
  ['events', 'i32', 'E'],
  ['totals', 'f64', 'T'],
] as const satisfies readonly (readonly [string, Kind, Count])[];

type FieldName = (typeof FIELDS)[number][0];
type ArrayOf<K> = K extends 'f64' ? Float64Array : Int32Array;
export type CoreViews = { [F in (typeof FIELDS)[number] as F[0]]: ArrayOf<F[1]> };

/** Consumer flag bits (cFlags). */
export const ConsumerFlag = { Starved: 1, ClientFull: 2 } as const;

export interface CoreSizes {
  resources: number;
  producers: number;
  consumers: number;
}

/** Event capacity in i32s: every edge at most once per step. */
export function eventCapacity(s: CoreSizes): number {
  return 2 * (2 * s.resources + s.producers + 2 * s.consumers);
}

function lengthOf(count: Count, s: CoreSizes): number {
  switch (count) {
    case 'R':
      return s.resources;
    case 'P':
      return s.producers;
    case 'C':
      return s.consumers;
    case 'E':
      return eventCapacity(s);
    case 'T':
      return TOTALS;
  }
}

/** Byte offsets of every field (8-byte aligned) relative to the block start, and the block size. */
export function layoutOf(s: CoreSizes): { offsets: number[]; bytes: number } {
  const offsets: number[] = [];
  let at = 0;
  for (const [, kind, count] of FIELDS) {
    offsets.push(at);
    const n = lengthOf(count, s) * (kind === 'f64' ? 8 : 4);
    at += Math.ceil(n / 8) * 8;
  }
  return { offsets, bytes: at };
}

/** Typed-array views of every field over `buffer`, the block starting at byte `base`. */
export function viewsOver(buffer: ArrayBuffer, base: number, s: CoreSizes): CoreViews {
  const { offsets } = layoutOf(s);
  const views: Partial<Record<FieldName, Float64Array | Int32Array>> = {};
  FIELDS.forEach(([name, kind, count], i) => {
    const n = lengthOf(count, s);
    views[name] = kind === 'f64' ? new Float64Array(buffer, base + offsets[i], n) : new Int32Array(buffer, base + offsets[i], n);
  });
  return views as CoreViews;
}

/** The number of fields (the WebAssembly step reads a table of this many addresses). */
export const FIELD_COUNT = FIELDS.length;
