/**
 * OPACA properties (fast-check) over random topologies of connected platforms with random calls
 * (`shared/protocols/opaca.md`, "Invariants" 1–3 and the issue's "Must show"): a call never crosses
 * more than one platform-to-platform hop and never loops; every call gets exactly one answer; an
 * invoke runs on exactly one agent or fails; status codes follow the match outcome — in both modes,
 * with dead containers.
 */
import { fc, test } from '@fast-check/vitest';
import { expect } from 'vitest';
import { invokeTargets, invokeTargetsByScan, sendTargets, sendTargetsByScan } from '../../src/actors/opaca/routing.js';
import type { Action, AgentContainer, Parameter } from '../../src/protocol/opaca.js';
import { parseScenario } from '../../src/scenario/loadScenario.js';
import { runScenario } from '../../src/scenario/runScenario.js';
import { sample } from '../helpers/property.js';

const world = fc.record({
  seed: fc.nat(1_000_000),
  mode: fc.constantFrom('documented', 'current'),
  platforms: fc.integer({ min: 1, max: 5 }),
  // Edges between platform indices (self-loops and repeats are dropped).
  edges: fc.array(fc.tuple(fc.nat(4), fc.nat(4)), { maxLength: 8 }),
  containers: fc.array(
    fc.record({
      on: fc.nat(4),
      agents: fc.array(
        fc.record({ id: fc.constantFrom('a', 'b', 'calc', 'echo'), actions: fc.subarray(['Echo', 'Add']), slow: fc.boolean() }),
        { minLength: 1, maxLength: 3 },
      ),
      dead: fc.constantFrom(false, false, false, true),
    }),
    { maxLength: 6 },
  ),
  calls: fc.array(
    fc.record({
      to: fc.nat(4),
      kind: fc.constantFrom('invoke', 'send', 'broadcast'),
      target: fc.constantFrom('a', 'b', 'calc', 'echo'),
      action: fc.constantFrom('Echo', 'Add', 'Nope'),
      goodArgs: fc.boolean(),
      forward: fc.boolean(),
      atMs: fc.integer({ min: 1, max: 20_000 }),
      times: fc.integer({ min: 1, max: 3 }),
    }),
    { minLength: 1, maxLength: 8 },
  ),
});
type World = typeof world extends fc.Arbitrary<infer T> ? T : never;

function yamlOf(w: World): string {
  const p = (i: number) => `P${i % w.platforms}`;
  const links = new Map<string, Set<string>>();
  for (const [a, b] of w.edges) {
    if (p(a) === p(b)) continue;
    if (!links.has(p(a))) links.set(p(a), new Set());
    links.get(p(a))!.add(p(b));
  }
  const platforms = Array.from({ length: w.platforms }, (_, i) => {
    const to = [...(links.get(`P${i}`) ?? [])];
    return `  - { role: opaca.platform, name: P${i}${to.length ? `, connect: [${to.join(', ')}]` : ''} }`;
  });
  const containers = w.containers.map((c, i) => {
    const seen = new Set<string>();
    const agents = c.agents
      .filter((a) => !seen.has(a.id) && seen.add(a.id))
      .map(
        (a) =>
          `{ id: ${a.id}, behaviour: ${a.id === 'calc' ? 'compute' : a.slow ? 'slow' : 'echo'}${a.slow && a.id !== 'calc' ? ', delay: 2s' : ''}, actions: [${a.actions.join(', ')}] }`,
      );
    return `  - { role: opaca.container, name: c${i}, platform: ${p(c.on)}, agents: [${agents.join(', ')}] }`;
  });
  const calls = w.calls.map((c) => {
    const query = c.forward ? '' : `, query: { forward: 'false' }`;
    const base = `at: ${c.atMs}ms, to: ${p(c.to)}, times: ${c.times}${query}`;
    if (c.kind === 'invoke') {
      const body =
        c.action === 'Add' ? (c.goodArgs ? '{ x: 1, y: 2 }' : '{ x: 1, y: two }') : c.goodArgs ? '{ message: hi }' : '{ message: 7 }';
      return `      - { ${base}, path: /invoke/${c.action}, body: ${body} }`;
    }
    const path = c.kind === 'send' ? `/send/${c.target}` : `/broadcast/news`;
    return `      - { ${base}, path: ${path}, body: { payload: hello, replyTo: user } }`;
  });
  const faults = w.containers.flatMap((c, i) => (c.dead ? [`{ at: 0s, crash: c${i} }`] : []));
  return `
name: world
protocol: opaca
mode: ${w.mode}
seed: ${w.seed}
duration: 10m
stopWhen: complete
network: { latency: { dist: uniform, min: 1ms, max: 20ms } }
actors:
${platforms.join('\n')}
${containers.join('\n')}
  - role: opaca.client
    name: user
    calls:
${calls.join('\n')}
faults: [${faults.join(', ')}]
`;
}

test.prop([world], sample(30))('random topologies and calls: one hop at most, no loop, exactly one answer per call', (w) => {
  const yaml = yamlOf(w);
  const s = runScenario(parseScenario(yaml, 'world.yaml'));
  const calls = w.calls.reduce((n, c) => n + c.times, 0);
  const answers = Object.values(s.metrics.answersByStatus as Record<string, number>).reduce((n, k) => n + k, 0);
  expect({
    violated: s.invariants.filter((i) => i.status === 'violated').map((i) => `${i.id}: ${i.violations[0].message}`),
    answers,
    stopped: s.stoppedBecause,
  }).toEqual({ violated: [], answers: calls, stopped: 'complete' });
});

// ---- the routing index against a scan of every container -----------------------------------------

const ids = ['a', 'b', 'c'];
const param = fc.constantFrom<Parameter>({ type: 'integer', required: true }, { type: 'string', required: true });
const action: fc.Arbitrary<Action> = fc.record({
  name: fc.constantFrom('Add', 'Echo'),
  parameters: fc.dictionary(fc.constantFrom('x', 'y'), param, { maxKeys: 2 }),
  result: fc.constant<Parameter>({ type: 'string', required: true }),
});
const container = (id: string): fc.Arbitrary<AgentContainer> =>
  fc
    .uniqueArray(fc.record({ agentId: fc.constantFrom(...ids), actions: fc.array(action, { maxLength: 2 }) }), {
      selector: (a) => a.agentId,
      maxLength: 3,
    })
    .map((agents) => ({
      containerId: id,
      image: { imageName: 'i', requires: [], provides: [], apiPort: 8082, parameters: [] },
      arguments: {},
      agents: agents.map((a) => ({ agentId: a.agentId, agentType: 't', actions: a.actions, streams: [] })),
      owner: 'o',
      runningSince: 0,
    }));
const view = fc.record({
  containers: fc.tuple(container('c1'), container('c2')),
  // Connected platforms by distinct URL (a platform keeps one connection per URL).
  connected: fc.uniqueArray(
    fc.tuple(fc.constantFrom('http://P:8000', 'http://Q:8000', 'http://R:8000'), container('r1'), container('r2')).map(([url, x, y]) => ({
      platformId: url,
      baseUrl: url,
      containers: [x, y],
      provides: [],
      connections: [],
      runningSince: 0,
    })),
    { maxLength: 3, selector: (p) => p.baseUrl },
  ),
});
const want = fc.record({
  agent: fc.constantFrom(...ids),
  action: fc.constantFrom('Add', 'Echo'),
  args: fc.constantFrom<Record<string, unknown>>({}, { x: 1 }, { x: 1, y: 2 }, { x: 'one' }),
  forward: fc.boolean(),
  containerId: fc.option(fc.constantFrom('c1', 'c2', 'r1'), { nil: undefined }),
});

test.prop([view, want], sample(300))('the agent index routes exactly as a scan of every container', (v, w) => {
  const { containerId, ...rest } = w;
  const wanted = containerId === undefined ? rest : { ...rest, containerId };
  const byScan = invokeTargetsByScan(v, wanted);
  expect(invokeTargets({ ...v }, wanted).targets).toEqual(byScan.targets);
  if (byScan.targets.length === 0) expect(invokeTargets({ ...v }, wanted).mismatch).toBe(byScan.mismatch);
  expect(sendTargets({ ...v }, wanted).targets).toEqual(sendTargetsByScan(v, wanted).targets);
});

// ---- auth, deploys, restarts and skew --------------------------------------------------------------

const ROLE_USERS = [
  ['ada', 'ADMIN'],
  ['carl', 'CONTRIBUTOR'],
  ['uma', 'USER'],
  ['gus', 'GUEST'],
] as const;

const busyWorld = fc.record({
  seed: fc.nat(1_000_000),
  platforms: fc.array(fc.record({ auth: fc.boolean(), deployTimeoutS: fc.integer({ min: 1, max: 10 }) }), { minLength: 1, maxLength: 3 }),
  chain: fc.boolean(),
  images: fc.array(fc.record({ on: fc.nat(2), startup: fc.constantFrom('500ms', '3s', '12s', 'never') }), { maxLength: 4 }),
  calls: fc.array(
    fc.record({
      to: fc.nat(2),
      what: fc.constantFrom('login', 'invoke', 'send', 'deploy', 'undeploy', 'history', 'agents', 'connect', 'renew'),
      user: fc.nat(3),
      credential: fc.constantFrom('own', 'own', 'own', 'none', 'forged', 'wrong-password'),
      image: fc.nat(3),
      atMs: fc.integer({ min: 1, max: 90_000 }),
    }),
    { minLength: 1, maxLength: 14 },
  ),
  restart: fc.option(
    fc.record({ platform: fc.nat(2), atMs: fc.integer({ min: 1, max: 60_000 }), downMs: fc.integer({ min: 1, max: 5_000 }) }),
    {
      nil: undefined,
    },
  ),
  skew: fc.option(fc.record({ platform: fc.nat(2), atMs: fc.integer({ min: 1, max: 60_000 }), byMin: fc.integer({ min: -90, max: 90 }) }), {
    nil: undefined,
  }),
});
type BusyWorld = typeof busyWorld extends fc.Arbitrary<infer T> ? T : never;

function busyYamlOf(w: BusyWorld): string {
  const n = w.platforms.length;
  const p = (i: number) => `P${i % n}`;
  const users = `{ users: [${ROLE_USERS.map(([name, role]) => `{ name: ${name}, password: ${name}-pw, role: ${role} }`).join(', ')}] }`;
  const platforms = w.platforms.map((x, i) => {
    const connect = w.chain && i + 1 < n ? `, connect: P${i + 1}` : '';
    return `  - { role: opaca.platform, name: P${i}${connect}, callTimeout: 2s, deployTimeout: ${x.deployTimeoutS}s${x.auth ? `, auth: ${users}` : ''} }`;
  });
  const containers = w.platforms.map(
    (_, i) => `  - { role: opaca.container, name: c${i}, platform: P${i}, agents: [{ id: calc${i}, behaviour: compute, actions: [Add] }] }`,
  );
  const images = w.images.map(
    (m, i) =>
      `  - { role: opaca.container, name: img${i}, platform: ${p(m.on)}, deployed: false, image: image${i % 2}, startup: ${m.startup}, agents: [{ id: d${i}, actions: [Echo] }] }`,
  );
  const calls = w.calls.map((c) => {
    const [user] = ROLE_USERS[c.user];
    const to = p(c.to);
    const cred = c.credential === 'own' ? `, as: ${user}` : c.credential === 'forged' ? `, token: ${to}.login.999` : '';
    const base = `at: ${c.atMs}ms, to: ${to}`;
    switch (c.what) {
      case 'login': {
        const pw = c.credential === 'wrong-password' ? 'nope' : `${user}-pw`;
        return `      - { ${base}, path: /login, body: { username: ${user}, password: ${pw} } }`;
      }
      case 'renew':
        return `      - { ${base}, method: GET, path: /token${cred} }`;
      case 'invoke':
        return `      - { ${base}, path: /invoke/Add/calc${c.image % n}, body: { x: 1, y: 2 }${cred} }`;
      case 'send':
        return `      - { ${base}, path: /send/calc${c.image % n}, body: { payload: hi, replyTo: user }${cred} }`;
      case 'deploy':
        return `      - { ${base}, path: /containers, body: { image: { imageName: image${c.image % 2} } }${cred} }`;
      case 'undeploy':
        return `      - { ${base}, method: DELETE, path: /containers/img${c.image}${cred} }`;
      case 'history':
        return `      - { ${base}, method: GET, path: /history${cred} }`;
      case 'agents':
        return `      - { ${base}, method: GET, path: /agents, query: { includeConnected: 'true' }${cred} }`;
      default:
        return `      - { ${base}, path: /connections, body: { url: 'http://${p(c.to + 1)}:8000', connectBack: true }${cred} }`;
    }
  });
  const faults = [
    ...(w.restart ? [`{ at: ${w.restart.atMs}ms, crash: ${p(w.restart.platform)}, restart: ${w.restart.atMs + w.restart.downMs}ms }`] : []),
    ...(w.skew ? [`{ at: ${w.skew.atMs}ms, skew: ${p(w.skew.platform)}, by: ${w.skew.byMin}m }`] : []),
  ];
  return `
name: busy-world
protocol: opaca
seed: ${w.seed}
duration: 10m
stopWhen: complete
network: { latency: { dist: uniform, min: 1ms, max: 20ms } }
actors:
${[...platforms, ...containers, ...images].join('\n')}
  - role: opaca.client
    name: user
    timeout: 30s
    calls:
${calls.join('\n')}
faults: [${faults.join(', ')}]
`;
}

test.prop([busyWorld], sample(25))(
  'auth, deploys, connects, a restart and a skewed clock: no invariant is violated, every call is answered or given up',
  (w) => {
    const s = runScenario(parseScenario(busyYamlOf(w), 'busy.yaml'));
    const m = s.metrics as { calls: number; answersByStatus: Record<string, number>; unanswered?: number };
    const answered = Object.values(m.answersByStatus).reduce((a, b) => a + b, 0) + (m.unanswered ?? 0);
    expect({
      violated: s.invariants.filter((i) => i.status === 'violated').map((i) => `${i.id}: ${i.violations[0].message}`),
      errors: s.actorErrors,
      answered,
      stopped: s.stoppedBecause,
    }).toEqual({ violated: [], errors: [], answered: m.calls, stopped: 'complete' });
  },
);
