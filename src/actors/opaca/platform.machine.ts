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
 * - **Connections**: `POST /connections` pulls the other platform's `/info` (502 when it does not
 *   answer; its own URL or one already connected → false), asks it to connect back when told to,
 *   then subscribes to its `/containers` topic; `DELETE /connections` drops it (and, with
 *   connect-back, asks the other to drop this one). Platforms connected at start are subscribed to
 *   each other.
 * - **Notify, then pull**: `POST /containers/notify` and `/connections/notify` make it pull `/info`
 *   from the container or platform named — the pull, not the notice, is what it believes: stored
 *   → true; unreachable → removed, false; unknown → 404. A change to its containers pushes a
 *   `/containers` event to its subscribers, which pull its `/info` again.
 *
 * - **Deploy**: `POST /containers` checks the image's requirements against what it provides (400),
 *   starts a container of the image (404 when it has none), polls its `/info` every second and lists
 *   it only once it answers — within the deploy timeout (10 s, or the `timeout` query); otherwise the
 *   container is stopped and the answer is 502. `DELETE /containers/{id}` stops and removes it
 *   (true; false when unknown). Both push a `/containers` event to subscribers. The container id is
 *   the container actor's name (the implementation draws a UUID).
 *
 * - **Auth** (when its input has users): `POST /login` gives a token (1 h; a wrong password is 403),
 *   `GET /token` a renewed one (10 h, same role); every other route needs a valid token (401) of a
 *   role at or above the route's (403; `requestRole`, from method and path). A connect-back hands the other platform a fresh
 *   7-day token with the caller's role; a deploy gives the container a 24-hour token with the
 *   deployer's. Calls to connected platforms carry the token held for that platform, never the caller's.
 * The context is owned, mutable state (see the manager/worker machines).
 */
import { enqueueActions, setup } from 'xstate';
import { effect } from '../../protocol/host.js';
import type { RefusedEvent } from '../../protocol/host.js';
import type {
  AgentContainer,
  OpacaEvent,
  OpacaMode,
  OpacaPush,
  OpacaRequest,
  OpacaResponse,
  OpacaSubscribe,
  Route,
  RuntimePlatform,
} from '../../protocol/opaca.js';
import type { Role } from '../../protocol/opaca.js';
import {
  DEFAULT_DEPLOY_TIMEOUT_S,
  DEFAULT_HISTORY_SIZE,
  digestOf,
  INCARNATION_SPAN,
  opacaAnswer,
  OPACA_STATUS,
  parseRoute,
  requestRole,
  roleAtLeast,
  recordsEvents,
  TOKEN_LIFETIME_S,
} from '../../protocol/opaca.js';
import type { OpacaStart, OpacaStop } from './container.machine.js';
import type { Candidates, PlatformView, Target } from './routing.js';
import { broadcastTargets, invokeTargets, sendTargets } from './routing.js';

export interface PlatformInput {
  name: string;
  platformId: string;
  baseUrl: string;
  mode: OpacaMode;
  /** Local containers: their `/info` and the actor that runs each. */
  containers: { actor: string; info: AgentContainer }[];
  /**
   * Platforms connected at start: their `/info` as last pulled, and the actor behind each base URL.
   * Connections at start are taken as mutual: each is also subscribed to this one's `/containers`.
   */
  connected: { actor: string; info: RuntimePlatform }[];
  /** The actor behind each platform URL it may connect to (the simulator's DNS); unknown → unreachable. */
  directory?: Record<string, string>;
  historySize?: number;
  /** How long a call to a container or platform may go unanswered before it counts as unreachable. */
  callTimeoutMs: number;
  /** What it provides (an image's `requires` must be among them to deploy it). */
  provides?: string[];
  /** Images it can start, each with the container actors that run it (the simulator's container engine). */
  images?: Record<string, string[]>;
  /** How long a deployed container has to answer `/info` (default 10 s; a deploy's `timeout` query overrides). */
  deployTimeoutMs?: number;
  /** Auth on: its users, and the tokens valid at start (its containers' and its connected platforms'). */
  auth?: PlatformAuth;
  /** Tokens it holds for other platforms (base URL → token), for calls it makes to them. */
  tokens?: Record<string, string>;
  /** Its restarts so far (0 at first): event ids, token names and request ids differ between incarnations. */
  incarnation?: number;
}

/** Its event ids and token names: `<platformId>` in its first incarnation, `<platformId>~<n>` after n restarts. */
const idPrefix = (ctx: PlatformContext): string =>
  ctx.cfg.incarnation ? `${ctx.cfg.platformId}~${ctx.cfg.incarnation}` : ctx.cfg.platformId;

/** A platform's users and the tokens it issued before the run (auth on). */
export interface PlatformAuth {
  users: { name: string; password: string; role: Role }[];
  issued: { token: string; subject: string; role: Role; lifetimeS: number; via: 'connection' | 'container' }[];
}

/** A token it issued: for whom, with which role, until when (its own clock, µs). */
interface Issued {
  subject: string;
  role: Role;
  expiresUs: number;
}

export type PlatformObservation =
  | { kind: 'opaca.call'; callId: string; route: Route['kind']; forward: boolean; from: string; forwarded: boolean }
  | { kind: 'opaca.dispatch'; callId: string; target: string; toPlatform: boolean }
  /** Connections: made (with or without connect-back), dropped. */
  | { kind: 'opaca.connected'; url: string; peer: string; connectBack: boolean }
  | { kind: 'opaca.disconnected'; url: string; peer: string }
  /** A disconnect with connect-back is done: the other platform was asked to drop this one, and answered. */
  | { kind: 'opaca.disconnectedBoth'; url: string; peer: string }
  /** Its own `/info` changed (and at start): the digest other platforms' views must reach, its containers and agents. */
  | { kind: 'opaca.info'; digest: string; containers: string[]; agents: string[] }
  /** It issued a token (auth on): at a login, a renewal, a connect-back or a deploy (or before the run); valid until `expiresUs` on its clock. */
  | {
      kind: 'opaca.token';
      token: string;
      subject: string;
      role: Role;
      expiresUs: number;
      via: 'login' | 'renew' | 'connection' | 'container';
    }
  /** A deploy started (with the time the container has to answer `/info`), listed it, failed; or a container was removed. */
  | { kind: 'opaca.deploy'; containerId: string; phase: 'started' | 'listed' | 'failed' | 'removed'; timeoutUs?: number }
  /** It stored a connected platform's `/info` (a pull): the digest of what it stored. */
  | { kind: 'opaca.view'; peer: string; digest: string }
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

/** A request this platform made for itself (connecting, pulling `/info`), and whom it answers when done. */
interface Client {
  from: string;
  rid: number;
  req: OpacaRequest;
  eventId: string;
}
type Op =
  | {
      kind: 'connect';
      step: 'info' | 'back';
      client: Client;
      url: string;
      actor: string;
      connectBack: boolean;
      info?: RuntimePlatform;
      /** The caller's role (auth on): the token it gives the other platform for connecting back carries it. */
      role?: Role;
    }
  | { kind: 'disconnectBack'; client: Client; url: string; actor: string }
  | { kind: 'pullPlatform'; client?: Client; url: string; resync?: boolean }
  | { kind: 'pullContainer'; client: Client; containerId: string }
  | {
      kind: 'deployPoll';
      client: Client;
      actor: string;
      image: string;
      deadlineUs: number;
      /** When it last polled (its clock), and whether it is now only waiting for the next poll's time. */
      polledUs?: number;
      waiting?: boolean;
    };

/** A request it makes, with its token for the platform called (auth on there). */
type Ask = Omit<OpacaRequest, 'type' | 'rid'>;

interface PlatformContext {
  cfg: PlatformInput;
  containers: Map<string, { actor: string; info: AgentContainer }>;
  connected: Map<string, { actor: string; info: RuntimePlatform }>;
  /** Platforms subscribed to its `/containers` topic. */
  subscribers: string[];
  /** Container actors free to start, per image. */
  pool: Map<string, string[]>;
  /** Tokens it issued (auth on). */
  issued: Map<string, Issued>;
  /** Tokens it holds for other platforms, by base URL. */
  tokens: Map<string, string>;
  /** Tokens issued so far (their names are `<platformId>.<via>.<n>`). */
  nextToken: number;
  /** Its own requests in flight, by request id. */
  ops: Map<number, Op>;
  /** Its routing view, kept until its containers or connections change. */
  view?: PlatformView;
  /** Calls being served, by their CALL event id here. */
  calls: Map<string, Call>;
  /** Dispatch request id → the call it serves (its CALL event id). */
  dispatches: Map<number, { eventId: string; toPlatform: boolean }>;
  rid: number;
  events: OpacaEvent[];
  nextEvent: number;
}

type PlatformEvent =
  | { type: 'OpacaRequest'; from: string; msg: OpacaRequest; now: number }
  | { type: 'OpacaSubscribe'; from: string; msg: OpacaSubscribe; now: number }
  | { type: 'OpacaPush'; from: string; msg: OpacaPush; now: number }
  | { type: 'OpacaResponse'; from: string; msg: OpacaResponse; now: number }
  | { type: 'opaca.callTimeout'; rid: number; now: number }
  | { type: 'opaca.restarted'; now: number }
  | RefusedEvent
  | { type: 'host.shutdown'; now: number };

type Emit = ReturnType<typeof effect.send> | ReturnType<typeof effect.observe<PlatformObservation>>;
type Enqueue = {
  emit: (e: Emit) => void;
  raise: (e: PlatformEvent, o: { id: string; delay: number }) => void;
  cancel: (id: string) => void;
};

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
  const id = `${idPrefix(ctx)}-${++ctx.nextEvent}`;
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
  enqueue.emit(effect.send(call.from, opacaAnswer(call.rid, status, body)));
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
  const toPlatform = target.kind === 'platform';
  const actor = toPlatform ? ctx.connected.get(target.url)?.actor : ctx.containers.get(target.containerId)?.actor;
  // Gone since the call came in (removed, disconnected): unreachable, as the implementation would find it.
  if (actor === undefined) return void call.unreachable++;
  const rid = ++ctx.rid;
  ctx.dispatches.set(rid, { eventId: call.eventId, toPlatform });
  call.open++;
  const query: Record<string, string> = { ...(call.req.query ?? {}) };
  if (toPlatform) query.forward = 'false';
  else delete query.forward;
  // The caller's token stays here: a platform is called with the token this one holds there; a container with none.
  const { token: _callerToken, ...req } = call.req;
  const token = toPlatform ? ctx.tokens.get(target.url) : undefined;
  enqueue.emit(
    effect.send(actor, { ...req, rid, query, callId: call.callId, ...(token !== undefined ? { token } : {}) } satisfies OpacaRequest),
  );
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
  } else {
    // The next target, skipping any that is gone by now.
    while (call.successes === 0 && call.failure === undefined && call.next < targets.length && call.open === 0)
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

/**
 * What the platform knows, for routing: its containers and its connected platforms' `/info`, in the
 * order they came — kept (with its agent index) until either changes.
 */
function viewOf(ctx: PlatformContext): PlatformView {
  ctx.view ??= {
    containers: [...ctx.containers.values()].map((c) => c.info),
    connected: [...ctx.connected.values()].map((c) => c.info),
  };
  return ctx.view;
}

/** Its own `/info`. */
function infoOf(ctx: PlatformContext): RuntimePlatform {
  return {
    platformId: ctx.cfg.platformId,
    baseUrl: ctx.cfg.baseUrl,
    containers: [...ctx.containers.values()].map((c) => c.info),
    provides: ctx.cfg.provides ?? [],
    connections: [...ctx.connected.keys()],
    runningSince: 0,
  };
}

/** Answers a request it served itself (not a routed call): the SUCCESS or ERROR event and the answer. */
function respond(ctx: PlatformContext, client: Client, nowUs: number, status: number, body: unknown, enqueue: Enqueue): void {
  record(ctx, nowUs, client.req, status === OPACA_STATUS.ok ? 'SUCCESS' : 'ERROR', {
    senderId: client.from,
    ...(status === OPACA_STATUS.ok ? {} : { statusCode: status }),
    relatedId: client.eventId,
  });
  enqueue.emit(effect.send(client.from, opacaAnswer(client.rid, status, body)));
}

/** Sends a request of its own to `actor` and starts its timeout. */
function ask(
  ctx: PlatformContext,
  actor: string,
  req: Omit<OpacaRequest, 'type' | 'rid'>,
  op: Op,
  enqueue: Enqueue,
  timeoutMs = ctx.cfg.callTimeoutMs,
): void {
  const rid = ++ctx.rid;
  ctx.ops.set(rid, op);
  enqueue.emit(effect.send(actor, { type: 'OpacaRequest', rid, ...req } satisfies OpacaRequest));
  enqueue.raise({ type: 'opaca.callTimeout', rid, now: 0 }, { id: `call:${rid}`, delay: timeoutMs });
}

/** Issues a token (auth on): recorded, observed, returned. */
function issue(
  ctx: PlatformContext,
  nowUs: number,
  subject: string,
  role: Role,
  via: Extract<PlatformObservation, { kind: 'opaca.token' }>['via'],
  enqueue: Enqueue,
): string {
  const lifetimeS =
    via === 'login'
      ? TOKEN_LIFETIME_S.login
      : via === 'renew'
        ? TOKEN_LIFETIME_S.renew
        : via === 'container'
          ? TOKEN_LIFETIME_S.container
          : TOKEN_LIFETIME_S.connection;
  const token = `${idPrefix(ctx)}.${via}.${++ctx.nextToken}`;
  ctx.issued.set(token, { subject, role, expiresUs: nowUs + lifetimeS * 1_000_000 });
  enqueue.emit(
    effect.observe<PlatformObservation>({ kind: 'opaca.token', token, subject, role, expiresUs: nowUs + lifetimeS * 1_000_000, via }),
  );
  return token;
}

/**
 * Auth on: who may run this request — its token's holder, or the error answer (401 with no valid
 * token, 403 with a role below the route's threshold).
 */
function authorise(
  ctx: PlatformContext,
  req: OpacaRequest,
  threshold: Role | undefined,
  nowUs: number,
): { ok: true; holder?: Issued } | { ok: false; status: number; message: string } {
  if (ctx.cfg.auth === undefined || threshold === undefined) return { ok: true };
  const holder = req.token === undefined ? undefined : ctx.issued.get(req.token);
  if (holder === undefined)
    return { ok: false, status: OPACA_STATUS.unauthorized, message: req.token === undefined ? 'no token' : 'unknown token' };
  if (nowUs >= holder.expiresUs) return { ok: false, status: OPACA_STATUS.unauthorized, message: 'token expired' };
  if (!roleAtLeast(holder.role, threshold))
    return {
      ok: false,
      status: OPACA_STATUS.forbidden,
      message: `${req.method} ${req.path} needs ${threshold}; ${holder.subject} is ${holder.role}`,
    };
  return { ok: true, holder };
}

/** A request to the platform at `url`, with its token there when it holds one. */
const withToken = (ctx: PlatformContext, url: string, req: Ask): Ask => {
  const token = ctx.tokens.get(url);
  return token === undefined ? req : { ...req, token };
};

/** Pulls a connected platform's `/info` (with its token there); `client`, when a notify asked for it, gets the outcome. */
function pullPeer(ctx: PlatformContext, url: string, actor: string, enqueue: Enqueue, client?: Client, resync = false): void {
  const op: Op = { kind: 'pullPlatform', url, ...(client ? { client } : {}), ...(resync ? { resync } : {}) };
  ask(ctx, actor, withToken(ctx, url, { method: 'GET', path: '/info' }), op, enqueue);
}

/** How often a deploy polls the new container's `/info`. */
const DEPLOY_POLL_MS = 1000;

/** Polls a starting container's `/info` (every second, until the deploy's deadline). */
function poll(ctx: PlatformContext, op: Extract<Op, { kind: 'deployPoll' }>, nowUs: number, enqueue: Enqueue): void {
  // The last poll ends at the deadline exactly (delays are whole microseconds).
  const leftMs = (op.deadlineUs - nowUs) / 1000;
  const next = { ...op, polledUs: nowUs, waiting: false };
  ask(ctx, op.actor, { method: 'GET', path: '/info' }, next, enqueue, Math.max(0.001, Math.min(DEPLOY_POLL_MS, leftMs)));
}

/**
 * A poll failed before its second was up (a refused connection comes back at once): it waits for
 * the next second (or the deadline) before polling again — polls go out once a second.
 */
function pollLater(ctx: PlatformContext, op: Extract<Op, { kind: 'deployPoll' }>, nowUs: number, enqueue: Enqueue): void {
  const nextUs = Math.min((op.polledUs ?? nowUs) + DEPLOY_POLL_MS * 1000, op.deadlineUs);
  if (nextUs <= nowUs) return poll(ctx, op, nowUs, enqueue);
  const rid = ++ctx.rid;
  ctx.ops.set(rid, { ...op, waiting: true });
  enqueue.raise({ type: 'opaca.callTimeout', rid, now: 0 }, { id: `call:${rid}`, delay: (nextUs - nowUs) / 1000 });
}

/** Stops a container and gives its actor back to its image's pool. */
function stopContainer(ctx: PlatformContext, actor: string, image: string | undefined, enqueue: Enqueue): void {
  enqueue.emit(effect.send(actor, { type: 'OpacaStop' } satisfies OpacaStop));
  if (image !== undefined && ctx.cfg.images?.[image]?.includes(actor)) {
    const free = ctx.pool.get(image) ?? [];
    if (!free.includes(actor)) free.push(actor);
    ctx.pool.set(image, free);
  }
}

/** Its containers changed: `/containers` subscribers are told (they pull its `/info` again). */
function containersChanged(ctx: PlatformContext, nowUs: number, route: string, enqueue: Enqueue): void {
  const event: OpacaEvent = {
    id: `${idPrefix(ctx)}-${++ctx.nextEvent}`,
    timestamp: Math.floor(nowUs / 1000),
    eventType: 'SUCCESS',
    route,
  };
  for (const to of ctx.subscribers) enqueue.emit(effect.send(to, { type: 'OpacaPush', topic: '/containers', event } satisfies OpacaPush));
  enqueue.emit(effect.observe<PlatformObservation>(infoObservation(ctx)));
}

/**
 * The part of a platform's `/info` views are judged on: its containers (with their agents and
 * actions) — what notifications keep fresh and routing uses. Nothing in the protocol tells peers
 * when a platform's own connections change, so that field of a view may lag for good.
 */
const viewDigest = (info: RuntimePlatform): string => digestOf(info.containers);

/** What it observes of its own `/info`: the digest and the agents it hosts. */
function infoObservation(ctx: PlatformContext): Extract<PlatformObservation, { kind: 'opaca.info' }> {
  const info = infoOf(ctx);
  return {
    kind: 'opaca.info',
    digest: viewDigest(info),
    containers: info.containers.map((c) => c.containerId),
    agents: info.containers.flatMap((c) => c.agents.map((a) => a.agentId)),
  };
}

/** Stores a connected platform's `/info` as pulled. */
function store(ctx: PlatformContext, url: string, actor: string, info: RuntimePlatform, enqueue: Enqueue): void {
  ctx.connected.set(url, { actor, info });
  ctx.view = undefined;
  enqueue.emit(effect.observe<PlatformObservation>({ kind: 'opaca.view', peer: actor, digest: viewDigest(info) }));
}

function drop(ctx: PlatformContext, url: string, enqueue: Enqueue): void {
  const c = ctx.connected.get(url);
  if (!c) return;
  ctx.connected.delete(url);
  ctx.view = undefined;
  enqueue.emit(effect.send(c.actor, { type: 'OpacaSubscribe', topic: '/containers', subscribe: false } satisfies OpacaSubscribe));
  enqueue.emit(effect.observe<PlatformObservation>({ kind: 'opaca.disconnected', url, peer: c.actor }));
}

/** One of its own requests was answered (`res`) or went unanswered (undefined). */
function onOp(ctx: PlatformContext, op: Op, res: OpacaResponse | undefined, nowUs: number, enqueue: Enqueue): void {
  const ok = res?.status === OPACA_STATUS.ok;
  switch (op.kind) {
    case 'connect': {
      if (!ok)
        return respond(ctx, op.client, nowUs, OPACA_STATUS.badGateway, { statusCode: 502, message: `${op.url} did not answer` }, enqueue);
      if (op.step === 'info') op.info = res!.body as RuntimePlatform;
      if (op.step === 'info' && op.connectBack) {
        // Asks the other platform to connect to this one, without connecting back again.
        // With auth on, a fresh token (7 days, the caller's role) for the other platform to call this one with.
        const token = ctx.cfg.auth && op.role ? issue(ctx, nowUs, op.url, op.role, 'connection', enqueue) : undefined;
        const body = JSON.stringify({ url: ctx.cfg.baseUrl, connectBack: false, ...(token !== undefined ? { token } : {}) });
        return ask(ctx, op.actor, withToken(ctx, op.url, { method: 'POST', path: '/connections', body }), { ...op, step: 'back' }, enqueue);
      }
      // A concurrent connect (a mutual one, say) finished first: connecting twice changes nothing.
      if (ctx.connected.has(op.url)) return respond(ctx, op.client, nowUs, OPACA_STATUS.ok, false, enqueue);
      store(ctx, op.url, op.actor, op.info!, enqueue);
      enqueue.emit(effect.send(op.actor, { type: 'OpacaSubscribe', topic: '/containers', subscribe: true } satisfies OpacaSubscribe));
      enqueue.emit(
        effect.observe<PlatformObservation>({ kind: 'opaca.connected', url: op.url, peer: op.actor, connectBack: op.connectBack }),
      );
      return respond(ctx, op.client, nowUs, OPACA_STATUS.ok, true, enqueue);
    }
    case 'disconnectBack':
      if (ok) enqueue.emit(effect.observe<PlatformObservation>({ kind: 'opaca.disconnectedBoth', url: op.url, peer: op.actor }));
      return respond(ctx, op.client, nowUs, OPACA_STATUS.ok, true, enqueue);
    case 'pullPlatform': {
      // The pull, not the notice, proves the data came from that platform.
      const c = ctx.connected.get(op.url);
      if (ok && c) store(ctx, op.url, c.actor, res!.body as RuntimePlatform, enqueue);
      // A re-sync after its own restart that fails keeps the peer (it may be restarting too; its next push pulls again).
      else if (!op.resync) drop(ctx, op.url, enqueue);
      if (op.client) respond(ctx, op.client, nowUs, OPACA_STATUS.ok, ok && c !== undefined, enqueue);
      return;
    }
    case 'deployPoll': {
      const deploy = (phase: 'listed' | 'failed'): void =>
        void enqueue.emit(effect.observe<PlatformObservation>({ kind: 'opaca.deploy', containerId: op.actor, phase }));
      if (ok) {
        // Listed only now that it answered /info, within the deadline.
        const info = res!.body as AgentContainer;
        ctx.containers.set(info.containerId, { actor: op.actor, info });
        ctx.view = undefined;
        deploy('listed');
        containersChanged(ctx, nowUs, 'POST /containers', enqueue);
        return respond(ctx, op.client, nowUs, OPACA_STATUS.ok, info.containerId, enqueue);
      }
      if (res === undefined && nowUs < op.deadlineUs)
        return op.waiting ? poll(ctx, op, nowUs, enqueue) : pollLater(ctx, op, nowUs, enqueue);
      // Timed out (or it answered with an error): stopped, nothing left behind.
      stopContainer(ctx, op.actor, op.image, enqueue);
      deploy('failed');
      return respond(
        ctx,
        op.client,
        nowUs,
        OPACA_STATUS.badGateway,
        { statusCode: 502, message: `container ${op.actor} did not answer /info in time` },
        enqueue,
      );
    }
    case 'pullContainer': {
      const c = ctx.containers.get(op.containerId);
      if (ok && c) c.info = res!.body as AgentContainer;
      else if (c) {
        // Unreachable: removed, and (a container of an image it can start) stopped and free to start again.
        ctx.containers.delete(op.containerId);
        if (ctx.cfg.images?.[c.info.image.imageName]?.includes(c.actor)) stopContainer(ctx, c.actor, c.info.image.imageName, enqueue);
      }
      ctx.view = undefined;
      containersChanged(ctx, nowUs, `${ok ? 'PUT' : 'DELETE'} /containers`, enqueue);
      return respond(ctx, op.client, nowUs, OPACA_STATUS.ok, ok && c !== undefined, enqueue);
    }
    default:
  }
}

export const platformMachine = setup({
  types: {
    context: {} as PlatformContext,
    events: {} as PlatformEvent,
    input: {} as PlatformInput,
    emitted: {} as Emit,
  },
  actions: {
    announce: enqueueActions(({ context, enqueue }) => {
      enqueue.emit(effect.observe<PlatformObservation>(infoObservation(context)));
      for (const t of context.cfg.auth?.issued ?? [])
        enqueue.emit(
          effect.observe<PlatformObservation>({
            kind: 'opaca.token',
            token: t.token,
            subject: t.subject,
            role: t.role,
            expiresUs: t.lifetimeS * 1_000_000,
            via: t.via,
          }),
        );
      for (const [url, c] of context.connected) {
        enqueue.emit(effect.observe<PlatformObservation>({ kind: 'opaca.connected', url, peer: c.actor, connectBack: false }));
        enqueue.emit(effect.observe<PlatformObservation>({ kind: 'opaca.view', peer: c.actor, digest: viewDigest(c.info) }));
        // After a restart, what it was given at start may be old: it pulls each peer's /info again.
        if (context.cfg.incarnation) pullPeer(context, url, c.actor, enqueue as unknown as Enqueue, undefined, true);
      }
      // After a restart its containers are what it was given at start: its subscribers hear of the change.
      if (context.cfg.incarnation) enqueue.raise({ type: 'opaca.restarted', now: 0 }, { id: 'restarted', delay: 0 });
    }),
    restarted: enqueueActions(({ context, event, enqueue }) =>
      containersChanged(context, (event as { now: number }).now, 'PUT /containers', enqueue as unknown as Enqueue),
    ),
    serve: enqueueActions(({ context, event, enqueue }) => {
      const e = event as Extract<PlatformEvent, { type: 'OpacaRequest' }>;
      const req = e.msg;
      const callId = record(context, e.now, req, 'CALL', { senderId: e.from });
      const q = enqueue as unknown as Enqueue;
      const client: Client = { from: e.from, rid: req.rid, req, eventId: callId };
      const parsed = parseRoute(req);
      const forwarded = req.callId !== undefined;
      const route = parsed.ok ? parsed.route : undefined;
      // A call to route (send, broadcast, invoke) is followed by the checker: where it is made, once it
      // passes auth and parses; wherever it is forwarded to, on arrival.
      const routed = route?.kind === 'send' || route?.kind === 'broadcast' || route?.kind === 'invoke';
      const observeCall = (): void =>
        void enqueue.emit(
          effect.observe<PlatformObservation>({
            kind: 'opaca.call',
            callId: req.callId ?? callId,
            route: route?.kind ?? 'info',
            forward: route !== undefined && 'forward' in route ? route.forward : false,
            from: e.from,
            forwarded,
          }),
        );
      if (forwarded) observeCall();
      const quick = (status: number, body: unknown): void => respond(context, client, e.now, status, body, q);
      const notFound = (message: string): void => quick(OPACA_STATUS.notFound, { statusCode: 404, message });
      // Auth on: a valid token first (any role for a request it cannot parse), then the route's role.
      const auth = authorise(context, req, requestRole(req.method, req.path), e.now);
      if (!auth.ok) return quick(auth.status, { statusCode: auth.status, message: auth.message });
      if (!parsed.ok) return quick(parsed.status, parsed.error);
      if (routed && !forwarded) observeCall();
      const r = parsed.route;
      const view = viewOf(context);
      switch (r.kind) {
        case 'info':
          return quick(OPACA_STATUS.ok, infoOf(context));
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
          return agent ? quick(OPACA_STATUS.ok, agent) : notFound(`no agent ${r.agent}`);
        }
        case 'containers':
          return quick(OPACA_STATUS.ok, view.containers);
        case 'container': {
          const c = view.containers.find((x) => x.containerId === r.containerId);
          return c ? quick(OPACA_STATUS.ok, c) : notFound(`no container ${r.containerId}`);
        }
        case 'connections':
          return quick(OPACA_STATUS.ok, [...context.connected.keys()]);
        case 'history':
          return quick(OPACA_STATUS.ok, [...context.events]);
        case 'connect': {
          const url = r.request.url;
          // Its own URL, or one already connected: nothing changes.
          if (url === context.cfg.baseUrl || context.connected.has(url)) return quick(OPACA_STATUS.ok, false);
          const actor = context.cfg.directory?.[url];
          if (actor === undefined) return quick(OPACA_STATUS.badGateway, { statusCode: 502, message: `${url} is unreachable` });
          // The token given is what it calls that platform with from now on.
          if (r.request.token !== undefined) context.tokens.set(url, r.request.token);
          const op: Op = {
            kind: 'connect',
            step: 'info',
            client,
            url,
            actor,
            connectBack: r.request.connectBack,
            ...(auth.holder ? { role: auth.holder.role } : {}),
          };
          return ask(context, actor, withToken(context, url, { method: 'GET', path: '/info' }), op, q);
        }
        case 'disconnect': {
          const c = context.connected.get(r.url);
          if (!c) return quick(OPACA_STATUS.ok, false);
          drop(context, r.url, q);
          if (!r.connectBack) return quick(OPACA_STATUS.ok, true);
          const body = JSON.stringify({ url: context.cfg.baseUrl, connectBack: false });
          return ask(
            context,
            c.actor,
            withToken(context, r.url, { method: 'DELETE', path: '/connections', body }),
            { kind: 'disconnectBack', client, url: r.url, actor: c.actor },
            q,
          );
        }
        case 'login': {
          if (!context.cfg.auth) return notFound('auth is off');
          const user = context.cfg.auth.users.find((u) => u.name === r.username && u.password === r.password);
          // Wrong credentials: 403, as the implementation's tests expect.
          if (!user) return quick(OPACA_STATUS.forbidden, { statusCode: 403, message: 'wrong username or password' });
          return quick(OPACA_STATUS.ok, issue(context, e.now, user.name, user.role, 'login', q));
        }
        case 'token':
          if (!auth.holder) return notFound('auth is off');
          return quick(OPACA_STATUS.ok, issue(context, e.now, auth.holder.subject, auth.holder.role, 'renew', q));
        case 'deploy': {
          const image = r.container.image;
          const missing = image.requires.filter((x) => !(context.cfg.provides ?? []).includes(x));
          if (missing.length > 0)
            return quick(OPACA_STATUS.badRequest, { statusCode: 400, message: `requirements not met: ${missing.join(', ')}` });
          if (context.cfg.images?.[image.imageName] === undefined) return notFound(`no image ${image.imageName}`);
          const actor = context.pool.get(image.imageName)?.shift();
          if (actor === undefined)
            return quick(OPACA_STATUS.badGateway, { statusCode: 502, message: `no container of ${image.imageName} could be started` });
          const timeoutS = Number(req.query?.timeout ?? '-1');
          const timeoutMs =
            Number.isInteger(timeoutS) && timeoutS > 0 ? timeoutS * 1000 : (context.cfg.deployTimeoutMs ?? DEFAULT_DEPLOY_TIMEOUT_S * 1000);
          // With auth on, the container's token (24 h) carries the role of whoever deployed it.
          const token = auth.holder ? issue(context, e.now, actor, auth.holder.role, 'container', q) : undefined;
          enqueue.emit(effect.send(actor, { type: 'OpacaStart', ...(token !== undefined ? { token } : {}) } satisfies OpacaStart));
          enqueue.emit(
            effect.observe<PlatformObservation>({
              kind: 'opaca.deploy',
              containerId: actor,
              phase: 'started',
              timeoutUs: timeoutMs * 1000,
            }),
          );
          return poll(
            context,
            { kind: 'deployPoll', client, actor, image: image.imageName, deadlineUs: e.now + timeoutMs * 1000 },
            e.now,
            q,
          );
        }
        case 'undeploy': {
          const c = context.containers.get(r.containerId);
          if (!c) return quick(OPACA_STATUS.ok, false);
          context.containers.delete(r.containerId);
          context.view = undefined;
          stopContainer(context, c.actor, c.info.image.imageName, q);
          enqueue.emit(effect.observe<PlatformObservation>({ kind: 'opaca.deploy', containerId: r.containerId, phase: 'removed' }));
          containersChanged(context, e.now, 'DELETE /containers', q);
          return quick(OPACA_STATUS.ok, true);
        }
        case 'notifyPlatform': {
          if (r.url === context.cfg.baseUrl) return quick(OPACA_STATUS.ok, false);
          const c = context.connected.get(r.url);
          if (!c) return notFound(`not connected to ${r.url}`);
          return pullPeer(context, r.url, c.actor, q, client);
        }
        case 'notifyContainer': {
          const c = context.containers.get(r.containerId);
          if (!c) return notFound(`no container ${r.containerId}`);
          return ask(context, c.actor, { method: 'GET', path: '/info' }, { kind: 'pullContainer', client, containerId: r.containerId }, q);
        }
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
          return notFound(`not served yet: ${routeText(req)}`);
      }
    }),
    /** An answer, or the lack of one, to a request it made: a routed call's, or its own. */
    collect: enqueueActions(({ context, event, enqueue }) => {
      const q = enqueue as unknown as Enqueue;
      const timedOut = event.type === 'opaca.callTimeout';
      const rid = timedOut ? (event as { rid: number }).rid : (event as { msg: OpacaResponse }).msg.re;
      // No answer in time, or a refused connection (the target is down): unreachable either way.
      const res = timedOut || event.type === 'host.refused' ? undefined : (event as { msg: OpacaResponse }).msg;
      const nowUs = (event as { now: number }).now;
      const op = context.ops.get(rid);
      if (op) {
        context.ops.delete(rid);
        if (!timedOut) enqueue.cancel(`call:${rid}`);
        return onOp(context, op, res, nowUs, q);
      }
      const sent = context.dispatches.get(rid);
      if (sent === undefined) return;
      context.dispatches.delete(rid);
      if (!timedOut) enqueue.cancel(`call:${rid}`);
      const call = context.calls.get(sent.eventId);
      if (!call) return;
      call.open--;
      if (res?.status === OPACA_STATUS.ok) {
        call.successes++;
        call.lastBody = res.body;
      } else if (
        res === undefined ||
        res.status === OPACA_STATUS.badGateway ||
        // A platform refusing this one's token: the link is unusable, not the caller's credentials (their 401/403 is this platform's to give).
        (sent.toPlatform && (res.status === OPACA_STATUS.unauthorized || res.status === OPACA_STATUS.forbidden))
      )
        call.unreachable++;
      else if (call.failure === undefined) call.failure = res;
      advance(context, call, nowUs, q);
    }),
    subscription: enqueueActions(({ context, event }) => {
      const e = event as Extract<PlatformEvent, { type: 'OpacaSubscribe' }>;
      const i = context.subscribers.indexOf(e.from);
      if (e.msg.subscribe && i < 0) context.subscribers.push(e.from);
      if (!e.msg.subscribe && i >= 0) context.subscribers.splice(i, 1);
    }),
    /** A connected platform's containers changed: pull its `/info` again. */
    repull: enqueueActions(({ context, event, enqueue }) => {
      const e = event as Extract<PlatformEvent, { type: 'OpacaPush' }>;
      const url = [...context.connected].find(([, c]) => c.actor === e.from)?.[0];
      if (url === undefined) return;
      pullPeer(context, url, e.from, enqueue as unknown as Enqueue);
    }),
  },
}).createMachine({
  id: 'opaca.platform',
  context: ({ input }) => ({
    cfg: input,
    containers: new Map(input.containers.map((c) => [c.info.containerId, { ...c }])),
    connected: new Map(input.connected.map((c) => [c.info.baseUrl, { ...c }])),
    subscribers: input.connected.map((c) => c.actor),
    pool: new Map(Object.entries(input.images ?? {}).map(([image, actors]) => [image, [...actors]])),
    issued: new Map(
      (input.auth?.issued ?? []).map((t) => [t.token, { subject: t.subject, role: t.role, expiresUs: t.lifetimeS * 1_000_000 }]),
    ),
    tokens: new Map(Object.entries(input.tokens ?? {})),
    nextToken: 0,
    ops: new Map(),
    calls: new Map(),
    dispatches: new Map(),
    // Each incarnation its own range of request ids: an answer meant for the last one is not taken for a new request's.
    rid: (input.incarnation ?? 0) * INCARNATION_SPAN,
    events: [],
    nextEvent: 0,
  }),
  initial: 'running',
  states: {
    running: {
      entry: 'announce',
      on: {
        OpacaRequest: { actions: 'serve' },
        OpacaResponse: { actions: 'collect' },
        'opaca.callTimeout': { actions: 'collect' },
        'host.refused': { actions: 'collect' },
        OpacaSubscribe: { actions: 'subscription' },
        OpacaPush: { actions: 'repull' },
        'opaca.restarted': { actions: 'restarted' },
      },
    },
  },
});
