/**
 * Every manager/worker invariant (shared/protocols/manager-worker.md, "Invariants") is broken on
 * purpose — by a deliberately faulty machine, an injected message or a fault — and must be reported.
 * Each test also runs the correct machines on the same scenario and expects no violation, so a test
 * cannot pass because the checker flags everything.
 */
import { describe, expect, it } from 'vitest';
import { enqueueActions } from 'xstate';
import type { AnyStateMachine } from 'xstate';
import { managerMachine } from '../../src/actors/manager-worker/manager.machine.js';
import { workerMachine } from '../../src/actors/manager-worker/worker.machine.js';
import { runText, statusOf, violationsOf } from '../helpers/scenario.js';

// `provide` on a typed machine wants exact implementation types; faulty variants are test-only.
const faultyWorker = (impl: Record<string, unknown>): AnyStateMachine => (workerMachine as AnyStateMachine).provide(impl as never);
const faultyManager = (impl: Record<string, unknown>): AnyStateMachine => (managerMachine as AnyStateMachine).provide(impl as never);

type Ev = { type: string; from: string; msg: { rid?: number; type: string }; now: number };
type Enq = { emit: (e: unknown) => void };
/** enqueueActions for faulty test variants, without XState's exact typing. */
// biome-ignore lint/suspicious/noExplicitAny: faulty test variants bypass XState's exact action typing
const act = (fn: (args: any) => void) => enqueueActions(fn as never);

/** A manager whose liveness check pings every worker but never drops one. */
const neverDropsManager = (): AnyStateMachine =>
  faultyManager({
    actions: {
      tick: act(
        ({
          context,
          event,
          enqueue,
        }: {
          context: { workers: Map<string, { lastPingUs: number }>; rid: number };
          event: Ev;
          enqueue: Enq;
        }) => {
          for (const [w, rec] of context.workers) {
            rec.lastPingUs = event.now;
            enqueue.emit({ type: 'host.send', to: w, msg: { type: 'ManagerPing', rid: ++context.rid } });
          }
        },
      ),
    },
  });

const base = (body: string, extra = ''): string => `
name: broken
protocol: manager-worker
seed: 3
duration: 5m
network: { latency: 1ms }
actors:
${body}
${extra}`;

const oneManagerTwoWorkers = `
  - { role: mw.manager, name: manager, tasks: { count: 20, timeout: 30s } }
  - { role: mw.worker, count: 2, run: 2s }`;

/** Runs the scenario with the correct machines and with the faulty ones. */
function both(yaml: string, machines: Record<string, AnyStateMachine>) {
  return { good: runText(yaml), bad: runText(yaml, { machines }) };
}

describe('manager/worker invariants are caught when broken', () => {
  it('1 mw.one-manager: a worker that takes a second manager', () => {
    const yaml = base(
      `
  - { role: mw.manager, count: 2, tasks: { count: 0 } }
  - { role: mw.worker, name: w, managers: [manager-0, manager-1] }`,
      `
faults:
  - { at: 10s, inject: { from: manager-1, to: w, msg: { type: ManagerAnswer, re: 77, accepted: true } } }`,
    );
    const { good, bad } = both(yaml, {
      'mw.worker': faultyWorker({
        actions: {
          onAnswerWhileAttached: act(({ context, event, enqueue }: { context: { manager: string }; event: Ev; enqueue: Enq }) => {
            context.manager = event.from; // takes the new one without leaving the old
            enqueue.emit({ type: 'host.observe', obs: { kind: 'mw.manager', manager: event.from } });
          }),
        },
      }),
    });
    expect(statusOf(good, 'mw.one-manager')).toBe('held');
    expect(statusOf(bad, 'mw.one-manager')).toBe('violated');
    expect(violationsOf(bad, 'mw.one-manager')[0]).toMatch(/w took manager manager-1 while still managed by manager-0/);
  });

  it('2 mw.one-answer: a worker that leaves ManagerPing unanswered', () => {
    const yaml = base(oneManagerTwoWorkers);
    const { good, bad } = both(yaml, { 'mw.worker': faultyWorker({ actions: { pong: act(() => {}) } }) });
    expect(statusOf(good, 'mw.one-answer')).toBe('held');
    expect(violationsOf(bad, 'mw.one-answer')[0]).toMatch(/left ManagerPing \(rid \d+\) from manager unanswered/);
  });

  it('2 mw.one-answer: an injected answer to an answer', () => {
    const yaml = base(oneManagerTwoWorkers);
    const { good, bad } = both(yaml, {
      'mw.manager': faultyManager({
        actions: {
          // answers every Ack it receives with another Ack
          recordPong: act(({ event, enqueue }: { event: Ev; enqueue: Enq }) =>
            enqueue.emit({ type: 'host.send', to: event.from, msg: { type: 'Ack', re: 1 } }),
          ),
        },
      }),
    });
    expect(statusOf(good, 'mw.one-answer')).toBe('held');
    expect(violationsOf(bad, 'mw.one-answer').join('\n')).toMatch(/answers no request it is processing/);
  });

  it('3 mw.not-mine: a worker that acknowledges a ping from a stranger', () => {
    const yaml = base(
      oneManagerTwoWorkers,
      `
faults:
  - { at: 5s, inject: { from: stranger, to: worker-0, msg: { type: ManagerPing, rid: 1 } } }`,
    );
    const { good, bad } = both(yaml, {
      'mw.worker': faultyWorker({
        actions: {
          notMine: act(({ event, enqueue }: { event: Ev; enqueue: Enq }) =>
            enqueue.emit({ type: 'host.send', to: event.from, msg: { type: 'Ack', re: event.msg.rid } }),
          ),
        },
      }),
    });
    expect(statusOf(good, 'mw.not-mine')).toBe('held');
    expect(violationsOf(bad, 'mw.not-mine')[0]).toMatch(/answered ManagerPing from non-partner stranger with Ack instead of NotMine/);
  });

  it('4 mw.silence-after-bye: a manager that keeps pinging a worker that said goodbye', () => {
    const yaml = base(
      oneManagerTwoWorkers,
      `
faults:
  - { at: 20s, shutdown: worker-1 }`,
    );
    const { good, bad } = both(yaml, {
      'mw.manager': faultyManager({
        actions: {
          dropOnBye: act(({ event, enqueue }: { event: Ev; enqueue: Enq }) =>
            enqueue.emit({ type: 'host.send', to: event.from, msg: { type: 'Ack', re: event.msg.rid } }),
          ),
        },
      }),
    });
    expect(statusOf(good, 'mw.silence-after-bye')).toBe('held');
    expect(violationsOf(bad, 'mw.silence-after-bye')[0]).toMatch(
      /manager sent (ManagerPing|TasksPing|TasksExecute) to worker-1 after ManagerBye\/NotMine/,
    );
  });

  it('5 mw.liveness: a manager that never drops a crashed worker', () => {
    const yaml = base(
      oneManagerTwoWorkers,
      `
faults:
  - { at: 20s, crash: worker-1 }`,
    );
    const { good, bad } = both(yaml, {
      'mw.manager': neverDropsManager(),
    });
    expect(statusOf(good, 'mw.liveness')).toBe('held');
    expect(good.metrics.timeouts).toBeGreaterThan(0);
    expect(violationsOf(bad, 'mw.liveness')[0]).toMatch(/manager kept unresponsive partner worker-1/);
  });

  it('5 mw.liveness: a worker that drops a manager that answers its pings', () => {
    const yaml = base(oneManagerTwoWorkers);
    const { good, bad } = both(yaml, {
      'mw.worker': faultyWorker({
        guards: {
          // once a pong has answered its ping, times out after 1 ms of silence instead of `timeout`
          partnerTimedOut: ({ context, event }: { context: { lastPongUs: number; lastPingUs: number }; event: { now: number } }) =>
            context.lastPongUs > context.lastPingUs && event.now - context.lastPongUs > 1000,
        },
      }),
    });
    expect(statusOf(good, 'mw.liveness')).not.toBe('violated');
    expect(violationsOf(bad, 'mw.liveness')[0]).toMatch(
      /worker-\d dropped responsive partner manager: last pong \d+\.\d+s ago, timeout 60s/,
    );
  });

  it('6 mw.task-monotone: a worker that reports Started again after Completed', () => {
    const yaml = base(oneManagerTwoWorkers);
    const { good, bad } = both(yaml, {
      'mw.worker': faultyWorker({
        actions: {
          onRun: act(
            ({
              context,
              event,
              enqueue,
            }: {
              context: { manager: string; rid: number; tasks: Map<string, unknown> };
              event: { ref: string; now: number };
              enqueue: Enq & { cancel: (id: string) => void };
            }) => {
              enqueue.cancel(`task:${event.ref}`);
              context.tasks.delete(event.ref);
              for (const status of [
                { kind: 'Completed', result: 'x' },
                { kind: 'Started', startTime: 0 },
              ]) {
                enqueue.emit({
                  type: 'host.send',
                  to: context.manager,
                  msg: { type: 'TaskStatus', rid: ++context.rid, taskId: event.ref, status },
                });
              }
            },
          ),
        },
      }),
    });
    expect(statusOf(good, 'mw.task-monotone')).toBe('held');
    expect(violationsOf(bad, 'mw.task-monotone')[0]).toMatch(/reported Started for manager\/t\d+ after a terminal status/);
  });

  it('6 mw.task-monotone: a TasksPong that answers other ids than asked', () => {
    const yaml = base(`
  - { role: mw.manager, name: manager, statusPoll: 5s, tasks: { count: 4, timeout: 60s } }
  - { role: mw.worker, count: 1, run: 40s }`);
    const { good, bad } = both(yaml, {
      'mw.worker': faultyWorker({
        actions: {
          answerTasksPing: act(({ event, enqueue }: { event: Ev; enqueue: Enq }) =>
            enqueue.emit({ type: 'host.send', to: event.from, msg: { type: 'TasksPong', re: event.msg.rid, statuses: [] } }),
          ),
        },
      }),
    });
    expect(statusOf(good, 'mw.task-monotone')).toBe('held');
    expect(violationsOf(bad, 'mw.task-monotone')[0]).toMatch(/TasksPong answers \[\] but manager asked \[manager\/t0\]/);
  });

  it('7 mw.slots: a manager that assigns more tasks than cpuCount', () => {
    const yaml = base(oneManagerTwoWorkers);
    const { good, bad } = both(yaml, {
      'mw.manager': faultyManager({
        actions: {
          recordPong: act(({ context, event, enqueue }: { context: { rid: number }; event: Ev; enqueue: Enq }) => {
            const spec = (id: string) => ({
              taskId: id,
              programAddresses: [],
              programHash: '',
              programKind: 'WASM0m1n0',
              argument: '',
              timeout: 30,
              maxNetworkUsage: 0,
            });
            enqueue.emit({
              type: 'host.send',
              to: event.from,
              msg: { type: 'TasksExecute', rid: ++context.rid, tasks: [spec('extra-a'), spec('extra-b')] },
            });
          }),
        },
      }),
    });
    expect(statusOf(good, 'mw.slots')).toBe('held');
    expect(violationsOf(bad, 'mw.slots')[0]).toMatch(/manager has [2-9] tasks assigned to worker-\d, which declared 1 cpus/);
  });

  it('7 mw.slots: a manager that loses a worker without aborting its tasks', () => {
    const yaml = base(
      oneManagerTwoWorkers,
      `
faults:
  - { at: 7s, shutdown: worker-1 }`,
    );
    const { good, bad } = both(yaml, {
      'mw.manager': faultyManager({
        actions: {
          dropOnBye: act(({ context, event, enqueue }: { context: { workers: Map<string, unknown> }; event: Ev; enqueue: Enq }) => {
            enqueue.emit({ type: 'host.send', to: event.from, msg: { type: 'Ack', re: event.msg.rid } });
            context.workers.delete(event.from);
            enqueue.emit({ type: 'host.observe', obs: { kind: 'mw.worker.drop', worker: event.from, reason: 'bye' } });
          }),
        },
      }),
    });
    expect(statusOf(good, 'mw.slots')).toBe('held');
    expect(violationsOf(bad, 'mw.slots')[0]).toMatch(/manager lost worker-1 without aborting its task manager\/t\d+/);
  });

  it('8 mw.failure-accounting: a manager that fails a task definitely on its first failure', () => {
    const yaml = base(`
  - { role: mw.manager, name: manager, maxFailures: 3, tasks: { count: 6, timeout: 30s } }
  - { role: mw.worker, count: 2, run: 1s, failures: { runtime: 0.5 } }`);
    const { good, bad } = both(yaml, {
      'mw.manager': faultyManager({
        actions: {
          onTaskStatus: act(({ event, enqueue }: { event: Ev & { msg: { taskId: string; status: { kind: string } } }; enqueue: Enq }) => {
            enqueue.emit({ type: 'host.send', to: event.from, msg: { type: 'Ack', re: event.msg.rid } });
            if (event.msg.status.kind === 'Error')
              enqueue.emit({ type: 'host.observe', obs: { kind: 'mw.task.failed', taskId: event.msg.taskId, failures: 1 } });
          }),
        },
      }),
    });
    expect(statusOf(good, 'mw.failure-accounting')).toBe('held');
    expect(good.metrics.tasksFailedDefinitely).toBeGreaterThanOrEqual(0);
    expect(violationsOf(bad, 'mw.failure-accounting')[0]).toMatch(/definitely failed after 1 counted failures \(maxFailures 3\)/);
  });

  it('9 mw.authorised-only: a worker that accepts an unauthorised manager', () => {
    const yaml = base(
      `
  - { role: mw.manager, count: 2, tasks: { count: 0 } }
  - { role: mw.worker, name: w, managers: [manager-1], authorizedManagers: [manager-0] }`,
      `
faults:
  - { at: 3s, inject: { from: manager-1, to: w, msg: { type: ManagerAnswer, re: 5, accepted: true } } }`,
    );
    const { good, bad } = both(yaml, {
      'mw.worker': faultyWorker({
        guards: { answerStartsRelationship: ({ event }: { event: Ev & { msg: { accepted: boolean } } }) => event.msg.accepted },
      }),
    });
    expect(statusOf(good, 'mw.authorised-only')).not.toBe('violated');
    expect(good.metrics.workersJoined).toBe(0);
    expect(violationsOf(bad, 'mw.authorised-only')[0]).toMatch(/w took manager manager-1, not in authorizedManagers \[manager-0\]/);
  });

  it('10 mw.shutdown-bye-only: a worker that pings after it began shutting down', () => {
    const yaml = base(
      oneManagerTwoWorkers,
      `
faults:
  - { at: 20s, shutdown: worker-0 }`,
    );
    const { good, bad } = both(yaml, {
      'mw.worker': faultyWorker({
        actions: {
          shutdown: act(({ context, enqueue }: { context: { manager: string; rid: number }; enqueue: Enq }) => {
            enqueue.emit({ type: 'host.observe', obs: { kind: 'mw.shutdown' } });
            enqueue.emit({ type: 'host.send', to: context.manager, msg: { type: 'ManagerPing', rid: ++context.rid } });
            enqueue.emit({ type: 'host.send', to: context.manager, msg: { type: 'ManagerBye', rid: ++context.rid } });
            enqueue.emit({ type: 'host.halt' });
          }),
        },
      }),
    });
    expect(statusOf(good, 'mw.shutdown-bye-only')).toBe('held');
    expect(violationsOf(bad, 'mw.shutdown-bye-only')[0]).toMatch(/worker-0 sent ManagerPing to manager after it began shutting down/);
  });

  it('a violation report names the time, the actors, the trace and the replay command', () => {
    const bad = runText(base(oneManagerTwoWorkers), { machines: { 'mw.worker': faultyWorker({ actions: { pong: act(() => {}) } }) } });
    const inv = bad.invariants.find((i) => i.id === 'mw.one-answer')!;
    const v = inv.violations[0];
    expect(v.t).toBeGreaterThan(0);
    expect(v.actors.length).toBeGreaterThanOrEqual(2);
    expect(v.trace.length).toBeGreaterThan(0);
    expect(v.trace.at(-1)!.t).toBeLessThanOrEqual(v.t);
    expect(inv.replay).toMatch(/^protosim run inline\.yaml --seed 3 --until \S+ --trace$/);
    expect(bad.expectations.met).toBe(false);
  });
});

describe('no false alarms where the protocol allows it', () => {
  it('a node that shut down, crashed and restarted may talk again (mw.shutdown-bye-only)', () => {
    const s = runText(
      base(
        oneManagerTwoWorkers,
        `
faults:
  - { at: 10s, shutdown: worker-1 }
  - { at: 20s, crash: worker-1, restart: 30s }`,
      ),
    );
    expect(statusOf(s, 'mw.shutdown-bye-only')).toBe('held');
    expect(s.metrics.workersJoined).toBe(3);
  });

  it('a long pause does not count as failing to settle (mw.one-manager)', () => {
    const s = runText(
      base(
        oneManagerTwoWorkers.replace('duration: 5m', ''),
        `
faults:
  - { at: 10s, pause: worker-0, resume: 4m }`,
      ).replace('duration: 5m', 'duration: 8m'),
    );
    expect(s.invariants.filter((i) => i.status === 'violated').map((i) => i.violations[0].message)).toEqual([]);
    expect(s.metrics.timeouts).toBeGreaterThanOrEqual(1);
  });

  it('timeout < 2 × checkInterval: a silent partner may take max(T, 2I) + I to drop (mw.liveness)', () => {
    const s = runText(
      base(
        `
  - { role: mw.manager, name: manager, checkInterval: 15s, timeout: 20s, tasks: { count: 20, timeout: 30s } }
  - { role: mw.worker, count: 2, checkInterval: 15s, timeout: 20s, run: 2s }`,
        `
faults:
  - { at: 7s, crash: worker-1 }`,
      ),
    );
    expect(statusOf(s, 'mw.liveness')).toBe('held');
    expect(s.metrics.timeouts).toBe(1);
  });

  it('an actor that throws is treated as crashed, not as a protocol violation', () => {
    const s = runText(base(oneManagerTwoWorkers), {
      machines: {
        'mw.worker': faultyWorker({
          actions: {
            pong: act(({ context }: { context: { cfg: { name: string } } }) => {
              if (context.cfg.name === 'worker-1') throw new Error('boom');
            }),
          },
        }),
      },
    });
    expect(s.actorErrors.map((e) => `${e.actor}: ${e.message}`)).toEqual(['worker-1: boom']);
    // worker-0 never answers pings either (its pong does nothing): that one is a real violation.
    expect(violationsOf(s, 'mw.one-answer').every((m) => m.includes('worker-0'))).toBe(true);
    expect(statusOf(s, 'mw.liveness')).not.toBe('violated');
  });
});

describe('duplicated requests', () => {
  const dupYaml = `
name: dup
protocol: manager-worker
seed: 4
duration: 10m
stopWhen: complete
network: { latency: { dist: uniform, min: 1ms, max: 30ms }, ordering: unordered-duplicating, duplicate: 0.4 }
actors:
  - { role: mw.manager, name: manager, tasks: { count: 60, timeout: 30s } }
  - { role: mw.worker, count: 3, run: 1ms }
`;

  it('duplicated requests and answers change nothing: every invariant holds', () => {
    const s = runText(dupYaml);
    expect(s.messages.duplicated).toBeGreaterThan(100);
    expect(s.metrics.tasksCompleted).toBe(60);
    // The only drops are the protocol's own race on unordered links (a TasksExecute overtaking the
    // ManagerAnswer, answered NotMine): never a duplicate taken for a new request or a stale NotMine.
    expect(Object.keys(s.metrics.workersDropped as object)).toEqual(expect.not.arrayContaining(['superseded', 'bye', 'timeout']));
    expect(s.invariants.filter((i) => i.status === 'violated').map((i) => i.violations[0].message)).toEqual([]);
  });

  it('a worker that runs a duplicated TasksExecute again is caught (mw.task-monotone)', () => {
    const bad = runText(dupYaml, {
      machines: {
        'mw.worker': faultyWorker({
          actions: {
            acceptTasks: act(
              ({
                context,
                event,
                enqueue,
              }: {
                context: { manager: string; rid: number; tasks: Map<string, unknown> };
                event: Ev & { msg: { tasks: { taskId: string }[] } };
                enqueue: Enq;
              }) => {
                enqueue.emit({ type: 'host.send', to: event.from, msg: { type: 'Ack', re: event.msg.rid } });
                for (const spec of event.msg.tasks) {
                  if (context.tasks.has(spec.taskId)) continue;
                  context.tasks.set(spec.taskId, { spec, rank: 0 });
                  enqueue.emit({
                    type: 'host.send',
                    to: context.manager,
                    msg: { type: 'TaskStatus', rid: ++context.rid, taskId: spec.taskId, status: { kind: 'Pending' } },
                  });
                  enqueue.emit({ type: 'host.exec', op: 'fetch', ref: spec.taskId });
                }
              },
            ),
          },
        }),
      },
    });
    expect(violationsOf(bad, 'mw.task-monotone')[0]).toMatch(/reported Pending for manager\/t\d+ after a terminal status/);
  });
});

describe('second review: liveness and settling after the fixes', () => {
  it('a worker joins even when answers take longer than its retry period', () => {
    const s = runText(`
name: slow-rtt
protocol: manager-worker
duration: 10m
stopWhen: complete
network: { latency: 3s }
actors:
  - { role: mw.manager, name: manager, tasks: { count: 4, timeout: 30s } }
  - { role: mw.worker, count: 1, run: 1s }
`);
    expect(s.metrics.tasksCompleted).toBe(4);
    // The second round's request may supersede the first (the manager re-accepts), but the worker
    // never says goodbye to an answer it asked for.
    expect(s.metrics.workersDropped).not.toHaveProperty('bye');
    expect(s.metrics.workersJoined).toBeLessThanOrEqual(2);
  });

  it('a restarted worker is not taken for its old self (request ids differ per incarnation)', () => {
    const s = runText(`
name: worker-restart
protocol: manager-worker
mode: balthazar
duration: 10m
stopWhen: complete
network: { latency: 1ms }
invariants: [mw.slots, mw.one-manager]
actors:
  - { role: mw.manager, name: manager, tasks: { count: 6, timeout: 30s } }
  - { role: mw.worker, count: 1, cpuCount: 2, run: 5s }
faults:
  - { at: 2s, crash: worker-0, restart: 3s }
`);
    expect(s.metrics.tasksCompleted).toBe(6);
    expect(s.virtualTimeUs).toBeLessThan(60_000_000);
  });

  it('a silent manager first on the peer list does not keep a worker from the next one', () => {
    const s = runText(`
name: dead-first
protocol: manager-worker
duration: 10m
stopWhen: complete
network: { latency: 1ms }
actors:
  - { role: mw.manager, count: 2, tasks: { count: 0 } }
  - { role: mw.manager, name: backup, tasks: { count: 10, timeout: 30s } }
  - { role: mw.worker, count: 2, managers: [manager-0, backup], run: 1s }
faults:
  - { at: 0s, crash: manager-0 }
`);
    expect(s.metrics.tasksCompleted).toBe(10);
    expect(s.messages.byType.ManagerRequest).toBeLessThan(20);
  });

  it('a manager that shuts down leaves no one-sided pairs behind (mw.one-manager)', () => {
    const s = runText(
      base(
        oneManagerTwoWorkers,
        `
faults:
  - { at: 10s, shutdown: manager }`,
      ),
    );
    expect(statusOf(s, 'mw.one-manager')).toBe('held');
  });

  const neverPings = faultyManager({ actions: { tick: act(() => {}) } });
  it('a manager that never pings is caught, with or without a clock jump', () => {
    for (const extra of [
      '',
      `
faults:
  - { at: 3s, skew: manager, by: 1ms }`,
    ]) {
      const bad = runText(base(oneManagerTwoWorkers, extra), { machines: { 'mw.manager': neverPings } });
      expect(violationsOf(bad, 'mw.liveness')[0]).toMatch(/manager kept unresponsive partner worker-\d: .*no ping sent since it was due/);
    }
  });

  it('regular pauses do not hide a manager that never drops a crashed worker', () => {
    const yaml = base(
      oneManagerTwoWorkers,
      `
faults:
  - { at: 5s, crash: worker-1 }
  - { at: 50s, pause: manager, resume: 51s }
  - { at: 100s, pause: manager, resume: 101s }
  - { at: 150s, pause: manager, resume: 151s }`,
    );
    const neverDrops = neverDropsManager();
    expect(violationsOf(runText(yaml, { machines: { 'mw.manager': neverDrops } }), 'mw.liveness')[0]).toMatch(
      /manager kept unresponsive partner worker-1/,
    );
  });
});
