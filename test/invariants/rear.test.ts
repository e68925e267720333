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
    sweepUs: new Map([['p1', 20]]),
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

/** A listed flavor as a provider would send it. */
const flavor = (flavorId: string, over: Record<string, unknown> = {}) => ({
  flavorId,
  providerId: 'p1',
  timestamp: 0,
  type: {
    name: 'k8slice',
    characteristics: { architecture: 'amd64', cpuMilli: 2000, memoryBytes: 4 * GI, pods: 10 },
    ...(flavorId === 'slice' ? { partitionability: policy } : {}),
  },
  price: { amount: 1, currency: 'EUR', period: 'hourly' },
  owner: { domain: 'd', nodeId: 'p1', ip: '10.0.0.1' },
  availability: true,
  ...over,
});
type Checker = ReturnType<typeof checker>;
/** `c` asks p1 for a listing (with `selector`) and gets `flavors`. */
function list(k: Checker, t: number, c: string, flavors: object[], selector?: object): void {
  k.onDeliver!(t, 'p1', c, { type: 'ListFlavors', rid: t, ...(selector ? { selector } : {}) } as never);
  const answer = { type: 'ListAnswer', re: t, status: 200, flavors } as never;
  k.onSend!(t, 'p1', c, answer);
  k.onDeliver!(t + 1, c, 'p1', answer);
}
/** `c` reserves `flavorId` at p1 and is given transaction `tx`. */
function reserve(k: Checker, t: number, c: string, flavorId: string, tx: string, partition?: object): void {
  k.onSend!(t, c, 'p1', { type: 'ReserveFlavor', rid: t, reservation: { flavorId } } as never);
  k.onObserve!(t + 1, 'p1', reserved(tx, flavorId, c, 1000, partition));
  k.onDeliver!(t + 2, c, 'p1', { type: 'ReserveAnswer', re: t, status: 200, transaction: { transactionId: tx } } as never);
}
const purchase = (k: Checker, t: number, c: string, tx: string): void =>
  k.onSend!(t, c, 'p1', { type: 'PurchaseFlavor', rid: t, transactionId: tx } as never);

function statusOf(feed: (c: ReturnType<typeof checker>) => void): Record<string, string> {
  const c = checker();
  feed(c);
  return Object.fromEntries(c.results().map((r) => [r.id, r.status]));
}

describe('REAR invariants, each broken on purpose', () => {
  it('a correct market holds them all', () => {
    const part = { cpuMilli: 750, memoryBytes: 1.5 * GI, pods: 2 };
    const s = statusOf((c) => {
      list(c, 1, 'c1', [flavor('box'), flavor('slice')], { type: 'k8slice' });
      reserve(c, 3, 'c1', 'box', 't1');
      purchase(c, 6, 'c1', 't1');
      c.onObserve!(7, 'p1', sold('k1', 't1', 'box', 'c1'));
      c.onObserve!(8, 'p1', { kind: 'rear.withdrawn', flavorId: 'box', reason: 'sold out', subscribers: 0 } as { kind: string });
      list(c, 9, 'c2', [flavor('slice')]);
      reserve(c, 11, 'c2', 'slice', 't2', part);
      purchase(c, 14, 'c2', 't2');
      c.onObserve!(15, 'p1', sold('k2', 't2', 'slice', 'c2', part));
      // The remainder, listed: 1250m, 2.5Gi, 8 pods.
      list(c, 16, 'c3', [
        flavor('slice', {
          type: {
            name: 'k8slice',
            characteristics: { architecture: 'amd64', cpuMilli: 1250, memoryBytes: 2.5 * GI, pods: 8 },
            partitionability: policy,
          },
        }),
      ]);
      c.onObserve!(18, 'p1', reserved('t3', 'slice', 'c4', 30, part));
      c.onObserve!(40, 'p1', { kind: 'rear.expired', transactionId: 't3', flavorId: 'slice' } as { kind: string });
      c.onTick!(60);
      c.onObserve!(70, 'c1', end('solved', 'contract'));
    });
    expect(s).toEqual(Object.fromEntries(REAR_INVARIANTS.map((i) => [i.id, 'held'])));
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

  it('1 no-oversell: a remainder (a new flavor id) shares the capacity of the flavor it came from', () => {
    const part = { cpuMilli: 1250, memoryBytes: 2 * GI, pods: 1 };
    expect(
      statusOf((c) => {
        c.onObserve!(1, 'p1', reserved('t1', 'slice', 'c1', 100, part));
        c.onObserve!(2, 'p1', { ...sold('k1', 't1', 'slice', 'c1', part), remainder: 'slice-r1' } as { kind: string });
        c.onObserve!(3, 'p1', reserved('t2', 'slice-r1', 'c2', 100, part));
        c.onObserve!(4, 'p1', sold('k2', 't2', 'slice-r1', 'c2', part));
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

  it('2 ttp: held capacity not returned by the sweep after expiry (one per sweep, the implementation)', () => {
    expect(
      statusOf((c) => {
        c.onObserve!(1, 'p1', reserved('t1', 'box', 'c1', 100));
        c.onObserve!(2, 'p1', reserved('t2', 'slice', 'c2', 100, { cpuMilli: 500, memoryBytes: GI, pods: 1 }));
        c.onObserve!(110, 'p1', { kind: 'rear.expired', transactionId: 't1', flavorId: 'box' } as { kind: string });
        c.onTick!(121); // t2 expired at 100 and the sweep runs every 20: due by 120
      })['rear.ttp'],
    ).toBe('violated');
    // A crash forgets open transactions: nothing is held, nothing is late.
    expect(
      statusOf((c) => {
        c.onObserve!(1, 'p1', reserved('t1', 'box', 'c1', 100));
        c.onObserve!(2, 'p1', sold('k1', 't1', 'box', 'c1'));
        c.onObserve!(3, 'p1', reserved('t2', 'slice', 'c2', 100, { cpuMilli: 500, memoryBytes: GI, pods: 1 }));
        c.onFault!(50, { kind: 'crash', actors: [0] }, ['p1']);
        c.onTick!(500);
      })['rear.ttp'],
    ).toBe('held');
  });

  it('2 ttp, faults: a clock jumped forward gets one sweep of grace; a shutdown takes its transactions; a paused-then-crashed provider is checked again', () => {
    const ttp = (feed: (c: Checker) => void) => statusOf(feed)['rear.ttp'];
    const slice = { cpuMilli: 500, memoryBytes: GI, pods: 1 };
    // Expiry 100 on p1's clock; its clock jumps 1 000 ahead at 50: its next sweep (≤ 20 later) is due.
    expect(
      ttp((c) => {
        c.onObserve!(1, 'p1', reserved('t1', 'slice', 'c1', 100, slice));
        c.onFault!(50, { kind: 'skew', actors: [0], byUs: 1000 }, ['p1']);
        c.onTick!(60);
        c.onObserve!(65, 'p1', { kind: 'rear.expired', transactionId: 't1', flavorId: 'slice' } as { kind: string });
        c.onTick!(500);
      }),
    ).toBe('held');
    expect(
      ttp((c) => {
        c.onObserve!(1, 'p1', reserved('t1', 'slice', 'c1', 100, slice));
        c.onFault!(50, { kind: 'skew', actors: [0], byUs: 1000 }, ['p1']);
        c.onTick!(71); // past the grace, still held
      }),
    ).toBe('violated');
    expect(
      ttp((c) => {
        c.onObserve!(1, 'p1', reserved('t1', 'slice', 'c1', 100, slice));
        c.onFault!(10, { kind: 'shutdown', actors: [0] }, ['p1']);
        c.onTick!(500);
      }),
    ).not.toBe('violated');
    expect(
      ttp((c) => {
        c.onFault!(0, { kind: 'pause', actors: [0] }, ['p1']);
        c.onFault!(0, { kind: 'restart', actors: [0] }, ['p1']);
        c.onObserve!(1, 'p1', reserved('t1', 'slice', 'c1', 100, slice));
        c.onTick!(500);
      }),
    ).toBe('violated');
  });

  it('3 one-open-transaction: not for a transaction its provider forgot in a crash, nor one expired on its skewed clock', () => {
    expect(
      statusOf((c) => {
        c.onObserve!(1, 'p1', reserved('t1', 'box', 'c1', 100));
        c.onFault!(10, { kind: 'restart', actors: [0] }, ['p1']);
        c.onObserve!(11, 'p1', reserved('t2', 'box', 'c1', 200));
      })['rear.one-open-transaction'],
    ).toBe('held');
    expect(
      statusOf((c) => {
        c.onFault!(0, { kind: 'skew', actors: [0], byUs: 1000 }, ['p1']);
        c.onObserve!(1, 'p1', reserved('t1', 'box', 'c1', 1100));
        c.onObserve!(200, 'p1', reserved('t2', 'box', 'c1', 1300)); // 200 + 1000 > 1100: t1 expired
      })['rear.one-open-transaction'],
    ).toBe('held');
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

  it('5 message-order: a reserve of what was never listed, a purchase of what was never reserved, a reserve after a withdraw', () => {
    expect(
      statusOf((c) => {
        list(c, 1, 'c1', [flavor('slice')]);
        c.onSend!(3, 'c1', 'p1', { type: 'ReserveFlavor', rid: 3, reservation: { flavorId: 'box' } } as never);
      })['rear.message-order'],
    ).toBe('violated');
    expect(
      statusOf((c) => {
        list(c, 1, 'c1', [flavor('box')]);
        reserve(c, 3, 'c1', 'box', 't1');
        purchase(c, 6, 'c1', 't9');
      })['rear.message-order'],
    ).toBe('violated');
    expect(
      statusOf((c) => {
        c.onObserve!(1, 'p1', { kind: 'rear.withdrawn', flavorId: 'box', reason: 'maintenance', subscribers: 0 } as { kind: string });
        c.onObserve!(2, 'p1', reserved('t1', 'box', 'c1', 100));
      })['rear.message-order'],
    ).toBe('violated');
  });

  it('6 listing: a flavor off the selector, unavailable, withdrawn, sold, or bigger than what is left', () => {
    const listingOf = (feed: (c: Checker) => void) => statusOf(feed)['rear.listing'];
    expect(listingOf((c) => list(c, 1, 'c1', [flavor('box')], { type: 'k8slice', filters: { cpu: { range: { min: 4000 } } } }))).toBe(
      'violated',
    );
    expect(listingOf((c) => list(c, 1, 'c1', [flavor('box', { availability: false })]))).toBe('violated');
    expect(
      listingOf((c) => {
        c.onObserve!(1, 'p1', { kind: 'rear.withdrawn', flavorId: 'box', reason: 'maintenance', subscribers: 0 } as { kind: string });
        list(c, 2, 'c1', [flavor('box')]);
      }),
    ).toBe('violated');
    expect(
      listingOf((c) => {
        c.onObserve!(1, 'p1', reserved('t1', 'box', 'c1', 100));
        c.onObserve!(2, 'p1', sold('k1', 't1', 'box', 'c1'));
        list(c, 3, 'c2', [flavor('box')]);
      }),
    ).toBe('violated');
    expect(
      listingOf((c) => {
        const part = { cpuMilli: 500, memoryBytes: GI, pods: 1 };
        c.onObserve!(1, 'p1', reserved('t1', 'slice', 'c1', 100, part));
        c.onObserve!(2, 'p1', sold('k1', 't1', 'slice', 'c1', part));
        list(c, 3, 'c2', [flavor('slice')]); // still the whole slice
      }),
    ).toBe('violated');
    // The same flavor object listed again after a sale is checked again, not taken from the cache.
    expect(
      listingOf((c) => {
        const box = flavor('box');
        list(c, 1, 'c1', [box]);
        c.onObserve!(2, 'p1', reserved('t1', 'box', 'c1', 100));
        c.onObserve!(3, 'p1', sold('k1', 't1', 'box', 'c1'));
        list(c, 4, 'c2', [box]);
      }),
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

  it('8 solver-ends-once: a solver that ends twice (a restarted one is a new solver)', () => {
    expect(
      statusOf((c) => {
        c.onObserve!(1, 'c1', end('failed', 'x'));
        c.onObserve!(2, 'c1', end('solved', 'y'));
      })['rear.solver-ends-once'],
    ).toBe('violated');
    expect(
      statusOf((c) => {
        c.onObserve!(1, 'c1', end('failed', 'x'));
        c.onFault!(2, { kind: 'restart', actors: [3] }, ['c1']);
        c.onObserve!(3, 'c1', end('solved', 'y'));
      })['rear.solver-ends-once'],
    ).toBe('held');
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
