/**
 * OPACA under faults, from a second review of the family: each case once crashed a platform, gave a
 * wrong answer, or made the checker report a violation a correct platform did not commit. Each runs
 * a small scenario through the real loader and kernel, and asserts the answers and that no invariant
 * is violated.
 */
import { describe, expect, it } from 'vitest';
import { parseScenario } from '../../src/scenario/loadScenario.js';
import { runScenario } from '../../src/scenario/runScenario.js';

function run(body: string) {
  const yaml = `name: opaca-fault-case\nprotocol: opaca\nseed: 3\n${body}`;
  const answers: { rid: number; status: number; body: unknown }[] = [];
  const s = runScenario(parseScenario(yaml, 'case.yaml'), {
    observers: [
      {
        onObserve(_t, _actor, obs) {
          const o = obs as { kind: string; rid: number; status: number; body: unknown };
          if (o.kind === 'opaca.client.answer') answers.push({ rid: o.rid, status: o.status, body: o.body });
        },
      },
    ],
  });
  const violated = s.invariants.filter((i) => i.status === 'violated').map((i) => `${i.id}: ${i.violations[0]?.message}`);
  return { s, violated, answers, metrics: s.metrics as { answersByStatus: Record<string, number>; unanswered?: number } };
}

describe('OPACA under faults', () => {
  it('a target removed while an invoke waits on another is skipped as unreachable, not a crash of the platform', () => {
    const { s, violated, metrics } = run(`duration: 30s
stopWhen: complete
actors:
  - { role: opaca.platform, name: A }
  - { role: opaca.container, name: c1, platform: A, agents: [{ id: e1, actions: [Echo] }] }
  - { role: opaca.container, name: c2, platform: A, agents: [{ id: e2, actions: [Echo] }] }
  - role: opaca.client
    name: user
    calls:
      - { at: 1s, to: A, path: /invoke/Echo, body: { message: hi } }
      - { at: 3s, method: DELETE, to: A, path: /containers/c2 }
      - { at: 8s, method: GET, to: A, path: /info }
faults:
  - { at: 500ms, partition: [[c1], rest] }
`);
    expect(s.actorErrors).toEqual([]);
    // c1 cut off (silent for the call timeout), c2 gone by then: every target unreachable, 502.
    expect(metrics.answersByStatus).toEqual({ '200': 2, '502': 1 });
    expect(violated).toEqual([]);
  });

  it('after a restart, an answer meant for the crashed incarnation is not taken for a new request', () => {
    const { violated, metrics, answers } = run(`duration: 20s
stopWhen: complete
actors:
  - { role: opaca.platform, name: A }
  - { role: opaca.container, name: c, platform: A, agents: [{ id: e1, behaviour: slow, delay: 3s, actions: [Echo] }] }
  - role: opaca.client
    name: user
    timeout: 10s
    calls:
      - { at: 1s, to: A, path: /invoke/Echo/e1, body: { message: old } }
      - { at: 2s, to: A, path: /invoke/Echo/e1, body: { message: new } }
faults:
  - { at: 1500ms, crash: A, restart: 1600ms }
`);
    // The first call died with the platform (given up); the second is answered with its own result.
    expect(metrics.answersByStatus).toEqual({ '200': 1 });
    expect(answers.find((a) => a.rid === 2)).toMatchObject({ status: 200, body: 'new' });
    expect(metrics.unanswered).toBe(1);
    expect(violated).toEqual([]);
  });

  it('a restarted platform is judged afresh: its tokens, history, connections and views start again', () => {
    const auth = run(`duration: 20s
stopWhen: complete
actors:
  - { role: opaca.platform, name: A, connect: B, auth: { users: [{ name: uma, password: u, role: USER }] } }
  - { role: opaca.platform, name: B }
  - { role: opaca.container, name: c, platform: B, agents: [{ id: e1, actions: [Echo] }] }
  - role: opaca.client
    name: user
    calls:
      - { at: 1s, to: A, path: /login, body: { username: uma, password: u } }
      - { at: 2s, to: A, path: /invoke/Echo/e1, body: { message: hi }, as: uma }
      - { at: 5s, to: A, path: /login, body: { username: uma, password: u } }
      - { at: 6s, to: A, path: /invoke/Echo/e1, body: { message: hi }, as: uma }
      - { at: 7s, method: GET, to: A, path: /history, as: uma }
      - { at: 8s, method: GET, to: A, path: /agents, query: { includeConnected: 'true' }, as: uma }
faults:
  - { at: 3s, crash: A, restart: 4s }
`);
    expect(auth.metrics.answersByStatus).toEqual({ '200': 6 });
    expect(auth.violated).toEqual([]);
    const checked = Object.fromEntries(auth.s.invariants.map((i) => [i.id, i.status]));
    expect(checked).toMatchObject({
      'opaca.auth': 'held',
      'opaca.event-log': 'held',
      'opaca.connection-symmetry': 'held',
      'opaca.include-connected': 'held',
    });
  });

  it('a peer refusing the platform’s token makes that peer unreachable (502), not the caller unauthorised', () => {
    const { violated, metrics } = run(`duration: 20s
stopWhen: complete
actors:
  - { role: opaca.platform, name: A, auth: { users: [{ name: ada, password: a, role: ADMIN }] } }
  - { role: opaca.platform, name: B, auth: { users: [{ name: gus, password: g, role: GUEST }] } }
  - { role: opaca.container, name: c, platform: B, agents: [{ id: e1, actions: [Echo] }] }
  - role: opaca.client
    name: user
    calls:
      - { at: 1s, to: B, path: /login, body: { username: gus, password: g } }
      - { at: 1s, to: A, path: /login, body: { username: ada, password: a } }
      - { at: 2s, to: A, path: /connections, body: { url: 'http://B:8000', token: B.login.1 }, as: ada }
      - { at: 3s, to: A, path: /invoke/Echo/e1, body: { message: hi }, as: ada }
`);
    // A holds only a GUEST token at B: B refuses the forwarded invoke (403), A answers 502.
    expect(metrics.answersByStatus).toEqual({ '200': 3, '502': 1 });
    expect(violated).toEqual([]);
  });

  it('token expiry is judged on the platform’s own clock; a body that does not parse does not lower the role', () => {
    const skewed = run(`duration: 20s
stopWhen: complete
actors:
  - { role: opaca.platform, name: A, auth: { users: [{ name: uma, password: u, role: USER }] } }
  - { role: opaca.container, name: c, platform: A, agents: [{ id: e1, actions: [Echo] }] }
  - role: opaca.client
    name: user
    calls:
      - { at: 1s, to: A, path: /login, body: { username: uma, password: u } }
      - { at: 5s, to: A, path: /invoke/Echo/e1, body: { message: hi }, as: uma }
faults:
  - { at: 2s, skew: A, by: 2h }
`);
    // Two hours on at A, the one-hour token has expired there: 401, and that is right.
    expect(skewed.metrics.answersByStatus).toEqual({ '200': 1, '401': 1 });
    expect(skewed.violated).toEqual([]);
    const guest = run(`duration: 20s
stopWhen: complete
actors:
  - { role: opaca.platform, name: A, auth: { users: [{ name: gus, password: g, role: GUEST }] } }
  - { role: opaca.container, name: c, platform: A, agents: [{ id: e1, actions: [Echo] }] }
  - role: opaca.client
    name: user
    calls:
      - { at: 1s, to: A, path: /login, body: { username: gus, password: g } }
      - { at: 2s, to: A, path: /connections, raw: '{"url": 42}', as: gus }
      - { at: 2s, to: A, path: /containers, raw: '{', as: gus }
      - { at: 2s, to: A, path: /send/e1, raw: 'x', as: gus }
`);
    expect(guest.metrics.answersByStatus).toEqual({ '200': 1, '403': 3 });
    expect(guest.s.invariants.find((i) => i.id === 'opaca.auth')).toMatchObject({ status: 'held', checks: 4 });
  });

  it('a container and its agents talk in process: a duplicating, lossy network does not touch their messages', () => {
    const { violated, metrics, s } = run(`duration: 10s
stopWhen: complete
network:
  latency: { dist: uniform, min: 1ms, max: 5ms }
  ordering: unordered-duplicating
  duplicate: 0.9
  loss: 0.5
  links:
    - { from: [A, c, user], to: [A, c, user], duplicate: 0, loss: 0, ordering: ordered }
actors:
  - { role: opaca.platform, name: A }
  - { role: opaca.container, name: c, platform: A, agents: [{ id: e1, actions: [Echo] }] }
  - role: opaca.client
    name: user
    calls:
      - { at: 10ms, to: A, path: /send/e1, body: { payload: hi, replyTo: user } }
      - { at: 20ms, to: A, path: /invoke/Echo/e1, body: { message: hi } }
      - { at: 30ms, to: A, path: /broadcast/x, body: { payload: hi, replyTo: user } }
`);
    expect(metrics.answersByStatus).toEqual({ '200': 3 });
    expect(s.messages.duplicated).toBe(0);
    expect(s.messages.dropped).toEqual({});
    expect(violated).toEqual([]);
  });

  it('a platform restarted while its peer is still down keeps the peer, and reaches it once it is back', () => {
    const { violated, metrics, answers } = run(`duration: 1m
stopWhen: complete
actors:
  - { role: opaca.platform, name: A, connect: B }
  - { role: opaca.platform, name: B }
  - { role: opaca.container, name: c, platform: B, agents: [{ id: calc, behaviour: compute, actions: [Add] }] }
  - role: opaca.client
    name: op
    calls:
      - { at: 20s, to: A, path: /invoke/Add, body: { x: 1, y: 2 } }
      - { at: 21s, method: GET, to: A, path: /connections }
faults:
  - { at: 5s, crash: A, restart: 6s }
  - { at: 5s, crash: B, restart: 7s }
`);
    // A's re-sync pull at 6 s is refused (B is still down); A keeps B and forwards to it later.
    expect(metrics.answersByStatus).toEqual({ '200': 2 });
    expect(answers.find((a) => a.rid === 2)?.body).toEqual(['http://B:8000']);
    expect(violated).toEqual([]);
  });

  it('a deploy polls a container that refuses connections once a second, not as fast as refusals come back', () => {
    const { s, metrics } = run(`duration: 1m
stopWhen: complete
actors:
  - { role: opaca.platform, name: A }
  - { role: opaca.container, name: calc, platform: A, deployed: false, image: calc-image, agents: [{ id: calc, actions: [Echo] }] }
  - role: opaca.client
    name: op
    calls:
      - { at: 1s, to: A, path: /containers, body: { image: { imageName: calc-image } } }
faults:
  - { at: 0s, crash: calc }
`);
    expect(metrics.answersByStatus).toEqual({ '502': 1 });
    // 10 s of deploy timeout: one poll a second, each refused.
    expect(s.messages.byType['host.refused']).toBe(10);
  });

  it('a hold between containers does not hold what a container says to its own agents', () => {
    const { violated, metrics } = run(`duration: 1m
stopWhen: complete
actors:
  - { role: opaca.platform, name: P }
  - { role: opaca.container, name: c1, platform: P, agents: [{ id: calc, behaviour: compute, actions: [Add] }] }
  - { role: opaca.container, name: c2, platform: P, agents: [{ id: calc2, behaviour: compute, actions: [Add] }] }
  - role: opaca.client
    name: user
    calls:
      - { at: 1s, to: P, path: /invoke/Add/calc, body: { x: 2, y: 3 } }
faults:
  - { at: 0s, hold: { from: [c1, c2], to: [c1, c2] }, release: 30s }
`);
    expect(metrics.answersByStatus).toEqual({ '200': 1 });
    expect(violated).toEqual([]);
  });
});
