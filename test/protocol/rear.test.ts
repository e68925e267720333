/**
 * REAR protocol types (`shared/protocols/rear.md`, "Data model" and "HTTP binding"): Kubernetes
 * quantities, selectors and filters, the partition grid, and the validation of requests from outside.
 */
import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import type { Flavor, Selector } from '../../src/protocol/rear.js';
import {
  formatQuantity,
  matchesSelector,
  onGrid,
  parseQuantity,
  parseRearRequest,
  partitionProblem,
  selectorProblem,
} from '../../src/protocol/rear.js';
import { sample } from '../helpers/property.js';

const value = (text: string, unit?: 'one' | 'milli') => {
  const r = parseQuantity(text, unit);
  return r.ok ? r.value : r.error;
};

describe('Kubernetes quantities', () => {
  it('reads the spec example policy exactly: 500m CPU, 1Gi and 512Mi memory, 250m steps', () => {
    expect(value('500m', 'milli')).toBe(500);
    expect(value('250m', 'milli')).toBe(250);
    expect(value('2', 'milli')).toBe(2000);
    expect(value('1.5', 'milli')).toBe(1500);
    expect(value('1Gi')).toBe(2 ** 30);
    expect(value('512Mi')).toBe(512 * 2 ** 20);
    expect(value('4Gi')).toBe(4 * 2 ** 30);
    expect(value('1.5Gi')).toBe(1.5 * 2 ** 30);
    expect(value('4G')).toBe(4e9);
    expect(value('2e3')).toBe(2000);
    expect(value('1.5k')).toBe(1500);
    expect(value(' 8 ')).toBe(8);
  });

  it('refuses malformed, negative, fractional and too large quantities with the reason', () => {
    expect(value('4Gx')).toMatch(/^malformed quantity "4Gx": expected a number with m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei/);
    expect(value('')).toMatch(/^malformed quantity ""/);
    expect(value('Gi')).toMatch(/^malformed quantity "Gi"/);
    expect(value('1 Gi')).toMatch(/^malformed quantity/);
    expect(value('-1Gi')).toBe('quantity "-1Gi" is negative');
    expect(value('100m')).toBe('quantity "100m" is not a whole number of units');
    expect(value('0.5m', 'milli')).toBe('quantity "0.5m" is not a whole number of millis (1m)');
    expect(value('0.1Gi')).toBe('quantity "0.1Gi" is not a whole number of units');
    expect(value('16Ei')).toBe('quantity "16Ei" is too large');
  });

  test.prop([fc.nat(2 ** 40), fc.constantFrom('bytes', 'count')], sample(200))(
    'format then parse gives the number back (bytes, counts)',
    (n, unit) => {
      expect(value(formatQuantity(n, unit as 'bytes' | 'count'))).toBe(n);
    },
  );

  test.prop([fc.nat(10 ** 9)], sample(200))('format then parse gives the millicores back', (n) => {
    expect(value(formatQuantity(n, 'milli'), 'milli')).toBe(n);
  });

  it('formats with the largest exact suffix', () => {
    expect(formatQuantity(4 * 2 ** 30, 'bytes')).toBe('4Gi');
    expect(formatQuantity(1536 * 2 ** 20, 'bytes')).toBe('1536Mi');
    expect(formatQuantity(1000, 'bytes')).toBe('1000');
    expect(formatQuantity(500, 'milli')).toBe('500m');
    expect(formatQuantity(3000, 'milli')).toBe('3');
  });
});

const slice = (cpuMilli: number, memoryBytes: number, architecture = 'amd64'): Flavor => ({
  flavorId: `f-${cpuMilli}-${memoryBytes}`,
  providerId: 'p1',
  timestamp: 0,
  type: { name: 'k8slice', characteristics: { architecture, cpuMilli, memoryBytes, pods: 110 } },
  price: { amount: 10, currency: 'EUR', period: 'hourly' },
  owner: { domain: 'fluidos.eu', nodeId: 'p1', ip: '10.0.0.1' },
  availability: true,
});
const vm: Flavor = { ...slice(0, 0), flavorId: 'vm-1', type: { name: 'vm', cpu: 4, memory: 8, storage: 100 } };

describe('selectors', () => {
  it('match by type and by each filter kind: match, exact, range (inclusive, open-ended)', () => {
    const f = slice(4000, 8 * 2 ** 30);
    const sel = (s: Selector) => matchesSelector(f, s);
    expect(sel({})).toBe(true);
    expect(sel({ type: 'k8slice' })).toBe(true);
    expect(sel({ type: 'vm' })).toBe(false);
    expect(sel({ filters: { architecture: { match: 'amd64' } } })).toBe(true);
    expect(sel({ filters: { architecture: { match: 'arm64' } } })).toBe(false);
    expect(sel({ filters: { cpu: { exact: 4000 } } })).toBe(true);
    expect(sel({ filters: { cpu: { exact: 4001 } } })).toBe(false);
    expect(sel({ filters: { cpu: { range: { min: 4000, max: 4000 } } } })).toBe(true);
    expect(sel({ filters: { cpu: { range: { min: 4001 } } } })).toBe(false);
    expect(sel({ filters: { memory: { range: { max: 8 * 2 ** 30 } } } })).toBe(true);
    // A filter on a characteristic the flavor does not have excludes it.
    expect(sel({ filters: { gpu: { range: { min: 0 } } } })).toBe(false);
    expect(matchesSelector(vm, { filters: { cpu: { exact: 4 }, storage: { range: { min: 50 } } } })).toBe(true);
    expect(matchesSelector(vm, { filters: { architecture: { match: 'amd64' } } })).toBe(false);
  });

  it('names what is wrong with a malformed selector', () => {
    expect(selectorProblem({ filters: { cpu: { range: { min: 4000, max: 1000 } } } })).toBe('filters.cpu.range: min 4000 > max 1000');
    expect(selectorProblem({ filters: { cpu: { range: {} } } })).toBe('filters.cpu.range: needs min, max or both');
    expect(selectorProblem({ filters: { colour: { match: 'red' } } } as never)).toMatch(/^filters.colour: unknown filter key/);
    expect(selectorProblem({ filters: { architecture: { exact: 1 } } })).toBe('filters.architecture: expected {match: string}');
    expect(selectorProblem({ filters: { memory: { match: '4Gi' } } })).toBe('filters.memory: expected {exact} or {range}, got {match}');
    expect(selectorProblem({ type: 'k8slice', filters: { cpu: { range: { min: 1, max: 1 } } } })).toBeUndefined();
    // An unknown flavor type in a live request: the provider answers 400 with this reason.
    expect(selectorProblem({ type: 'gpu-box' } as never)).toBe(
      'type: unknown flavor type "gpu-box" (expected one of k8slice, vm, service, sensor)',
    );
  });
});

describe('partitions (rear.md "Provider behaviour": min + k·step in every dimension, fitting what is left)', () => {
  const policy = { cpuMinMilli: 500, memoryMinBytes: 2 ** 30, podsMin: 1, cpuStepMilli: 250, memoryStepBytes: 512 * 2 ** 20, podsStep: 1 };
  const left = { cpuMilli: 4000, memoryBytes: 8 * 2 ** 30, pods: 110 };

  it('accepts points on the grid that fit, and names the dimension that is off or too big', () => {
    expect(partitionProblem({ cpuMilli: 500, memoryBytes: 2 ** 30, pods: 1 }, policy, left)).toBeUndefined();
    expect(partitionProblem({ cpuMilli: 1250, memoryBytes: 1.5 * 2 ** 30, pods: 3 }, policy, left)).toBeUndefined();
    expect(partitionProblem({ cpuMilli: 600, memoryBytes: 2 ** 30, pods: 1 }, policy, left)).toBe('cpu 600 is off the grid 500 + k·250');
    expect(partitionProblem({ cpuMilli: 250, memoryBytes: 2 ** 30, pods: 1 }, policy, left)).toBe('cpu 250 is off the grid 500 + k·250');
    expect(partitionProblem({ cpuMilli: 500, memoryBytes: 2 ** 29, pods: 1 }, policy, left)).toMatch(/^memory 536870912 is off the grid/);
    expect(partitionProblem({ cpuMilli: 4250, memoryBytes: 2 ** 30, pods: 1 }, policy, left)).toBe('cpu 4250 exceeds the 4000 left');
  });

  test.prop([fc.nat(1000), fc.nat(1000), fc.integer({ min: 1, max: 1000 })], sample(200))(
    'onGrid holds exactly for min + k·step',
    (min, k, step) => {
      expect(onGrid(min + k * step, min, step)).toBe(true);
      expect(onGrid(min + k * step + (step > 1 ? 1 : 0), min, step)).toBe(step === 1);
      if (min > 0) expect(onGrid(min - 1, min, step)).toBe(false);
    },
  );
});

describe('requests from outside', () => {
  const buyer = { domain: 'fluidos.eu', nodeId: 'c1', ip: '10.0.0.9' };
  it('accepts well-formed requests', () => {
    expect(
      parseRearRequest({ type: 'ListFlavors', rid: 1, selector: { type: 'k8slice', filters: { cpu: { range: { min: 1000 } } } } }).ok,
    ).toBe(true);
    expect(parseRearRequest({ type: 'ReserveFlavor', rid: 2, reservation: { flavorId: 'f1', buyer }, token: 't' }).ok).toBe(true);
    expect(parseRearRequest({ type: 'PurchaseFlavor', rid: 3, transactionId: 'tx1', token: 't' }).ok).toBe(true);
    expect(parseRearRequest({ type: 'SubscribeFlavor', rid: 4, flavorId: 'f1' }).ok).toBe(true);
    expect(parseRearRequest({ type: 'WithdrawFlavor', flavorId: 'f1', reason: 'maintenance' }).ok).toBe(true);
  });

  it('names the field of a malformed one', () => {
    const bad = (input: unknown) => {
      const r = parseRearRequest(input);
      return r.ok ? 'ok' : r.error;
    };
    expect(bad({ type: 'ListFlavors', rid: 1, selector: { filters: { cpu: { range: { min: 5, max: 1 } } } } })).toBe(
      'selector: filters.cpu.range: min 5 > max 1',
    );
    expect(bad({ type: 'ListFlavors', rid: 1, selector: { type: 'gpu-box' } })).toMatch(/^selector.type: /);
    expect(bad({ type: 'ReserveFlavor', rid: 2, reservation: { flavorId: 'f1' }, token: 't' })).toMatch(/^reservation.buyer: /);
    expect(
      bad({
        type: 'ReserveFlavor',
        rid: 2,
        reservation: { flavorId: 'f1', buyer, configuration: { type: 'k8slice', data: { cpuMilli: -1, memoryBytes: 0, pods: 1 } } },
        token: 't',
      }),
    ).toMatch(/^reservation.configuration.data.cpuMilli: /);
    expect(bad({ type: 'Purchase', rid: 3 })).toMatch(/^type: /);
    expect(bad({ type: 'WithdrawFlavor', flavorId: 'f1' })).toMatch(/^reason: /);
  });
});
