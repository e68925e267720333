/**
 * The network's link table: one live state per directed pair, found again on every lookup whatever
 * the order of lookups, with its own stream (named after the pair) and the last matching rule's
 * parameters — for small runs and for runs past 46 341 actors (where from × n + to passes 2³¹).
 */
import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import type { LinkParams, LinkState, NetworkSpec } from '../../src/engine/network.js';
import { Network } from '../../src/engine/network.js';
import { RandomStream } from '../../src/engine/rng.js';

const params = (valueUs: number): LinkParams => ({ latency: { dist: 'constant', valueUs }, loss: 0, duplicate: 0, ordering: 'ordered' });

function networkOf(n: number, spec: NetworkSpec = { defaults: params(1000), links: [] }): Network {
  return new Network(
    spec,
    7,
    Array.from({ length: n }, (_, i) => `a-${i}`),
  );
}

/** Looks every pair up in order; the first state seen for a pair must come back every time after. */
function lookAll(net: Network, pairs: readonly [number, number][]): Map<string, LinkState> {
  const seen = new Map<string, LinkState>();
  for (const [from, to] of pairs) {
    const link = net.link(from, to);
    const key = `${from}>${to}`;
    const before = seen.get(key);
    if (before) expect(link).toBe(before);
    else seen.set(key, link);
  }
  return seen;
}

describe('network links', () => {
  test.prop([fc.array(fc.tuple(fc.nat(6), fc.nat(6)), { maxLength: 120 })])(
    'one state per directed pair, found again whatever the order of lookups',
    (pairs) => {
      const seen = lookAll(networkOf(7), pairs);
      // Distinct pairs, distinct states (a sender's second peer never gets its first peer's link).
      expect(new Set(seen.values()).size).toBe(seen.size);
      for (const [key, link] of seen) {
        const [from, to] = key.split('>');
        const fresh = new RandomStream(7, `link:a-${from}>a-${to}`);
        expect(link.rng.next()).toBe(fresh.next());
      }
    },
  );

  it('keeps the pairs apart past 46 341 actors (where from × n + to passes 2³¹)', () => {
    const n = 60_000;
    const net = networkOf(n);
    const pairs: [number, number][] = [];
    // A manager talking to many workers, each worker to it alone, and a few senders with many peers.
    for (let w = 1; w < n; w += 997) pairs.push([0, w], [w, 0]);
    for (const from of [n - 1, 46_341, 12_345]) for (const to of [0, 1, n - 1, 46_340, from]) pairs.push([from, to]);
    const seen = lookAll(net, [...pairs, ...[...pairs].reverse()]);
    expect(new Set(seen.values()).size).toBe(seen.size);
    expect(seen.size).toBe(new Set(pairs.map(([a, b]) => `${a}>${b}`)).size);
  });

  it('takes the last rule that matches the pair', () => {
    const net = networkOf(4, {
      defaults: params(1000),
      links: [
        { from: new Set([0]), to: 'all', params: params(5) },
        { from: 'all', to: new Set([2]), params: params(9) },
      ],
    });
    const latency = (from: number, to: number): unknown => net.link(from, to).params.latency;
    expect(latency(0, 1)).toEqual({ dist: 'constant', valueUs: 5 });
    expect(latency(0, 2)).toEqual({ dist: 'constant', valueUs: 9 });
    expect(latency(1, 2)).toEqual({ dist: 'constant', valueUs: 9 });
    expect(latency(1, 3)).toEqual({ dist: 'constant', valueUs: 1000 });
    expect(latency(0, 1)).toEqual({ dist: 'constant', valueUs: 5 });
  });
});
