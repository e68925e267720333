/**
 * REAR properties (fast-check) over random catalogues, workloads and fault schedules
 * (`shared/protocols/rear.md`, "Invariants" and "Known defects"):
 * - strict mode never violates an invariant — with stalls past the TTP, impatient solvers,
 *   subscriptions, withdrawals, crashes, restarts, pauses, shutdowns, clock skews and duplicated
 *   messages;
 * - fluidos mode sells a flavor twice for some input, and fast-check shrinks it to a small case.
 */
import { fc, test } from '@fast-check/vitest';
import { expect, it } from 'vitest';
import { parseScenario } from '../../src/scenario/loadScenario.js';
import { runScenario } from '../../src/scenario/runScenario.js';
import { sample } from '../helpers/property.js';

const market = fc.record({
  seed: fc.nat(1_000_000),
  providers: fc.array(
    fc.record({
      flavors: fc.integer({ min: 1, max: 4 }),
      cpu: fc.constantFrom('2', '4', '8'),
      partitionable: fc.boolean(),
      refresh: fc.constantFrom('1m', '5m'),
    }),
    { minLength: 1, maxLength: 3 },
  ),
  consumers: fc.array(
    fc.record({
      count: fc.integer({ min: 1, max: 8 }),
      minCpu: fc.constantFrom('1', '2', '4'),
      partition: fc.option(fc.record({ cpu: fc.constantFrom('500m', '750m', '1', '1500m'), pods: fc.integer({ min: 1, max: 3 }) })),
      arriveOverS: fc.integer({ min: 0, max: 60 }),
      givesUp: fc.constantFrom(0, 0, 0.3),
      // The TTP is 5 minutes: a 400 s stall runs past it.
      stallS: fc.constantFrom(0, 0, 30, 400),
      patienceS: fc.option(fc.integer({ min: 30, max: 900 })),
      subscribe: fc.boolean(),
    }),
    { minLength: 1, maxLength: 3 },
  ),
  latencyMs: fc.integer({ min: 1, max: 200 }),
  loss: fc.constantFrom(0, 0, 0.05),
  duplicate: fc.constantFrom(0, 0, 0.2),
  faults: fc.array(
    fc.oneof(
      fc.record({ at: fc.integer({ min: 1, max: 300 }), crashConsumer: fc.nat(20) }),
      fc.record({ at: fc.integer({ min: 1, max: 300 }), crashProvider: fc.nat(2) }),
      fc.record({ at: fc.integer({ min: 1, max: 300 }), pauseProvider: fc.nat(2), resumeAfter: fc.integer({ min: 1, max: 200 }) }),
      fc.record({ at: fc.integer({ min: 1, max: 300 }), restartProvider: fc.nat(2), restartAfter: fc.integer({ min: 1, max: 100 }) }),
      fc.record({ at: fc.integer({ min: 1, max: 300 }), withdrawAt: fc.nat(2), flavor: fc.nat(3) }),
      fc.record({ at: fc.integer({ min: 1, max: 300 }), skewProvider: fc.nat(2), byS: fc.integer({ min: -600, max: 3600 }) }),
      fc.record({ at: fc.integer({ min: 1, max: 300 }), shutdownProvider: fc.nat(2) }),
      fc.record({ at: fc.integer({ min: 1, max: 300 }), restartConsumer: fc.nat(20), restartAfter: fc.integer({ min: 1, max: 100 }) }),
    ),
    { maxLength: 3 },
  ),
});
type Market = typeof market extends fc.Arbitrary<infer T> ? T : never;

function yamlOf(m: Market, mode: 'strict' | 'fluidos'): string {
  const providers = m.providers.map((p, i) => `p${i}`);
  const consumerNames = m.consumers.flatMap((c, i) => Array.from({ length: c.count }, (_, k) => (c.count === 1 ? `c${i}` : `c${i}-${k}`)));
  const faults = m.faults.flatMap((f) => {
    if ('crashConsumer' in f) return [`{ at: ${f.at}s, crash: ${consumerNames[f.crashConsumer % consumerNames.length]} }`];
    if ('crashProvider' in f) return [`{ at: ${f.at}s, crash: ${providers[f.crashProvider % providers.length]} }`];
    if ('restartProvider' in f)
      return [`{ at: ${f.at}s, crash: ${providers[f.restartProvider % providers.length]}, restart: ${f.at + f.restartAfter}s }`];
    if ('skewProvider' in f) return [`{ at: ${f.at}s, skew: ${providers[f.skewProvider % providers.length]}, by: ${f.byS}s }`];
    if ('shutdownProvider' in f) return [`{ at: ${f.at}s, shutdown: ${providers[f.shutdownProvider % providers.length]} }`];
    if ('restartConsumer' in f)
      return [`{ at: ${f.at}s, crash: ${consumerNames[f.restartConsumer % consumerNames.length]}, restart: ${f.at + f.restartAfter}s }`];
    if ('withdrawAt' in f) {
      const i = f.withdrawAt % providers.length;
      const flavorId = `p${i}-f${f.flavor % m.providers[i].flavors}`;
      return [
        `{ at: ${f.at}s, inject: { from: operator, to: p${i}, msg: { type: WithdrawFlavor, flavorId: ${flavorId}, reason: test } } }`,
      ];
    }
    return [`{ at: ${f.at}s, pause: ${providers[f.pauseProvider % providers.length]}, resume: ${f.at + f.resumeAfter}s }`];
  });
  // Two crash or pause faults of one actor may overlap (no schedule): keep the first per actor.
  const seen = new Set<string>();
  const kept = faults.filter((f) => {
    const who = /(crash|pause|shutdown): ([^,}]+)/.exec(f)?.[2].trim();
    if (who === undefined) return true;
    if (seen.has(who)) return false;
    seen.add(who);
    return true;
  });
  return `
name: market
protocol: rear
mode: ${mode}
seed: ${m.seed}
duration: 2h
stopWhen: complete
network: { latency: { dist: uniform, min: 1ms, max: ${m.latencyMs}ms }, loss: ${m.loss}, duplicate: ${m.duplicate}${m.duplicate > 0 ? ', ordering: unordered-duplicating' : ''} }
actors:
${m.providers
  .map(
    (p, i) =>
      `  - { role: rear.provider, name: p${i}, ttp: 5m, refresh: ${p.refresh}, flavors: { count: ${p.flavors}, cpu: '${p.cpu}', memory: 16Gi, pods: 20${
        p.partitionable ? ', partitionable: { cpuMin: 500m, memoryMin: 1Gi, cpuStep: 250m, memoryStep: 512Mi }' : ''
      } } }`,
  )
  .join('\n')}
${m.consumers
  .map(
    (c, i) =>
      `  - { role: rear.consumer, name: c${i}, count: ${c.count}, want: { cpu: { min: '${c.minCpu}' } }, arriveOver: ${c.arriveOverS}s, givesUp: ${c.givesUp}, stall: ${c.stallS}s, subscribe: ${c.subscribe}${c.patienceS === null ? '' : `, patience: ${c.patienceS}s`}${
        c.partition ? `, partition: { cpu: '${c.partition.cpu}', memory: 1Gi, pods: ${c.partition.pods} }` : ''
      } }`,
  )
  .join('\n')}
faults: [${kept.join(', ')}]
`;
}

const violated = (yaml: string) =>
  runScenario(parseScenario(yaml, 'market.yaml'))
    .invariants.filter((i) => i.status === 'violated')
    .map((i) => `${i.id}: ${i.violations[0].message}`);

test.prop([market], sample(25))('strict: no invariant is violated, whatever the market and the faults', (m) => {
  const yaml = yamlOf(m, 'strict');
  expect(violated(yaml), yaml).toEqual([]);
});

it('fluidos: some market sells a flavor twice, and fast-check shrinks it to a small one', () => {
  let shrunk: Market | undefined;
  const details = fc.check(
    fc.property(market, (m) => violated(yamlOf(m, 'fluidos')).every((v) => !v.startsWith('rear.no-oversell'))),
    { seed: 20261122, numRuns: 200 },
  );
  expect(details.failed).toBe(true);
  shrunk = details.counterexample![0];
  const consumers = shrunk.consumers.reduce((n, c) => n + c.count, 0);
  const flavors = shrunk.providers.reduce((n, p) => n + p.flavors, 0);
  // Two buyers and one flavor are enough for a double sell.
  expect({ consumers, flavors, providers: shrunk.providers.length, faults: shrunk.faults.length }).toEqual({
    consumers: 2,
    flavors: 1,
    providers: 1,
    faults: 0,
  });
});
