/**
 * The kernel's parts, each against its contract (design.md, "The kernel"): the event order, the
 * random streams, the latency distributions, and the network model's ordering, loss, duplication,
 * partitions, holds and faults — observed from a tiny probe machine that records what it receives.
 */
import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { enqueueActions, setup } from 'xstate';
import type { EventObject } from 'xstate';
import type { ActorDefinition, FaultAction, ScheduledFault } from '../../src/engine/createSimulation.js';
import { createSimulation } from '../../src/engine/createSimulation.js';
import { EventQueue } from '../../src/engine/eventQueue.js';
import type { QueuedEvent } from '../../src/engine/eventQueue.js';
import type { LatencyDist, LinkParams } from '../../src/engine/network.js';
import { latencyBoundUs, sampleLatencyUs } from '../../src/engine/network.js';
import { RandomStream } from '../../src/engine/rng.js';
import { formatDurationUs, parseDurationUs } from '../../src/engine/time.js';

describe('event queue', () => {
  const key = fc.record({
    time: fc.nat(50),
    kind: fc.constantFrom(0, 1, 2, 3, 4) as fc.Arbitrary<QueuedEvent['kind']>,
    target: fc.nat(5),
    origin: fc.integer({ min: -1, max: 5 }),
    originSeq: fc.nat(1000),
  });
  test.prop([fc.uniqueArray(key, { selector: (k) => `${k.origin}/${k.originSeq}`, maxLength: 200 })])(
    'pops in (time, kind, target, origin, originSeq) order whatever the push order',
    (keys) => {
      const q = new EventQueue();
      for (const k of keys) q.push({ ...k, payload: null });
      const popped: QueuedEvent[] = [];
      for (let e = q.pop(); e; e = q.pop()) popped.push(e);
      const sorted = [...keys].sort(
        (a, b) => a.time - b.time || a.kind - b.kind || a.target - b.target || a.origin - b.origin || a.originSeq - b.originSeq,
      );
      expect(popped.map(({ payload: _, ...k }) => k)).toEqual(sorted);
    },
  );
});

describe('random streams', () => {
  it('a stream is a function of (seed, name) only: creating others does not perturb it', () => {
    const alone = new RandomStream(42, 'actor:worker-3');
    const a = Array.from({ length: 5 }, () => alone.nextUint32());
    const noise = Array.from({ length: 100 }, (_, i) => new RandomStream(42, `actor:other-${i}`));
    for (const r of noise) r.next();
    const again = new RandomStream(42, 'actor:worker-3');
    expect(Array.from({ length: 5 }, () => again.nextUint32())).toEqual(a);
    expect(new RandomStream(43, 'actor:worker-3').nextUint32()).not.toBe(a[0]);
    expect(new RandomStream(42, 'actor:worker-4').nextUint32()).not.toBe(a[0]);
  });

  test.prop([fc.nat(), fc.string()])('next() is in [0, 1) and int(n) in [0, n)', (seed, name) => {
    const r = new RandomStream(seed, name);
    for (let i = 0; i < 50; i++) {
      const x = r.next();
      expect(x >= 0 && x < 1).toBe(true);
      const k = r.int(7);
      expect(Number.isInteger(k) && k >= 0 && k < 7).toBe(true);
    }
  });
});

describe('latency distributions', () => {
  const draw = (d: LatencyDist, n = 20_000): number[] => {
    const r = new RandomStream(1, 'dist');
    return Array.from({ length: n }, () => sampleLatencyUs(d, r)).sort((a, b) => a - b);
  };
  const q = (xs: number[], p: number): number => xs[Math.floor(p * (xs.length - 1))];

  it('constant and uniform stay in range', () => {
    expect(new Set(draw({ dist: 'constant', valueUs: 50 }, 100))).toEqual(new Set([50]));
    const u = draw({ dist: 'uniform', minUs: 100, maxUs: 200 });
    expect(u[0]).toBeGreaterThanOrEqual(100);
    expect(u.at(-1)).toBeLessThanOrEqual(200);
    expect(q(u, 0.5)).toBeGreaterThan(140);
    expect(q(u, 0.5)).toBeLessThan(160);
  });

  it('exponential has its mean above its minimum', () => {
    const e = draw({ dist: 'exponential', meanUs: 1000, minUs: 500 });
    const mean = e.reduce((a, b) => a + b, 0) / e.length;
    expect(e[0]).toBeGreaterThanOrEqual(500);
    expect(mean).toBeGreaterThan(1400);
    expect(mean).toBeLessThan(1600);
  });

  it('log-normal has the median and p99 it was given', () => {
    const l = draw({ dist: 'lognormal', medianUs: 20_000, p99Us: 200_000 });
    expect(q(l, 0.5) / 20_000).toBeGreaterThan(0.95);
    expect(q(l, 0.5) / 20_000).toBeLessThan(1.05);
    expect(q(l, 0.99) / 200_000).toBeGreaterThan(0.85);
    expect(q(l, 0.99) / 200_000).toBeLessThan(1.15);
    expect(latencyBoundUs({ dist: 'lognormal', medianUs: 20_000, p99Us: 200_000 })).toBeGreaterThan(q(l, 0.99));
  });
});

describe('durations', () => {
  it('parse and format round-trip', () => {
    for (const text of ['250ms', '15s', '1h', '1h30m', '2m13.5s', '500us', '1d']) {
      const us = parseDurationUs(text)!;
      expect(parseDurationUs(formatDurationUs(us))).toBe(us);
    }
    expect(parseDurationUs('fast')).toBeUndefined();
    expect(parseDurationUs('10')).toBeUndefined();
    expect(parseDurationUs('9999999999999d')).toBeUndefined();
  });

  it('parse the same text to the same value every time, past the remembered ones too', () => {
    // Parsed durations are remembered (a scenario repeats them per actor), up to a bound.
    for (let round = 0; round < 2; round++) {
      expect(parseDurationUs('250ms')).toBe(250_000);
      expect(parseDurationUs('fast')).toBeUndefined();
      expect(parseDurationUs('9999999999999d')).toBeUndefined();
      for (let k = 0; k < 5000; k++) expect(parseDurationUs(`${k}us`)).toBe(k);
    }
  });
});

// ---- the network model, seen by a probe ------------------------------------------------------

/** A sender sends `count` numbered messages to `to` at start (and one more on each `poke`). */
const sender = setup({
  types: { context: {} as { to: string; count: number; sent: number }, input: {} as { to: string; count: number } },
  actions: {
    burst: enqueueActions(({ context, enqueue }) => {
      for (let i = 0; i < context.count; i++)
        enqueue.emit({ type: 'host.send', to: context.to, msg: { type: 'Probe', n: context.sent++ } } as never);
    }),
  },
}).createMachine({
  context: ({ input }) => ({ ...input, sent: 0 }),
  initial: 'on',
  states: { on: { entry: 'burst', on: { poke: { actions: 'burst' } } } },
});

/** A receiver records every message it gets, with its arrival time. */
const receiver = setup({
  types: { context: {} as { got: { n: number; t: number; from: string }[] } },
  actions: {
    record: ({ context, event }) => {
      const e = event as EventObject & { msg: { n: number }; now: number; from: string };
      context.got.push({ n: e.msg.n, t: e.now, from: e.from });
    },
  },
}).createMachine({ context: () => ({ got: [] }), initial: 'on', states: { on: { on: { Probe: { actions: 'record' } } } } });

function probeRun(
  link: Partial<LinkParams>,
  opts: { count?: number; faults?: ScheduledFault[]; extraActors?: ActorDefinition[]; untilUs?: number; seed?: number } = {},
) {
  const actors: ActorDefinition[] = [
    { name: 'a', role: 'sender', machine: sender, input: { to: 'b', count: opts.count ?? 200 } },
    { name: 'b', role: 'receiver', machine: receiver, input: undefined },
    ...(opts.extraActors ?? []),
  ];
  const params: LinkParams = {
    latency: { dist: 'uniform', minUs: 1_000, maxUs: 50_000 },
    loss: 0,
    duplicate: 0,
    ordering: 'unordered',
    ...link,
  };
  const sim = createSimulation({
    seed: opts.seed ?? 9,
    actors,
    network: { defaults: params, links: [] },
    faults: opts.faults,
    untilUs: opts.untilUs ?? 10_000_000,
  });
  const result = sim.run();
  const b = sim.actorState('b')!.context as { got: { n: number; t: number }[] } | undefined;
  return { got: b?.got ?? [], result };
}

const at = (atUs: number, action: FaultAction): ScheduledFault => ({ atUs, action, label: action.kind });

describe('network model', () => {
  it('ordered links deliver in send order; unordered ones may not', () => {
    const ordered = probeRun({ ordering: 'ordered' }).got.map((g) => g.n);
    expect(ordered).toEqual([...ordered].sort((x, y) => x - y));
    expect(ordered).toHaveLength(200);
    const unordered = probeRun({ ordering: 'unordered' }).got.map((g) => g.n);
    expect(unordered).not.toEqual([...unordered].sort((x, y) => x - y));
  });

  it('loss drops about the given share; duplication delivers some twice (only when duplicating)', () => {
    const lossy = probeRun({ loss: 0.25 }, { count: 2000 });
    expect(lossy.got.length).toBeGreaterThan(1350);
    expect(lossy.got.length).toBeLessThan(1650);
    expect(lossy.result.counters.dropped.loss).toBe(2000 - lossy.got.length);
    const dup = probeRun({ ordering: 'unordered-duplicating', duplicate: 0.2 }, { count: 1000 });
    expect(dup.got.length).toBeGreaterThan(1120);
    expect(dup.got.length).toBe(1000 + dup.result.counters.duplicated);
  });

  it('adding an actor elsewhere does not change what a link draws', () => {
    const base = probeRun({});
    const more = probeRun(
      {},
      {
        extraActors: [
          { name: 'c', role: 'receiver', machine: receiver, input: undefined },
          { name: 'd', role: 'sender', machine: sender, input: { to: 'c', count: 50 } },
        ],
      },
    );
    expect(more.got).toEqual(base.got);
  });

  it('a two-way partition drops in both directions until it heals; a one-way one in one direction', () => {
    const cut = probeRun(
      { latency: { dist: 'constant', valueUs: 1000 } },
      { faults: [at(0, { kind: 'partition', id: 1, groups: [new Set([0]), new Set([1])] })] },
    );
    expect(cut.got).toEqual([]);
    expect(cut.result.counters.dropped.partition).toBe(200);
    const oneWayBack = probeRun(
      { latency: { dist: 'constant', valueUs: 1000 } },
      { faults: [at(0, { kind: 'partition-one-way', id: 1, from: new Set([1]), to: new Set([0]) })] },
    );
    expect(oneWayBack.got).toHaveLength(200);
    const oneWay = probeRun(
      { latency: { dist: 'constant', valueUs: 1000 } },
      { faults: [at(0, { kind: 'partition-one-way', id: 1, from: new Set([0]), to: new Set([1]) })] },
    );
    expect(oneWay.got).toHaveLength(0);
  });

  it('messages in flight while a partition cuts their link are lost, even if it heals before they arrive', () => {
    const r = probeRun(
      { latency: { dist: 'constant', valueUs: 5000 } },
      { faults: [at(2000, { kind: 'partition', id: 1, groups: [new Set([0]), new Set([1])] }), at(3000, { kind: 'heal', id: 1 })] },
    );
    expect(r.got).toEqual([]);
    expect(r.result.counters.dropped.partition).toBe(200);
    const after = probeRun(
      { latency: { dist: 'constant', valueUs: 5000 } },
      { faults: [at(6000, { kind: 'partition', id: 1, groups: [new Set([0]), new Set([1])] })] },
    );
    expect(after.got).toHaveLength(200);
  });

  it('a hold keeps messages and the release delivers them, in order, at the release time', () => {
    const r = probeRun(
      { latency: { dist: 'constant', valueUs: 1000 }, ordering: 'ordered' },
      {
        faults: [at(0, { kind: 'hold', id: 1, from: new Set([0]), to: new Set([1]) }), at(4_000_000, { kind: 'release', id: 1 })],
      },
    );
    expect(r.got).toHaveLength(200);
    expect(new Set(r.got.map((g) => g.t))).toEqual(new Set([4_000_000]));
    expect(r.got.map((g) => g.n)).toEqual(Array.from({ length: 200 }, (_, i) => i));
  });

  it('a crashed actor loses what it had and gets nothing until it restarts; a paused one gets it all on resume', () => {
    const crashed = probeRun(
      { latency: { dist: 'constant', valueUs: 1000 } },
      { faults: [at(0, { kind: 'crash', actors: [1] }), at(500_000, { kind: 'restart', actors: [1] })] },
    );
    expect(crashed.got).toEqual([]);
    expect(crashed.result.counters.dropped.down).toBe(200);
    const paused = probeRun(
      { latency: { dist: 'constant', valueUs: 1000 }, ordering: 'ordered' },
      { faults: [at(0, { kind: 'pause', actors: [1] }), at(2_000_000, { kind: 'resume', actors: [1] })] },
    );
    expect(paused.got).toHaveLength(200);
    expect(paused.got.every((g) => g.t === 2_000_000)).toBe(true);
    expect(paused.got.map((g) => g.n)).toEqual(Array.from({ length: 200 }, (_, i) => i));
  });

  it('a release keeps an ordered link FIFO: held messages never overtake one still in flight', () => {
    // Message 0 leaves before the hold with a 5 s latency; messages 1.. leave during a 1 s hold.
    const poke = { name: 'p', role: 'sender', machine: sender, input: { to: 'a', count: 0 } };
    const r = probeRun(
      { latency: { dist: 'constant', valueUs: 5_000_000 }, ordering: 'ordered' },
      {
        count: 3,
        extraActors: [poke],
        faults: [at(1, { kind: 'hold', id: 1, from: new Set([0]), to: new Set([1]) }), at(1_000_000, { kind: 'release', id: 1 })],
      },
    );
    expect(r.got.map((g) => g.n)).toEqual([0, 1, 2]);
  });

  it("an injected message travels through its named sender's links and partitions", () => {
    const inject = (atUs: number): ScheduledFault => at(atUs, { kind: 'inject', from: 'a', to: 1, msg: { type: 'Probe', n: 99 } as never });
    const open = probeRun({ latency: { dist: 'constant', valueUs: 7000 } }, { count: 0, faults: [inject(10)] });
    expect(open.got).toEqual([{ n: 99, t: 7010, from: 'a' }]);
    const cut = probeRun(
      { latency: { dist: 'constant', valueUs: 7000 } },
      { count: 0, faults: [at(0, { kind: 'partition', id: 1, groups: [new Set([0]), new Set([1])] }), inject(10)] },
    );
    expect(cut.got).toEqual([]);
  });

  it("a crash drops a paused actor's backlog, and records the drops", () => {
    const r = probeRun(
      { latency: { dist: 'constant', valueUs: 1000 } },
      { faults: [at(0, { kind: 'pause', actors: [1] }), at(500_000, { kind: 'crash', actors: [1] })] },
    );
    expect(r.got).toEqual([]);
    expect(r.result.counters.dropped.down).toBe(200);
    expect(r.result.counters.messagesSent).toBe(r.result.counters.messagesDelivered + r.result.counters.dropped.down);
  });

  it('a zero-delay loop stops the run as stalled instead of hanging', () => {
    const spinner = setup({}).createMachine({ initial: 'a', states: { a: { after: { 0: { target: 'a', reenter: true } } } } });
    const sim = createSimulation({
      seed: 1,
      actors: [{ name: 's', role: 'spinner', machine: spinner, input: undefined }],
      network: { defaults: { latency: { dist: 'constant', valueUs: 1 }, loss: 0, duplicate: 0, ordering: 'ordered' }, links: [] },
      untilUs: 1_000_000,
      stallEvents: 10_000,
    });
    const r = sim.run();
    expect(r.stoppedBecause).toBe('stalled');
    expect(r.stall).toEqual({ atUs: 0, events: 10_001 });
  });

  it('clock skew shifts the now an actor sees', () => {
    const r = probeRun(
      { latency: { dist: 'constant', valueUs: 1000 } },
      { count: 1, faults: [at(0, { kind: 'skew', actors: [1], byUs: 5_000_000 })] },
    );
    expect(r.got[0].t).toBe(5_001_000);
  });
});

describe('bulk world', () => {
  /** A world that sends the receiver one Probe-shaped event per step, and records when it ran. */
  function worldRun(faults: ScheduledFault[] = []) {
    const steps: number[] = [];
    let n = 0;
    const sim = createSimulation({
      seed: 1,
      actors: [
        // The sender's messages land exactly on a step instant (1 s latency).
        { name: 'a', role: 'sender', machine: sender, input: { to: 'b', count: 1 } },
        { name: 'b', role: 'receiver', machine: receiver, input: undefined },
      ],
      network: { defaults: { latency: { dist: 'constant', valueUs: 1_000_000 }, loss: 0, duplicate: 0, ordering: 'ordered' }, links: [] },
      faults,
      untilUs: 5_500_000,
      world: {
        stepUs: 1_000_000,
        step(nowUs) {
          steps.push(nowUs);
          return [{ to: 'b', event: { type: 'Probe', msg: { n: 100 + n++ }, from: 'world' } }];
        },
      },
    });
    const result = sim.run();
    const got = (sim.actorState('b')!.context as { got: { n: number; t: number }[] }).got;
    return { steps, got, result };
  }

  it('steps every period until the limit and delivers its events at that instant, after the messages of that instant', () => {
    const { steps, got, result } = worldRun();
    expect(steps).toEqual([1, 2, 3, 4, 5].map((s) => s * 1_000_000));
    expect(result.stoppedBecause).toBe('until');
    // The message sent at 0 arrives at 1 s: before the world's step of that instant.
    expect(got.slice(0, 3)).toEqual([
      { n: 0, t: 1_000_000, from: 'a' },
      { n: 100, t: 1_000_000, from: 'world' },
      { n: 101, t: 2_000_000, from: 'world' },
    ]);
  });

  it('a paused actor gets the world’s events when it resumes; a crashed one does not get them', () => {
    const paused = worldRun([at(1_500_000, { kind: 'pause', actors: [1] }), at(3_500_000, { kind: 'resume', actors: [1] })]);
    expect(paused.got.filter((g) => g.n >= 100).map((g) => [g.n, g.t])).toEqual([
      [100, 1_000_000],
      [101, 3_500_000],
      [102, 3_500_000],
      [103, 4_000_000],
      [104, 5_000_000],
    ]);
    const crashed = worldRun([at(2_500_000, { kind: 'crash', actors: [1] }), at(3_500_000, { kind: 'restart', actors: [1] })]);
    expect(crashed.got.map((g) => g.n)).toEqual([103, 104]); // the restarted incarnation starts empty
  });
});
