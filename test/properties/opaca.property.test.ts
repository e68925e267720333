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
