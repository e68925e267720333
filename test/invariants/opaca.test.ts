/**
 * The OPACA invariants checked so far (`shared/protocols/opaca.md`, "Invariants" 1–6), each broken
 * on purpose: the checker is fed what a faulty platform or container would observe and must report
 * the invariant violated; a correct run holds them.
 */
import { describe, expect, it } from 'vitest';
import { createOpacaChecker, expectedStatus, OPACA_INVARIANTS } from '../../src/invariants/opaca.js';

type Obs = { kind: string } & Record<string, unknown>;
const call = (callId: string, route: string, from: string, forwarded = false, forward = !forwarded): Obs => ({
  kind: 'opaca.call',
  callId,
  route,
  forward,
  from,
  forwarded,
});
const delivered = (callId: string, agent: string, how = 'invoke'): Obs => ({ kind: 'opaca.delivered', how, agent, callId });
const answered = (callId: string, status: number, targets: number, reached: number, unreachable = 0, mismatch = false): Obs => ({
  kind: 'opaca.answered',
  callId,
  status,
  targets,
  reached,
  unreachable,
  mismatch,
});

function statusOf(mode: 'documented' | 'current', feed: [number, string, Obs][], endUs?: number): Record<string, string> {
  const c = createOpacaChecker({ mode, enabled: new Set(OPACA_INVARIANTS.map((i) => i.id)), recentTrace: () => [] });
  for (const [t, actor, o] of feed) c.onObserve!(t, actor, o);
  if (endUs !== undefined) c.onEnd!(endUs);
  return Object.fromEntries(c.results().map((r) => [r.id, r.status]));
}
const connected = (url: string, peer: string, connectBack: boolean): Obs => ({ kind: 'opaca.connected', url, peer, connectBack });

describe('OPACA invariants, each broken on purpose', () => {
  it('a correct forwarded invoke and a documented send hold them all', () => {
    expect(
      statusOf('documented', [
        [1, 'A', call('A-1', 'invoke', 'client')],
        [2, 'B', call('A-1', 'invoke', 'A', true)],
        [3, 'cB', delivered('A-1', 'calc')],
        [4, 'B', answered('A-1', 200, 1, 1)],
        [5, 'A', answered('A-1', 200, 1, 1)],
        [6, 'A', call('A-2', 'send', 'client')],
        [7, 'cA', delivered('A-2', 'twin', 'send')],
        [7, 'B', call('A-2', 'send', 'A', true)],
        [8, 'cB', delivered('A-2', 'twin', 'send')],
        [9, 'A', answered('A-2', 200, 2, 2)],
      ]),
    ).toEqual({
      'opaca.bounded-forwarding': 'held',
      'opaca.deliveries': 'held',
      'opaca.status-codes': 'held',
      'opaca.connection-symmetry': 'not-exercised',
      'opaca.view-consistency': 'not-exercised',
      'opaca.event-log': 'not-exercised',
      'opaca.deploy': 'not-exercised',
      'opaca.auth': 'not-exercised',
      'opaca.include-connected': 'not-exercised',
    });
  });

  it('1 bounded forwarding: a second hop, a second visit, a forward with forward=true', () => {
    const second = statusOf('documented', [
      [1, 'A', call('A-1', 'invoke', 'client')],
      [2, 'B', call('A-1', 'invoke', 'A', true)],
      [3, 'C', call('A-1', 'invoke', 'B', true)],
    ]);
    expect(second['opaca.bounded-forwarding']).toBe('violated');
    const back = statusOf('documented', [
      [1, 'A', call('A-1', 'broadcast', 'client')],
      [2, 'A', call('A-1', 'broadcast', 'A', true)],
    ]);
    expect(back['opaca.bounded-forwarding']).toBe('violated');
    const flag = statusOf('documented', [
      [1, 'A', call('A-1', 'send', 'client')],
      [2, 'B', call('A-1', 'send', 'A', true, true)],
    ]);
    expect(flag['opaca.bounded-forwarding']).toBe('violated');
  });

  it('2 deliveries: an invoke run twice, a success that ran nowhere, an agent told twice, a current-mode send to two', () => {
    const twice = statusOf('documented', [
      [1, 'A', call('A-1', 'invoke', 'client')],
      [2, 'c1', delivered('A-1', 'calc-1')],
      [3, 'c2', delivered('A-1', 'calc-2')],
      [4, 'A', answered('A-1', 200, 2, 1)],
    ]);
    expect(twice['opaca.deliveries']).toBe('violated');
    const nowhere = statusOf('documented', [
      [1, 'A', call('A-1', 'invoke', 'client')],
      [4, 'A', answered('A-1', 200, 1, 1)],
    ]);
    expect(nowhere['opaca.deliveries']).toBe('violated');
    const again = statusOf('documented', [
      [1, 'A', call('A-1', 'broadcast', 'client')],
      [2, 'c1', delivered('A-1', 'x', 'broadcast')],
      [3, 'c1', delivered('A-1', 'x', 'broadcast')],
      [4, 'A', answered('A-1', 200, 1, 1)],
    ]);
    expect(again['opaca.deliveries']).toBe('violated');
    const current = statusOf('current', [
      [1, 'A', call('A-1', 'send', 'client')],
      [2, 'c1', delivered('A-1', 'twin', 'send')],
      [3, 'c2', delivered('A-1', 'twin', 'send')],
      [4, 'A', answered('A-1', 200, 2, 2)],
    ]);
    expect(current['opaca.deliveries']).toBe('violated');
  });

  it('3 status codes: 404 for a mismatch, 200 for a broadcast with no target is right; 404 for a broadcast, 502 with a target reached are not', () => {
    expect(expectedStatus('invoke', 0, true, 0, 0)).toBe(400);
    expect(expectedStatus('send', 0, false, 0, 0)).toBe(404);
    expect(expectedStatus('broadcast', 0, false, 0, 0)).toBe(200);
    expect(expectedStatus('invoke', 2, false, 0, 2)).toBe(502);
    expect(expectedStatus('invoke', 2, false, 0, 1)).toBeUndefined();
    const wrong = (route: string, o: Obs) =>
      statusOf('documented', [
        [1, 'A', call('A-1', route, 'client')],
        [2, 'A', o],
      ])['opaca.status-codes'];
    expect(wrong('invoke', answered('A-1', 404, 0, 0, 0, true))).toBe('violated');
    expect(wrong('broadcast', answered('A-1', 404, 0, 0))).toBe('violated');
    expect(wrong('invoke', answered('A-1', 200, 0, 0, 0, true))).toBe('violated');
    expect(wrong('send', answered('A-1', 404, 0, 0))).toBe('held');
  });

  it('4 connection symmetry: connect-back without the other side, connecting to itself or twice, a disconnect that left one side', () => {
    const sym = (feed: [number, string, Obs][]) => statusOf('documented', feed)['opaca.connection-symmetry'];
    expect(
      sym([
        [2, 'B', connected('http://A', 'A', false)],
        [3, 'A', connected('http://B', 'B', true)],
      ]),
    ).toBe('held');
    expect(sym([[3, 'A', connected('http://B', 'B', true)]])).toBe('violated');
    expect(sym([[3, 'A', connected('http://A', 'A', false)]])).toBe('violated');
    expect(
      sym([
        [3, 'A', connected('http://B', 'B', false)],
        [4, 'A', connected('http://B', 'B', false)],
      ]),
    ).toBe('violated');
    expect(
      sym([
        [2, 'B', connected('http://A', 'A', false)],
        [3, 'A', connected('http://B', 'B', true)],
        [4, 'A', { kind: 'opaca.disconnected', url: 'http://B', peer: 'B' }],
        [5, 'A', { kind: 'opaca.disconnectedBoth', url: 'http://B', peer: 'B' }],
      ]),
    ).toBe('violated');
  });

  it('5 view consistency: a view that never caught up with a quiet, reachable peer; not judged while the peer is down or changed lately', () => {
    const feed = (view: string): [number, string, Obs][] => [
      [0, 'A', connected('http://B', 'B', false)],
      [0, 'B', { kind: 'opaca.info', digest: 'b0' }],
      [0, 'A', { kind: 'opaca.view', peer: 'B', digest: 'b0' }],
      [10, 'B', { kind: 'opaca.info', digest: 'b1' }],
      [20, 'A', { kind: 'opaca.view', peer: 'B', digest: view }],
    ];
    expect(statusOf('documented', feed('b1'), 120_000_000)['opaca.view-consistency']).toBe('held');
    expect(statusOf('documented', feed('b0'), 120_000_000)['opaca.view-consistency']).toBe('violated');
    expect(statusOf('documented', feed('b0'), 30_000_000)['opaca.view-consistency']).toBe('not-exercised');
  });

  it('6 event log: as served by GET /history and pushed to subscribers', () => {
    const served = (events: object[], limit = 50) => {
      const c = createOpacaChecker({
        mode: 'documented',
        historySize: new Map([['P', limit]]),
        enabled: new Set(OPACA_INVARIANTS.map((i) => i.id)),
        recentTrace: () => [],
      });
      c.onDeliver!(1, 'P', 'user', { type: 'OpacaRequest', rid: 7, method: 'GET', path: '/history' } as never);
      c.onSend!(1, 'P', 'user', { type: 'OpacaResponse', re: 7, status: 200, body: events } as never);
      return c.results().find((r) => r.id === 'opaca.event-log')!.status;
    };
    const ev = (id: string, eventType: string, extra: object = {}) => ({
      id,
      timestamp: 0,
      eventType,
      route: 'POST /invoke/Add',
      ...extra,
    });
    expect(
      served([
        ev('P-1', 'CALL'),
        ev('P-2', 'SUCCESS', { relatedId: 'P-1' }),
        ev('P-3', 'CALL'),
        ev('P-4', 'ERROR', { statusCode: 404, relatedId: 'P-3' }),
      ]),
    ).toBe('held');
    expect(served([ev('P-1', 'CALL'), ev('P-2', 'SUCCESS', { relatedId: 'P-1', statusCode: 200 })])).toBe('violated');
    expect(served([ev('P-1', 'CALL'), ev('P-2', 'ERROR', { relatedId: 'P-1', statusCode: 200 })])).toBe('violated');
    expect(
      served([ev('P-1', 'CALL'), ev('P-2', 'SUCCESS', { relatedId: 'P-1' }), ev('P-3', 'ERROR', { relatedId: 'P-1', statusCode: 502 })]),
    ).toBe('violated');
    expect(served([ev('P-1', 'CALL'), ev('P-2', 'CALL')], 1)).toBe('violated');
    const pushed = (event: object) => {
      const c = createOpacaChecker({ mode: 'documented', enabled: new Set(OPACA_INVARIANTS.map((i) => i.id)), recentTrace: () => [] });
      c.onSend!(1, 'P', 'Q', { type: 'OpacaPush', topic: '/containers', event } as never);
      return c.results().find((r) => r.id === 'opaca.event-log')!.status;
    };
    expect(pushed({ id: 'P-9', timestamp: 0, eventType: 'SUCCESS', route: 'PUT /containers' })).toBe('held');
    expect(pushed({ id: 'P-9', timestamp: 0, eventType: 'ERROR', route: 'PUT /containers', statusCode: 502 })).toBe('violated');
    expect(pushed({ id: 'P-9', timestamp: 0, eventType: 'SUCCESS', route: 'POST /invoke/Add' })).toBe('violated');
  });

  it('9 includeConnected: its own agents and its direct peers’, never a peer’s peer’s; none of its own left out', () => {
    // A–B–C in a chain; A's view of B is current.
    const answer = (agents: string[], viewOfB = 'b0') => {
      const c = createOpacaChecker({ mode: 'documented', enabled: new Set(OPACA_INVARIANTS.map((i) => i.id)), recentTrace: () => [] });
      const feed: [number, string, Obs][] = [
        [0, 'A', { kind: 'opaca.info', digest: 'a0', agents: ['a1'] }],
        [0, 'B', { kind: 'opaca.info', digest: 'b0', agents: ['b1', 'b2'] }],
        [0, 'C', { kind: 'opaca.info', digest: 'c0', agents: ['c1'] }],
        [0, 'A', connected('http://B', 'B', false)],
        [0, 'B', connected('http://A', 'A', false)],
        [0, 'B', connected('http://C', 'C', false)],
        [0, 'C', connected('http://B', 'B', false)],
        [0, 'A', { kind: 'opaca.view', peer: 'B', digest: viewOfB }],
      ];
      for (const [t, actor, o] of feed) c.onObserve!(t, actor, o);
      c.onDeliver!(1, 'A', 'user', {
        type: 'OpacaRequest',
        rid: 3,
        method: 'GET',
        path: '/agents',
        query: { includeConnected: 'true' },
      } as never);
      c.onSend!(1, 'A', 'user', { type: 'OpacaResponse', re: 3, status: 200, body: agents.map((agentId) => ({ agentId })) } as never);
      return c.results().find((r) => r.id === 'opaca.include-connected')!.status;
    };
    expect(answer(['a1', 'b1', 'b2'])).toBe('held');
    expect(answer(['a1', 'b1', 'b2', 'c1'])).toBe('violated'); // transitive
    expect(answer(['b1', 'b2'])).toBe('violated'); // its own left out
    expect(answer(['a1', 'b1'])).toBe('violated'); // a current view of B, half shown
    expect(answer(['a1', 'b1'], 'stale')).toBe('held'); // a stale view may lag
  });

  it('7 deploy: listed before answering /info, listed on a poll after the timeout, a failed deploy left listed or not stopped', () => {
    const info = (containers: string[]): Obs => ({ kind: 'opaca.info', digest: containers.join(), containers, agents: [] });
    const started: Obs = { kind: 'opaca.deploy', containerId: 'c', phase: 'started', timeoutUs: 10_000_000 };
    const failed: Obs = { kind: 'opaca.deploy', containerId: 'c', phase: 'failed' };
    /** A deploy at 0 on P of container c; P polls /info at `pollAt`, c answers at `answerAt`; then `then`. */
    const run = (answerAt: number | undefined, then: [number, Obs | 'stop'][], pollAt = 1, skewUs = 0) => {
      const c = createOpacaChecker({ mode: 'documented', enabled: new Set(OPACA_INVARIANTS.map((i) => i.id)), recentTrace: () => [] });
      c.onObserve!(0, 'P', info([]));
      c.onObserve!(0, 'P', started);
      if (skewUs !== 0) c.onFault!(0, { kind: 'skew', actors: [0], byUs: skewUs }, ['P']);
      c.onSend!(pollAt, 'P', 'c', { type: 'OpacaRequest', rid: 1, method: 'GET', path: '/info' } as never);
      if (answerAt !== undefined) c.onSend!(answerAt, 'c', 'P', { type: 'OpacaResponse', re: 1, status: 200, body: {} } as never);
      for (const [t, o] of then)
        if (o === 'stop') c.onSend!(t, 'P', 'c', { type: 'OpacaStop' } as never);
        else c.onObserve!(t, 'P', o);
      return c.results().find((r) => r.id === 'opaca.deploy')!.status;
    };
    expect(run(2_000_000, [[2_000_001, info(['c'])]])).toBe('held');
    expect(
      run(undefined, [
        [10_000_000, 'stop'],
        [10_000_000, failed],
      ]),
    ).toBe('held');
    // A poll made in time whose answer comes late still counts (the implementation waits for it).
    expect(run(12_000_000, [[12_000_001, info(['c'])]], 9_999_000)).toBe('held');
    // Listed before it answered, or on a poll made after the timeout.
    expect(run(undefined, [[500_000, info(['c'])]])).toBe('violated');
    expect(run(12_000_000, [[12_000_001, info(['c'])]], 11_000_000)).toBe('violated');
    // Failed, but still listed; failed without being stopped; failed, then listed anyway.
    expect(
      run(undefined, [
        [5_000_000, info(['c'])],
        [10_000_000, 'stop'],
        [10_000_000, failed],
      ]),
    ).toBe('violated');
    expect(run(undefined, [[10_000_000, failed]])).toBe('violated');
    expect(
      run(undefined, [
        [10_000_000, 'stop'],
        [10_000_000, failed],
        [11_000_000, info(['c'])],
      ]),
    ).toBe('violated');
  });

  it('8 auth: a route served below its role, a valid token refused, an expired token served, a login token with the wrong role', () => {
    const token = (t: string, role: string, expiresUs = 3_600_000_000, via = 'login', subject = 'uma'): Obs => ({
      kind: 'opaca.token',
      token: t,
      subject,
      role,
      expiresUs,
      via,
    });
    /** Platform P (auth on; uma is a USER) issues `issued` at 0, then answers one request at `at` with `status`. */
    const verdict = (issued: Obs[], req: { path: string; method?: string; token?: string; body?: string }, status: number, at = 10) => {
      const c = createOpacaChecker({
        mode: 'documented',
        enabled: new Set(OPACA_INVARIANTS.map((i) => i.id)),
        recentTrace: () => [],
        auth: new Map([['P', new Map([['uma', 'USER' as const]])]]),
      });
      for (const o of issued) c.onObserve!(0, 'P', o);
      c.onDeliver!(at, 'P', 'client', { type: 'OpacaRequest', rid: 1, method: 'POST', ...req } as never);
      c.onSend!(at, 'P', 'client', { type: 'OpacaResponse', re: 1, status, body: null } as never);
      return c.results().find((r) => r.id === 'opaca.auth')!.status;
    };
    const invoke = { path: '/invoke/Add', body: '{"x":1,"y":2}' };
    const deploy = { path: '/containers', body: '{"image":{"imageName":"x"}}' };
    expect(verdict([token('T', 'USER')], { ...invoke, token: 'T' }, 200)).toBe('held');
    expect(verdict([token('T', 'USER')], { ...deploy, token: 'T' }, 403)).toBe('held');
    expect(verdict([], invoke, 401)).toBe('held');
    // Served below its threshold; served without a token; a valid token refused.
    expect(verdict([token('T', 'USER')], { ...deploy, token: 'T' }, 200)).toBe('violated');
    expect(verdict([], invoke, 200)).toBe('violated');
    expect(verdict([token('T', 'USER')], { ...invoke, token: 'T' }, 401)).toBe('violated');
    // 403 where the token is no good at all (401), and an expired token served.
    expect(verdict([], { ...invoke, token: 'forged' }, 403)).toBe('violated');
    expect(verdict([token('T', 'USER', 1_000_000)], { ...invoke, token: 'T' }, 200, 5_000_000)).toBe('violated');
    // A login that gives uma (a USER) an ADMIN token.
    expect(verdict([token('T', 'ADMIN')], { ...invoke, token: 'T' }, 200)).toBe('violated');
  });
});
