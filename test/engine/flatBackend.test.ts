/**
 * The flat backend must behave exactly like XState's interpreter: for random event sequences, both
 * backends give the same state, the same context and the same effects (sends, observations, timers),
 * step after step. And it refuses, at compile time, what it does not compile.
 */
import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import type { AnyStateMachine, EventObject } from 'xstate';
import { assign, createMachine, enqueueActions, raise, setup } from 'xstate';
import { managerMachine } from '../../src/actors/manager-worker/manager.machine.js';
import type { ManagerInput } from '../../src/actors/manager-worker/manager.machine.js';
import { workerMachine } from '../../src/actors/manager-worker/worker.machine.js';
import type { WorkerInput } from '../../src/actors/manager-worker/worker.machine.js';
import { compileFlatMachine, FlatCompileError } from '../../src/engine/flatBackend.js';
import type { KernelEffect } from '../../src/engine/machineBackend.js';
import { flatBackend, xstateBackend } from '../../src/engine/machineBackend.js';
import { sample } from '../helpers/property.js';

const peers = ['m0', 'm1', 'w0', 'w1', 'stranger'];
const taskIds = ['m0/t0', 'm0/t1', 'm0/t2', 'x'];
const statuses = [
  { kind: 'Pending' },
  { kind: 'Started', startTime: 1 },
  { kind: 'Completed', result: 'r' },
  { kind: 'Error', error: 'RUNTIME' },
  { kind: 'Error', error: 'ABORTED' },
  { kind: 'Unknown' },
] as const;
const spec = (taskId: string) => ({
  taskId,
  programAddresses: [],
  programHash: 'h',
  programKind: 'k',
  argument: taskId,
  timeout: 5,
  maxNetworkUsage: 0,
});

/** One input to the machine: a message, an environment answer, a timer firing, or a shutdown. */
const step = fc.oneof(
  {
    arbitrary: fc.record({
      kind: fc.constant('msg' as const),
      from: fc.constantFrom(...peers),
      n: fc.nat(20),
      ok: fc.boolean(),
      nodeType: fc.constantFrom('MANAGER', 'WORKER'),
      type: fc.constantFrom(
        'NodeTypeRequest',
        'NodeTypeAnswer',
        'ManagerRequest',
        'ManagerAnswer',
        'ManagerBye',
        'ManagerPing',
        'ManagerPong',
        'NotMine',
        'Ack',
        'TasksExecute',
        'TasksPing',
        'TasksAbord',
        'TaskStatus',
        'TasksPong',
      ),
      task: fc.constantFrom(...taskIds),
      status: fc.constantFrom(...statuses),
    }),
    weight: 10,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant('env' as const),
      op: fc.constantFrom('fetch', 'run'),
      task: fc.constantFrom(...taskIds),
      ok: fc.boolean(),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ kind: fc.constant('timer' as const), pick: fc.nat(10) }), weight: 4 },
  { arbitrary: fc.constant({ kind: 'shutdown' as const }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('wait' as const), us: fc.integer({ min: 1, max: 90_000_000 }) }), weight: 3 },
);
type Step = typeof step extends fc.Arbitrary<infer T> ? T : never;

/** Messages of the given types (no payload to speak of), for the small hand-written machines. */
const messages = (...types: string[]): Step[] =>
  types.map((t) => ({ kind: 'msg', from: 'x', n: 0, ok: true, nodeType: 'MANAGER', type: t as never, task: 'x', status: statuses[0] }));

function message(s: Extract<Step, { kind: 'msg' }>): Record<string, unknown> {
  const rid = s.n;
  switch (s.type) {
    case 'NodeTypeRequest':
      return { type: s.type, rid, nodeType: s.nodeType };
    case 'NodeTypeAnswer':
      return { type: s.type, re: rid, nodeType: s.nodeType };
    case 'ManagerRequest':
      return {
        type: s.type,
        rid,
        workerPrice: 1,
        networkPrice: 1,
        cpuCount: 1 + (s.n % 3),
        memory: 1,
        networkSpeed: 1,
        supportedProgramKinds: ['k'],
      };
    case 'ManagerAnswer':
      return { type: s.type, re: rid, accepted: s.ok };
    case 'TasksExecute':
      return { type: s.type, rid, tasks: [spec(s.task)] };
    case 'TasksPing':
    case 'TasksAbord':
      return { type: s.type, rid, taskIds: [s.task] };
    case 'TaskStatus':
      return { type: s.type, rid, taskId: s.task, status: s.status };
    case 'TasksPong':
      return { type: s.type, re: rid, statuses: [{ taskId: s.task, status: s.status }] };
    case 'ManagerPong':
    case 'NotMine':
    case 'Ack':
      return { type: s.type, re: rid };
    default:
      return { type: s.type, rid };
  }
}

/** Drives both backends with the same steps and compares them after every step. */
function compare(machine: AnyStateMachine, input: unknown, steps: Step[]): void {
  const fxA: KernelEffect[] = [];
  const fxB: KernelEffect[] = [];
  const a = flatBackend.start(machine, input, fxA);
  const b = xstateBackend.start(machine, input, fxB);
  const timers = new Map<string, EventObject>();
  let now = 1_000;
  const track = (fx: KernelEffect[]) => {
    for (const e of fx) {
      if (e.type === 'timer.set') timers.set(e.id, e.event);
      if (e.type === 'timer.cancel') timers.delete(e.id);
    }
  };
  expect(fxA).toEqual(fxB);
  track(fxA);
  for (const s of steps) {
    let event: EventObject | undefined;
    if (s.kind === 'wait') now += s.us;
    else if (s.kind === 'msg') event = { type: s.type, from: s.from, msg: message(s), now } as EventObject;
    else if (s.kind === 'env') event = { type: `env.${s.op}`, ref: s.task, ok: s.ok, result: 'r', now } as EventObject;
    else if (s.kind === 'shutdown') event = { type: 'host.shutdown', now } as EventObject;
    else if (timers.size > 0) {
      const ids = [...timers.keys()].sort();
      const id = ids[s.pick % ids.length];
      event = { ...timers.get(id)!, now } as EventObject;
      timers.delete(id);
    }
    if (!event) continue;
    fxA.length = 0;
    fxB.length = 0;
    a.deliver(event, fxA);
    b.deliver(event, fxB);
    expect(fxA).toEqual(fxB);
    expect(a.state).toEqual(b.state);
    expect(a.done).toBe(b.done);
    expect(a.context).toEqual(b.context);
    track(fxA);
  }
}

const workerInput = (mode: 'strict' | 'balthazar', authorised: boolean): WorkerInput => ({
  name: 'w0',
  mode,
  specs: { workerPrice: 1, networkPrice: 1, cpuCount: 2, memory: 1, networkSpeed: 1, supportedProgramKinds: ['k'] },
  peers: ['m0', 'm1'],
  authorizedManagers: authorised ? ['m0'] : [],
  checkIntervalMs: 15_000,
  timeoutMs: 60_000,
  retryMs: 5_000,
});

const managerInput = (mode: 'strict' | 'balthazar', maxWorkers: number): ManagerInput => ({
  name: 'm0',
  mode,
  checkIntervalMs: 15_000,
  timeoutMs: 60_000,
  maxWorkers,
  maxFailures: 2,
  statusPollMs: 30_000,
  tasks: { count: 3, timeoutS: 5, programKind: 'k', maxNetworkUsage: 0 },
});

describe('flat backend ≡ XState interpreter', () => {
  test.prop([fc.constantFrom('strict', 'balthazar'), fc.boolean(), fc.array(step, { maxLength: 80 })], sample(300))(
    'worker machine',
    (mode, authorised, steps) => compare(workerMachine as AnyStateMachine, workerInput(mode, authorised), steps),
  );

  test.prop([fc.constantFrom('strict', 'balthazar'), fc.nat(2), fc.array(step, { maxLength: 80 })], sample(300))(
    'manager machine',
    (mode, maxWorkers, steps) => compare(managerMachine as AnyStateMachine, managerInput(mode, maxWorkers), steps),
  );

  it('handles assign, named delays, reenter and self-targets like XState', () => {
    const m = setup({
      types: { context: {} as { n: number; log: string[] } },
      delays: { tick: ({ context }) => 100 + context.n },
      actions: { bump: assign(({ context }) => ({ n: context.n + 1 })) },
    }).createMachine({
      context: { n: 0, log: [] },
      initial: 'a',
      states: {
        a: {
          entry: 'bump',
          after: { tick: { target: 'b' } },
          on: { same: { target: 'a' }, again: { target: 'a', reenter: true }, go: 'b' },
        },
        b: { entry: 'bump', exit: 'bump', on: { go: { target: 'a', actions: 'bump' } } },
      },
    });
    const steps = messages('same', 'again', 'go', 'go', 'same');
    compare(m as AnyStateMachine, undefined, [...steps, { kind: 'timer', pick: 0 }]);
  });
  it('orders enqueueActions effects like XState: at once until an assign is queued, then after it', () => {
    const out = (n: number, what: string) => ({ type: 'host.observe', obs: { kind: what, n } }) as never;
    const m = setup({ types: { context: {} as { n: number } } }).createMachine({
      context: { n: 0 },
      initial: 'a',
      states: {
        a: {
          on: {
            go: {
              actions: enqueueActions(({ context, enqueue }) => {
                enqueue.emit(out(context.n, 'first'));
                enqueue.raise({ type: 'later' }, { id: `t${context.n}`, delay: 10 });
                enqueue.cancel(`t${context.n - 1}`);
                enqueue.assign({ n: ({ context: c }) => c.n + 1 });
                // From here on everything waits for the assign: XState resolves them in order.
                enqueue.emit(({ context: c }) => out(c.n, 'after-assign'));
                enqueue.raise({ type: 'later' }, { id: 'u', delay: ({ context: c }) => 5 * c.n });
                enqueue.cancel('u');
                enqueue.assign({ n: ({ context: c }) => c.n * 10 });
                enqueue.emit(({ context: c }) => out(c.n, 'last'));
              }),
            },
            later: { actions: enqueueActions(({ context, enqueue }) => enqueue.emit(out(context.n, 'later'))) },
          },
        },
      },
    });
    const steps = messages('go', 'go', 'later', 'go');
    compare(m as AnyStateMachine, undefined, [...steps, { kind: 'timer', pick: 0 }, { kind: 'timer', pick: 1 }]);
  });

  it('ignores an enqueue kept past its call, like XState', () => {
    // Every backend's kept enqueue (both run the same actions), each called late by both.
    const kept: { emit: (e: unknown) => void; raise: (e: unknown, o: unknown) => void; cancel: (id: string) => void }[] = [];
    const m = setup({}).createMachine({
      initial: 'a',
      states: {
        a: {
          on: {
            keep: { actions: enqueueActions(({ enqueue }) => void kept.push(enqueue as never)) },
            late: {
              actions: () => {
                for (const k of kept) {
                  k.emit({ type: 'host.observe', obs: { kind: 'late' } });
                  k.raise({ type: 'x' }, { id: 'late', delay: 1 });
                  k.cancel('late');
                }
              },
            },
          },
        },
      },
    });
    const steps = messages('keep', 'late', 'keep', 'late');
    compare(m as AnyStateMachine, undefined, steps);
  });

  it('calls a function given to enqueue.cancel, like XState, at once and after an assign', () => {
    const m = setup({ types: { context: {} as { n: number } } }).createMachine({
      context: { n: 0 },
      initial: 'a',
      states: {
        a: {
          on: {
            go: {
              actions: enqueueActions(({ enqueue }) => {
                enqueue.raise({ type: 'tick' }, { id: 't0', delay: 5 });
                enqueue.raise({ type: 'tick' }, { id: 't1', delay: 5 });
                enqueue.cancel((({ context }: { context: { n: number } }) => `t${context.n}`) as never);
                enqueue.assign({ n: ({ context }) => context.n + 1 });
                enqueue.cancel((({ context }: { context: { n: number } }) => `t${context.n}`) as never);
              }),
            },
          },
        },
      },
    });
    compare(m as AnyStateMachine, undefined, [...messages('go'), { kind: 'timer', pick: 0 }]);
  });
});

describe('flat backend refuses what it does not compile', () => {
  it('a parallel state', () => {
    const m = createMachine({ type: 'parallel', states: { a: {}, b: {} } });
    expect(() => compileFlatMachine(m)).toThrow(FlatCompileError);
  });
  it('a nested state', () => {
    const m = createMachine({ initial: 'a', states: { a: { initial: 'x', states: { x: {} } } } });
    expect(() => compileFlatMachine(m)).toThrow(/compound state \('a'\)/);
  });
  it('eventless transitions and invoked actors', () => {
    expect(() => compileFlatMachine(createMachine({ initial: 'a', states: { a: { always: { target: 'b' } }, b: {} } }))).toThrow(/always/);
    const child = createMachine({});
    expect(() => compileFlatMachine(createMachine({ initial: 'a', states: { a: { invoke: { src: child } } } }))).toThrow(/invoked actors/);
  });
  it('a raise whose delay is not a number when it runs (XState raises it at once)', () => {
    const m = setup({ types: { context: {} as { wait?: number } } }).createMachine({
      context: {},
      initial: 'a',
      states: {
        a: {
          on: {
            plain: { actions: raise({ type: 'x' }, { id: 'p', delay: ({ context }) => context.wait as number }) },
            queued: {
              actions: enqueueActions(({ enqueue }) => enqueue.raise({ type: 'y' }, { id: 'q', delay: 'no-such-delay' as never })),
            },
          },
        },
      },
    });
    const fx: KernelEffect[] = [];
    const a = flatBackend.start(m as AnyStateMachine, undefined, fx);
    expect(() => a.deliver({ type: 'plain' }, fx)).toThrow(/raise of 'x' whose delay is undefined, not a number/);
    expect(() => a.deliver({ type: 'queued' }, fx)).toThrow(/raise of 'y' whose delay is undefined, not a number/);
    expect(fx).toEqual([]);
  });
  it('an immediate raise', () => {
    const m = createMachine({ initial: 'a', states: { a: { on: { go: { actions: raise({ type: 'x' }) } } } } });
    expect(() => compileFlatMachine(m)).toThrow(/immediate raise/);
  });
});
