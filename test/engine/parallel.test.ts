/**
 * The sharded kernel (src/engine/parallel.ts) against the one kernel: for every scenario, for random
 * manager/worker scenarios with every kind of fault, and for the kernel's edge cases (a stall, an
 * injected message, duplicating links, a message to an actor on another shard that crashed), a run
 * split over 2, 3 or 4 shards gives the same trace hash, counters, observer results and summary.
 * Shards run in this thread here; the merge, the windows and the routing are the parallel kernel's.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { enqueueActions, setup } from 'xstate';
import type { ActorDefinition, RunResult, ScheduledFault, SimObserver, SimulationOptions } from '../../src/engine/createSimulation.js';
import { createSimulation } from '../../src/engine/createSimulation.js';
import { createShardedSimulation } from '../../src/engine/parallel.js';
import { planShards } from '../../src/engine/partition.js';
import { loadScenario, parseScenario } from '../../src/scenario/loadScenario.js';
import type { RunSummary } from '../../src/scenario/runScenario.js';
import { planScenario, runScenario, runScenarioAsync } from '../../src/scenario/runScenario.js';
import { managerMachine } from '../../src/actors/manager-worker/manager.machine.js';
import { workerMachine } from '../../src/actors/manager-worker/worker.machine.js';
import { mwScenario, mwSites, mwSitesYaml, mwYaml } from '../helpers/mwScenario.js';
import { sample } from '../helpers/property.js';

/** What a user sees of a run, without wall-clock figures. */
function visible(s: RunSummary) {
  return {
    traceHash: s.traceHash,
    events: s.events,
    stoppedBecause: s.stoppedBecause,
    virtualTimeUs: s.virtualTimeUs,
    messages: s.messages,
    timersFired: s.timersFired,
    faults: s.faults,
    invariants: s.invariants.map((i) => ({
      id: i.id,
      status: i.status,
      checks: i.checks,
      violations: i.violationCount,
      kept: i.violations,
    })),
    expectations: s.expectations,
    metrics: s.metrics,
    actorErrors: s.actorErrors,
  };
}

const files = readdirSync('scenarios', { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.yaml') && !f.endsWith('large.yaml'))
  .map((f) => join('scenarios', f))
  .sort();

describe('every scenario: the same run on 2 and 4 shards', () => {
  it.each(files)('%s', async (file) => {
    const one = visible(runScenario(loadScenario(file), { hash: true }));
    // As a user gets it (local mode, or one kernel), and in windows.
    expect(visible(await runScenarioAsync(loadScenario(file), { hash: true, shards: 2 })), '2 shards').toEqual(one);
    for (const shards of [2, 4])
      expect(
        visible(await runScenarioAsync(loadScenario(file), { hash: true, shards, local: false })),
        `${shards} shards in windows`,
      ).toEqual(one);
  });

  it('manager/worker scenarios really split; Virdi ones (a bulk world) and lognormal links stay whole', () => {
    const shardsOf = (f: string) => planScenario(loadScenario(f), { shards: 4 }).shardPlan!;
    expect(shardsOf('scenarios/manager-worker/basic.yaml').shards).toBe(4);
    expect(shardsOf('scenarios/manager-worker/worker-crash.yaml').shards).toBeGreaterThan(1);
    expect(shardsOf('scenarios/virdi/rates.yaml').shards).toBe(1);
    const lognormal = shardsOf('scenarios/manager-worker/lossy-network.yaml');
    expect(lognormal.shards).toBe(1);
    expect(lognormal.notes.join()).toMatch(/lognormal/);
  });

  it('a run that would need windows (no shard-local checking, a trace sink that cannot start over) runs on one kernel unless windows are asked for', async () => {
    const file = 'scenarios/rear/race-strict.yaml';
    const plain = planScenario(loadScenario(file), { shards: 2 }).shardPlan!;
    expect(plain.shards).toBe(1);
    expect(plain.notes.join()).toMatch(
      /rear's invariants are checked over all actors at once .*which needs windows, and windows are slower than one thread \(--windows forces them\)/,
    );
    expect(planScenario(loadScenario(file), { shards: 2, local: false }).shardPlan!.shards).toBe(2);
    const sink = () => undefined;
    const traced = planScenario(loadScenario('scenarios/manager-worker/sites.yaml'), { shards: 2, traceSink: sink }).shardPlan!;
    expect(traced.shards).toBe(1);
    expect(traced.notes.join()).toMatch(/a trace sink that cannot start over is written in the one merged order/);
    expect(planScenario(loadScenario('scenarios/manager-worker/sites.yaml'), { shards: 2 }).shardPlan!.shards).toBe(2);
    const restartable = { shards: 2, traceSink: sink, traceRestart: sink };
    expect(planScenario(loadScenario('scenarios/manager-worker/sites.yaml'), restartable).shardPlan!.shards).toBe(2);
  });
});

test.prop([mwScenario, fc.constantFrom(2, 3)], sample(30))(
  'random manager/worker scenarios with faults: the same run on shards as on one kernel',
  async (p, shards) => {
    const yaml = mwYaml(p, 1);
    const one = visible(runScenario(parseScenario(yaml, 'property.yaml'), { hash: true }));
    const split = visible(await runScenarioAsync(parseScenario(yaml, 'property.yaml'), { hash: true, shards, local: false }));
    expect(split, yaml).toEqual(one);
  },
);

// ---- local mode: shards that observe their own actors --------------------------------------------

const localModes: string[] = [];

test.prop([mwSites, fc.constantFrom(2, 3)], sample(30))(
  'random sites with faults and stopWhen: the same run on shards (local mode, or one kernel when it gives up) as on one kernel',
  async (p, shards) => {
    const yaml = mwSitesYaml(p);
    const one = visible(runScenario(parseScenario(yaml, 'sites.yaml'), { hash: true }));
    const run = await runScenarioAsync(parseScenario(yaml, 'sites.yaml'), { hash: true, shards });
    localModes.push(run.parallel?.abandoned === undefined ? (run.parallel?.mode ?? 'one shard') : 'abandoned');
    expect(visible(run), yaml).toEqual(one);
  },
);

describe('local mode', () => {
  it('ran most random sites cases on its own (the property above is not only about the fallback)', () => {
    const local = localModes.filter((m) => m === 'local').length;
    expect(local, localModes.join()).toBeGreaterThan(localModes.length / 3);
  });

  const sites = (extra: string, mode = 'strict') => `
name: three-sites
protocol: manager-worker
mode: ${mode}
seed: 9
duration: 20m
stopWhen: complete
network: { latency: { dist: uniform, min: 1ms, max: 40ms }, loss: 0.01, ordering: unordered-duplicating, duplicate: 0.05 }
actors:
  - { role: mw.manager, name: site-0, statusPoll: 20s, tasks: { count: 30, timeout: 40s } }
  - { role: mw.manager, name: site-1, statusPoll: 20s, tasks: { count: 20, timeout: 40s } }
  - { role: mw.manager, name: site-2, statusPoll: 20s, tasks: { count: 25, timeout: 40s } }
  - { role: mw.worker, name: w0, count: 3, managers: [site-0], run: { dist: uniform, min: 1s, max: 20s }${mode === 'balthazar' ? ', failures: { hang: 0.2 }' : ''} }
  - { role: mw.worker, name: w1, count: 3, managers: [site-1], run: { dist: uniform, min: 1s, max: 20s } }
  - { role: mw.worker, name: w2, count: 3, managers: [site-2], run: { dist: uniform, min: 1s, max: 20s } }
${extra}
`;
  const faults = `faults:
  - { at: 5s, crash: w0-1, restart: 30s }
  - { at: 8s, pause: w1-0, resume: 20s }
  - { at: 12s, partition: [[w2-2], rest], heal: 40s }
  - { at: 15s, skew: w0-2, by: 3s }
  - { at: 60s, shutdown: w1-2 }`;

  it('a run whose sites stay on their shards: local mode, the same summary and hash as one kernel and as windows', async () => {
    const yaml = sites(faults);
    const one = visible(runScenario(parseScenario(yaml, 'sites.yaml'), { hash: true }));
    expect(one.stoppedBecause).toBe('complete');
    for (const shards of [2, 3]) {
      const run = await runScenarioAsync(parseScenario(yaml, 'sites.yaml'), { hash: true, shards });
      expect(run.parallel, `${shards} shards`).toMatchObject({ shards, mode: 'local' });
      expect(run.parallel?.abandoned).toBeUndefined();
      expect(visible(run), `${shards} shards`).toEqual(one);
      const windows = await runScenarioAsync(parseScenario(yaml, 'sites.yaml'), { hash: true, shards, local: false });
      expect(windows.parallel?.mode).toBe('windows');
      expect(visible(windows), `${shards} shards in windows`).toEqual(one);
    }
  });

  /** A trace sink that keeps its lines, and starts over when told (counting the lines it had then). */
  const traceInto = () => {
    const t = { lines: [] as string[], voided: [] as number[] };
    return {
      t,
      overrides: {
        traceSink: (line: string) => void t.lines.push(line),
        traceRestart: () => {
          t.voided.push(t.lines.length);
          t.lines = [];
        },
      },
    };
  };

  it("writes the trace as it folds the hashes: the one kernel's lines, in its order", async () => {
    const yaml = sites(faults);
    const one = traceInto();
    const oneRun = runScenario(parseScenario(yaml, 'sites.yaml'), one.overrides);
    expect(one.t.lines.length).toBeGreaterThan(1000);
    for (const shards of [2, 3]) {
      const split = traceInto();
      const run = await runScenarioAsync(parseScenario(yaml, 'sites.yaml'), { ...split.overrides, shards });
      expect(run.parallel, `${shards} shards`).toMatchObject({ shards, mode: 'local' });
      expect(run.parallel?.abandoned).toBeUndefined();
      expect(split.t.voided).toEqual([]);
      expect(split.t.lines, `${shards} shards`).toEqual(one.t.lines);
      expect(run.traceHash).toBe(oneRun.traceHash);
    }
  });

  it('gives up when a message crosses shards, and redoes the run on one kernel', async () => {
    const file = 'scenarios/manager-worker/basic.yaml';
    const run = await runScenarioAsync(loadScenario(file), { hash: true, shards: 2 });
    expect(run.parallel?.mode).toBe('one-kernel');
    expect(run.parallel?.abandoned).toMatch(/^worker-\d+ sent to manager on another shard at /);
    expect(visible(run)).toEqual(visible(runScenario(loadScenario(file), { hash: true })));
  });

  it("gives up at a violation (its trace excerpt spans shards): the report is the one kernel's", async () => {
    const yaml = sites('', 'balthazar');
    const one = visible(runScenario(parseScenario(yaml, 'sites.yaml'), { hash: true }));
    expect(one.invariants.find((i) => i.id === 'mw.one-answer')?.status).toBe('violated');
    const run = await runScenarioAsync(parseScenario(yaml, 'sites.yaml'), { hash: true, shards: 3 });
    expect(run.parallel?.abandoned).toMatch(/an invariant was violated/);
    expect(visible(run)).toEqual(one);
  });

  // A manager that pings but never drops anyone (mw.liveness must catch it), on one of two sites.
  const neverDrops = managerMachine.provide({
    actions: {
      tick: enqueueActions(({ context, event, enqueue }) => {
        for (const [w, rec] of context.workers) {
          rec.lastPingUs = (event as { now: number }).now;
          enqueue.emit({ type: 'host.send', to: w, msg: { type: 'ManagerPing', rid: ++context.rid } } as never);
        }
      }),
    },
  });
  const twoSites = (duration: string) => `
name: live
protocol: manager-worker
seed: 3
duration: ${duration}
network: { latency: 1ms }
actors:
  - { role: mw.manager, name: site-0, tasks: { count: 0 } }
  - { role: mw.manager, name: site-1, tasks: { count: 2000, timeout: 30s } }
  - { role: mw.worker, name: w0, count: 1, managers: [site-0] }
  - { role: mw.worker, name: w1, count: 3, managers: [site-1], run: { dist: uniform, min: 100ms, max: 900ms } }
faults:
  - { at: 20s, crash: w0 }
  - { at: 91s, crash: site-0 }
`;

  it.each([
    ['300s', 91_000_000],
    ['95s', 91_000_000],
    // Past the deadline (90.906 s) after the last sweep: only the end's sweep sees it.
    ['90950ms', 90_950_000],
  ])(
    'a periodic sweep sees the same pairs at the same instants on its shard as on one kernel: a liveness violation on a quiet shard is caught (run of %s)',
    async (duration, violatedAtUs) => {
      // The sweep runs at fixed virtual times (SimObserver.tickUs), so the quiet site-0 shard sweeps
      // at 91 s too, before its crash forgets the pair; at 95 s the violation is found by the last sweep.
      const machines = { 'mw.manager': neverDrops };
      const one = runScenario(parseScenario(twoSites(duration), 'live.yaml'), { hash: true, machines });
      const liveness = one.invariants.find((i) => i.id === 'mw.liveness')!;
      expect(liveness.status).toBe('violated');
      expect(liveness.violations[0].t).toBe(violatedAtUs);
      const run = await runScenarioAsync(parseScenario(twoSites(duration), 'live.yaml'), { hash: true, shards: 2, machines });
      expect(run.parallel?.abandoned).toMatch(/an invariant was violated/);
      expect(visible(run)).toEqual(visible(one));
    },
  );

  it('a trace written before local mode gives up is voided, and the sink gets the whole trace again', async () => {
    const machines = { 'mw.manager': neverDrops };
    const one = traceInto();
    runScenario(parseScenario(twoSites('300s'), 'live.yaml'), { ...one.overrides, machines });
    const split = traceInto();
    const run = await runScenarioAsync(parseScenario(twoSites('300s'), 'live.yaml'), { ...split.overrides, shards: 2, machines });
    expect(run.parallel?.abandoned).toMatch(/an invariant was violated/);
    // The quiet shard finds the violation (at 91 s) early on: the sink had the start of the run then.
    expect(split.t.voided).toHaveLength(1);
    expect(split.t.voided[0]).toBeGreaterThan(0);
    expect(split.t.lines).toEqual(one.t.lines);
  });

  it("an actor that throws while starting: local mode gives up, and the errors are the one kernel's", async () => {
    const throwing = workerMachine.provide({
      actions: {
        contactPeers: () => {
          throw new Error('boom at start');
        },
      },
    });
    const yaml =
      twoSites('100s')
        .replace(/faults:[\s\S]*$/, '')
        .replace(/count: 2000, timeout: 30s/, 'count: 0') + 'stopWhen: complete\n';
    const machines = { 'mw.worker': throwing };
    const one = runScenario(parseScenario(yaml, 'x.yaml'), { hash: true, machines });
    expect(one.actorErrors.map((e) => e.message)).toEqual(['boom at start', 'boom at start', 'boom at start', 'boom at start']);
    const run = await runScenarioAsync(parseScenario(yaml, 'x.yaml'), { hash: true, shards: 2, machines });
    expect(run.parallel?.abandoned).toMatch(/an actor threw at/);
    expect(visible(run)).toEqual(visible(one));
  });

  it('without stopWhen, and with a run limit that cuts it: the same run', async () => {
    const yaml = sites(faults).replace('stopWhen: complete', '').replace('duration: 20m', 'duration: 45s');
    const one = visible(runScenario(parseScenario(yaml, 'sites.yaml'), { hash: true }));
    expect(one.stoppedBecause).toBe('until');
    const run = await runScenarioAsync(parseScenario(yaml, 'sites.yaml'), { hash: true, shards: 3 });
    expect(run.parallel).toMatchObject({ mode: 'local' });
    expect(visible(run)).toEqual(one);
  });
});

// ---- kernel edge cases -------------------------------------------------------------------------

/** Sends `count` messages to each of `to` at start, and again on every message it receives (up to `rounds`). */
const chatter = setup({
  types: {
    context: {} as { to: string[]; count: number; rounds: number; n: number },
    input: {} as { to: string[]; count: number; rounds: number },
  },
  actions: {
    burst: enqueueActions(({ context, enqueue }) => {
      if (context.n >= context.rounds) return;
      context.n++;
      for (const to of context.to)
        for (let i = 0; i < context.count; i++) enqueue.emit({ type: 'host.send', to, msg: { type: 'Chat', n: context.n, i } } as never);
    }),
  },
}).createMachine({
  context: ({ input }) => ({ ...input, n: 0 }),
  initial: 'on',
  states: { on: { entry: 'burst', on: { Chat: { actions: 'burst' } } } },
});

const spinner = setup({}).createMachine({ initial: 'a', states: { a: { after: { 0: { target: 'a', reenter: true } } } } });
/** Starts a zero-delay loop after `ms`. */
const spinAfter = (ms: number) =>
  setup({}).createMachine({ initial: 'w', states: { w: { after: { [ms]: 's' } }, s: { after: { 0: { target: 's', reenter: true } } } } });

/** Counts observer calls in order, as a checker would see them. */
function tally(): SimObserver & { log: string[] } {
  const log: string[] = [];
  return {
    log,
    onDeliver: (t, to, from, m) => log.push(`${t} deliver ${from}>${to} ${m.type}`),
    onSend: (t, from, to, m) => log.push(`${t} send ${from}>${to} ${m.type}`),
    onStepEnd: (t, a) => log.push(`${t} end ${a}`),
    onFault: (t, action, names) => log.push(`${t} fault ${action.kind} ${names.join(',')}`),
    onEnd: (t) => log.push(`${t} the end`),
  };
}

async function both(
  make: () => Omit<SimulationOptions, 'observers' | 'hash'>,
  shards: number,
): Promise<{ one: RunResult; split: RunResult; logs: string[][] }> {
  const a = tally();
  const one = createSimulation({ ...make(), observers: [a], hash: true }).run();
  const opts = make();
  const plan = planShards({ actors: opts.actors.map(() => ({})), network: opts.network, workers: shards });
  expect(plan.shards).toBe(shards);
  const b = tally();
  const { parallel: _, ...split } = await createShardedSimulation({ ...opts, observers: [b], hash: true }, plan).run();
  return { one, split, logs: [a.log, b.log] };
}

const ring = (n: number, rounds: number): ActorDefinition[] =>
  Array.from({ length: n }, (_, i) => ({
    name: `n${i}`,
    role: 'chatter',
    machine: chatter,
    input: { to: [`n${(i + 1) % n}`, `n${(i + 2) % n}`], count: 2, rounds },
  }));

const fault = (atUs: number, action: ScheduledFault['action']): ScheduledFault => ({ atUs, action, label: action.kind });

describe('kernel edge cases on shards', () => {
  it('skips quiet periods in windows: each window runs events, none crawls the quiet time a lookahead at a time', async () => {
    // Two sites of one worker, four tasks each, then an hour of pings a minute apart over 1-2 ms links:
    // crawled a lookahead (1 ms) at a time, the hour would take 3 600 000 windows.
    const yaml = `
name: quiet
protocol: manager-worker
mode: strict
seed: 7
duration: 1h
network: { latency: { dist: uniform, min: 1ms, max: 2ms } }
actors:
  - { role: mw.manager, name: a, checkInterval: 60s, timeout: 180s, tasks: { count: 4, timeout: 20s } }
  - { role: mw.manager, name: b, checkInterval: 60s, timeout: 180s, tasks: { count: 4, timeout: 20s } }
  - { role: mw.worker, name: wa, managers: [a], checkInterval: 60s, timeout: 180s, run: { dist: uniform, min: 1s, max: 2s } }
  - { role: mw.worker, name: wb, managers: [b], checkInterval: 60s, timeout: 180s, run: { dist: uniform, min: 1s, max: 2s } }
`;
    const one = visible(runScenario(parseScenario(yaml, 'quiet.yaml'), { hash: true }));
    expect(one.virtualTimeUs).toBe(3_600_000_000);
    const run = await runScenarioAsync(parseScenario(yaml, 'quiet.yaml'), { hash: true, shards: 2, local: false });
    expect(run.parallel).toMatchObject({ shards: 2, mode: 'windows', lookaheadUs: 1000 });
    expect(visible(run)).toEqual(one);
    const windows = run.parallel!.windows;
    expect(windows).toBeGreaterThan(0);
    // A window ends a lookahead after the earliest next event: it always runs that event.
    expect(windows).toBeLessThanOrEqual(one.events);
    expect(windows).toBeLessThan(one.virtualTimeUs / run.parallel!.lookaheadUs / 100);
  });

  it('duplicating links, crashes, restarts, pauses and an injected message: the same trace and observer calls', async () => {
    const { one, split, logs } = await both(
      () => ({
        seed: 5,
        actors: ring(6, 40),
        network: {
          defaults: {
            latency: { dist: 'uniform', minUs: 1000, maxUs: 4000 },
            loss: 0.05,
            duplicate: 0.2,
            ordering: 'unordered-duplicating',
          },
          links: [],
        },
        faults: [
          fault(3000, { kind: 'crash', actors: [4, 1] }),
          fault(6000, { kind: 'restart', actors: [1, 4, 1] }),
          fault(7000, { kind: 'pause', actors: [2, 5] }),
          fault(9000, { kind: 'inject', from: 'n3', to: 0, msg: { type: 'Chat' } }),
          fault(9000, { kind: 'inject', from: 'nobody', to: 5, msg: { type: 'Chat' } }),
          fault(12_000, { kind: 'resume', actors: [5, 2] }),
          fault(15_000, { kind: 'shutdown', actors: [3, 0] }),
        ],
        untilUs: 60_000,
      }),
      3,
    );
    expect(one.counters.duplicated).toBeGreaterThan(0);
    expect(one.counters.dropped.down).toBeGreaterThan(0);
    expect(split).toEqual(one);
    expect(logs[1]).toEqual(logs[0]);
  });

  it('a zero-delay loop on one shard stalls the whole run at the same event', async () => {
    const { one, split } = await both(
      () => ({
        seed: 1,
        actors: [...ring(3, 1000), { name: 'spin', role: 'spinner', machine: spinner, input: undefined }],
        network: { defaults: { latency: { dist: 'constant', valueUs: 1000 }, loss: 0, duplicate: 0, ordering: 'ordered' }, links: [] },
        untilUs: 10_000_000,
        stallEvents: 5_000,
      }),
      2,
    );
    expect(one.stoppedBecause).toBe('stalled');
    expect(split).toEqual(one);
  });

  it('two shards that stall in one window: the run stalls at the earlier instant', async () => {
    const { one, split } = await both(
      () => ({
        seed: 1,
        actors: [
          { name: 'a', role: 'x', machine: spinAfter(3), input: undefined },
          { name: 'b', role: 'x', machine: spinAfter(5), input: undefined },
        ],
        network: { defaults: { latency: { dist: 'constant', valueUs: 10_000 }, loss: 0, duplicate: 0, ordering: 'ordered' }, links: [] },
        untilUs: 1_000_000,
        stallEvents: 100,
      }),
      2,
    );
    expect(one.stall).toEqual({ atUs: 3000, events: 101 });
    expect(split).toEqual(one);
  });

  it('refuses a hold whose two sides are on different shards (a release leaves at once)', () => {
    const opts: SimulationOptions = {
      seed: 1,
      actors: ring(4, 1),
      network: { defaults: { latency: { dist: 'constant', valueUs: 1000 }, loss: 0, duplicate: 0, ordering: 'ordered' }, links: [] },
      faults: [fault(10, { kind: 'hold', id: 1, from: new Set([0]), to: new Set([1]) })],
      untilUs: 100_000,
    };
    const plan = planShards({ actors: opts.actors.map(() => ({})), network: opts.network, workers: 2 });
    expect(plan.shardOf[0]).not.toBe(plan.shardOf[1]);
    expect(() => createShardedSimulation(opts, plan)).toThrow(/hold: both sides of a hold must share a shard/);
  });

  it('refuses an actor placed on another shard than its host (they talk in process, in 0 µs)', () => {
    const actors = ring(4, 1);
    actors[1] = { ...actors[1], host: actors[0].name };
    const opts: SimulationOptions = {
      seed: 1,
      actors,
      network: { defaults: { latency: { dist: 'constant', valueUs: 1000 }, loss: 0, duplicate: 0, ordering: 'ordered' }, links: [] },
      untilUs: 100_000,
    };
    const plan = planShards({ actors: opts.actors.map(() => ({})), network: opts.network, workers: 2 });
    expect(plan.shardOf[0]).not.toBe(plan.shardOf[1]);
    expect(() => createShardedSimulation(opts, plan)).toThrow(/lives in .* but is placed on another shard/);
    // Placed together, it runs.
    const together = planShards({
      actors: opts.actors.map(() => ({})),
      network: opts.network,
      workers: 2,
      together: [{ members: [0, 1], why: 'host' }],
    });
    expect(() => createShardedSimulation(opts, together)).not.toThrow();
  });
});
