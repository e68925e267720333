/**
 * The REAR invariants (`shared/protocols/rear.md`, "Invariants"), each broken on purpose: the
 * checker is fed the observations a faulty provider or solver would make, and must report the
 * invariant violated; the same checker on a correct run reports it held. The double sell of
 * fluidos mode is also caught end to end (scenarios/rear/race-fluidos.yaml).
 */
import { describe, expect, it } from 'vitest';
import { createRearChecker, REAR_INVARIANTS } from '../../src/invariants/rear.js';
import { loadScenario } from '../../src/scenario/loadScenario.js';
import { runScenario } from '../../src/scenario/runScenario.js';

const GI = 2 ** 30;
const policy = { cpuMinMilli: 500, memoryMinBytes: GI, podsMin: 1, cpuStepMilli: 250, memoryStepBytes: GI / 2, podsStep: 1 };

function checker() {
  return createRearChecker({
    flavors: [
      { provider: 'p1', flavorId: 'box' },
      { provider: 'p1', flavorId: 'slice', capacity: { cpuMilli: 2000, memoryBytes: 4 * GI, pods: 10 }, policy },
    ],
    enabled: new Set(REAR_INVARIANTS.map((i) => i.id)),
    recentTrace: () => [],
  });
}

const reserved = (transactionId: string, flavorId: string, buyer: string, expirationTimeUs: number, partition?: object) => ({
  kind: 'rear.reserved',
  transactionId,
  flavorId,
  buyer,
  expirationTimeUs,
  ...(partition ? { partition } : {}),
});
const end = (outcome: string, reason: string) => ({ kind: 'rear.solver.end', outcome, reason }) as { kind: string };
const sold = (contractId: string, transactionId: string, flavorId: string, buyer: string, partition?: object) => ({
  kind: 'rear.sold',
  contractId,
  transactionId,
  flavorId,
  buyer,
  ...(partition ? { partition } : {}),
});

function statusOf(feed: (c: ReturnType<typeof checker>) => void): Record<string, string> {
  const c = checker();
  feed(c);
  return Object.fromEntries(c.results().map((r) => [r.id, r.status]));
}

describe('REAR invariants, each broken on purpose', () => {
  it('a correct sale holds them all', () => {
    const s = statusOf((c) => {
      c.onObserve!(1, 'p1', reserved('t1', 'box', 'c1', 100));
      c.onObserve!(2, 'p1', sold('k1', 't1', 'box', 'c1'));
      c.onObserve!(3, 'p1', reserved('t2', 'slice', 'c2', 100, { cpuMilli: 750, memoryBytes: 1.5 * GI, pods: 2 }));
      c.onObserve!(4, 'p1', sold('k2', 't2', 'slice', 'c2', { cpuMilli: 750, memoryBytes: 1.5 * GI, pods: 2 }));
      c.onObserve!(5, 'c1', end('solved', 'contract'));
    });
    expect(Object.values(s).every((x) => x === 'held')).toBe(true);
  });

  it('1 no-oversell: a whole flavor sold twice, and partitions beyond the capacity', () => {
    expect(
      statusOf((c) => {
        c.onObserve!(1, 'p1', reserved('t1', 'box', 'c1', 100));
        c.onObserve!(2, 'p1', reserved('t2', 'box', 'c2', 100));
        c.onObserve!(3, 'p1', sold('k1', 't1', 'box', 'c1'));
        c.onObserve!(4, 'p1', sold('k2', 't2', 'box', 'c2'));
      })['rear.no-oversell'],
    ).toBe('violated');
    const part = { cpuMilli: 1250, memoryBytes: 2 * GI, pods: 1 };
    expect(
      statusOf((c) => {
        c.onObserve!(1, 'p1', reserved('t1', 'slice', 'c1', 100, part));
        c.onObserve!(2, 'p1', reserved('t2', 'slice', 'c2', 100, part));
        c.onObserve!(3, 'p1', sold('k1', 't1', 'slice', 'c1', part));
        c.onObserve!(4, 'p1', sold('k2', 't2', 'slice', 'c2', part));
      })['rear.no-oversell'],
    ).toBe('violated');
  });

  it('2 ttp: bought past its deadline', () => {
    expect(
      statusOf((c) => {
        c.onObserve!(1, 'p1', reserved('t1', 'box', 'c1', 100));
        c.onObserve!(101, 'p1', sold('k1', 't1', 'box', 'c1'));
      })['rear.ttp'],
    ).toBe('violated');
  });

  it('3 one-open-transaction: a second open transaction for the same pair, and an expiry moved back', () => {
    expect(
      statusOf((c) => {
        c.onObserve!(1, 'p1', reserved('t1', 'box', 'c1', 100));
        c.onObserve!(2, 'p1', reserved('t2', 'box', 'c1', 100));
      })['rear.one-open-transaction'],
    ).toBe('violated');
    expect(
      statusOf((c) => {
        c.onObserve!(1, 'p1', reserved('t1', 'box', 'c1', 100));
        c.onObserve!(2, 'p1', reserved('t1', 'box', 'c1', 90));
      })['rear.one-open-transaction'],
    ).toBe('violated');
  });

  it('4 one-contract-per-transaction: one transaction bought by two contracts', () => {
    expect(
      statusOf((c) => {
        c.onObserve!(1, 'p1', reserved('t1', 'box', 'c1', 100));
        c.onObserve!(2, 'p1', sold('k1', 't1', 'box', 'c1'));
        c.onObserve!(3, 'p1', sold('k2', 't1', 'box', 'c1'));
      })['rear.one-contract-per-transaction'],
    ).toBe('violated');
  });

  it('7 partition-grid: a partition off the grid', () => {
    const off = { cpuMilli: 600, memoryBytes: GI, pods: 1 };
    expect(
      statusOf((c) => {
        c.onObserve!(1, 'p1', reserved('t1', 'slice', 'c1', 100, off));
        c.onObserve!(2, 'p1', sold('k1', 't1', 'slice', 'c1', off));
      })['rear.partition-grid'],
    ).toBe('violated');
  });

  it('8 solver-ends-once: a solver that ends twice', () => {
    expect(
      statusOf((c) => {
        c.onObserve!(1, 'c1', end('failed', 'x'));
        c.onObserve!(2, 'c1', end('solved', 'y'));
      })['rear.solver-ends-once'],
    ).toBe('violated');
  });

  it('9 contract-consistency: a contract for another buyer or flavor than its transaction', () => {
    expect(
      statusOf((c) => {
        c.onObserve!(1, 'p1', reserved('t1', 'box', 'c1', 100));
        c.onObserve!(2, 'p1', sold('k1', 't1', 'box', 'c2'));
      })['rear.contract-consistency'],
    ).toBe('violated');
    expect(
      statusOf((c) => {
        c.onObserve!(2, 'p1', sold('k1', 't-unknown', 'box', 'c1'));
      })['rear.contract-consistency'],
    ).toBe('violated');
  });

  it('end to end: fluidos sells one flavor twice and no-oversell says so; strict sells each once', () => {
    const fluidos = runScenario(loadScenario('scenarios/rear/race-fluidos.yaml'));
    expect(fluidos.invariants.find((i) => i.id === 'rear.no-oversell')?.status).toBe('violated');
    expect(fluidos.metrics.contracts).toBeGreaterThan(10);
    const strict = runScenario(loadScenario('scenarios/rear/race-strict.yaml'));
    expect(strict.invariants.find((i) => i.id === 'rear.no-oversell')?.status).toBe('held');
    expect(strict.metrics.contracts).toBe(10);
    expect(strict.expectations.met && fluidos.expectations.met).toBe(true);
  });
});
