/**
 * For random small Virdi scenarios in strict mode — resources, producers, consumers with random
 * rates, limits, arrivals, departures, reconnects, missing client ids, a lossy network, partitions,
 * and crashes (with or without restart) of the server, producers and consumers — a correct implementation never violates an invariant; and the WebAssembly core and the
 * TypeScript reference give the same trace, bit for bit. fast-check shrinks any failure to a small
 * scenario. PROTOSIM_PROPERTY_RUNS=N explores more.
 */
import { fc, test } from '@fast-check/vitest';
import { expect } from 'vitest';
import { runText } from '../helpers/scenario.js';
import { sample } from '../helpers/property.js';

const producer = (resources: number) =>
  fc.record({
    resource: fc.nat(resources - 1),
    chunk: fc.integer({ min: 1, max: 80 }),
    intervalMs: fc.constantFrom(250, 500, 1000, 1500, 3000),
    offerAt: fc.nat(60),
    leaveAt: fc.option(fc.integer({ min: 61, max: 400 }), { nil: undefined }),
    anonymous: fc.boolean(),
  });

const consumer = (resources: number) =>
  fc.record({
    resource: fc.nat(resources - 1),
    maxRate: fc.oneof(fc.constantFrom(0, 6, 60, 600), fc.integer({ min: 1, max: 1200 })),
    bufferLimit: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 900 })),
    current: fc.oneof(fc.constant(0), fc.nat(900)),
    drainRate: fc.option(fc.nat(1500), { nil: undefined }),
    arriveAt: fc.nat(120),
    stay: fc.option(fc.integer({ min: 1, max: 200 }), { nil: undefined }),
    cancelWhenFull: fc.boolean(),
    reconnect: fc.option(fc.record({ after: fc.nat(60), times: fc.integer({ min: 1, max: 3 }) }), { nil: undefined }),
  });

const scenario = fc.record({ resources: fc.integer({ min: 1, max: 3 }) }).chain(({ resources }) =>
  fc.record({
    limits: fc.array(fc.integer({ min: 1, max: 300 }), { minLength: resources, maxLength: resources }),
    producers: fc.array(producer(resources), { maxLength: 4 }),
    consumers: fc.array(consumer(resources), { maxLength: 6 }),
    step: fc.constantFrom('500ms', '1s', '2s'),
    seed: fc.nat(1_000_000),
    latencyMs: fc.integer({ min: 0, max: 50 }),
    loss: fc.constantFrom(0, 0, 0.05),
    partition: fc.option(fc.record({ at: fc.integer({ min: 1, max: 200 }), heal: fc.integer({ min: 1, max: 100 }) }), { nil: undefined }),
    durationS: fc.integer({ min: 60, max: 600 }),
    crashes: fc.array(
      fc.record({
        who: fc.nat(20),
        at: fc.integer({ min: 1, max: 300 }),
        restartAfter: fc.option(fc.integer({ min: 1, max: 60 }), { nil: undefined }),
      }),
      { maxLength: 2 },
    ),
  }),
);

type Generated = typeof scenario extends fc.Arbitrary<infer T> ? T : never;

function yamlOf(g: Generated): string {
  const lines = [
    'name: virdi-property',
    'protocol: virdi',
    'mode: strict',
    `seed: ${g.seed}`,
    `duration: ${g.durationS}s`,
    `network: { latency: ${g.latencyMs}ms, loss: ${g.loss} }`,
    'actors:',
    `  - { role: virdi.server, name: server, step: ${g.step}, resources: [${g.limits.map((l, i) => `{ name: r${i}, limit: ${l} }`).join(', ')}] }`,
  ];
  g.producers.forEach((p, i) => {
    lines.push(
      `  - { role: virdi.producer, name: p${i}, resource: r${p.resource}, chunk: ${p.chunk}, interval: ${p.intervalMs}ms, offerAt: ${p.offerAt}s` +
        `${p.leaveAt === undefined ? '' : `, leaveAt: ${p.leaveAt}s`}${p.anonymous ? ', clientId: null' : ''} }`,
    );
  });
  g.consumers.forEach((c, i) => {
    lines.push(
      `  - { role: virdi.consumer, name: c${i}, resource: r${c.resource}, maxRate: ${c.maxRate}, bufferLimit: ${c.bufferLimit}, current: ${c.current}` +
        `${c.drainRate === undefined ? '' : `, drainRate: ${c.drainRate}`}, arriveAt: ${c.arriveAt}s` +
        `${c.stay === undefined ? '' : `, stay: ${c.stay}s`}, cancelWhenFull: ${c.cancelWhenFull}` +
        `${c.reconnect === undefined ? '' : `, reconnect: { after: ${c.reconnect.after}s, times: ${c.reconnect.times} }`} }`,
    );
  });
  const faults: string[] = [];
  if (g.partition && g.consumers.length > 0) {
    faults.push(`  - { at: ${g.partition.at}s, partition: [[c0], rest], heal: ${g.partition.at + g.partition.heal}s }`);
  }
  // Crashes of the server, a producer or a consumer, some restarted.
  const names = ['server', ...g.producers.map((_, i) => `p${i}`), ...g.consumers.map((_, i) => `c${i}`)];
  for (const c of g.crashes) {
    const restart = c.restartAfter === undefined ? '' : `, restart: ${c.at + c.restartAfter}s`;
    faults.push(`  - { at: ${c.at}s, crash: ${names[c.who % names.length]}${restart} }`);
  }
  if (faults.length > 0) lines.push('faults:', ...faults);
  return `${lines.join('\n')}\n`;
}

test.prop([scenario], sample(60))('strict mode: no invariant is ever violated, and both cores give the same trace', (g) => {
  const yaml = yamlOf(g);
  const wasm = runText(yaml, { hash: true });
  const violated = wasm.invariants.filter((i) => i.status === 'violated').map((i) => `${i.id}: ${i.violations[0].message}`);
  expect({ yaml, violated, errors: wasm.actorErrors }).toEqual({ yaml, violated: [], errors: [] });
  const js = runText(yaml, { hash: true, core: 'js' });
  expect(js.traceHash).toBe(wasm.traceHash);
  expect(js.metrics).toEqual({ ...wasm.metrics, core: 'js' });
});
