/**
 * An OPACA **runtime platform** (`shared/protocols/opaca.md`, "Behaviour"): answers the REST API,
 * routes send, broadcast and invoke to its local containers first and then to its connected
 * platforms, and keeps the event history.
 *
 * - **Forwarding**: a call with `forward=true` may go to a connected platform whose `/info` shows a
 *   full match; the forwarded call always carries `forward=false`, so it crosses at most one hop and
 *   never loops.
 * - **Invoke** goes to the first matching target and falls through to the next only when that one is
 *   unreachable (no answer within `callTimeoutMs`, or 502); every candidate unreachable → 502; no
 *   target but a parameter mismatch → 400; none → 404. Any other answer of the target is the answer.
 * - **Send and broadcast**: `documented` mode delivers to every valid target, `current` (the
 *   implementation) stops at the first success. A send with no target → 404; a broadcast is never 404.
 * - **History**, in the implementation's event shape: each call on a recorded route (sends,
 *   broadcasts, invokes, changes to containers and connections) yields a CALL, a FORWARD per
 *   platform it is forwarded to, then one SUCCESS or ERROR (with its status code) whose `relatedId`
 *   is the CALL's id; fields that are null are left out, as Jackson does; the last `historySize`
 *   (50) are kept and served at `GET /history`.
 *
 * Not yet: connecting and disconnecting at run time (connect-back), notify-then-pull, deploy,
 * `/containers` subscriptions and auth. The connections and each connected platform's `/info` are
 * given at start.
 * The context is owned, mutable state (see the manager/worker machines).
 */
import { enqueueActions, setup } from 'xstate';
import { effect } from '../../protocol/host.js';
import type { AgentContainer, OpacaEvent, OpacaMode, OpacaRequest, OpacaResponse, Route, RuntimePlatform } from '../../protocol/opaca.js';
import { DEFAULT_HISTORY_SIZE, OPACA_STATUS, parseRoute, recordsEvents } from '../../protocol/opaca.js';
import type { Candidates, Target } from './routing.js';
import { broadcastTargets, invokeTargets, sendTargets } from './routing.js';

export interface PlatformInput {
  name: string;
  platformId: string;
  baseUrl: string;
  mode: OpacaMode;
  /** Local containers: their `/info` and the actor that runs each. */
  containers: { actor: string; info: AgentContainer }[];
  /** Connected platforms: their `/info` as last pulled, and the actor behind each base URL. */
  connected: { actor: string; info: RuntimePlatform }[];
  historySize?: number;
  /** How long a call to a container or platform may go unanswered before it counts as unreachable. */
  callTimeoutMs: number;
}

export type PlatformObservation =
  | { kind: 'opaca.call'; callId: string; route: Route['kind']; forward: boolean; from: string; forwarded: boolean }
  | { kind: 'opaca.dispatch'; callId: string; target: string; toPlatform: boolean }
  /** A call answered here: with how many targets it had, how many it reached, how many were unreachable. */
  | {
      kind: 'opaca.answered';
      callId: string;
      status: number;
      targets: number;
      reached: number;
      unreachable: number;
      mismatch: boolean;
    };

/** A call being served: where it may go, where it went, what came back. */
interface Call {
  /** The trace id: the CALL event's id where the call was first made (carried along forwards). */
  callId: string;
  /** This platform's CALL event (the relatedId of its SUCCESS, ERROR and FORWARD events). */
  eventId: string;
  from: string;
  rid: number;
  req: OpacaRequest;
  route: Extract<Route, { kind: 'send' | 'broadcast' | 'invoke' }>;
  candidates: Candidates;
  /** Next target to try (sequential calls). */
  next: number;
  /** Dispatches in flight. */
  open: number;
  successes: number;
  unreachable: number;
  /** The first answer that is neither a success nor unreachable (invoke answers it). */
  failure?: OpacaResponse;
  lastBody?: unknown;
}

interface PlatformContext {
  cfg: PlatformInput;
  /** Calls being served, by their CALL event id here. */
  calls: Map<string, Call>;
  /** Dispatch request id → the call it serves (its CALL event id). */
  dispatches: Map<number, string>;
  rid: number;
  events: OpacaEvent[];
  nextEvent: number;
}

type PlatformEvent =
  | { type: 'OpacaRequest'; from: string; msg: OpacaRequest; now: number }
  | { type: 'OpacaResponse'; from: string; msg: OpacaResponse; now: number }
  | { type: 'opaca.callTimeout'; rid: number; now: number }
  | { type: 'host.shutdown'; now: number };

type Emit = ReturnType<typeof effect.send> | ReturnType<typeof effect.observe<PlatformObservation>>;
type Enqueue = {
  emit: (e: Emit) => void;
  raise: (e: PlatformEvent, o: { id: string; delay: number }) => void;
  cancel: (id: string) => void;
};

const answer = (re: number, status: number, body: unknown): OpacaResponse => ({ type: 'OpacaResponse', re, status, body });

/**
 * Records an event in the implementation's shape (absent fields left out) when its route is one the
 * implementation records; returns the id either way (a call's id for the trace and the checker).
 */
function record(
  ctx: PlatformContext,
  nowUs: number,
  req: OpacaRequest,
  eventType: OpacaEvent['eventType'],
  fields: Pick<OpacaEvent, 'senderId' | 'receiver' | 'statusCode' | 'relatedId'>,
): string {
  const id = `${ctx.cfg.platformId}-${++ctx.nextEvent}`;
  if (!recordsEvents(req.method, req.path)) return id;
  const defined = Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));
  ctx.events.push({ id, timestamp: Math.floor(nowUs / 1000), eventType, route: routeText(req), ...defined });
  const limit = ctx.cfg.historySize ?? DEFAULT_HISTORY_SIZE;
  if (ctx.events.length > limit) ctx.events.splice(0, ctx.events.length - limit);
  return id;
}

const routeText = (req: OpacaRequest): string => `${req.method} ${req.path}`;

/** Ends a call: the answer to its caller, and the SUCCESS or ERROR event. */
function finish(ctx: PlatformContext, call: Call, nowUs: number, status: number, body: unknown, enqueue: Enqueue): void {
  ctx.calls.delete(call.eventId);
  record(ctx, nowUs, call.req, status === OPACA_STATUS.ok ? 'SUCCESS' : 'ERROR', {
    senderId: call.from,
    ...(status === OPACA_STATUS.ok ? {} : { statusCode: status }),
    relatedId: call.eventId,
  });
  enqueue.emit(effect.send(call.from, answer(call.rid, status, body)));
  enqueue.emit(
    effect.observe<PlatformObservation>({
      kind: 'opaca.answered',
      callId: call.callId,
      status,
      targets: call.candidates.targets.length,
      reached: call.successes,
      unreachable: call.unreachable,
      mismatch: call.candidates.mismatch,
    }),
  );
}

/** Sends the call to `target` (a forward carries forward=false) and starts its timeout. */
function dispatch(ctx: PlatformContext, call: Call, target: Target, nowUs: number, enqueue: Enqueue): void {
  const rid = ++ctx.rid;
  ctx.dispatches.set(rid, call.eventId);
  call.open++;
  const toPlatform = target.kind === 'platform';
  const actor = toPlatform
    ? ctx.cfg.connected.find((p) => p.info.baseUrl === target.url)!.actor
    : ctx.cfg.containers.find((c) => c.info.containerId === target.containerId)!.actor;
  const query: Record<string, string> = { ...(call.req.query ?? {}) };
  if (toPlatform) query.forward = 'false';
  else delete query.forward;
  enqueue.emit(effect.send(actor, { ...call.req, rid, query, callId: call.callId } satisfies OpacaRequest));
  if (toPlatform) record(ctx, nowUs, call.req, 'FORWARD', { senderId: call.from, receiver: target.url, relatedId: call.eventId });
  enqueue.emit(effect.observe<PlatformObservation>({ kind: 'opaca.dispatch', callId: call.callId, target: actor, toPlatform }));
  enqueue.raise({ type: 'opaca.callTimeout', rid, now: 0 }, { id: `call:${rid}`, delay: ctx.cfg.callTimeoutMs });
}

/** Sequential calls (invoke; send and broadcast in current mode) try the next target; parallel ones send to all. */
function advance(ctx: PlatformContext, call: Call, nowUs: number, enqueue: Enqueue): void {
  const all = call.route.kind !== 'invoke' && ctx.cfg.mode === 'documented';
  const targets = call.candidates.targets;
  if (all) {
    if (call.next === 0) {
      call.next = targets.length;
      for (const t of targets) dispatch(ctx, call, t, nowUs, enqueue);
    }
  } else if (call.successes === 0 && call.failure === undefined && call.next < targets.length && call.open === 0) {
    dispatch(ctx, call, targets[call.next++], nowUs, enqueue);
  }
  if (call.open > 0) return;
  const none = targets.length === 0;
  if (call.successes > 0) return finish(ctx, call, nowUs, OPACA_STATUS.ok, call.route.kind === 'invoke' ? call.lastBody : null, enqueue);
  if (call.failure) return finish(ctx, call, nowUs, call.failure.status, call.failure.body, enqueue);
  if (none && call.route.kind === 'broadcast') return finish(ctx, call, nowUs, OPACA_STATUS.ok, null, enqueue);
  if (none) {
    const status = call.candidates.mismatch ? OPACA_STATUS.badRequest : OPACA_STATUS.notFound;
    const what = call.route.kind === 'invoke' ? `action ${call.route.action}` : `agent ${(call.route as { agent: string }).agent}`;
    const message = call.candidates.mismatch ? `the arguments do not match the parameters of ${what}` : `no ${what}`;
    return finish(ctx, call, nowUs, status, { statusCode: status, message }, enqueue);
  }
  finish(
    ctx,
    call,
    nowUs,
    OPACA_STATUS.badGateway,
    { statusCode: 502, message: `every target was unreachable (${targets.length})` },
    enqueue,
  );
}

export const platformMachine = setup({
  types: {
    context: {} as PlatformContext,
    events: {} as PlatformEvent,
    input: {} as PlatformInput,
    emitted: {} as Emit,
  },
  actions: {
    serve: enqueueActions(({ context, event, enqueue }) => {
      const e = event as Extract<PlatformEvent, { type: 'OpacaRequest' }>;
      const req = e.msg;
      const callId = record(context, e.now, req, 'CALL', { senderId: e.from });
      const q = enqueue as unknown as Enqueue;
      const parsed = parseRoute(req);
      const forwarded = req.callId !== undefined;
      const route = parsed.ok ? parsed.route : undefined;
      enqueue.emit(
        effect.observe<PlatformObservation>({
          kind: 'opaca.call',
          callId: req.callId ?? callId,
          route: route?.kind ?? 'info',
          forward: route !== undefined && 'forward' in route ? route.forward : false,
          from: e.from,
          forwarded,
        }),
      );
      const quick = (status: number, body: unknown): void => {
        record(context, e.now, req, status === OPACA_STATUS.ok ? 'SUCCESS' : 'ERROR', {
          senderId: e.from,
          ...(status === OPACA_STATUS.ok ? {} : { statusCode: status }),
          relatedId: callId,
        });
        enqueue.emit(effect.send(e.from, answer(req.rid, status, body)));
      };
      if (!parsed.ok) return quick(parsed.status, parsed.error);
      const r = parsed.route;
      const view = { containers: context.cfg.containers.map((c) => c.info), connected: context.cfg.connected.map((c) => c.info) };
      switch (r.kind) {
        case 'info':
          return quick(OPACA_STATUS.ok, {
            platformId: context.cfg.platformId,
            baseUrl: context.cfg.baseUrl,
            containers: view.containers,
            provides: [],
            connections: view.connected.map((p) => p.baseUrl),
            runningSince: 0,
          } satisfies RuntimePlatform);
        case 'agents': {
          // Local agents, plus each directly connected platform's — never transitively.
          const local = view.containers.flatMap((c) => c.agents);
          return quick(
            OPACA_STATUS.ok,
            r.includeConnected ? [...local, ...view.connected.flatMap((p) => p.containers.flatMap((c) => c.agents))] : local,
          );
        }
        case 'agent': {
          const agent = view.containers.flatMap((c) => c.agents).find((a) => a.agentId === r.agent);
          return agent ? quick(OPACA_STATUS.ok, agent) : quick(OPACA_STATUS.notFound, { statusCode: 404, message: `no agent ${r.agent}` });
        }
        case 'containers':
          return quick(OPACA_STATUS.ok, view.containers);
        case 'container': {
          const c = view.containers.find((x) => x.containerId === r.containerId);
          return c
            ? quick(OPACA_STATUS.ok, c)
            : quick(OPACA_STATUS.notFound, { statusCode: 404, message: `no container ${r.containerId}` });
        }
        case 'connections':
          return quick(
            OPACA_STATUS.ok,
            view.connected.map((p) => p.baseUrl),
          );
        case 'history':
          return quick(OPACA_STATUS.ok, [...context.events]);
        case 'send':
        case 'broadcast':
        case 'invoke': {
          const want = { forward: r.forward, ...(r.containerId !== undefined ? { containerId: r.containerId } : {}) };
          const candidates =
            r.kind === 'invoke'
              ? invokeTargets(view, { ...want, action: r.action, args: r.args, ...(r.agent !== undefined ? { agent: r.agent } : {}) })
              : r.kind === 'send'
                ? sendTargets(view, { ...want, agent: r.agent })
                : broadcastTargets(view, want);
          const call: Call = {
            callId: req.callId ?? callId,
            eventId: callId,
            from: e.from,
            rid: req.rid,
            req,
            route: r,
            candidates,
            next: 0,
            open: 0,
            successes: 0,
            unreachable: 0,
          };
          context.calls.set(call.eventId, call);
          return advance(context, call, e.now, q);
        }
        default:
          return quick(OPACA_STATUS.notFound, { statusCode: 404, message: `not served yet: ${routeText(req)}` });
      }
    }),
    /** An answer, or the lack of one, from a container or platform a call went to. */
    collect: enqueueActions(({ context, event, enqueue }) => {
      const q = enqueue as unknown as Enqueue;
      const timedOut = event.type === 'opaca.callTimeout';
      const rid = timedOut ? (event as { rid: number }).rid : (event as { msg: OpacaResponse }).msg.re;
      const callId = context.dispatches.get(rid);
      if (callId === undefined) return;
      context.dispatches.delete(rid);
      if (!timedOut) enqueue.cancel(`call:${rid}`);
      const call = context.calls.get(callId);
      if (!call) return;
      call.open--;
      const res = timedOut ? undefined : (event as { msg: OpacaResponse }).msg;
      if (res?.status === OPACA_STATUS.ok) {
        call.successes++;
        call.lastBody = res.body;
      } else if (res === undefined || res.status === OPACA_STATUS.badGateway) call.unreachable++;
      else if (call.failure === undefined) call.failure = res;
      advance(context, call, (event as { now: number }).now, q);
    }),
  },
}).createMachine({
  id: 'opaca.platform',
  context: ({ input }) => ({ cfg: input, calls: new Map(), dispatches: new Map(), rid: 0, events: [], nextEvent: 0 }),
  initial: 'running',
  states: {
    running: {
      on: {
        OpacaRequest: { actions: 'serve' },
        OpacaResponse: { actions: 'collect' },
        'opaca.callTimeout': { actions: 'collect' },
      },
    },
  },
});
