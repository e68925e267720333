/**
 * The manager/worker **manager** (`shared/protocols/manager-worker.md`): accepts workers, hands them
 * tasks within their free slots, tracks every task's status and failures, checks liveness, and marks
 * the tasks of a lost worker `Error(ABORTED)` once before handing them out again.
 *
 * The context is owned, mutable state (see worker.machine.ts).
 */
import { enqueueActions, setup } from 'xstate';
import { effect } from '../../protocol/host.js';
import type { DropReason, MwMode, NodeType, TaskErrorKind, TaskSpec, TaskStatus } from '../../protocol/managerWorker.js';
import { COUNTED_FAILURES } from '../../protocol/managerWorker.js';
import type { MwEmitted, MwEvent, MwMessageEvent } from './common.js';
import { answerNodeTypeAs, fromOf, observe, recordNodeTypeAnswer, request, ridOf, send } from './common.js';

export interface ManagerTasksInput {
  /** How many tasks this manager distributes. */
  count: number;
  /** Task timeout in seconds (the worker enforces it). */
  timeoutS: number;
  programKind: string;
  maxNetworkUsage: number;
}

export interface ManagerInput {
  name: string;
  mode: MwMode;
  checkIntervalMs: number;
  timeoutMs: number;
  /** 0: no limit (the original has none). */
  maxWorkers: number;
  maxFailures: number;
  /** A running task without news for this long is asked about with TasksPing. */
  statusPollMs: number;
  tasks: ManagerTasksInput;
  /** Where request ids start: the host gives each incarnation its own range after a restart. */
  ridBase?: number;
}

interface WorkerRecord {
  /** The ManagerRequest that started the relationship (a duplicate of it changes nothing). */
  requestRid: number;
  /** Our request counter when the relationship started: a NotMine answering an older request is stale. */
  sinceRid: number;
  cpuCount: number;
  running: Set<string>;
  lastPingUs: number;
  lastPongUs: number;
}

interface TaskRecord {
  failures: number;
  worker: string | null;
  lastNewsUs: number;
  done: boolean;
}

export interface ManagerContext {
  cfg: ManagerInput;
  rid: number;
  peerTypes: Map<string, NodeType>;
  workers: Map<string, WorkerRecord>;
  tasks: Map<string, TaskRecord>;
  /** Tasks to hand out again (after an error or a lost worker), before fresh ones. */
  requeued: string[];
  /** Index of the next task never handed out. */
  nextFresh: number;
  completed: number;
  failed: number;
  /** Whether `mw.done` was observed. */
  finished: boolean;
}

type Enqueue = { emit: (e: MwEmitted) => void };

function taskSpec(ctx: ManagerContext, taskId: string): TaskSpec {
  const t = ctx.cfg.tasks;
  return {
    taskId,
    programAddresses: [`/programs/${t.programKind}`],
    programHash: t.programKind,
    programKind: t.programKind,
    argument: taskId,
    timeout: t.timeoutS,
    maxNetworkUsage: t.maxNetworkUsage,
  };
}

function nextTask(ctx: ManagerContext): string | undefined {
  const again = ctx.requeued.pop();
  if (again !== undefined) return again;
  if (ctx.nextFresh >= ctx.cfg.tasks.count) return undefined;
  const taskId = `${ctx.cfg.name}/t${ctx.nextFresh++}`;
  ctx.tasks.set(taskId, { failures: 0, worker: null, lastNewsUs: 0, done: false });
  return taskId;
}

/** Gives `worker` as many tasks as it has free slots (never more: invariant 7). */
function assign(ctx: ManagerContext, enqueue: Enqueue, worker: string, now: number): void {
  const w = ctx.workers.get(worker);
  if (!w) return;
  let batch: TaskSpec[] | undefined;
  while (w.running.size < w.cpuCount) {
    const taskId = nextTask(ctx);
    if (taskId === undefined) break;
    const task = ctx.tasks.get(taskId) as TaskRecord;
    task.worker = worker;
    task.lastNewsUs = now;
    w.running.add(taskId);
    (batch ??= []).push(taskSpec(ctx, taskId));
  }
  if (batch) enqueue.emit(send(worker, request(ctx, { type: 'TasksExecute', tasks: batch })));
}

function assignAll(ctx: ManagerContext, enqueue: Enqueue, now: number): void {
  if (ctx.requeued.length === 0 && ctx.nextFresh >= ctx.cfg.tasks.count) return;
  for (const worker of ctx.workers.keys()) assign(ctx, enqueue, worker, now);
}

function checkFinished(ctx: ManagerContext, enqueue: Enqueue): void {
  if (!ctx.finished && ctx.completed + ctx.failed === ctx.cfg.tasks.count) {
    ctx.finished = true;
    enqueue.emit(observe({ kind: 'mw.done', completed: ctx.completed, failed: ctx.failed }));
  }
}

/** A task ended with an error: count it, fail it definitely or hand it out again (invariant 8). */
function taskError(ctx: ManagerContext, enqueue: Enqueue, taskId: string, error: TaskErrorKind): void {
  const task = ctx.tasks.get(taskId) as TaskRecord;
  task.worker = null;
  if (COUNTED_FAILURES.has(error)) {
    task.failures += 1;
    enqueue.emit(observe({ kind: 'mw.task.failure', taskId, error, failures: task.failures }));
  }
  if (task.failures >= ctx.cfg.maxFailures) {
    task.done = true;
    ctx.failed += 1;
    enqueue.emit(observe({ kind: 'mw.task.failed', taskId, failures: task.failures }));
    checkFinished(ctx, enqueue);
  } else {
    ctx.requeued.push(taskId);
  }
}

/** Drops a worker: every task assigned to it is aborted once and handed out again. */
function dropWorker(ctx: ManagerContext, enqueue: Enqueue, worker: string, reason: DropReason): void {
  const w = ctx.workers.get(worker);
  if (!w) return;
  ctx.workers.delete(worker);
  enqueue.emit(observe({ kind: 'mw.worker.drop', worker, reason }));
  for (const taskId of w.running) {
    enqueue.emit(observe({ kind: 'mw.task.aborted', taskId, worker }));
    taskError(ctx, enqueue, taskId, 'ABORTED');
  }
}

function onStatus(ctx: ManagerContext, enqueue: Enqueue, worker: string, taskId: string, status: TaskStatus, now: number): void {
  const w = ctx.workers.get(worker) as WorkerRecord;
  const task = ctx.tasks.get(taskId);
  if (!task || task.done || task.worker !== worker || !w.running.has(taskId)) {
    // The original panicked here; a robust manager answers and records it, and asks the worker
    // to stop a task that is not (or no longer) its own.
    enqueue.emit(observe({ kind: 'mw.task.unexpected', taskId, worker }));
    if (status.kind === 'Pending' || status.kind === 'Started') {
      enqueue.emit(send(worker, request(ctx, { type: 'TasksAbord', taskIds: [taskId] })));
    }
    return;
  }
  task.lastNewsUs = now;
  if (status.kind === 'Completed') {
    w.running.delete(taskId);
    task.worker = null;
    task.done = true;
    ctx.completed += 1;
    enqueue.emit(observe({ kind: 'mw.task.completed', taskId, worker }));
    checkFinished(ctx, enqueue);
  } else if (status.kind === 'Error' || status.kind === 'Unknown') {
    w.running.delete(taskId);
    taskError(ctx, enqueue, taskId, status.kind === 'Error' ? status.error : 'UNKNOWN');
  }
}

const isWorker = ({ context, event }: { context: ManagerContext; event: MwEvent }): boolean => context.workers.has(fromOf(event));

const answerNodeType = answerNodeTypeAs('MANAGER');

export const managerMachine = setup({
  types: {
    context: {} as ManagerContext,
    events: {} as MwEvent,
    input: {} as ManagerInput,
    emitted: {} as MwEmitted,
  },
  delays: {
    checkInterval: ({ context }) => context.cfg.checkIntervalMs,
  },
  guards: {
    fromWorker: isWorker,
    /** A NotMine about a request of this relationship (a late or duplicated one about an older request is stale). */
    currentNotMine: ({ context, event }) => {
      const w = context.workers.get(fromOf(event));
      return w !== undefined && (((event as MwMessageEvent).msg as { re?: number }).re ?? -1) > w.sinceRid;
    },
  },
  actions: {
    answerNodeType: enqueueActions((args) => answerNodeType(args)),
    recordNodeType: enqueueActions((args) => recordNodeTypeAnswer(args)),
    /** Accepts a known worker (within `maxWorkers`); a repeated request restarts the relationship. */
    onManagerRequest: enqueueActions(({ context, event, enqueue }) => {
      const ev = event as MwMessageEvent;
      if (ev.msg.type !== 'ManagerRequest') return;
      const from = ev.from;
      const record = context.workers.get(from);
      if (record && record.requestRid === ev.msg.rid) {
        // The same request again (the network duplicated it): the same answer, nothing else.
        enqueue.emit(send(from, { type: 'ManagerAnswer', re: ridOf(event), accepted: true }));
        return;
      }
      if (!context.peerTypes.has(from)) {
        // First contact with a peer of unknown type: ask it (protocol, "Handshake"). Its next
        // request is accepted once it says it is a worker (after a manager restart, for example).
        enqueue.emit(send(from, request(context, { type: 'NodeTypeRequest', nodeType: 'MANAGER' })));
      }
      const known = record !== undefined;
      const accepted =
        context.peerTypes.get(from) === 'WORKER' &&
        (known || context.cfg.maxWorkers === 0 || context.workers.size < context.cfg.maxWorkers);
      if (accepted) {
        if (known) dropWorker(context, enqueue, from, 'superseded');
        context.workers.set(from, {
          requestRid: ev.msg.rid,
          sinceRid: context.rid,
          cpuCount: ev.msg.cpuCount,
          running: new Set(),
          lastPingUs: ev.now,
          lastPongUs: ev.now,
        });
        enqueue.emit(observe({ kind: 'mw.worker.add', worker: from, cpuCount: ev.msg.cpuCount }));
      }
      enqueue.emit(send(from, { type: 'ManagerAnswer', re: ridOf(event), accepted }));
      if (accepted) assign(context, enqueue, from, ev.now);
      if (known) assignAll(context, enqueue, ev.now);
    }),
    ack: enqueueActions(({ event, enqueue }) => enqueue.emit(send(fromOf(event), { type: 'Ack', re: ridOf(event) }))),
    notMine: enqueueActions(({ event, enqueue }) => enqueue.emit(send(fromOf(event), { type: 'NotMine', re: ridOf(event) }))),
    pong: enqueueActions(({ event, enqueue }) => enqueue.emit(send(fromOf(event), { type: 'ManagerPong', re: ridOf(event) }))),
    recordPong: ({ context, event }) => {
      const w = context.workers.get(fromOf(event));
      if (w) w.lastPongUs = event.now;
    },
    dropOnBye: enqueueActions(({ context, event, enqueue }) => {
      enqueue.emit(send(fromOf(event), { type: 'Ack', re: ridOf(event) }));
      dropWorker(context, enqueue, fromOf(event), 'bye');
      assignAll(context, enqueue, event.now);
    }),
    dropOnNotMine: enqueueActions(({ context, event, enqueue }) => {
      dropWorker(context, enqueue, fromOf(event), 'not-mine');
      assignAll(context, enqueue, event.now);
    }),
    onTaskStatus: enqueueActions(({ context, event, enqueue }) => {
      const ev = event as MwMessageEvent;
      enqueue.emit(send(ev.from, { type: 'Ack', re: ridOf(event) }));
      if (ev.msg.type !== 'TaskStatus') return;
      onStatus(context, enqueue, ev.from, ev.msg.taskId, ev.msg.status, ev.now);
      assign(context, enqueue, ev.from, ev.now);
    }),
    onTasksPong: enqueueActions(({ context, event, enqueue }) => {
      const ev = event as MwMessageEvent;
      if (ev.msg.type !== 'TasksPong') return;
      for (const { taskId, status } of ev.msg.statuses) {
        if (status.kind === 'Unknown' || status.kind === 'Completed' || status.kind === 'Error') {
          onStatus(context, enqueue, ev.from, taskId, status, ev.now);
        } else {
          const task = context.tasks.get(taskId);
          if (task && task.worker === ev.from) task.lastNewsUs = ev.now;
        }
      }
      assign(context, enqueue, ev.from, ev.now);
    }),
    /** Answers worker-bound requests sent to a manager: a partner gets Ack (or empty-handed Pong). */
    answerMisdirected: enqueueActions(({ event, enqueue }) => {
      const ev = event as MwMessageEvent;
      if (ev.msg.type === 'TasksPing') {
        const statuses = ev.msg.taskIds.map((taskId) => ({ taskId, status: { kind: 'Unknown' } as TaskStatus }));
        enqueue.emit(send(ev.from, { type: 'TasksPong', re: ridOf(event), statuses }));
      } else {
        enqueue.emit(send(ev.from, { type: 'Ack', re: ridOf(event) }));
      }
    }),
    /** Liveness for every worker, then questions about running tasks without recent news. */
    tick: enqueueActions(({ context, event, enqueue }) => {
      const now = event.now;
      const intervalUs = context.cfg.checkIntervalMs * 1000;
      const timeoutUs = context.cfg.timeoutMs * 1000;
      const pollUs = context.cfg.statusPollMs * 1000;
      let dropped = false;
      for (const [worker, w] of context.workers) {
        if (w.lastPongUs < w.lastPingUs && now - w.lastPongUs > timeoutUs) {
          enqueue.emit(observe({ kind: 'mw.timeout', peer: worker }));
          enqueue.emit(send(worker, request(context, { type: 'ManagerBye' })));
          dropWorker(context, enqueue, worker, 'timeout');
          dropped = true;
          continue;
        }
        if (now - w.lastPingUs >= intervalUs && now - w.lastPongUs >= intervalUs) {
          w.lastPingUs = now;
          enqueue.emit(send(worker, request(context, { type: 'ManagerPing' })));
        }
        if (pollUs > 0 && w.running.size > 0) {
          let stale: string[] | undefined;
          for (const taskId of w.running) {
            if (now - (context.tasks.get(taskId) as TaskRecord).lastNewsUs >= pollUs) (stale ??= []).push(taskId);
          }
          if (stale) enqueue.emit(send(worker, request(context, { type: 'TasksPing', taskIds: stale })));
        }
      }
      if (dropped) assignAll(context, enqueue, now);
    }),
    /** A manager with nothing to do says so at once (and only once: `finished` guards it). */
    announceIfDone: enqueueActions(({ context, enqueue }) => checkFinished(context, enqueue)),
    shutdown: enqueueActions(({ context, enqueue }) => {
      enqueue.emit(observe({ kind: 'mw.shutdown' }));
      for (const worker of context.workers.keys()) {
        enqueue.emit(send(worker, request(context, { type: 'ManagerBye' })));
      }
      enqueue.emit(effect.halt());
    }),
  },
}).createMachine({
  id: 'mw.manager',
  context: ({ input }) => ({
    cfg: input,
    rid: input.ridBase ?? 0,
    peerTypes: new Map(),
    workers: new Map(),
    tasks: new Map(),
    requeued: [],
    nextFresh: 0,
    completed: 0,
    failed: 0,
    finished: false,
  }),
  initial: 'running',
  states: {
    running: {
      entry: 'announceIfDone',
      after: { checkInterval: { target: 'running', reenter: true, actions: 'tick' } },
      on: {
        NodeTypeRequest: { actions: 'answerNodeType' },
        NodeTypeAnswer: { actions: 'recordNodeType' },
        ManagerRequest: { actions: 'onManagerRequest' },
        ManagerBye: [{ guard: 'fromWorker', actions: 'dropOnBye' }, { actions: 'ack' }],
        ManagerPing: [{ guard: 'fromWorker', actions: 'pong' }, { actions: 'notMine' }],
        ManagerPong: { guard: 'fromWorker', actions: 'recordPong' },
        NotMine: { guard: 'currentNotMine', actions: 'dropOnNotMine' },
        TaskStatus: [{ guard: 'fromWorker', actions: 'onTaskStatus' }, { actions: 'notMine' }],
        TasksPong: { guard: 'fromWorker', actions: 'onTasksPong' },
        TasksExecute: [{ guard: 'fromWorker', actions: 'answerMisdirected' }, { actions: 'notMine' }],
        TasksPing: [{ guard: 'fromWorker', actions: 'answerMisdirected' }, { actions: 'notMine' }],
        TasksAbord: [{ guard: 'fromWorker', actions: 'answerMisdirected' }, { actions: 'notMine' }],
        'host.shutdown': { target: 'off', actions: 'shutdown' },
      },
    },
    off: { type: 'final' },
  },
});

export type ManagerMachine = typeof managerMachine;
