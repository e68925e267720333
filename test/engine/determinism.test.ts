/**
 * One scenario + one seed = one trace (design.md, principle 1): the trace hash is the witness.
 */
import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { parseScenario } from '../../src/scenario/loadScenario.js';
import { runScenario } from '../../src/scenario/runScenario.js';
import { sample } from '../helpers/property.js';

const text = (seed: number) => `
name: determinism
protocol: manager-worker
seed: ${seed}
duration: 10m
stopWhen: complete
network:
  latency: { dist: lognormal, median: 5ms, p99: 80ms }
  loss: 0.01
  ordering: unordered-duplicating
  duplicate: 0.01
actors:
  - { role: mw.manager, count: 2, tasks: { count: 40, timeout: 10s } }
  - { role: mw.worker, count: 6, cpuCount: 2, run: { dist: exponential, mean: 2s }, failures: { runtime: 0.05, hang: 0.02 } }
faults:
  - { at: 20s, crash: worker-1, restart: 90s }
  - { at: 30s, partition: [[manager-0], rest], heal: 2m }
`;

function traceOf(seed: number, backend: 'flat' | 'xstate' = 'flat'): { hash: string; lines: number } {
  let lines = 0;
  const s = runScenario(parseScenario(text(seed), 'determinism.yaml'), { backend, traceSink: () => void lines++ });
  return { hash: s.traceHash!, lines };
}

describe('determinism', () => {
  it('the same scenario and seed twice give the same trace hash; another seed another hash', () => {
    const a = traceOf(42);
    const b = traceOf(42);
    const c = traceOf(43);
    expect(a.lines).toBeGreaterThan(1000);
    expect(b).toEqual(a);
    expect(c.hash).not.toBe(a.hash);
  });

  test.prop([fc.integer({ min: 0, max: 2 ** 31 - 1 })], sample(8))(
    "any seed: twice the same hash, and XState's interpreter agrees with the flat backend",
    (seed) => {
      const flat = traceOf(seed);
      expect(traceOf(seed)).toEqual(flat);
      expect(traceOf(seed, 'xstate')).toEqual(flat);
    },
  );

  it('distinct seeds almost always give distinct traces', () => {
    const hashes = new Set([1, 2, 3, 4, 5, 6, 7, 8].map((s) => traceOf(s).hash));
    expect(hashes.size).toBe(8);
  });
});
