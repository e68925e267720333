/**
 * REAR providers and consumers (solvers) together on the simulation kernel (`shared/protocols/rear.md`,
 * "Consumer behaviour", "Scenario ideas"): one consumer and three providers with one down; consumers
 * racing for one non-partitionable flavor (strict: exactly one contract; fluidos: the double sell);
 * a consumer that walks away before purchasing. Both machine backends give the same trace.
 */
import { describe, expect, it } from 'vitest';
import type { ConsumerInput } from '../../src/actors/rear/consumer.machine.js';
import { consumerMachine } from '../../src/actors/rear/consumer.machine.js';
import type { ProviderInput } from '../../src/actors/rear/provider.machine.js';
import { providerMachine } from '../../src/actors/rear/provider.machine.js';
import type { ActorDefinition, ScheduledFault, SimObserver } from '../../src/engine/createSimulation.js';
import { createSimulation } from '../../src/engine/createSimulation.js';
import type { BackendName, KernelEffect } from '../../src/engine/machineBackend.js';
import { backendByName } from '../../src/engine/machineBackend.js';
import type { EventObject } from 'xstate';
import type { Flavor, RearMode } from '../../src/protocol/rear.js';
import { parseScenario } from '../../src/scenario/loadScenario.js';
import { runScenario } from '../../src/scenario/runScenario.js';

const GI = 2 ** 30;
const identity = (name: string) => ({ domain: 'fluidos.eu', nodeId: name, ip: '10.0.0.1' });
const box = (provider: string, amount: number): Flavor => ({
  flavorId: `${provider}-box`,
  providerId: provider,
  timestamp: 0,
  type: { name: 'k8slice', characteristics: { architecture: 'amd64', cpuMilli: 4000, memoryBytes: 16 * GI, pods: 110 } },
  price: { amount, currency: 'EUR', period: 'hourly' },
  owner: identity(provider),
  availability: true,
});

function providerDef(name: string, mode: RearMode, flavors: Flavor[]): ActorDefinition {
  const input: ProviderInput = {
    name,
    mode,
    identity: identity(name),
    flavors,
    ttpMs: 60_000,
    sweepMs: 20_000,
    contractDays: 365,
    refreshMs: 300_000,
    allocationMs: 0,
  };
  return { name, role: 'rear.provider', machine: providerMachine, input };
}
function consumerDef(name: string, mode: RearMode, providers: string[], extra: Partial<ConsumerInput> = {}): ActorDefinition {
  const input: ConsumerInput = {
    name,
    mode,
    identity: identity(name),
    providers,
    selector: { type: 'k8slice', filters: { cpu: { range: { min: 2000 } } } },
    startAfterMs: 0,
    phaseTimeoutMs: 120_000,
    givesUpAfterReserve: false,
    stallMs: 0,
    patienceMs: 0,
    subscribe: false,
    token: 't',
    ...extra,
  };
  return { name, role: 'rear.consumer', machine: consumerMachine, input };
}

/** Runs the market; returns the solvers' ends and the providers' sales, by observation. */
function market(actors: ActorDefinition[], backend: BackendName = 'flat', faults: ScheduledFault[] = []) {
  const ends = new Map<string, { outcome: string; reason: string; contractId?: string }>();
  const sold: { provider: string; flavorId: string; buyer: string }[] = [];
  const expired: string[] = [];
  const observer: SimObserver = {
    onObserve(_t, actor, obs) {
      const o = obs as {
        kind: string;
        outcome: string;
        reason: string;
        contractId?: string;
        flavorId: string;
        buyer: string;
        transactionId: string;
      };
      if (o.kind === 'rear.solver.end') ends.set(actor, { outcome: o.outcome, reason: o.reason, contractId: o.contractId });
      if (o.kind === 'rear.sold') sold.push({ provider: actor, flavorId: o.flavorId, buyer: o.buyer });
      if (o.kind === 'rear.expired') expired.push(o.transactionId);
    },
  };
  const result = createSimulation({
    seed: 1,
    actors,
    network: {
      defaults: { latency: { dist: 'uniform', minUs: 1000, maxUs: 5000 }, loss: 0, duplicate: 0, ordering: 'unordered' },
      links: [],
    },
    faults,
    untilUs: 600_000_000,
    backend,
    hash: true,
    observers: [observer],
  }).run();
  return { ends, sold, expired, result };
}

describe('REAR market on the kernel', () => {
  it('one consumer, three providers, one of them down: the solver skips it and buys the cheapest offer', () => {
    const actors = [
      providerDef('p1', 'strict', [box('p1', 30)]),
      providerDef('p2', 'strict', [box('p2', 20)]),
      providerDef('p3', 'strict', [box('p3', 10)]),
      consumerDef('c1', 'strict', ['p1', 'p2', 'p3']),
    ];
    const crashP3: ScheduledFault = { atUs: 0, action: { kind: 'crash', actors: [2] }, label: 'p3 down' };
    const { ends, sold, result } = market(actors, 'flat', [crashP3]);
    expect(ends.get('c1')).toMatchObject({ outcome: 'solved' });
    expect(sold).toEqual([{ provider: 'p2', flavorId: 'p2-box', buyer: 'c1' }]);
    // The discovery waited out its phase for p3, then went on.
    expect(result.reachedUs).toBeGreaterThan(120_000_000);
  });

  it('a listing answered with an error: strict goes on without it, fluidos fails the whole discovery', () => {
    // A malformed selector (min > max) is answered 400 by every provider.
    const badSelector = { selector: { filters: { cpu: { range: { min: 5, max: 1 } } } } };
    const { ends } = market([
      providerDef('p1', 'strict', [box('p1', 30)]),
      providerDef('p2', 'strict', [box('p2', 20)]),
      consumerDef('strict', 'strict', ['p1', 'p2'], badSelector),
      consumerDef('fluidos', 'fluidos', ['p1', 'p2'], badSelector),
    ]);
    expect(ends.get('strict')).toMatchObject({ outcome: 'failed', reason: 'no provider offers a matching flavor' });
    expect(ends.get('fluidos')).toMatchObject({ outcome: 'failed', reason: 'a provider failed the discovery' });
  });

  it.each(['flat', 'xstate'] as const)(
    '%s: ten consumers race for one non-partitionable flavor — strict sells it once, fluidos sells it to several',
    (backend) => {
      const racers = (mode: RearMode) => Array.from({ length: 10 }, (_, i) => consumerDef(`c${i}`, mode, ['p1']));
      const strict = market([providerDef('p1', 'strict', [box('p1', 10)]), ...racers('strict')], backend);
      expect(strict.sold).toHaveLength(1);
      const outcomes = [...strict.ends.values()].map((e) => e.outcome).sort();
      expect(outcomes).toEqual(['failed', 'failed', 'failed', 'failed', 'failed', 'failed', 'failed', 'failed', 'failed', 'solved']);
      const fluidos = market([providerDef('p1', 'fluidos', [box('p1', 10)]), ...racers('fluidos')], backend);
      // The double sell: every racer reserved before the first purchase made the flavor unavailable.
      expect(fluidos.sold.length).toBeGreaterThan(1);
      expect(new Set(fluidos.sold.map((s) => s.flavorId))).toEqual(new Set(['p1-box']));
    },
  );

  it('both backends give the same trace', () => {
    const run = (backend: BackendName) =>
      market(
        [providerDef('p1', 'strict', [box('p1', 10)]), ...Array.from({ length: 5 }, (_, i) => consumerDef(`c${i}`, 'strict', ['p1']))],
        backend,
      ).result.traceHash;
    expect(run('xstate')).toBe(run('flat'));
  });

  it('a consumer that walks away after reserving: its transaction expires at the next sweep and the flavor sells again', () => {
    const actors = [
      providerDef('p1', 'strict', [box('p1', 10)]),
      consumerDef('quitter', 'strict', ['p1'], { givesUpAfterReserve: true }),
      consumerDef('patient', 'strict', ['p1'], { startAfterMs: 90_000 }),
    ];
    const { ends, sold, expired } = market(actors);
    expect(ends.get('quitter')).toMatchObject({ outcome: 'gaveUp' });
    expect(expired).toHaveLength(1);
    expect(ends.get('patient')).toMatchObject({ outcome: 'solved' });
    expect(sold).toEqual([{ provider: 'p1', flavorId: 'p1-box', buyer: 'patient' }]);
  });
});

describe('the solver: stalls, patience and notices', () => {
  it('a stall past the TTP gets 408 and the solver tries its next candidate; a stall within it buys', () => {
    const flavors = [box('p1', 10), { ...box('p1', 20), flavorId: 'p1-box2' }];
    const slow = market([providerDef('p1', 'strict', flavors), consumerDef('c1', 'strict', ['p1'], { stallMs: 90_000 })]);
    expect(slow.ends.get('c1')).toMatchObject({ outcome: 'failed', reason: 'every candidate refused' });
    expect(slow.sold).toEqual([]);
    const quick = market([providerDef('p1', 'strict', flavors), consumerDef('c1', 'strict', ['p1'], { stallMs: 30_000 })]);
    expect(quick.sold).toEqual([{ provider: 'p1', flavorId: 'p1-box', buyer: 'c1' }]);
  });

  it('patience: a solver still without a contract gives up, even mid-phase (here: waiting on a provider that is down)', () => {
    const crash: ScheduledFault = { atUs: 0, action: { kind: 'crash', actors: [0] }, label: 'p1 down' };
    const { ends } = market(
      [providerDef('p1', 'strict', [box('p1', 10)]), consumerDef('c1', 'strict', ['p1'], { patienceMs: 60_000 })],
      'flat',
      [crash],
    );
    // At 60 s, before its discovery phase would have timed out (2 min).
    expect(ends.get('c1')).toEqual({ outcome: 'gaveUp', reason: 'ran out of patience', contractId: undefined });
  });

  it.each(['flat', 'xstate'] as const)(
    '%s: a modified Refresh drops a candidate that no longer matches; a Withdraw of the one being reserved releases it',
    (backend) => {
      const out: KernelEffect[] = [];
      const input = consumerDef('c1', 'strict', ['p1'], { subscribe: true }).input as ConsumerInput;
      const c = backendByName(backend).start(consumerMachine, input, out);
      const fire = (now: number) => {
        const timer = out.find((e) => e.type === 'timer.set') as Extract<KernelEffect, { type: 'timer.set' }>;
        out.length = 0;
        c.deliver({ ...timer.event, now } as EventObject, out);
      };
      const from = (msg: Record<string, unknown>, now: number) => {
        out.length = 0;
        c.deliver({ type: msg.type as string, from: 'p1', msg, now } as EventObject, out);
        return out.filter((e) => e.type === 'host.observe').map((e) => (e as unknown as { obs: Record<string, unknown> }).obs);
      };
      fire(0); // starts: lists on p1 (rid 1)
      const big = { ...box('p1', 10), flavorId: 'big' };
      const other = { ...box('p1', 20), flavorId: 'other' };
      from({ type: 'ListAnswer', re: 1, status: 200, flavors: [big, other] }, 10);
      // It subscribes to the flavor it reserves, and reserves it.
      expect(out.filter((e) => e.type === 'host.send').map((e) => (e as unknown as { msg: { type: string } }).msg.type)).toEqual([
        'SubscribeFlavor',
        'ReserveFlavor',
      ]);
      const smaller = {
        ...other,
        type: { name: 'k8slice', characteristics: { architecture: 'amd64', cpuMilli: 1000, memoryBytes: GI, pods: 1 } },
      };
      expect(from({ type: 'Refresh', flavor: smaller, expiresAtUs: 100, modified: true }, 20)).toEqual([
        { kind: 'rear.solver.notice', notice: 'refresh', flavorId: 'other', dropped: 1 },
      ]);
      // The flavor being reserved is partitioned by someone else's purchase: its remainder is tried next.
      const rest = { ...big, flavorId: 'big-r1' };
      from({ type: 'Refresh', flavor: rest, expiresAtUs: 100, modified: true, replaces: 'big' }, 25);
      expect((c.context as { candidates: { flavor: { flavorId: string } }[] }).candidates.map((x) => x.flavor.flavorId)).toEqual([
        'big-r1',
      ]);
      from({ type: 'ReserveAnswer', re: 3, status: 409, error: 'flavor big was partitioned' }, 26);
      expect(
        out
          .filter((e) => e.type === 'host.send')
          .map((e) => (e as unknown as { msg: { reservation?: { flavorId: string } } }).msg.reservation?.flavorId),
      ).toEqual([undefined, 'big-r1']);
      expect(from({ type: 'Withdraw', flavorId: 'big-r1', reason: 'maintenance' }, 30).map((o) => o.kind)).toEqual([
        'rear.solver.released',
        'rear.solver.notice',
        'rear.solver.end',
      ]);
      expect(c.state).toBe('failed');
    },
  );
});

describe('workloads (issue 5: arrivals, demand distributions, patience)', () => {
  it('demand drawn per consumer: a min CPU from a list, a partition for a share of them, whole flavors for the rest', () => {
    const yaml = (seed: number) => `
name: demand
protocol: rear
seed: ${seed}
duration: 1h
stopWhen: complete
network: { latency: { dist: uniform, min: 1ms, max: 5ms } }
actors:
  - { role: rear.provider, name: small, flavors: { count: 10, cpu: 4, memory: 16Gi, partitionable: { cpuMin: 1, memoryMin: 1Gi, cpuStep: 1, memoryStep: 1Gi } } }
  - { role: rear.provider, name: big, flavors: { count: 40, cpu: 8, memory: 32Gi, price: 100 } }
  - { role: rear.consumer, name: c, count: 40, arriveOver: 20s, arrivals: poisson, want: { cpu: { min: [1, 8] } }, partition: { cpu: 1, memory: 1Gi, share: 0.5 } }
`;
    const sales: { provider: string; partition: boolean }[] = [];
    const wants = new Set<number>();
    const s = runScenario(parseScenario(yaml(4), 'demand.yaml'), {
      observers: [
        {
          onObserve: (_t, actor, o) => {
            const r = o as { kind: string; partition?: object };
            if (r.kind === 'rear.sold') sales.push({ provider: actor, partition: r.partition !== undefined });
          },
          onSend: (_t, _from, _to, m) => {
            const sel = (m as { selector?: { filters?: { cpu?: { range: { min: number } } } } }).selector;
            if (m.type === 'ListFlavors' && sel?.filters?.cpu) wants.add(sel.filters.cpu.range.min);
          },
        },
      ],
    });
    expect(s.invariants.filter((i) => i.status === 'violated')).toEqual([]);
    // Both minimums were drawn; both kinds of purchase happened, partitions only at the partitionable provider.
    expect([...wants].sort((a, b) => a - b)).toEqual([1000, 8000]);
    expect(sales.some((x) => x.partition) && sales.some((x) => !x.partition)).toBe(true);
    expect(sales.filter((x) => x.partition).every((x) => x.provider === 'small')).toBe(true);
    // The same seed draws the same market; another seed another one.
    const again = runScenario(parseScenario(yaml(4), 'demand.yaml'), { hash: true }).traceHash;
    expect(runScenario(parseScenario(yaml(4), 'demand.yaml'), { hash: true }).traceHash).toBe(again);
    expect(runScenario(parseScenario(yaml(5), 'demand.yaml'), { hash: true }).traceHash).not.toBe(again);
  });
});

describe('flavor types (rear.md, "Data model")', () => {
  it('vm, service and sensor flavors are listed by type and bought whole; a vm filter counts whole cores', () => {
    const s = runScenario(
      parseScenario(
        `
name: types
protocol: rear
seed: 3
duration: 1h
stopWhen: complete
network: { latency: { dist: uniform, min: 1ms, max: 5ms } }
actors:
  - { role: rear.provider, name: vms, flavors: { type: vm, count: 2, cpu: 4, memory: 8Gi, aggregatable: { minCount: 1, maxCount: 3 } } }
  - { role: rear.provider, name: small-vms, flavors: { type: vm, cpu: 1, price: 1 } }
  - { role: rear.provider, name: db, flavors: { type: service, category: postgres } }
  - { role: rear.provider, name: thermo, flavors: { type: sensor, sensorType: temperature } }
  - { role: rear.consumer, name: wants-vm, want: { type: vm, cpu: { min: 2 } } }
  - { role: rear.consumer, name: wants-service, want: { type: service } }
  - { role: rear.consumer, name: wants-sensor, want: { type: sensor } }
  - { role: rear.consumer, name: wants-slice }
`,
        'types.yaml',
      ),
    );
    // The cheapest vm with at least 2 cores is at vms (small-vms has 1); nobody offers a k8slice.
    expect(s.metrics.contractsByProvider).toEqual({ db: 1, thermo: 1, vms: 1 });
    expect(s.metrics.solverEndsByReason).toEqual({ 'no provider offers a matching flavor': 1 });
    expect(s.invariants.every((i) => i.status !== 'violated')).toBe(true);
  });
});

describe('the token authority (rear.md: "a trusted third party validates it")', () => {
  const scenario = (lifetime: string, forge: boolean) => `
name: tokens
protocol: rear
seed: 5
duration: 1h
stopWhen: complete
network: { latency: { dist: uniform, min: 5ms, max: 10ms } }
actors:
  - { role: rear.authority, name: authority, tokenLifetime: ${lifetime} }
  - { role: rear.provider, name: p1, flavors: { count: 2 } }
  - { role: rear.consumer, name: c1, forgeToken: ${forge} }
`;
  const refusals = (yaml: string) => {
    const reasons: string[] = [];
    const s = runScenario(parseScenario(yaml, 'tokens.yaml'), {
      observers: [
        {
          onObserve: (_t, _actor, o) => {
            const r = o as { kind: string; status?: number; reason?: string };
            if (r.kind === 'rear.refused') reasons.push(`${r.status} ${r.reason}`);
          },
        },
      ],
    });
    return { reasons, contracts: s.metrics.contracts, solvers: s.metrics.solvers };
  };

  it('a valid token buys', () => {
    expect(refusals(scenario('1h', false))).toEqual({ reasons: [], contracts: 1, solvers: { solved: 1 } });
  });
  it('a forged token is refused with 401 at every provider call', () => {
    expect(refusals(scenario('1h', true))).toEqual({
      reasons: ['401 token forged', '401 token forged'],
      contracts: 0,
      solvers: { failed: 1 },
    });
  });
  it('an expired token is refused with 401', () => {
    // The token lives 1 ms; the listing round trip alone takes at least 10 ms.
    expect(refusals(scenario('1ms', false))).toEqual({
      reasons: ['401 token expired', '401 token expired'],
      contracts: 0,
      solvers: { failed: 1 },
    });
  });
});
