/**
 * The buffer/rate core: the WebAssembly step and the TypeScript reference agree bit for bit — every
 * state array and every edge — for random configurations and random sequences of steps and control
 * operations; and the reference keeps Virdi's arithmetic rules (shared/protocols/virdi.md).
 */
import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import type { CoreConfig } from '../../src/buffers/bufferCore.js';
import { BufferCore } from '../../src/buffers/bufferCore.js';
import { Edge, FIELDS, SCALE, StepFlag } from '../../src/buffers/layout.js';
import { RandomStream } from '../../src/engine/rng.js';
import { sample } from '../helpers/property.js';

type Op =
  | { op: 'step'; dtMs: number }
  | { op: 'openConsumer'; c: number; maxRate: number; limit: number; current: number; drainRate: number }
  | { op: 'closeConsumer'; c: number; keep: boolean }
  | { op: 'openProducer'; p: number }
  | { op: 'closeProducer'; p: number };

/**
 * A whole number in [min, max]; with `wide`, also tenths (their float sums depend on the order of
 * the terms: the WebAssembly core must take its ordered paths) and huge values (sums at 2⁵³ and beyond, sends of more
 * than 2³⁶ units).
 */
function amount(min: number, max: number, wide: boolean): fc.Arbitrary<number> {
  const whole = fc.integer({ min, max });
  if (!wide) return whole;
  return fc.oneof(
    { arbitrary: whole, weight: 4 },
    fc.integer({ min: Math.max(1, 10 * min), max: 10 * max }).map((q) => q / 10),
    fc.constantFrom(2 ** 36 + 0.5, 2 ** 52, 2 ** 53 - 1, 1e17),
  );
}

/**
 * Random configurations. `wide`: more consumers, laid out by resource half of the time (as the
 * simulation lays them out: a resource's members are then a run of slots, the WebAssembly core's
 * two-at-a-time paths), and fractional and huge amounts.
 */
function configArb(wide: boolean) {
  return fc
    .record({
      nr: fc.integer({ min: 1, max: 4 }),
      np: fc.integer({ min: 0, max: 6 }),
      nc: fc.integer({ min: 0, max: wide ? 40 : 14 }),
      grouped: fc.boolean(),
    })
    .chain(({ nr, np, nc, grouped }) =>
      fc.record({
        seed: fc.nat(),
        flags: fc.integer({ min: 0, max: 3 }),
        resources: fc.array(
          fc.record({
            name: fc.constantFrom('iron', 'gold', 'wood', 'x'),
            limit: amount(1, 200, wide),
            initial: amount(0, 400, wide),
          }),
          { minLength: nr, maxLength: nr },
        ),
        producers: fc.array(
          fc.record({
            resource: fc.nat(nr - 1),
            chunk: amount(1, 60, wide),
            intervalMs: fc.integer({ min: 100, max: 4000 }),
          }),
          { minLength: np, maxLength: np },
        ),
        consumers: fc
          .array(fc.record({ resource: fc.nat(nr - 1) }), { minLength: nc, maxLength: nc })
          .map((cs) => (wide && grouped ? [...cs].sort((a, b) => a.resource - b.resource) : cs)),
      }),
    )
    .map(({ seed, ...c }) => ({
      ...c,
      stream: (name: string) => new RandomStream(seed, name),
      resources: c.resources.map((r, i) => ({ ...r, name: `${r.name}-${i}` })),
      kind: 'js' as const,
    }));
}

function opsArb(config: Omit<CoreConfig, 'kind'>, wide: boolean): fc.Arbitrary<Op[]> {
  const nc = config.consumers.length;
  const np = config.producers.length;
  const choices: fc.Arbitrary<Op>[] = [fc.record({ op: fc.constant('step' as const), dtMs: fc.integer({ min: 1, max: 5000 }) })];
  if (nc > 0) {
    choices.push(
      fc.record({
        op: fc.constant('openConsumer' as const),
        c: fc.nat(nc - 1),
        maxRate: amount(0, 1200, wide),
        limit: amount(1, 700, wide),
        current: amount(0, 900, wide),
        drainRate: amount(0, 1500, wide),
      }),
      fc.record({ op: fc.constant('closeConsumer' as const), c: fc.nat(nc - 1), keep: fc.boolean() }),
    );
  }
  if (np > 0) {
    choices.push(
      fc.record({ op: fc.constant('openProducer' as const), p: fc.nat(np - 1) }),
      fc.record({ op: fc.constant('closeProducer' as const), p: fc.nat(np - 1) }),
    );
  }
  return fc.array(fc.oneof({ arbitrary: choices[0], weight: 3 }, ...choices.slice(1)), { minLength: 1, maxLength: 60 });
}

const scenarioArb = configArb(false).chain((config) => fc.record({ config: fc.constant(config), ops: opsArb(config, false) }));
const wideScenarioArb = configArb(true).chain((config) => fc.record({ config: fc.constant(config), ops: opsArb(config, true) }));

/** A core of `kind` with the global buffers already holding their initial units. */
type TestConfig = Omit<CoreConfig, 'kind' | 'resources'> & { resources: { name: string; limit: number; initial: number }[] };

function coreOf(config: TestConfig, kind: 'js' | 'wasm'): BufferCore {
  const core = new BufferCore({ ...config, kind });
  config.resources.forEach((r, i) => {
    core.views.gAmount[i] = r.initial;
  });
  core.views.totals[0] = config.resources.reduce((x, r) => x + r.initial, 0);
  return core;
}

function apply(core: BufferCore, op: Op): number {
  switch (op.op) {
    case 'step':
      return core.step(op.dtMs);
    case 'openConsumer':
      if (core.views.cActive[op.c] === 0) core.openConsumer(op.c, op);
      return 0;
    case 'closeConsumer':
      if (core.views.cActive[op.c] !== 0) core.closeConsumer(op.c, op.keep);
      return 0;
    case 'openProducer':
      core.openProducer(op.p);
      return 0;
    case 'closeProducer':
      core.closeProducer(op.p);
      return 0;
  }
}

function bytes(a: Float64Array | Int32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Runs `ops` on a WebAssembly core and a reference core; fails at the first array or edge count that differs. */
function expectSameRun(config: TestConfig, ops: Op[]): void {
  const js = coreOf(config, 'js');
  const wasm = coreOf(config, 'wasm');
  for (const op of ops) {
    const a = apply(js, op);
    const b = apply(wasm, op);
    expect(b).toBe(a);
    for (const [name] of FIELDS) {
      if (!Buffer.from(bytes(js.views[name])).equals(Buffer.from(bytes(wasm.views[name])))) {
        expect.fail(`${name} differs after ${JSON.stringify(op)}: js ${js.views[name].join()} wasm ${wasm.views[name].join()}`);
      }
    }
  }
}

describe('buffer/rate core', () => {
  test.prop([scenarioArb], sample(300))(
    'WebAssembly and the TypeScript reference: identical state and identical edges, bit for bit',
    ({ config, ops }) => expectSameRun(config, ops),
  );

  test.prop([wideScenarioArb], sample(300))(
    'the same with runs of slots per resource, more consumers, fractional and huge amounts',
    ({ config, ops }) => expectSameRun(config, ops),
  );

  test.prop([scenarioArb], sample(200))(
    "the reference keeps Virdi's rules: conservation, limits, send sizes, fairness, overshoot",
    ({ config, ops }) => {
      const core = coreOf(config, 'js');
      const v = core.views;
      const maxChunk = Math.max(0, ...config.producers.map((p) => p.chunk));
      for (const op of ops) {
        const before = Float64Array.from(v.gAmount);
        const n = apply(core, op);
        const t = core.totals();
        const held = v.gAmount.reduce((x, y) => x + y, 0) + v.cServer.reduce((x, y) => x + y, 0);
        expect(t.produced).toBe(t.delivered + held + t.lost);
        for (let c = 0; c < core.sizes.consumers; c++) {
          expect(v.cServer[c]).toBeLessThanOrEqual(v.cLimit[c]);
          if (op.op === 'step' && v.cSent[c] > 0) expect(v.cSent[c]).toBeLessThanOrEqual(Math.round(0.75 * v.cLimit[c]));
        }
        if (op.op !== 'step') continue;
        if (config.flags & StepFlag.Fair) for (let r = 0; r < core.sizes.resources; r++) expect(v.spread[r]).toBeLessThanOrEqual(1);
        if (config.flags & StepFlag.RefuseWhenFull) {
          for (let r = 0; r < core.sizes.resources; r++) {
            if (v.gAmount[r] > before[r]) expect(v.gAmount[r]).toBeLessThanOrEqual(v.gLimit[r] - 1 + maxChunk);
          }
        }
        // Edges agree with the state they announce.
        for (let i = 0; i < n; i++) {
          const e = core.edge(i);
          // A buffer can fill with production and drain below its limit to consumers in one step.
          const drained = Array.from({ length: n }, (_, j) => core.edge(j)).some(
            (d) => d.kind === Edge.GlobalNotFull && d.index === e.index,
          );
          if (e.kind === Edge.GlobalFull && !drained) expect(v.gAmount[e.index]).toBeGreaterThanOrEqual(v.gLimit[e.index]);
          if (e.kind === Edge.GlobalNotFull) expect(v.gAmount[e.index]).toBeLessThan(v.gLimit[e.index]);
          if (e.kind === Edge.ProduceAborted) expect(v.pOpen[e.index]).toBe(0);
          if (e.kind === Edge.ClientFull) expect(v.cClient[e.index]).toBeGreaterThanOrEqual(v.cLimit[e.index] * SCALE);
        }
      }
    },
  );

  it('free room whose float sum depends on the order of its terms: WebAssembly adds them in slot order too', () => {
    // Eight consumers in a run of slots; their limits in slot order add up to 2182.7999999999997,
    // in any other grouping (four at a time, say) to 2182.8. The producer's 3000 units fill them all
    // and leave 3000 − free room in the global buffer.
    const limits = [367.7, 340.6, 313.5, 286.4, 259.3, 232.2, 205.1, 178];
    expect(limits.reduce((a, b) => a + b, 0)).toBe(2182.7999999999997);
    const config: TestConfig = {
      stream: (name: string) => new RandomStream(3, name),
      flags: StepFlag.Fair,
      resources: [{ name: 'iron', limit: 1e6, initial: 0 }],
      producers: [{ resource: 0, chunk: 3000, intervalMs: 1000 }],
      consumers: limits.map(() => ({ resource: 0 })),
    };
    const ops: Op[] = [
      { op: 'openProducer', p: 0 },
      ...limits.map((limit, c) => ({ op: 'openConsumer' as const, c, maxRate: 0, limit, current: limit * SCALE, drainRate: 0 })),
      { op: 'step', dtMs: 1000 },
      { op: 'step', dtMs: 1000 },
    ];
    expectSameRun(config, ops);
    const wasm = coreOf(config, 'wasm');
    for (const op of ops.slice(0, -1)) apply(wasm, op);
    expect(wasm.views.gAmount[0]).toBe(3000 - 2182.7999999999997);
  });

  it('a negative global buffer (whole extra units out of a fractional chunk): the next consumer sees what the previous one put back', () => {
    // 16.4 units for two consumers with room: 9 and 8 go out, the global buffer is left at −0.6.
    // Consumer 8 then takes its 61 back down to 60.4 and brings the global buffer up to 0, so
    // consumer 9 has 8 units to take, not the 7.4 it had before consumer 8's turn.
    const config: TestConfig = {
      stream: (name: string) => new RandomStream(1470684232, name),
      flags: StepFlag.RefuseWhenFull,
      resources: [{ name: 'wood-0', limit: 34, initial: 52 }],
      producers: [
        { resource: 0, chunk: 16.4, intervalMs: 3040 },
        { resource: 0, chunk: 28, intervalMs: 3475 },
      ],
      consumers: Array.from({ length: 10 }, () => ({ resource: 0 })),
    };
    expectSameRun(config, [
      { op: 'openConsumer', c: 8, maxRate: 0, limit: 82, current: 0, drainRate: 0 },
      { op: 'openProducer', p: 0 },
      { op: 'openConsumer', c: 9, maxRate: 0, limit: 68719476736.5, current: 0, drainRate: 68719476736.5 },
      { op: 'step', dtMs: 1 },
    ]);
  });

  it('with the defaults a consumer gets a first burst of 0.75 × max_rate, then 0.5 × max_rate every 30 s', () => {
    for (const kind of ['js', 'wasm'] as const) {
      const core = new BufferCore({
        kind,
        stream: (name: string) => new RandomStream(1, name),
        flags: 3,
        resources: [{ name: 'iron', limit: 10_000 }],
        producers: [],
        consumers: [{ resource: 0 }],
      });
      core.views.gAmount[0] = 10_000;
      core.openConsumer(0, { maxRate: 60, limit: 60, current: 0, drainRate: 60 });
      const sends: [number, number][] = [];
      for (let s = 1; s <= 120; s++) {
        core.step(1000);
        if (core.views.cSent[0] > 0) sends.push([s, core.views.cSent[0]]);
      }
      expect(sends).toEqual([
        [1, 45],
        [31, 30],
        [61, 30],
        [91, 30],
      ]);
    }
  });

  it('a producer against a full global buffer: aborted after its next chunk, edges once', () => {
    for (const [flags, expected] of [
      [0, 120],
      [StepFlag.RefuseWhenFull, 100],
    ] as const) {
      const core = new BufferCore({
        kind: 'wasm',
        stream: (name: string) => new RandomStream(1, name),
        flags,
        resources: [{ name: 'iron', limit: 100 }],
        producers: [
          { resource: 0, chunk: 10, intervalMs: 1000 },
          { resource: 0, chunk: 10, intervalMs: 1000 },
          { resource: 0, chunk: 10, intervalMs: 1000 },
        ],
        consumers: [],
      });
      for (let p = 0; p < 3; p++) core.openProducer(p);
      const edges: string[] = [];
      for (let s = 0; s < 6; s++) {
        const n = core.step(1000);
        for (let i = 0; i < n; i++) edges.push(`${s}:${core.edge(i).kind}:${core.edge(i).index}`);
      }
      // Step 3 reaches 90 with the first two; the third fills it (virdi: 3 chunks over the limit
      // on step 4 — the original's overshoot; strict: the later chunks are refused).
      expect(core.views.gAmount[0]).toBe(expected);
      expect(edges.filter((e) => e.endsWith(':1:0'))).toHaveLength(1);
      expect(core.views.pOpen.every((o) => o === 0)).toBe(true);
    }
  });
});
