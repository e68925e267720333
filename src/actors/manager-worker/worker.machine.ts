/**
 * The manager/worker **worker** (`shared/protocols/manager-worker.md`): finds an authorised manager,
 * keeps the relationship alive with pings, runs the tasks it is given on `cpuCount` slots and reports
 * every status change. Pure protocol logic: effects are emitted as data (protocol/host.ts).
 *
 * The context is owned, mutable state: actions update it in place (collections of a node with 10⁴
 * partners cannot be copied on every event). Only the host holds the snapshot.
 */
import { enqueueActions, setup } from 'xstate';
import { effect } from '../../protocol/host.js';
import type { ManagerAnswer, MwMode, NodeType, TaskErrorKind, TaskSpec, TaskStatus, WorkerSpecs } from '../../protocol/managerWorker.js';
import type { MwEmitted, MwEvent, MwMessageEvent } from './common.js';
import { answerNodeTypeAs, fromOf, observe, recordNodeTypeAnswer, request, ridOf, send } from './common.js';

export interface WorkerInput {
  name: string;
  mode: MwMode;
  specs: WorkerSpecs;
  /** Peers contacted at start (the bootstrap list); their type is learnt by NodeTypeRequest. */
  peers: string[];
  /** Managers this worker may join; empty means any. */
  authorizedManagers: string[];
  checkIntervalMs: number;
  timeoutMs: number;
  /** How long a search waits before contacting peers again. */
  retryMs: number;
  /** Where request ids start: the host gives each incarnation its own range after a restart. */
  ridBase?: number;
}

interface WorkerTask {
  spec: TaskSpec;
  /** Rank of the last status reported (Pending 0, Started 1). */
  rank: number;
}

export interface WorkerContext {
  cfg: WorkerInput;
  rid: number;
  peerTypes: Map<string, NodeType>;
  manager: string | null;
  /** The manager a ManagerRequest is outstanding to, and that request's id. */
  candidate: string | null;
  candidateRid: number;
  /** Our request counter when this search began: an answer to any request of this search counts. */
  searchRid: number;
  /** Managers that refused us (or did not answer) in this round of the search. */
  refused: Set<string>;
  /** TasksExecute requests of `executedFrom` already handled: a duplicate must not run tasks again. */
  executed: Set<number>;
  executedFrom: string | null;
  /** Our request counter when the relationship started: a NotMine answering an older request is stale. */
  relationshipRid: number;
  lastPingUs: number;
  lastPongUs: number;
  tasks: Map<string, WorkerTask>;
}

type Enqueue = {
  emit: (e: MwEmitted) => void;
  raise: (e: MwEvent, o: { id: string; delay: number }) => void;
  cancel: (id: string) => void;
};

function isAuthorised(ctx: WorkerContext, peer: string): boolean {
  return ctx.cfg.authorizedManagers.length === 0 || ctx.cfg.authorizedManagers.includes(peer);
}

/** The first known, authorised manager that has not refused us in this round. */
function eligibleManager(ctx: WorkerContext): string | undefined {
  for (const peer of ctx.cfg.peers) {
    if (ctx.peerTypes.get(peer) === 'MANAGER' && isAuthorised(ctx, peer) && !ctx.refused.has(peer)) return peer;
  }
  return undefined;
}

function answer(enqueue: Enqueue, ev: MwEvent, msg: MwMessageEvent['msg']): void {
  enqueue.emit(send(fromOf(ev), msg));
}

/** Sends a ManagerRequest to the next eligible manager, if none is outstanding. */
function requestManagement(ctx: WorkerContext, enqueue: Enqueue): void {
  if (ctx.candidate !== null || ctx.manager !== null) return;
  const target = eligibleManager(ctx);
  if (target === undefined) return; // everyone refused: the next round starts on the retry timer
  ctx.candidate = target;
  const msg = request(ctx, { type: 'ManagerRequest', ...ctx.cfg.specs });
  ctx.candidateRid = msg.rid;
  enqueue.emit(send(target, msg));
}

function report(ctx: WorkerContext, enqueue: Enqueue, taskId: string, status: TaskStatus): void {
  if (ctx.manager === null) return;
  enqueue.emit(send(ctx.manager, request(ctx, { type: 'TaskStatus', taskId, status })));
}

/** Ends a task with an error: report it, stop its timer, forget it. */
function failTask(ctx: WorkerContext, enqueue: Enqueue, taskId: string, error: TaskErrorKind): void {
  const task = ctx.tasks.get(taskId);
  if (!task) return;
  if (task.rank >= 1) enqueue.cancel(`task:${taskId}`);
  ctx.tasks.delete(taskId);
  report(ctx, enqueue, taskId, { kind: 'Error', error });
}

/** Drops the relationship; tasks of the old relationship are abandoned (nobody to report to). */
function dropManager(ctx: WorkerContext, enqueue: Enqueue, reason: 'bye' | 'timeout' | 'not-mine' | 'shutdown'): void {
  for (const [taskId, task] of ctx.tasks) if (task.rank >= 1) enqueue.cancel(`task:${taskId}`);
  ctx.tasks.clear();
  ctx.manager = null;
  ctx.candidate = null;
  ctx.refused.clear();
  ctx.searchRid = ctx.rid;
  enqueue.emit(observe({ kind: 'mw.manager', manager: null, reason }));
}

const isFromManager = ({ context, event }: { context: WorkerContext; event: MwEvent }): boolean =>
  context.manager !== null && fromOf(event) === context.manager;

/** A NotMine from our manager about a request of this relationship (a late or duplicated one about an older request is stale). */
const isCurrentNotMine = ({ context, event }: { context: WorkerContext; event: MwEvent }): boolean =>
  isFromManager({ context, event }) && (((event as MwMessageEvent).msg as { re?: number }).re ?? -1) > context.relationshipRid;

const answerNodeType = answerNodeTypeAs('WORKER');

export const workerMachine = setup({
  types: {
    context: {} as WorkerContext,
    events: {} as MwEvent,
    input: {} as WorkerInput,
    emitted: {} as MwEmitted,
  },
  delays: {
    checkInterval: ({ context }) => context.cfg.checkIntervalMs,
    retry: ({ context }) => context.cfg.retryMs,
  },
  guards: {
    fromManager: isFromManager,
    currentNotMine: isCurrentNotMine,
    /** The partner has been silent for longer than `timeout` since our last ping (protocol: "Liveness"). */
    partnerTimedOut: ({ context, event }) =>
      context.lastPongUs < context.lastPingUs && event.now - context.lastPongUs > context.cfg.timeoutMs * 1000,
    /**
     * A ManagerAnswer that starts a relationship (protocol table, "true | none | authorised
     * manager"): accepted, from a known, authorised manager, answering a request of this search —
     * also one of an earlier round that was slow to answer. An answer from before the search (a stale
     * or duplicated one from an old relationship) must not re-attach us.
     */
    answerStartsRelationship: ({ context, event }) => {
      const msg = (event as MwMessageEvent).msg as ManagerAnswer;
      const from = fromOf(event);
      return msg.accepted && msg.re > context.searchRid && context.peerTypes.get(from) === 'MANAGER' && isAuthorised(context, from);
    },
  },
  actions: {
    answerNodeType: enqueueActions((args) => answerNodeType(args)),
    recordNodeType: enqueueActions((args) => recordNodeTypeAnswer(args)),
    /**
     * A new round of the search (at start and on every retry): contact peers of unknown type and ask
     * the first eligible manager. A request still unanswered from the last round counts as refused.
     */
    contactPeers: enqueueActions(({ context, enqueue }) => {
      const unanswered = context.candidate;
      context.candidate = null;
      context.refused.clear();
      if (unanswered !== null) context.refused.add(unanswered);
      for (const peer of context.cfg.peers) {
        if (!context.peerTypes.has(peer)) {
          enqueue.emit(send(peer, request(context, { type: 'NodeTypeRequest', nodeType: 'WORKER' })));
        }
      }
      requestManagement(context, enqueue);
      if (context.candidate === null && unanswered !== null) {
        // The silent one is the only manager we know: ask it again.
        context.refused.clear();
        requestManagement(context, enqueue);
      }
    }),
    requestManagement: enqueueActions(({ context, enqueue }) => requestManagement(context, enqueue)),
    refuseManagement: enqueueActions(({ event, enqueue }) =>
      answer(enqueue, event, { type: 'ManagerAnswer', re: ridOf(event), accepted: false }),
    ),
    ack: enqueueActions(({ event, enqueue }) => answer(enqueue, event, { type: 'Ack', re: ridOf(event) })),
    notMine: enqueueActions(({ event, enqueue }) => answer(enqueue, event, { type: 'NotMine', re: ridOf(event) })),
    /** ManagerAnswer while searching (protocol table "ManagerAnswer at the worker", no current manager). */
    onAnswerWhileSearching: enqueueActions(({ context, event, enqueue }) => {
      const from = fromOf(event);
      const msg = (event as MwMessageEvent).msg as ManagerAnswer;
      const ours = msg.re > context.searchRid;
      if (msg.accepted) {
        // Accepted by an unauthorised manager, by a peer that is not a manager, or a stale answer:
        // the sender now counts us as its worker, so say bye.
        enqueue.emit(send(from, request(context, { type: 'ManagerBye' })));
      }
      if (!ours) return;
      // Refused ("may try another manager"): ask the next one now; if none is left, wait for the retry.
      context.refused.add(from);
      if (from === context.candidate && msg.re === context.candidateRid) {
        context.candidate = null;
        requestManagement(context, enqueue);
      }
    }),
    attach: enqueueActions(({ context, event, enqueue }) => {
      context.manager = fromOf(event);
      context.candidate = null;
      context.refused.clear();
      // Request ids are the manager's: a late duplicate from an earlier relationship with the same
      // manager is still recognised.
      if (context.executedFrom !== context.manager) {
        context.executed.clear();
        context.executedFrom = context.manager;
      }
      context.relationshipRid = context.rid;
      context.lastPingUs = event.now;
      context.lastPongUs = event.now;
      enqueue.emit(observe({ kind: 'mw.manager', manager: context.manager }));
    }),
    /** ManagerAnswer while attached: re-check our manager, keep it against others. */
    onAnswerWhileAttached: enqueueActions(({ context, event, enqueue }) => {
      const from = fromOf(event);
      const msg = (event as MwMessageEvent).msg as ManagerAnswer;
      if (from === context.manager) {
        context.lastPingUs = event.now;
        enqueue.emit(send(from, request(context, { type: 'ManagerPing' })));
      } else if (msg.accepted) {
        enqueue.emit(send(from, request(context, { type: 'ManagerBye' })));
      }
    }),
    pong: enqueueActions(({ event, enqueue }) => answer(enqueue, event, { type: 'ManagerPong', re: ridOf(event) })),
    recordPong: ({ context, event }) => {
      context.lastPongUs = event.now;
    },
    /** Pings when both the last ping and the last pong are older than the interval. */
    pingIfDue: enqueueActions(({ context, event, enqueue }) => {
      const intervalUs = context.cfg.checkIntervalMs * 1000;
      if (context.manager === null) return;
      if (event.now - context.lastPingUs >= intervalUs && event.now - context.lastPongUs >= intervalUs) {
        context.lastPingUs = event.now;
        enqueue.emit(send(context.manager, request(context, { type: 'ManagerPing' })));
      }
    }),
    byeOnTimeout: enqueueActions(({ context, enqueue }) => {
      const manager = context.manager as string;
      enqueue.emit(observe({ kind: 'mw.timeout', peer: manager }));
      enqueue.emit(send(manager, request(context, { type: 'ManagerBye' })));
      dropManager(context, enqueue, 'timeout');
    }),
    dropOnBye: enqueueActions(({ context, event, enqueue }) => {
      answer(enqueue, event, { type: 'Ack', re: ridOf(event) });
      dropManager(context, enqueue, 'bye');
    }),
    dropOnNotMine: enqueueActions(({ context, enqueue }) => dropManager(context, enqueue, 'not-mine')),
    /** Accepts tasks: Ack, report Pending, fetch the program (protocol: "Tasks on the worker"). */
    acceptTasks: enqueueActions(({ context, event, enqueue }) => {
      const ev = event as MwMessageEvent;
      answer(enqueue, event, { type: 'Ack', re: ridOf(event) });
      if (ev.msg.type !== 'TasksExecute' || context.executed.has(ev.msg.rid)) return;
      context.executed.add(ev.msg.rid);
      for (const spec of ev.msg.tasks) {
        if (context.tasks.has(spec.taskId)) continue;
        context.tasks.set(spec.taskId, { spec, rank: 0 });
        report(context, enqueue, spec.taskId, { kind: 'Pending' });
        enqueue.emit(effect.exec('fetch', spec.taskId, { programAddresses: spec.programAddresses }));
      }
    }),
    /** Strict: answer the asked ids with their statuses. Balthazar: only acknowledge (the original). */
    answerTasksPing: enqueueActions(({ context, event, enqueue }) => {
      const ev = event as MwMessageEvent;
      if (context.cfg.mode === 'balthazar' || ev.msg.type !== 'TasksPing') {
        answer(enqueue, event, { type: 'Ack', re: ridOf(event) });
        return;
      }
      const statuses = ev.msg.taskIds.map((taskId) => {
        const task = context.tasks.get(taskId);
        const status: TaskStatus =
          task === undefined ? { kind: 'Unknown' } : task.rank === 0 ? { kind: 'Pending' } : { kind: 'Started', startTime: 0 };
        return { taskId, status };
      });
      answer(enqueue, event, { type: 'TasksPong', re: ridOf(event), statuses });
    }),
    /** Strict: acknowledge and kill. Balthazar: acknowledge only (the original). */
    abortTasks: enqueueActions(({ context, event, enqueue }) => {
      const ev = event as MwMessageEvent;
      answer(enqueue, event, { type: 'Ack', re: ridOf(event) });
      if (context.cfg.mode === 'balthazar' || ev.msg.type !== 'TasksAbord') return;
      for (const taskId of ev.msg.taskIds) failTask(context, enqueue, taskId, 'ABORTED');
    }),
    onFetched: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'env.fetch') return;
      const task = context.tasks.get(event.ref);
      if (task?.rank !== 0) return;
      if (!event.ok) {
        failTask(context, enqueue, event.ref, 'DOWNLOAD');
        return;
      }
      task.rank = 1;
      report(context, enqueue, event.ref, { kind: 'Started', startTime: Math.floor(event.now / 1_000_000) });
      enqueue.emit(effect.exec('run', event.ref, { argument: task.spec.argument, timeoutS: task.spec.timeout }));
      enqueue.raise({ type: 'task.timeout', taskId: event.ref, now: 0 }, { id: `task:${event.ref}`, delay: task.spec.timeout * 1000 });
    }),
    onRun: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'env.run') return;
      const task = context.tasks.get(event.ref);
      if (task?.rank !== 1) return;
      if (!event.ok) {
        failTask(context, enqueue, event.ref, 'RUNTIME');
        return;
      }
      enqueue.cancel(`task:${event.ref}`);
      context.tasks.delete(event.ref);
      report(context, enqueue, event.ref, { kind: 'Completed', result: event.result });
    }),
    /** The original reports a timeout as RUNTIME; the draft says TIMED_OUT. */
    onTaskTimeout: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'task.timeout') return;
      const task = context.tasks.get(event.taskId);
      if (task?.rank !== 1) return;
      context.tasks.delete(event.taskId); // the timer already fired: nothing to cancel
      report(context, enqueue, event.taskId, { kind: 'Error', error: context.cfg.mode === 'balthazar' ? 'RUNTIME' : 'TIMED_OUT' });
    }),
    shutdown: enqueueActions(({ context, enqueue }) => {
      enqueue.emit(observe({ kind: 'mw.shutdown' }));
      if (context.manager !== null) {
        const manager = context.manager;
        enqueue.emit(send(manager, request(context, { type: 'ManagerBye' })));
        dropManager(context, enqueue, 'shutdown');
      }
      enqueue.emit(effect.halt());
    }),
  },
}).createMachine({
  id: 'mw.worker',
  context: ({ input }) => ({
    cfg: input,
    rid: input.ridBase ?? 0,
    peerTypes: new Map(),
    manager: null,
    candidate: null,
    searchRid: input.ridBase ?? 0,
    candidateRid: -1,
    refused: new Set(),
    executed: new Set(),
    executedFrom: null,
    relationshipRid: input.ridBase ?? 0,
    lastPingUs: 0,
    lastPongUs: 0,
    tasks: new Map(),
  }),
  initial: 'searching',
  on: {
    NodeTypeRequest: { actions: 'answerNodeType' },
    NodeTypeAnswer: { actions: 'recordNodeType' },
    ManagerRequest: { actions: 'refuseManagement' },
    ManagerBye: { actions: 'ack' },
    ManagerPing: { actions: 'notMine' },
    TasksExecute: { actions: 'notMine' },
    TasksPing: { actions: 'notMine' },
    TasksAbord: { actions: 'notMine' },
    TaskStatus: { actions: 'notMine' },
    'env.fetch': { actions: 'onFetched' },
    'env.run': { actions: 'onRun' },
    'task.timeout': { actions: 'onTaskTimeout' },
    'host.shutdown': { target: '.off', actions: 'shutdown' },
  },
  states: {
    searching: {
      entry: 'contactPeers',
      after: { retry: { target: 'searching', reenter: true } },
      on: {
        NodeTypeRequest: { actions: ['answerNodeType', 'requestManagement'] },
        NodeTypeAnswer: { actions: ['recordNodeType', 'requestManagement'] },
        ManagerAnswer: [
          { guard: 'answerStartsRelationship', target: 'attached', actions: 'attach' },
          { actions: 'onAnswerWhileSearching' },
        ],
      },
    },
    attached: {
      after: {
        checkInterval: [
          { guard: 'partnerTimedOut', target: 'searching', actions: 'byeOnTimeout' },
          { target: 'attached', reenter: true, actions: 'pingIfDue' },
        ],
      },
      on: {
        ManagerAnswer: { actions: 'onAnswerWhileAttached' },
        ManagerBye: [{ guard: 'fromManager', target: 'searching', actions: 'dropOnBye' }, { actions: 'ack' }],
        NotMine: { guard: 'currentNotMine', target: 'searching', actions: 'dropOnNotMine' },
        ManagerPing: [{ guard: 'fromManager', actions: 'pong' }, { actions: 'notMine' }],
        ManagerPong: { guard: 'fromManager', actions: 'recordPong' },
        TasksExecute: [{ guard: 'fromManager', actions: 'acceptTasks' }, { actions: 'notMine' }],
        TasksPing: [{ guard: 'fromManager', actions: 'answerTasksPing' }, { actions: 'notMine' }],
        TasksAbord: [{ guard: 'fromManager', actions: 'abortTasks' }, { actions: 'notMine' }],
        TaskStatus: [{ guard: 'fromManager', actions: 'ack' }, { actions: 'notMine' }],
      },
    },
    off: { type: 'final' },
  },
});

export type WorkerMachine = typeof workerMachine;
