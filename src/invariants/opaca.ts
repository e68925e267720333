/**
 * OPACA invariants (`shared/protocols/opaca.md`, "Invariants") checked from the platforms' and
 * containers' observations; numbers follow the protocol document. Checked so far: 1 (bounded
 * forwarding), 2 (deliveries per call), 3 (status codes follow the match outcome), 4 (connection
 * symmetry), 5 (views settle on each platform's `/info`), 6 (the event log, as served by
 * `GET /history` and pushed to subscribers) and 9 (`includeConnected` is one hop, never transitive). Each call is followed across hops by
 * its trace id (the CALL event's id where it was first made).
 */
import type { ContainerObservation } from '../actors/opaca/container.machine.js';
import type { PlatformObservation } from '../actors/opaca/platform.machine.js';
import type { FaultAction, TraceRecord } from '../engine/createSimulation.js';
import type { Envelope } from '../protocol/host.js';
import type { OpacaEvent, OpacaMode, OpacaPush, OpacaRequest, OpacaResponse } from '../protocol/opaca.js';
import type { Role } from '../protocol/opaca.js';
import { DEFAULT_HISTORY_SIZE, requestRole, roleAtLeast } from '../protocol/opaca.js';
import type { InvariantChecker, InvariantInfo } from './types.js';
import { InvariantLedger } from './types.js';

export const OPACA_INVARIANTS: readonly InvariantInfo[] = [
  {
    id: 'opaca.bounded-forwarding',
    number: 1,
    title: 'a call crosses at most one platform-to-platform hop, forwarded with forward=false, and never reaches a platform twice',
  },
  {
    id: 'opaca.deliveries',
    number: 2,
    title:
      'an invoke runs on exactly one agent or fails; a send or broadcast reaches one target (current) or each target once (documented)',
  },
  {
    id: 'opaca.status-codes',
    number: 3,
    title: 'the status is a function of the match outcome: 404 none, 400 mismatch only, 502 all unreachable',
  },
  {
    id: 'opaca.connection-symmetry',
    number: 4,
    title:
      'after a connect with connect-back both list each other, after such a disconnect neither; connecting to itself or twice changes nothing',
  },
  {
    id: 'opaca.view-consistency',
    number: 5,
    title:
      'once notifications settle, a platform’s view of a reachable connected platform equals that platform’s /info (its containers, agents and actions)',
  },
  {
    id: 'opaca.event-log',
    number: 6,
    title:
      'each CALL has at most one SUCCESS or ERROR; SUCCESS has no status code, ERROR one ≥ 300; the history keeps its limit; subscribers get only SUCCESS events of their topic',
  },
  {
    id: 'opaca.deploy',
    number: 7,
    title: 'a container is listed only after it answered /info within the deploy timeout; a failed deploy leaves nothing behind',
  },
  {
    id: 'opaca.auth',
    number: 8,
    title: 'with auth on, no route runs for a role below its threshold: 401 without a valid token, 403 for a role too low',
  },
  {
    id: 'opaca.include-connected',
    number: 9,
    title: 'GET /agents?includeConnected=true shows its own agents plus its directly connected platforms’ agents, never transitively',
  },
];

/** How long after a platform's last change its peers' views are judged (pushes and pulls in flight). */
const SETTLE_US = 60_000_000;

export interface OpacaCheckerOptions {
  mode: OpacaMode;
  /** Each platform's history limit (default 50). */
  historySize?: ReadonlyMap<string, number>;
  enabled: ReadonlySet<string>;
  recentTrace: () => TraceRecord[];
  /** Platforms with auth on: each user's role. */
  auth?: ReadonlyMap<string, ReadonlyMap<string, Role>>;
}

/** Requests this close to their token's expiry are not judged (a platform's clock may be skewed). */
const EXPIRY_GRACE_US = 1_000_000;

interface Followed {
  origin: string;
  route: string;
  /** Platforms the call reached (the origin first). */
  platforms: Set<string>;
  /** Agent deliveries: container/agent → count. */
  agents: Map<string, number>;
  deliveries: number;
}

export function createOpacaChecker(opts: OpacaCheckerOptions): InvariantChecker {
  const L = new InvariantLedger(OPACA_INVARIANTS, opts.enabled, opts.recentTrace);
  const calls = new Map<string, Followed>();
  /** Who lists whom (platform actor → peers), from connect and disconnect observations. */
  const lists = new Map<string, Set<string>>();
  const listsOf = (p: string): Set<string> => lists.get(p) ?? lists.set(p, new Set()).get(p)!;
  /** Each platform's latest `/info` digest, when it changed and the agents it hosts; each view (viewer → peer → digest). */
  const infos = new Map<string, { digest: string; atUs: number; agents: readonly string[] }>();
  /** Every agent id each platform has hosted (a view may lag behind, so a stale agent is no violation). */
  const everHosted = new Map<string, Set<string>>();
  /** GET /agents?includeConnected=true requests being answered (platform|caller|rid). */
  const agentsAsked = new Set<string>();
  /**
   * Deploys (platform|container): the deadline, when the container first answered its platform's
   * `/info` since, and how it ended. `/info` requests to containers being answered (container|platform|rid).
   */
  const deploys = new Map<string, { deadlineUs: number; answeredUs?: number; failed?: boolean; stoppedUs?: number }>();
  /** The platform's polls of a deploying container's `/info` (container|platform|rid) → the platform's clock when it polled. */
  const infoAsked = new Map<string, number>();
  /**
   * Tokens each platform issued: role and expiry on that platform's clock. Requests to auth platforms
   * being answered → what the answer must be. Each actor's clock skew (from skew faults).
   */
  const tokens = new Map<string, Map<string, { role: Role; expiresUs: number }>>();
  const skew = new Map<string, number>();
  const clockOf = (actor: string, t: number): number => t + (skew.get(actor) ?? 0);
  const authAsked = new Map<string, { status: 401 | 403 | 'runs'; what: string }>();

  /** Invariant 8: what a request to a platform with auth on must get, from its token and the route's threshold. */
  const judgeAuth = (t: number, platform: string, from: string, m: OpacaRequest): void => {
    if (!opts.auth?.has(platform)) return;
    // The role from method and path alone: a body that does not parse does not lower the bar.
    const threshold = requestRole(m.method, m.path);
    if (threshold === undefined) return;
    const what = `${m.method} ${m.path} from ${from}`;
    const key = `${platform}|${from}|${m.rid}`;
    const held = m.token === undefined ? undefined : tokens.get(platform)?.get(m.token);
    if (held === undefined) return void authAsked.set(key, { status: 401, what: `${what} without a valid token` });
    const now = clockOf(platform, t);
    if (Math.abs(now - held.expiresUs) < EXPIRY_GRACE_US) return;
    if (now > held.expiresUs) return void authAsked.set(key, { status: 401, what: `${what} with an expired token` });
    if (!roleAtLeast(held.role, threshold))
      return void authAsked.set(key, { status: 403, what: `${what} as ${held.role} (needs ${threshold})` });
    authAsked.set(key, { status: 'runs', what: `${what} as ${held.role}` });
  };

  /** Each platform's listed containers (from its `/info` observations). */
  const listed = new Map<string, ReadonlySet<string>>();

  /** Invariant 7 on a platform's containers as its `/info` now lists them. */
  const judgeListing = (t: number, platform: string, containers: readonly string[]): void => {
    const before = listed.get(platform) ?? new Set<string>();
    const now = new Set(containers);
    listed.set(platform, now);
    for (const id of now) {
      const d = deploys.get(`${platform}|${id}`);
      if (!d || before.has(id)) continue;
      L.check('opaca.deploy');
      if (d.failed) L.violate('opaca.deploy', t, [platform, id], `${platform} lists ${id}, whose deploy failed`);
      else if (d.answeredUs === undefined) L.violate('opaca.deploy', t, [platform, id], `${platform} lists ${id} before it answered /info`);
      else if (d.answeredUs > d.deadlineUs)
        L.violate('opaca.deploy', t, [platform, id], `${platform} lists ${id}, listed on a poll of /info made after the deploy timeout`);
    }
  };

  const deploy = (t: number, platform: string, o: Extract<PlatformObservation, { kind: 'opaca.deploy' }>): void => {
    const key = `${platform}|${o.containerId}`;
    // Deadlines and polls on the platform's clock, as it keeps them (a clock set back gives a deploy longer).
    if (o.phase === 'started') return void deploys.set(key, { deadlineUs: clockOf(platform, t) + (o.timeoutUs ?? 0) });
    const d = deploys.get(key);
    if (o.phase === 'removed') return void deploys.delete(key);
    if (!d || o.phase !== 'failed') return;
    L.check('opaca.deploy');
    d.failed = true;
    if (listed.get(platform)?.has(o.containerId))
      L.violate('opaca.deploy', t, [platform, o.containerId], `${platform}'s deploy of ${o.containerId} failed, but it stays listed`);
    else if (d.stoppedUs !== t)
      L.violate('opaca.deploy', t, [platform, o.containerId], `${platform}'s deploy of ${o.containerId} failed without stopping it`);
  };
  const views = new Map<string, Map<string, string>>();
  const down = new Set<string>();
  /** GET /history requests being answered (platform|caller|rid), and each platform's CALL → closing event. */
  const historyAsked = new Set<string>();
  const closedBy = new Map<string, Map<string, string>>();

  /** Invariant 6 on a served history (a snapshot of the platform's log). */
  const history = (t: number, platform: string, events: OpacaEvent[]): void => {
    L.check('opaca.event-log');
    const bad = (message: string): void => L.violate('opaca.event-log', t, [platform], `${platform}'s /history: ${message}`);
    const limit = opts.historySize?.get(platform) ?? DEFAULT_HISTORY_SIZE;
    if (events.length > limit) bad(`${events.length} events, above its limit of ${limit}`);
    const closed = closedBy.get(platform) ?? new Map<string, string>();
    closedBy.set(platform, closed);
    for (const e of events) {
      if (e.eventType === 'SUCCESS' && e.statusCode !== undefined) bad(`SUCCESS ${e.id} carries status ${e.statusCode}`);
      if (e.eventType === 'ERROR' && (e.statusCode === undefined || e.statusCode < 300))
        bad(`ERROR ${e.id} carries status ${e.statusCode ?? 'none'}`);
      if ((e.eventType === 'SUCCESS' || e.eventType === 'ERROR') && e.relatedId !== undefined) {
        const before = closed.get(e.relatedId);
        if (before !== undefined && before !== e.id) bad(`CALL ${e.relatedId} closed twice (${before} and ${e.id})`);
        closed.set(e.relatedId, e.id);
      }
    }
  };

  /**
   * Invariant 9 on an answer to GET /agents?includeConnected=true: every local agent is there; every
   * agent shown is hosted by the platform or by one it lists (ever — its view may lag), never only
   * further away; a peer whose view is current shows all its agents.
   */
  const includeConnected = (t: number, platform: string, agents: { agentId: string }[]): void => {
    L.check('opaca.include-connected');
    const shown = new Set(agents.map((a) => a.agentId));
    const bad = (message: string): void =>
      L.violate('opaca.include-connected', t, [platform], `${platform}'s /agents?includeConnected=true ${message}`);
    const own = infos.get(platform);
    const missing = (own?.agents ?? []).filter((a) => !shown.has(a));
    if (missing.length > 0) return bad(`leaves out its own ${missing.slice(0, 3).join(', ')}`);
    const near = [platform, ...listsOf(platform)];
    const far = [...shown].filter((a) => !near.some((p) => everHosted.get(p)?.has(a)));
    if (far.length > 0) return bad(`shows ${far.slice(0, 3).join(', ')}, hosted by no platform it is connected to`);
    for (const peer of listsOf(platform)) {
      const info = infos.get(peer);
      if (!info || down.has(peer) || views.get(platform)?.get(peer) !== info.digest) continue;
      const left = info.agents.filter((a) => !shown.has(a));
      if (left.length > 0) return bad(`leaves out ${peer}'s ${left.slice(0, 3).join(', ')}, though its view of ${peer} is current`);
    }
  };

  const connections = (t: number, actor: string, o: PlatformObservation): void => {
    switch (o.kind) {
      case 'opaca.connected': {
        L.check('opaca.connection-symmetry');
        if (o.peer === actor) L.violate('opaca.connection-symmetry', t, [actor], `${actor} connected to itself (${o.url})`);
        else if (listsOf(actor).has(o.peer))
          L.violate('opaca.connection-symmetry', t, [actor, o.peer], `${actor} connected to ${o.peer} twice`);
        listsOf(actor).add(o.peer);
        if (o.connectBack && !listsOf(o.peer).has(actor))
          L.violate(
            'opaca.connection-symmetry',
            t,
            [actor, o.peer],
            `${actor} connected to ${o.peer} with connect-back, but ${o.peer} does not list ${actor}`,
          );
        return;
      }
      case 'opaca.disconnected':
        listsOf(actor).delete(o.peer);
        views.get(actor)?.delete(o.peer);
        return;
      case 'opaca.disconnectedBoth':
        L.check('opaca.connection-symmetry');
        if (listsOf(o.peer).has(actor) || listsOf(actor).has(o.peer))
          L.violate(
            'opaca.connection-symmetry',
            t,
            [actor, o.peer],
            `${actor} and ${o.peer} disconnected with connect-back, but one still lists the other`,
          );
        return;
      case 'opaca.info': {
        infos.set(actor, { digest: o.digest, atUs: t, agents: o.agents ?? [] });
        judgeListing(t, actor, o.containers ?? []);
        const ever = everHosted.get(actor) ?? new Set<string>();
        everHosted.set(actor, ever);
        for (const a of o.agents ?? []) ever.add(a);
        return;
      }
      case 'opaca.deploy':
        return deploy(t, actor, o);
      case 'opaca.token': {
        const own = tokens.get(actor) ?? new Map<string, { role: Role; expiresUs: number }>();
        tokens.set(actor, own);
        own.set(o.token, { role: o.role, expiresUs: o.expiresUs });
        if (o.via !== 'login') return;
        L.check('opaca.auth');
        const role = opts.auth?.get(actor)?.get(o.subject);
        if (role !== o.role)
          L.violate(
            'opaca.auth',
            t,
            [actor],
            `${actor} gave ${o.subject} a ${o.role} token at login; ${o.subject} is ${role ?? 'no user'}`,
          );
        return;
      }
      case 'opaca.view': {
        const v = views.get(actor) ?? new Map<string, string>();
        views.set(actor, v);
        v.set(o.peer, o.digest);
        return;
      }
      default:
    }
  };

  const platform = (t: number, actor: string, o: PlatformObservation): void => {
    switch (o.kind) {
      case 'opaca.call': {
        if (!o.forwarded) {
          if (o.route !== 'send' && o.route !== 'broadcast' && o.route !== 'invoke') return;
          calls.set(o.callId, { origin: actor, route: o.route, platforms: new Set([actor]), agents: new Map(), deliveries: 0 });
          return;
        }
        L.check('opaca.bounded-forwarding');
        const c = calls.get(o.callId);
        if (!c) return L.violate('opaca.bounded-forwarding', t, [actor, o.from], `${actor} got call ${o.callId}, made nowhere`);
        if (c.platforms.has(actor))
          L.violate('opaca.bounded-forwarding', t, [actor, o.from], `call ${o.callId} reached ${actor} a second time (from ${o.from})`);
        else if (o.from !== c.origin)
          L.violate(
            'opaca.bounded-forwarding',
            t,
            [actor, o.from],
            `call ${o.callId} made at ${c.origin} reached ${actor} in a second hop (from ${o.from})`,
          );
        else if (o.forward)
          L.violate('opaca.bounded-forwarding', t, [actor, o.from], `call ${o.callId} was forwarded to ${actor} with forward=true`);
        c.platforms.add(actor);
        return;
      }
      case 'opaca.answered': {
        const c = calls.get(o.callId);
        // Judge the call where it was made, once it is answered there.
        if (!c || c.origin !== actor) return;
        calls.delete(o.callId);
        L.check('opaca.deliveries');
        if (c.route === 'invoke') {
          if (c.deliveries > 1 || (o.status === 200 && c.deliveries !== 1))
            L.violate('opaca.deliveries', t, [actor], `invoke ${o.callId} answered ${o.status} after running on ${c.deliveries} agents`);
        } else if (c.route === 'send' || c.route === 'broadcast') {
          const twice = [...c.agents].filter(([, n]) => n > 1).map(([a]) => a);
          if (twice.length > 0)
            L.violate('opaca.deliveries', t, [actor, ...twice], `${c.route} ${o.callId} reached ${twice.join(', ')} more than once`);
          else if (opts.mode === 'current' && c.route === 'send' && c.deliveries > 1)
            L.violate('opaca.deliveries', t, [actor], `send ${o.callId} reached ${c.deliveries} agents in current mode`);
        }
        L.check('opaca.status-codes');
        const expected = expectedStatus(c.route, o.targets, o.mismatch, o.reached, o.unreachable);
        if (expected !== undefined && o.status !== expected)
          L.violate(
            'opaca.status-codes',
            t,
            [actor],
            `${c.route} ${o.callId} answered ${o.status}; with ${o.targets} targets (${o.reached} reached, ${o.unreachable} unreachable${o.mismatch ? ', a parameter mismatch' : ''}) it must be ${expected}`,
          );
        return;
      }
      default:
    }
  };

  return {
    onObserve(t, actor, obs) {
      const o = obs as PlatformObservation | ContainerObservation;
      if (o.kind === 'opaca.delivered') {
        const c = calls.get(o.callId);
        if (!c) return;
        c.deliveries++;
        // Agent ids are unique per container, not across them: count each container's agent.
        const agent = `${actor}/${o.agent}`;
        c.agents.set(agent, (c.agents.get(agent) ?? 0) + 1);
        return;
      }
      if (o.kind.startsWith('opaca.')) {
        platform(t, actor, o as PlatformObservation);
        connections(t, actor, o as PlatformObservation);
      }
    },
    onDeliver(t, to, from, env: Envelope) {
      const m = env as OpacaRequest;
      if (m.type !== 'OpacaRequest') return;
      judgeAuth(t, to, from, m);
      if (m.method !== 'GET') return;
      const path = m.path.replace(/\/+$/, '');
      if (path === '/history') historyAsked.add(`${to}|${from}|${m.rid}`);
      else if (path === '/agents' && m.query?.includeConnected === 'true') agentsAsked.add(`${to}|${from}|${m.rid}`);
    },
    onSend(t, from, to, env: Envelope) {
      if (env.type === 'OpacaResponse') {
        const m = env as OpacaResponse;
        const key = `${from}|${to}|${m.re}`;
        const auth = authAsked.get(key);
        if (auth !== undefined) {
          authAsked.delete(key);
          L.check('opaca.auth');
          const refused = m.status === 401 || m.status === 403;
          if (auth.status === 'runs' ? refused : m.status !== auth.status)
            L.violate(
              'opaca.auth',
              t,
              [from, to],
              `${from} answered ${m.status} to ${auth.what}; it must be ${auth.status === 'runs' ? 'served' : auth.status}`,
            );
        }
        const polled = infoAsked.get(key);
        if (polled !== undefined) {
          infoAsked.delete(key);
          // Answered: a poll it made by the deadline (an answer in flight then still counts, as in the implementation).
          const d = deploys.get(`${to}|${from}`);
          if (d && m.status === 200 && d.answeredUs === undefined) d.answeredUs = polled;
        } else if (historyAsked.delete(key) && m.status === 200) history(t, from, m.body as OpacaEvent[]);
        else if (agentsAsked.delete(key) && m.status === 200) includeConnected(t, from, m.body as { agentId: string }[]);
      } else if (env.type === 'OpacaRequest') {
        const m = env as OpacaRequest;
        if (m.method === 'GET' && m.path === '/info' && deploys.has(`${from}|${to}`))
          infoAsked.set(`${to}|${from}|${m.rid}`, clockOf(from, t));
      } else if (env.type === 'OpacaStop') {
        const d = deploys.get(`${from}|${to}`);
        if (d) d.stoppedUs = t;
      } else if (env.type === 'OpacaPush') {
        const m = env as OpacaPush;
        L.check('opaca.event-log');
        const path = m.event.route.split(' ')[1] ?? '';
        if (m.event.eventType !== 'SUCCESS' || !path.startsWith(m.topic))
          L.violate(
            'opaca.event-log',
            t,
            [from, to],
            `${from} pushed a ${m.event.eventType} event of ${m.event.route} on topic ${m.topic}`,
          );
      }
    },
    onFault(_t, action: FaultAction, names) {
      if (action.kind === 'crash' || action.kind === 'shutdown') for (const n of names) down.add(n);
      if (action.kind === 'skew') for (const n of names) skew.set(n, (skew.get(n) ?? 0) + action.byUs);
      if (action.kind !== 'restart') return;
      // A restarted platform starts from its input: what it knew in memory is gone (it announces
      // its connections, views and tokens at start again), and so is any call it was serving.
      for (const n of names) {
        down.delete(n);
        lists.delete(n);
        views.delete(n);
        tokens.delete(n);
        closedBy.delete(n);
        listed.delete(n);
        for (const key of [...deploys.keys()]) if (key.startsWith(`${n}|`)) deploys.delete(key);
        for (const [id, c] of [...calls]) if (c.origin === n) calls.delete(id);
      }
    },
    /** Invariant 5, at the end: views of reachable peers that have been quiet long enough. */
    onEnd(t) {
      for (const [viewer, v] of views) {
        if (down.has(viewer)) continue;
        for (const [peer, digest] of v) {
          const info = infos.get(peer);
          if (!info || down.has(peer) || t - info.atUs < SETTLE_US || !listsOf(viewer).has(peer)) continue;
          L.check('opaca.view-consistency');
          if (digest !== info.digest)
            L.violate(
              'opaca.view-consistency',
              t,
              [viewer, peer],
              `${viewer}'s view of ${peer} (${digest}) is not ${peer}'s /info (${info.digest})`,
            );
        }
      }
    },
    results: () => L.results(),
  };
}

/**
 * The status a call's match outcome calls for (undefined: the targets' own answers decide, e.g. a
 * failing agent's 500): none found → 404 (a broadcast: 200), only a parameter mismatch → 400, every
 * target unreachable → 502, one reached → 200.
 */
export function expectedStatus(
  route: string,
  targets: number,
  mismatch: boolean,
  reached: number,
  unreachable: number,
): number | undefined {
  if (targets === 0) return route === 'broadcast' ? 200 : mismatch && route === 'invoke' ? 400 : 404;
  if (reached > 0) return 200;
  if (unreachable === targets) return 502;
  return undefined;
}
