/**
 * The buffer/rate core behind one typed facade: the WebAssembly core (default) or the TypeScript
 * reference (`--core js`), over the same structure-of-arrays state (layout.ts). Control operations
 * (a consumer connects or leaves, a producer's stream opens) are plain writes to the arrays, shared by
 * both; only the step — the hot path — differs.
 *
 * @example
 * const core = new BufferCore({ kind: 'wasm', flags: StepFlag.Fair,
 *   stream: (name) => new RandomStream(7, `virdi.distribute:${name}`),
 *   resources: [{ name: 'iron', limit: 100 }],
 *   producers: [{ resource: 0, chunk: 10, intervalMs: 1000 }],
 *   consumers: [{ resource: 0 }] });
 * core.openProducer(0);
 * core.openConsumer(0, { maxRate: 60, limit: 60, current: 0, drainRate: 60 });
 * const n = core.step(1000); // edges in core.views.events[0 .. 2n)
 */
import type { CoreSizes, CoreViews, EdgeKind } from './layout.js';
import { FIELD_COUNT, layoutOf, SCALE, Total, viewsOver } from './layout.js';
import type { CoreExports } from './loadCore.js';
import { instantiateCore, RNG_SLOTS } from './loadCore.js';
import type { IntSource } from './referenceStep.js';
import { stepReference } from './referenceStep.js';

export type CoreKind = 'wasm' | 'js';
export const CORE_KINDS: readonly CoreKind[] = ['wasm', 'js'];

export interface CoreConfig {
  kind: CoreKind;
  /**
   * The random stream of each resource's shuffles (RandomStream in src/engine/rng.ts, named after
   * the resource): the TypeScript reference draws from it, the WebAssembly core continues it from its
   * state words.
   */
  stream(resource: string): RandomSource;
  /** StepFlag bits. */
  flags: number;
  resources: readonly { name: string; limit: number }[];
  producers: readonly { resource: number; chunk: number; intervalMs: number }[];
  /** Consumer slots: each belongs to one resource for good. */
  consumers: readonly { resource: number }[];
}

/** A seeded random stream: integers for the shuffle, and its state to hand to WebAssembly. */
export interface RandomSource extends IntSource {
  state(): [number, number, number, number];
}

export interface ConsumerParams {
  /** Units per minute the server assumes the client drains (`max_rate`). */
  maxRate: number;
  /** The buffer limit (`buffer_limit || max_rate`). */
  limit: number;
  /** What the client already holds (`current_buffer_amount`). */
  current: number;
  /** Units per minute the client really drains. */
  drainRate: number;
}

export class BufferCore {
  readonly sizes: CoreSizes;
  /** The state arrays (views into WebAssembly memory, or plain typed arrays). */
  readonly views: CoreViews;
  private readonly wasm?: { core: CoreExports; table: number };
  private readonly rngs: RandomSource[];

  constructor(readonly config: CoreConfig) {
    const s: CoreSizes = { resources: config.resources.length, producers: config.producers.length, consumers: config.consumers.length };
    this.sizes = s;
    this.rngs = config.resources.map((r) => config.stream(r.name));
    const { bytes, offsets } = layoutOf(s);
    if (config.kind === 'wasm') {
      if (s.resources > RNG_SLOTS) throw new Error(`the WebAssembly core handles at most ${RNG_SLOTS} resources, got ${s.resources}`);
      const core = instantiateCore();
      const base = core.alloc(bytes);
      const table = core.alloc(FIELD_COUNT * 4);
      new Uint32Array(core.memory.buffer, table, FIELD_COUNT).set(offsets.map((o) => base + o));
      this.views = viewsOver(core.memory.buffer, base, s);
      this.rngs.forEach((rng, r) => {
        const [a, b, c, d] = rng.state();
        core.rngSeed(r, a, b, c, d);
      });
      this.wasm = { core, table };
    } else {
      this.views = viewsOver(new ArrayBuffer(bytes), 0, s);
    }
    const v = this.views;
    config.resources.forEach((r, i) => {
      v.gLimit[i] = r.limit;
    });
    groupBy(
      config.producers.map((p) => p.resource),
      s.resources,
      v.prodStart,
      v.prodCount,
      v.prodList,
    );
    groupBy(
      config.consumers.map((c) => c.resource),
      s.resources,
      v.memStart,
      v.memCount,
      v.memList,
    );
    config.producers.forEach((p, i) => {
      v.pChunk[i] = p.chunk;
      v.pInterval[i] = p.intervalMs;
    });
    config.consumers.forEach((c, i) => {
      v.cResource[i] = c.resource;
    });
  }

  get kind(): CoreKind {
    return this.config.kind;
  }

  /** Advances every buffer by `dtMs` milliseconds; returns the number of edges (see {@link edge}). */
  step(dtMs: number): number {
    if (this.wasm) {
      const s = this.sizes;
      return this.wasm.core.step(this.wasm.table, s.resources, s.producers, s.consumers, dtMs, this.config.flags);
    }
    return stepReference(this.views, this.sizes, dtMs, this.config.flags, this.rngs);
  }

  /** The `i`-th edge of the last step: its kind and the resource, producer or consumer index. */
  edge(i: number): { kind: EdgeKind; index: number } {
    return { kind: this.views.events[2 * i] as EdgeKind, index: this.views.events[2 * i + 1] };
  }

  /** A producer's Produce stream opens: its first chunk comes with the next step. */
  openProducer(p: number): void {
    this.views.pOpen[p] = 1;
    this.views.pCountdown[p] = 0;
  }

  /** A producer's stream ends (it closed it, or it left). */
  closeProducer(p: number): void {
    this.views.pOpen[p] = 0;
  }

  /** A consumer connects: its server-side buffer takes what sits in the global buffer, up to its limit. */
  openConsumer(c: number, p: ConsumerParams): void {
    const v = this.views;
    v.cActive[c] = 1;
    v.cMaxRate[c] = p.maxRate;
    v.cLimit[c] = p.limit;
    v.cDrain[c] = p.drainRate;
    v.cEstimate[c] = p.current * SCALE;
    v.cClient[c] = p.current * SCALE;
    v.cFlags[c] = 0;
    v.cSent[c] = 0;
    const r = v.cResource[c];
    const moved = Math.min(v.gAmount[r], p.limit);
    v.gAmount[r] -= moved;
    v.cServer[c] = moved;
  }

  /**
   * A consumer's stream ends. Its server-side buffer goes back to the global buffer (`keep`, strict
   * mode) or is lost (virdi mode: the original's defect). Returns the units concerned.
   */
  closeConsumer(c: number, keep: boolean): number {
    const v = this.views;
    const units = v.cServer[c];
    if (keep) v.gAmount[v.cResource[c]] += units;
    else v.totals[Total.lost] += units;
    v.cServer[c] = 0;
    v.cActive[c] = 0;
    v.cSent[c] = 0;
    v.cFlags[c] = 0;
    return units;
  }

  /** Is the global buffer of resource `r` at or above its limit (as of the last step)? */
  globalFull(r: number): boolean {
    return this.views.gAmount[r] >= this.views.gLimit[r];
  }

  /** Totals: produced, delivered, lost units, refused chunks, shuffles. */
  totals(): { produced: number; delivered: number; lost: number; refusedChunks: number; shuffles: number } {
    const t = this.views.totals;
    return {
      produced: t[Total.produced],
      delivered: t[Total.delivered],
      lost: t[Total.lost],
      refusedChunks: t[Total.refusedChunks],
      shuffles: t[Total.shuffles],
    };
  }
}

/** Groups item indices by their key into `list`, with `start[k]`/`count[k]` (stable within a key). */
function groupBy(keys: readonly number[], nKeys: number, start: Int32Array, count: Int32Array, list: Int32Array): void {
  for (const k of keys) {
    if (!(k >= 0 && k < nKeys)) throw new Error(`resource index ${k} out of range 0..${nKeys - 1}`);
    count[k]++;
  }
  let at = 0;
  for (let k = 0; k < nKeys; k++) {
    start[k] = at;
    at += count[k];
  }
  const fill = new Int32Array(nKeys);
  keys.forEach((k, i) => {
    list[start[k] + fill[k]++] = i;
  });
}
