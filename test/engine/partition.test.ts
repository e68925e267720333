/**
 * Shard placement (src/engine/partition.ts): actors that can reach each other in 0 µs share a shard,
 * the rest is balanced, and the lookahead is the smallest latency of a link that crosses shards.
 */
import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import type { LatencyDist, LinkParams, NetworkSpec } from '../../src/engine/network.js';
import { RandomStream } from '../../src/engine/rng.js';
import { sampleLatencyUs } from '../../src/engine/network.js';
import { minLatencyUs, planShards } from '../../src/engine/partition.js';
import { sample } from '../helpers/property.js';

const link = (latency: LatencyDist): LinkParams => ({ latency, loss: 0, duplicate: 0, ordering: 'ordered' });
const ms = (v: number): LatencyDist => ({ dist: 'constant', valueUs: v * 1000 });
const net = (defaults: LatencyDist, links: NetworkSpec['links'] = []): NetworkSpec => ({ defaults: link(defaults), links });
const actors = (n: number) => Array.from({ length: n }, () => ({}));

describe('shard placement', () => {
  it('balances independent actors and takes the link latency as lookahead', () => {
    const plan = planShards({ actors: actors(5), network: net(ms(2)), workers: 2 });
    expect(plan.shards).toBe(2);
    expect(plan.sizes).toEqual([3, 2]);
    expect(plan.lookaheadUs).toBe(2000);
    expect(plan.notes).toEqual([]);
  });

  it('keeps actors on a 0 µs link together, and says why when it must use fewer shards', () => {
    const zero = new Set([0, 1]);
    const plan = planShards({ actors: actors(4), network: net(ms(2), [{ from: zero, to: zero, params: link(ms(0)) }]), workers: 2 });
    expect(plan.shardOf[0]).toBe(plan.shardOf[1]);
    expect(plan.sizes).toEqual([2, 2]);
    expect(plan.lookaheadUs).toBe(2000);
    const lognormal = planShards({ actors: actors(4), network: net({ dist: 'lognormal', medianUs: 2000, p99Us: 20_000 }), workers: 4 });
    expect(lognormal.shards).toBe(1);
    expect(lognormal.lookaheadUs).toBe(Infinity);
    expect(lognormal.notes.join()).toMatch(/lognormal latency \(unbounded below/);
    const bound = planShards({ actors: actors(3), network: net(ms(1)), workers: 3, together: [{ members: [0, 1, 2], why: 'a world' }] });
    expect(bound.shards).toBe(1);
    expect(bound.notes.join()).toMatch(/1 group of actors that must stay together \(a world\): 1 shard/);
  });

  it('takes the lookahead from the fastest rule that crosses shards, not from one inside a shard', () => {
    const pair = new Set([0, 1]);
    const fast: LatencyDist = { dist: 'uniform', minUs: 40, maxUs: 60 };
    const inside = planShards({
      actors: actors(4),
      network: net(ms(5), [
        { from: pair, to: pair, params: link(ms(0)) },
        { from: new Set([0]), to: new Set([1]), params: link(fast) },
      ]),
      workers: 2,
    });
    expect(inside.lookaheadUs).toBe(5000);
    const across = planShards({
      actors: actors(4),
      network: net(ms(5), [{ from: new Set([0]), to: 'all', params: link(fast) }]),
      workers: 2,
    });
    expect(across.lookaheadUs).toBe(40);
  });

  it('keeps the actors that talk most together, on fewer shards than workers if need be, and spreads one group', () => {
    const sites = planShards({
      actors: actors(8),
      network: net(ms(2)),
      workers: 2,
      affinity: [
        [0, 2, 4, 6],
        [1, 3, 5, 7],
      ],
    });
    expect([...sites.shardOf]).toEqual([0, 1, 0, 1, 0, 1, 0, 1]);
    // Three sites for four workers: three shards, one site each (a fourth would split a site).
    const three = planShards({
      actors: actors(9),
      network: net(ms(2)),
      workers: 4,
      affinity: [
        [0, 1, 2],
        [3, 4, 5],
        [6, 7, 8],
      ],
    });
    expect(three.shards).toBe(3);
    expect([...three.shardOf]).toEqual([0, 0, 0, 1, 1, 1, 2, 2, 2]);
    expect(three.notes.join()).toMatch(/the actors that talk most form 3 groups, each kept on one shard/);
    const oneSite = planShards({ actors: actors(6), network: net(ms(2)), workers: 2, affinity: [[0, 1, 2, 3, 4, 5]] });
    expect(oneSite.shards).toBe(2);
    expect(oneSite.sizes).toEqual([3, 3]);
    expect(oneSite.notes.join()).toMatch(/the actors that talk most form 1 group: spread over 2 shards instead/);
  });

  it('weighs actors: a heavy one gets a shard to itself', () => {
    const plan = planShards({ actors: [{ weight: 10 }, ...actors(6)], network: net(ms(1)), workers: 2 });
    expect(plan.sizes).toEqual([1, 6]);
  });

  it('refuses a worker count that is not a whole number ≥ 1', () => {
    expect(() => planShards({ actors: actors(2), network: net(ms(1)), workers: 0 })).toThrow(/workers must be a whole number ≥ 1, got 0/);
  });

  const dist = fc.oneof(
    fc.nat(5000).map((v): LatencyDist => ({ dist: 'constant', valueUs: v })),
    fc.tuple(fc.nat(5000), fc.nat(5000)).map(([a, b]): LatencyDist => ({ dist: 'uniform', minUs: Math.min(a, b), maxUs: Math.max(a, b) })),
    fc
      .tuple(fc.nat(5000), fc.integer({ min: 1, max: 5000 }))
      .map(([minUs, meanUs]): LatencyDist => ({ dist: 'exponential', minUs, meanUs })),
    fc.integer({ min: 1, max: 5000 }).map((medianUs): LatencyDist => ({ dist: 'lognormal', medianUs, p99Us: medianUs * 10 })),
  );
  test.prop([dist, fc.integer()], sample(200))('no draw is ever below the minimum the placement counts on', (d, seed) => {
    const rng = new RandomStream(seed, 'latency');
    const min = minLatencyUs(d);
    for (let i = 0; i < 200; i++) expect(sampleLatencyUs(d, rng)).toBeGreaterThanOrEqual(min);
  });
});
