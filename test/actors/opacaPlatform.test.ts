/**
 * OPACA platforms, containers and a client on the simulation kernel (`shared/protocols/opaca.md`,
 * "Behaviour" and "Scenario ideas"): routing local-first then to connected platforms, at most one
 * hop (a chain A–B–C: A never reaches C), invoke fall-through when a container is unreachable (all
 * dead → 502), 400 for a parameter mismatch, 404 for no target, broadcast never 404, the send and
 * broadcast delivery counts of `documented` and `current` mode, and the event history's shape.
 */
import { describe, expect, it } from 'vitest';
import type { ClientCall } from '../../src/actors/opaca/client.machine.js';
import { clientMachine } from '../../src/actors/opaca/client.machine.js';
import type { AgentBehaviour } from '../../src/actors/opaca/agent.machine.js';
import { agentMachine } from '../../src/actors/opaca/agent.machine.js';
import { containerMachine } from '../../src/actors/opaca/container.machine.js';
import { platformMachine } from '../../src/actors/opaca/platform.machine.js';
import type { ActorDefinition, ScheduledFault } from '../../src/engine/createSimulation.js';
import { createSimulation } from '../../src/engine/createSimulation.js';
import type { BackendName } from '../../src/engine/machineBackend.js';
import { createOpacaChecker, OPACA_INVARIANTS } from '../../src/invariants/opaca.js';
import type { Action, AgentContainer, OpacaEvent, OpacaMode, RuntimePlatform } from '../../src/protocol/opaca.js';

const addAction: Action = {
  name: 'Add',
  parameters: { x: { type: 'integer', required: true }, y: { type: 'integer', required: true } },
  result: { type: 'integer', required: true },
};
const echoAction: Action = {
  name: 'Echo',
  parameters: { message: { type: 'string', required: true } },
  result: { type: 'string', required: true },
};

interface Box {
  id: string;
  agents: { id: string; actions: Action[]; behaviour?: AgentBehaviour; delayMs?: number }[];
  /** Actions gained at run time, with or without a notify to the platform. */
  changes?: { atMs: number; agent: string; action: Action; notify: boolean }[];
}

const containerInfo = (b: Box): AgentContainer => ({
  containerId: b.id,
  image: { imageName: `${b.id}-image`, requires: [], provides: [], apiPort: 8082, parameters: [] },
  arguments: {},
  agents: b.agents.map((a) => ({ agentId: a.id, agentType: 'sim', actions: a.actions, streams: [] })),
  owner: 'sim',
  runningSince: 0,
});

/**
 * A world of platforms (name → containers), links between them (both directions connected), and a
 * client calling platform `via`. Returns what the client got back and every delivery to an agent.
 */
function world(
  platforms: Record<string, Box[]>,
  links: [string, string][],
  calls: ClientCall[],
  opts: { mode?: OpacaMode; faults?: (names: string[]) => ScheduledFault[]; backend?: BackendName } = {},
) {
  const url = (p: string) => `http://${p}:8000`;
  const info = (p: string): RuntimePlatform => ({
    platformId: p,
    baseUrl: url(p),
    containers: platforms[p].map(containerInfo),
    provides: [],
    connections: links.filter(([a, b]) => a === p || b === p).map(([a, b]) => url(a === p ? b : a)),
    runningSince: 0,
  });
  const actors: ActorDefinition[] = [];
  for (const [p, boxes] of Object.entries(platforms)) {
    const peers = links.filter(([a, b]) => a === p || b === p).map(([a, b]) => (a === p ? b : a));
    actors.push({
      name: p,
      role: 'opaca.platform',
      refuses: true,
      machine: platformMachine,
      input: {
        name: p,
        platformId: p,
        baseUrl: url(p),
        mode: opts.mode ?? 'documented',
        containers: boxes.map((b) => ({ actor: b.id, info: containerInfo(b) })),
        connected: peers.map((q) => ({ actor: q, info: info(q) })),
        directory: Object.fromEntries(Object.keys(platforms).map((q) => [url(q), q])),
        callTimeoutMs: 5000,
      },
    });
    for (const b of boxes)
      actors.push({
        name: b.id,
        role: 'opaca.container',
        refuses: true,
        machine: containerMachine,
        input: {
          name: b.id,
          info: containerInfo(b),
          platform: p,
          ...(b.changes ? { changes: b.changes } : {}),
          agents: Object.fromEntries(b.agents.map((a) => [a.id, `${b.id}.${a.id}`])),
        },
      });
    for (const b of boxes)
      for (const a of b.agents)
        actors.push({
          name: `${b.id}.${a.id}`,
          role: 'opaca.agent',
          machine: agentMachine,
          input: {
            name: `${b.id}.${a.id}`,
            agentId: a.id,
            container: b.id,
            behaviour: a.behaviour ?? 'echo',
            ...(a.delayMs ? { delayMs: a.delayMs } : {}),
          },
        });
  }
  actors.push({ name: 'client', role: 'opaca.client', machine: clientMachine, input: { name: 'client', calls, timeoutMs: 60_000 } });
  const answers: { path: string; status: number; body: unknown }[] = [];
  // A forwarding loop would run on for ever: stop it with an error the test reports.
  let dispatches = 0;
  const delivered: { agent: string; how: string; callId: string }[] = [];
  const checker = createOpacaChecker({
    mode: opts.mode ?? 'documented',
    enabled: new Set(OPACA_INVARIANTS.map((i) => i.id)),
    recentTrace: () => [],
  });
  const result = createSimulation({
    seed: 1,
    actors,
    network: {
      defaults: { latency: { dist: 'uniform', minUs: 1000, maxUs: 3000 }, loss: 0, duplicate: 0, ordering: 'unordered' },
      links: [],
    },
    faults: opts.faults?.(actors.map((a) => a.name)) ?? [],
    untilUs: 600_000_000,
    backend: opts.backend ?? 'flat',
    hash: true,
    observers: [
      checker,
      {
        onObserve(_t, _actor, obs) {
          const o = obs as {
            kind: string;
            rid: number;
            path: string;
            status: number;
            body: unknown;
            agent: string;
            how: string;
            callId: string;
          };
          if (o.kind === 'opaca.client.answer') answers[o.rid - 1] = { path: o.path, status: o.status, body: o.body };
          if (o.kind === 'opaca.delivered') delivered.push({ agent: o.agent, how: o.how, callId: o.callId });
          if (o.kind === 'opaca.dispatch' && ++dispatches > 1000) throw new Error('more than 1 000 dispatches: forwarding runs away');
        },
      },
    ],
  }).run();
  // Every run here is a correct one: the invariants checked so far hold.
  expect(
    checker
      .results()
      .filter((r) => r.status === 'violated')
      .map((r) => `${r.id}: ${r.violations[0].message}`),
  ).toEqual([]);
  return { answers, delivered, result, checks: Object.fromEntries(checker.results().map((r) => [r.id, r.checks])) };
}

const call = (
  atMs: number,
  platform: string,
  method: ClientCall['method'],
  path: string,
  body?: object,
  query?: Record<string, string>,
): ClientCall => ({
  atMs,
  platform,
  method,
  path,
  ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  ...(query ? { query } : {}),
});

// A chain A–B–C: an echo agent on each platform, a calculator only on C.
const chain: Record<string, Box[]> = {
  A: [{ id: 'cA', agents: [{ id: 'echo-a', actions: [echoAction] }] }],
  B: [{ id: 'cB', agents: [{ id: 'echo-b', actions: [echoAction] }] }],
  C: [
    {
      id: 'cC',
      agents: [
        { id: 'echo-c', actions: [echoAction] },
        { id: 'calc-c', actions: [addAction], behaviour: 'compute' },
      ],
    },
  ],
};
const chainLinks: [string, string][] = [
  ['A', 'B'],
  ['B', 'C'],
];

describe('OPACA routing on the kernel', () => {
  it('a chain A–B–C: B reaches C in one hop, A never reaches C (404), a local call stays local', () => {
    const { answers } = world(chain, chainLinks, [
      call(10, 'A', 'POST', '/invoke/Add', { x: 1, y: 2 }),
      call(20, 'B', 'POST', '/invoke/Add', { x: 1, y: 2 }),
      call(30, 'A', 'POST', '/invoke/Echo/echo-a', { message: 'hi' }),
      call(40, 'A', 'POST', '/send/echo-c', { payload: 'hello', replyTo: '' }),
      call(50, 'B', 'POST', '/send/echo-c', { payload: 'hello', replyTo: '' }),
    ]);
    expect(answers.map((a) => a.status)).toEqual([404, 200, 200, 404, 200]);
    expect(answers[1].body).toBe(3);
    expect(answers[2].body).toBe('hi');
  });

  it('invoke: a parameter mismatch is 400, an unknown action 404, a failing agent 500; a forwarded call with forward=false stays put', () => {
    const { answers } = world(chain, chainLinks, [
      call(10, 'B', 'POST', '/invoke/Add', { x: 1, y: 'two' }),
      call(20, 'B', 'POST', '/invoke/Multiply', { x: 1, y: 2 }),
      call(30, 'B', 'POST', '/invoke/Add', { x: 1, y: 2 }, { forward: 'false' }),
      call(40, 'B', 'POST', '/invoke/Add', '{"x":' as unknown as object),
    ]);
    expect(answers.map((a) => a.status)).toEqual([400, 404, 404, 422]);
  });

  it('invoke falls through an unreachable container to the next; all unreachable → 502', () => {
    const twoCalcs: Record<string, Box[]> = {
      P: [
        { id: 'calc1', agents: [{ id: 'calc-1', actions: [addAction], behaviour: 'compute' }] },
        { id: 'calc2', agents: [{ id: 'calc-2', actions: [addAction], behaviour: 'compute' }] },
      ],
    };
    const crash =
      (who: string[]) =>
      (names: string[]): ScheduledFault[] =>
        who.map((w) => ({ atUs: 0, action: { kind: 'crash', actors: [names.indexOf(w)] }, label: `crash ${w}` }));
    const one = world(twoCalcs, [], [call(10, 'P', 'POST', '/invoke/Add', { x: 2, y: 3 })], { faults: crash(['calc1']) });
    expect(one.answers[0]).toMatchObject({ status: 200, body: 5 });
    expect(one.delivered).toEqual([{ agent: 'calc-2', how: 'invoke', callId: 'P-1' }]);
    const both = world(twoCalcs, [], [call(10, 'P', 'POST', '/invoke/Add', { x: 2, y: 3 })], { faults: crash(['calc1', 'calc2']) });
    expect(both.answers[0].status).toBe(502);
  });

  it('documented mode sends and broadcasts to every valid target, current mode to the first success; broadcast is never 404', () => {
    // The agent "twin" lives on A and on B.
    const twins: Record<string, Box[]> = {
      A: [{ id: 'cA', agents: [{ id: 'twin', actions: [] }] }],
      B: [
        {
          id: 'cB',
          agents: [
            { id: 'twin', actions: [] },
            { id: 'other', actions: [] },
          ],
        },
      ],
      C: [],
    };
    const links: [string, string][] = [
      ['A', 'B'],
      ['B', 'C'],
    ];
    const calls = [
      call(10, 'A', 'POST', '/send/twin', { payload: 1, replyTo: '' }),
      call(20, 'A', 'POST', '/broadcast/news', { payload: 2, replyTo: '' }),
      call(30, 'C', 'POST', '/broadcast/news', { payload: 3, replyTo: '' }, { forward: 'false' }),
    ];
    const documented = world(twins, links, calls, { mode: 'documented' });
    const current = world(twins, links, calls, { mode: 'current' });
    const count = (w: typeof documented, how: string) => w.delivered.filter((d) => d.how === how).length;
    expect(documented.answers.map((a) => a.status)).toEqual([200, 200, 200]);
    expect(current.answers.map((a) => a.status)).toEqual([200, 200, 200]);
    // Send: the twin on A and on B (documented) or only A's, the local one (current).
    expect([count(documented, 'send'), count(current, 'send')]).toEqual([2, 1]);
    // Broadcast from A: A's agent and B's two (documented), A's only (current); C has nobody to tell.
    expect([count(documented, 'broadcast'), count(current, 'broadcast')]).toEqual([3, 1]);
  });

  it('the history: CALL, FORWARD, SUCCESS or ERROR linked by relatedId, in the implementation shape; reads are not recorded', () => {
    const { answers } = world(chain, chainLinks, [
      call(10, 'B', 'POST', '/invoke/Add', { x: 1, y: 2 }),
      call(100, 'B', 'POST', '/invoke/Add', { x: 1 }),
      call(200, 'B', 'GET', '/info'),
      call(300, 'B', 'GET', '/history'),
    ]);
    const history = answers[3].body as OpacaEvent[];
    expect(history.map((e) => [e.eventType, e.route, e.statusCode ?? null])).toEqual([
      ['CALL', 'POST /invoke/Add', null],
      ['FORWARD', 'POST /invoke/Add', null],
      ['SUCCESS', 'POST /invoke/Add', null],
      ['CALL', 'POST /invoke/Add', null],
      ['ERROR', 'POST /invoke/Add', 400],
    ]);
    expect(history[1]).toEqual({
      id: 'B-2',
      timestamp: history[1].timestamp,
      eventType: 'FORWARD',
      route: 'POST /invoke/Add',
      senderId: 'client',
      receiver: 'http://C:8000',
      relatedId: 'B-1',
    });
    expect(history[2].relatedId).toBe(history[0].id);
    expect(history[4].relatedId).toBe(history[3].id);
    expect('statusCode' in history[2]).toBe(false);
  });

  it('both machine backends give the same trace', () => {
    const calls = [
      call(10, 'B', 'POST', '/invoke/Add', { x: 1, y: 2 }),
      call(20, 'A', 'POST', '/broadcast/x', { payload: 1, replyTo: '' }),
    ];
    expect(world(chain, chainLinks, calls, { backend: 'xstate' }).result.traceHash).toBe(world(chain, chainLinks, calls).result.traceHash);
  });

  it('connect with connect-back: both list each other; again, or to itself, changes nothing; unknown → 502, invalid → 400; disconnect with connect-back: neither', () => {
    const two: Record<string, Box[]> = { A: [], B: [] };
    const connect = (atMs: number, on: string, to: string, connectBack: boolean) =>
      call(atMs, on, 'POST', '/connections', { url: `http://${to}:8000`, connectBack });
    const { answers } = world(
      two,
      [],
      [
        connect(10, 'A', 'B', true),
        call(100, 'A', 'GET', '/connections'),
        call(100, 'B', 'GET', '/connections'),
        connect(200, 'A', 'B', false),
        connect(200, 'B', 'B', false),
        connect(200, 'A', 'Z', false),
        call(200, 'A', 'POST', '/connections', { url: 'not a url' }),
        call(300, 'A', 'DELETE', '/connections', { url: 'http://B:8000', connectBack: true }),
        call(400, 'A', 'GET', '/connections'),
        call(400, 'B', 'GET', '/connections'),
      ],
    );
    expect(answers.map((a) => [a.status, a.body])).toEqual([
      [200, true],
      [200, ['http://B:8000']],
      [200, ['http://A:8000']],
      [200, false],
      [200, false],
      [502, { statusCode: 502, message: 'http://Z:8000 is unreachable' }],
      [400, expect.objectContaining({ statusCode: 400 })],
      [200, true],
      [200, []],
      [200, []],
    ]);
  });

  it('notify, then pull: an action added with notify can be invoked; without notify the platform does not know it', () => {
    const gains = (notify: boolean): Record<string, Box[]> => ({
      P: [
        {
          id: 'c1',
          agents: [{ id: 'calc', actions: [], behaviour: 'compute' }],
          changes: [{ atMs: 50, agent: 'calc', action: addAction, notify }],
        },
      ],
    });
    const calls = [call(10, 'P', 'POST', '/invoke/Add', { x: 1, y: 1 }), call(100, 'P', 'POST', '/invoke/Add', { x: 1, y: 1 })];
    expect(world(gains(true), [], calls).answers.map((a) => a.status)).toEqual([404, 200]);
    expect(world(gains(false), [], calls).answers.map((a) => a.status)).toEqual([404, 404]);
  });

  it("a connected platform's change reaches the other by push and pull; notify of an unknown container → 404, of a dead one → false and removed", () => {
    const pair: Record<string, Box[]> = {
      A: [],
      B: [
        {
          id: 'cB',
          agents: [{ id: 'calc', actions: [], behaviour: 'compute' }],
          changes: [{ atMs: 50, agent: 'calc', action: addAction, notify: true }],
        },
        { id: 'dead', agents: [{ id: 'ghost', actions: [echoAction] }] },
      ],
    };
    const crashDead = (names: string[]): ScheduledFault[] => [
      { atUs: 0, action: { kind: 'crash', actors: [names.indexOf('dead')] }, label: 'crash dead' },
    ];
    const { answers, checks } = world(
      pair,
      [['A', 'B']],
      [
        call(10, 'A', 'POST', '/invoke/Add', { x: 2, y: 2 }),
        call(200, 'A', 'POST', '/invoke/Add', { x: 2, y: 2 }),
        call(300, 'B', 'POST', '/containers/notify', 'nope' as unknown as object),
        call(400, 'B', 'POST', '/containers/notify', 'dead' as unknown as object),
        call(6000, 'B', 'GET', '/containers'),
        call(6000, 'A', 'POST', '/connections/notify', 'http://Q:8000' as unknown as object),
        // Late enough for A's view of B to be judged against B's /info (invariant 5).
        call(120_000, 'A', 'GET', '/info'),
      ],
      { faults: crashDead },
    );
    expect(answers.map((a) => a.status)).toEqual([404, 200, 404, 200, 200, 404, 200]);
    expect(answers[1].body).toBe(4);
    expect(answers[3].body).toBe(false);
    expect((answers[4].body as AgentContainer[]).map((c) => c.containerId)).toEqual(['cB']);
    // B's /info changed twice (an action, a container gone); A's view of B caught up, and B's of A.
    expect(checks['opaca.view-consistency']).toBe(2);
  });
});
