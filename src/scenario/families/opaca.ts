/**
 * The OPACA family in scenario files (`shared/protocols/opaca.md`): runtime platforms (connected
 * at start as the file says), agent containers on them with agents of a few behaviours, and
 * clients that make HTTP-shaped calls at virtual times. The invariant checker, completion (every
 * client call answered) and the summary metrics (answers by status, deliveries, forwards).
 */
import { z } from 'zod';
import type { ActorDefinition } from '../../engine/createSimulation.js';
import { clientMachine } from '../../actors/opaca/client.machine.js';
import type { ClientCall, ClientInput, ClientObservation } from '../../actors/opaca/client.machine.js';
import { AGENT_BEHAVIOURS, agentMachine, PONG_ACTION } from '../../actors/opaca/agent.machine.js';
import type { AgentInput, AgentObservation } from '../../actors/opaca/agent.machine.js';
import { containerMachine } from '../../actors/opaca/container.machine.js';
import type { ContainerInput, ContainerObservation } from '../../actors/opaca/container.machine.js';
import { platformMachine } from '../../actors/opaca/platform.machine.js';
import type { PlatformAuth, PlatformInput, PlatformObservation } from '../../actors/opaca/platform.machine.js';
import { createOpacaChecker, OPACA_INVARIANTS } from '../../invariants/opaca.js';
import type { Action, AgentContainer, OpacaMode, Parameter, RuntimePlatform } from '../../protocol/opaca.js';
import { RandomStream } from '../../engine/rng.js';
import { OPACA_MODES, parseOpacaRequest, ROLES, TOKEN_LIFETIME_S } from '../../protocol/opaca.js';
import { duration, positiveDuration, positiveInt, selector, selectors } from '../schemaParts.js';
import type { ProtocolFamily } from './types.js';

/** Actions agents can offer by name: Echo(message: string) → string, Add(x, y: integer) → integer. */
const KNOWN_ACTIONS: Record<string, Action> = {
  Echo: { name: 'Echo', parameters: { message: { type: 'string', required: true } }, result: { type: 'string', required: true } },
  Add: {
    name: 'Add',
    parameters: { x: { type: 'integer', required: true }, y: { type: 'integer', required: true } },
    result: { type: 'integer', required: true },
  },
};

const action = z.union(
  [
    z.enum(Object.keys(KNOWN_ACTIONS) as [string, ...string[]]),
    z.strictObject({
      name: z.string().min(1),
      parameters: z.record(z.string(), z.string().min(1)).default({}).meta({ description: 'Parameter name → type (string, integer, …).' }),
      result: z.string().default('string'),
    }),
  ],
  { error: `expected ${Object.keys(KNOWN_ACTIONS).join(' or ')}, or {name, parameters: {name: type}, result}` },
);
type ActionSpec = z.infer<typeof action>;

const actionOf = (a: ActionSpec): Action =>
  typeof a === 'string'
    ? KNOWN_ACTIONS[a]
    : {
        name: a.name,
        parameters: Object.fromEntries(Object.entries(a.parameters).map(([k, type]) => [k, { type, required: true } satisfies Parameter])),
        result: { type: a.result, required: true },
      };

export const opacaPlatformRole = z.strictObject({
  role: z.literal('opaca.platform'),
  count: positiveInt.default(1).meta({ description: 'How many platforms of this kind.' }),
  name: z.string().min(1).optional().meta({ description: 'Name (count 1) or name prefix.' }),
  connect: selectors.optional().meta({ description: 'Platforms it is connected to at start (both ways).' }),
  ring: positiveInt
    .optional()
    .meta({ description: 'With count: each platform of this entry is also connected to the next N of it (mod count), a ring.' }),
  historySize: positiveInt.default(50).meta({ description: 'Events kept for GET /history.' }),
  callTimeout: positiveDuration.default('5s').meta({ description: 'A container or platform silent this long counts as unreachable.' }),
  provides: z.array(z.string().min(1)).default([]).meta({ description: 'What it provides; a deployed image must require no more.' }),
  deployTimeout: positiveDuration
    .default('10s')
    .meta({ description: 'How long a deployed container has to answer /info (a deploy’s timeout query overrides).' }),
  auth: z
    .strictObject({
      users: z
        .array(
          z.strictObject({
            name: z.string().min(1),
            password: z.string(),
            role: z.enum(ROLES, { error: `expected one of ${ROLES.join(', ')}` }),
          }),
        )
        .min(1, { error: 'expected at least one user' }),
    })
    .optional()
    .meta({ description: 'Auth on: its users (POST /login) and their roles; every route but /login then needs a token.' }),
});

export const opacaContainerRole = z.strictObject({
  role: z.literal('opaca.container'),
  count: positiveInt.default(1).meta({ description: 'How many containers of this kind (ids <name>-0, -1, …).' }),
  name: z.string().min(1).optional().meta({ description: 'Name (count 1) or name prefix; it is the container id.' }),
  platform: selector.meta({
    description: 'The platform it runs on (or, not deployed, the one that may start it); matching several, containers go round-robin.',
  }),
  deployed: z
    .boolean()
    .default(true)
    .meta({ description: 'false: not running at start; a POST /containers of its image on its platform starts it.' }),
  image: z.string().min(1).optional().meta({ description: 'Its image name (default <name>-image).' }),
  requires: z.array(z.string().min(1)).default([]).meta({ description: 'What its image requires of the platform.' }),
  startup: z
    .union([duration, z.literal('never')], { error: 'expected a duration such as 2s, or never' })
    .default('2s')
    .meta({ description: 'Not deployed: how long after its start it answers /info (never: it never does).' }),
  agents: z
    .array(
      z.strictObject({
        id: z
          .string()
          .min(1)
          .meta({ description: 'Its agent id; {container} stands for its container id, {i} for the index (with count).' }),
        count: positiveInt.default(1).meta({ description: 'How many agents of this kind (ids must then use {i}).' }),
        behaviour: z.enum(AGENT_BEHAVIOURS, { error: `expected one of ${AGENT_BEHAVIOURS.join(', ')}` }).default('echo'),
        delay: duration.optional().meta({ description: 'slow: how long it takes to answer an invoke.' }),
        actions: z.array(action).default([]),
        ping: z
          .strictObject({
            channel: z.string().min(1).default('ping'),
            start: duration.default('1s'),
            every: positiveDuration.default('10s'),
            rounds: positiveInt.default(1),
            collect: positiveDuration.default('2s').meta({ description: 'How long it collects offers after a Ping.' }),
          })
          .default({ channel: 'ping', start: '1s', every: '10s', rounds: 1, collect: '2s' })
          .meta({ description: 'pinger: its rounds (a ponger offers the Pong action by itself).' }),
      }),
    )
    .min(1, { error: 'expected at least one agent' }),
  changes: z
    .array(z.strictObject({ at: duration, agent: z.string().min(1), action, notify: z.boolean().default(true) }))
    .default([])
    .meta({ description: 'Actions its agents gain at run time; with notify, the platform is told and pulls /info.' }),
});

const trafficCall = z.strictObject({
  weight: positiveInt.default(1),
  method: z.enum(['GET', 'POST', 'DELETE']).default('POST'),
  path: z.string().startsWith('/', { error: 'expected a path such as /invoke/Add/{agent}' }),
  query: z.record(z.string(), z.string()).optional(),
  body: z.unknown().refine(isJsonValue, { error: 'expected a JSON value (no .inf or .nan)' }).optional(),
});

export const opacaClientRole = z.strictObject({
  role: z.literal('opaca.client'),
  count: z.literal(1, { error: 'expected one client per entry' }).default(1),
  name: z.string().min(1).optional(),
  timeout: positiveDuration
    .default('60s')
    .meta({ description: 'How long it waits for an answer before giving a call up (counted as unanswered).' }),
  traffic: z
    .strictObject({
      to: selectors.meta({ description: 'The platforms called (each call picks one).' }),
      rate: z
        .number()
        .positive({ error: 'expected calls per second above 0' })
        .max(100_000)
        .meta({ description: 'Calls per second, on average (Poisson arrivals).' }),
      start: duration.default('0s'),
      for: positiveDuration.meta({ description: 'How long it keeps calling.' }),
      mix: z.array(trafficCall).min(1, { error: 'expected at least one kind of call' }).meta({
        description:
          'Kinds of call, picked by weight; {agent} in a path or body stands for an agent drawn from those at start within one hop of the platform called.',
      }),
    })
    .optional()
    .meta({ description: 'Generated calls, drawn from the seed, besides the listed ones.' }),
  calls: z
    .array(
      z
        .strictObject({
          at: duration,
          to: selector.meta({ description: 'The platform called.' }),
          method: z.enum(['GET', 'POST', 'DELETE']).default('POST'),
          path: z.string().startsWith('/', { error: 'expected a path such as /invoke/Add' }),
          query: z.record(z.string(), z.string()).optional(),
          body: z
            .unknown()
            .refine(isJsonValue, { error: 'expected a JSON value (no .inf or .nan); a malformed body for the simulation goes in raw' })
            .optional()
            .meta({ description: 'A JSON value, sent as its text.' }),
          as: z.string().min(1).optional().meta({ description: 'Auth on: with the token this user’s last /login (or /token) there gave.' }),
          token: z.string().optional().meta({ description: 'Auth on: with this token as is (a forged or stale one).' }),
          raw: z.string().optional().meta({ description: 'The body text as is (malformed JSON → 422).' }),
          times: positiveInt.default(1).meta({ description: 'The same call this many times at once.' }),
        })
        .refine((c) => c.body === undefined || c.raw === undefined, { error: 'expected body or raw, not both', path: ['raw'] }),
    )
    .default([]),
});

/** Can `v` be written as JSON as it is (finite numbers, plain objects and arrays)? */
function isJsonValue(v: unknown): boolean {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return true;
  if (typeof v === 'number') return Number.isFinite(v);
  if (Array.isArray(v)) return v.every(isJsonValue);
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) return Object.values(v).every(isJsonValue);
  return false;
}

/**
 * Ping-pong metrics: rounds, offers heard and jobs given (by the Pong invoke's status) in all; with at
 * most ten pingers also offers per pinger and the agents each gave its jobs to.
 */
function pingPongMetrics(per: Record<string, { rounds: number; offers: number; jobs: Record<string, number> }>): Record<string, unknown> {
  const pingers = Object.keys(per).sort();
  if (pingers.length === 0) return {};
  const jobsByStatus: Record<string, number> = {};
  for (const p of pingers)
    for (const [job, n] of Object.entries(per[p].jobs)) {
      const status = job.split(' ')[1];
      jobsByStatus[status] = (jobsByStatus[status] ?? 0) + n;
    }
  const total = (k: 'rounds' | 'offers'): number => pingers.reduce((sum, p) => sum + per[p][k], 0);
  return {
    pingPong: { pingers: pingers.length, rounds: total('rounds'), offers: total('offers') },
    pongJobsByStatus: jobsByStatus,
    ...(pingers.length <= 10
      ? {
          offersByPinger: Object.fromEntries(pingers.map((p) => [p, per[p].offers])),
          jobsByPinger: Object.fromEntries(
            pingers.map((p) => [
              p,
              Object.keys(per[p].jobs)
                .map((j) => j.split(' ')[0])
                .sort()
                .join(', '),
            ]),
          ),
        }
      : {}),
  };
}

/**
 * A restart's input: the first one's, with the incarnation (nothing of the run survives a crash: a
 * platform's connections and tokens, a container's state live in memory).
 */
const again =
  <T extends object>(input: T) =>
  (incarnation: number): T & { incarnation: number } => ({ ...input, incarnation });

/** An agent's actor name: its container's, a dot, its id. */
const agentActor = (container: string, agentId: string): string => `${container}.${agentId}`;

type PlatformRole = z.infer<typeof opacaPlatformRole>;
type ContainerRole = z.infer<typeof opacaContainerRole>;
type ClientRole = z.infer<typeof opacaClientRole>;

export const opacaFamily: ProtocolFamily = {
  protocol: 'opaca',
  title: 'OPACA agent platforms',
  modes: OPACA_MODES,
  defaultMode: 'documented',
  roles: [opacaPlatformRole, opacaContainerRole, opacaClientRole],
  invariants: OPACA_INVARIANTS,
  parseMessage: (input) => {
    const r = parseOpacaRequest(input);
    return r.ok ? { ok: true } : r;
  },

  build(ctx) {
    const mode = ctx.mode as OpacaMode;
    const ms = (d: string): number => ctx.durationUs(d) / 1000;
    const url = (p: string): string => `http://${p}:8000`;
    const platforms = ctx.actors.filter((a) => a.role === 'opaca.platform');
    const containers = ctx.actors.filter((a) => a.role === 'opaca.container');
    const clients = ctx.actors.filter((a) => a.role === 'opaca.client');
    const platformNames = new Set(platforms.map((p) => p.name));
    /** The platforms a selector names (selections cached: thousands of containers may share one). */
    const selected = new Map<string, string[]>();
    const platformsOf = (sel: string, path: (string | number)[]): string[] => {
      const known = selected.get(sel);
      if (known) return known;
      const names = ctx.select(sel, path).filter((n) => platformNames.has(n));
      selected.set(sel, names);
      return names;
    };
    /** The one platform a selector names (undefined, with the problem reported, otherwise). */
    const one = (sel: string, path: (string | number)[]): string | undefined => {
      const names = platformsOf(sel, path);
      if (names.length === 1) return names[0];
      ctx.fail(path, `expected one platform, got ${names.length === 0 ? 'none' : names.join(', ')}`);
      return undefined;
    };
    /** Each container entry's next index (containers of an entry go round-robin over its platforms). */
    const nth = new Map<string, number>();

    // Containers per platform, and their /info.
    const hosted = new Map<string, { actor: string; info: AgentContainer }[]>(platforms.map((p) => [p.name, []]));
    /** Containers not running at start, per platform and image: what a deploy can start. */
    const pools = new Map<string, Record<string, string[]>>();
    const containerInputs: ContainerInput[] = [];
    const agentInputs: AgentInput[] = [];
    /** Agent ids at start, per platform (what `{agent}` in generated traffic draws from). */
    const startAgents = new Map<string, string[]>();
    for (const c of containers) {
      const r = c.params as ContainerRole;
      const entry = c.path.join('.');
      const k = nth.get(entry) ?? 0;
      nth.set(entry, k + 1);
      const hosts = platformsOf(r.platform, [...c.path, 'platform']);
      if (hosts.length === 0) {
        if (k === 0) ctx.fail([...c.path, 'platform'], `expected a platform, got ${JSON.stringify(r.platform)}`);
        continue;
      }
      const platform = hosts[k % hosts.length];
      /** Agent ids may name their container (`{container}`) and, with count, their index (`{i}`). */
      const idOf = (id: string, i = 0): string => id.replaceAll('{container}', c.name).replaceAll('{i}', String(i));
      const agents = r.agents.flatMap((a, j) => {
        if (a.count > 1 && !a.id.includes('{i}') && k === 0)
          ctx.fail([...c.path, 'agents', j, 'id'], `expected {i} in the id of ${a.count} agents`);
        return Array.from({ length: a.count }, (_, i) => ({ ...a, id: idOf(a.id, i) }));
      });
      // Agent ids are unique within a container (a call names its agent by id).
      if (k === 0) {
        const seen = new Set<string>();
        for (const a of agents)
          if (seen.has(a.id)) {
            ctx.fail([...c.path, 'agents'], `expected distinct agent ids in a container, got ${a.id} twice`);
            break;
          } else seen.add(a.id);
      }
      const imageName = r.image ?? `${r.name ?? 'container'}-image`;
      const info: AgentContainer = {
        containerId: c.name,
        image: { imageName, requires: r.requires, provides: [], apiPort: 8082, parameters: [] },
        arguments: {},
        agents: agents.map((a) => {
          const actions = a.actions.map(actionOf);
          // A ponger offers the Pong action (a pinger's job for the best offer).
          if (a.behaviour === 'ponger' && !actions.some((x) => x.name === 'Pong')) actions.push(structuredClone(PONG_ACTION) as Action);
          return { agentId: a.id, agentType: a.behaviour, actions, streams: [] };
        }),
        owner: 'scenario',
        runningSince: 0,
      };
      if (r.deployed) hosted.get(platform)!.push({ actor: c.name, info });
      else {
        const images = pools.get(platform) ?? pools.set(platform, {}).get(platform)!;
        (images[imageName] ??= []).push(c.name);
      }
      if (r.deployed) (startAgents.get(platform) ?? startAgents.set(platform, []).get(platform)!).push(...agents.map((a) => a.id));
      for (const a of agents)
        agentInputs.push({
          name: agentActor(c.name, a.id),
          agentId: a.id,
          container: c.name,
          behaviour: a.behaviour,
          ...(a.delay !== undefined ? { delayMs: ms(a.delay) } : {}),
          ...(a.behaviour === 'pinger'
            ? {
                ping: {
                  channel: a.ping.channel,
                  startMs: ms(a.ping.start),
                  everyMs: ms(a.ping.every),
                  rounds: a.ping.rounds,
                  collectMs: ms(a.ping.collect),
                },
              }
            : {}),
        });
      containerInputs.push({
        name: c.name,
        info,
        ...(r.deployed ? { platform } : { deployable: r.startup === 'never' ? {} : { startupMs: ms(r.startup) } }),
        agents: Object.fromEntries(agents.map((a) => [a.id, agentActor(c.name, a.id)])),
        changes: r.changes.map((ch) => ({ atMs: ms(ch.at), agent: idOf(ch.agent), action: actionOf(ch.action), notify: ch.notify })),
      });
    }

    // Connections at start, both ways.
    const links = new Map<string, Set<string>>(platforms.map((p) => [p.name, new Set()]));
    const link = (a: string, b: string): void => {
      if (a === b || !links.has(b)) return;
      links.get(a)!.add(b);
      links.get(b)!.add(a);
    };
    const rings = new Map<string, { n: number; names: string[] }>();
    for (const p of platforms) {
      const r = p.params as PlatformRole;
      if (r.ring !== undefined) {
        const ring = rings.get(p.path.join('.')) ?? rings.set(p.path.join('.'), { n: r.ring, names: [] }).get(p.path.join('.'))!;
        ring.names.push(p.name);
      }
      if (r.connect === undefined) continue;
      for (const q of ctx.select(r.connect, [...p.path, 'connect'])) link(p.name, q);
    }
    // Rings: each platform of the entry connected to the next n of it.
    for (const { n, names } of rings.values())
      names.forEach((name, i) => {
        for (let d = 1; d <= Math.min(n, names.length - 1); d++) link(name, names[(i + d) % names.length]);
      });
    const infoOf = (p: string): RuntimePlatform => ({
      platformId: p,
      baseUrl: url(p),
      containers: hosted.get(p)!.map((c) => c.info),
      provides: (platforms.find((x) => x.name === p)!.params as PlatformRole).provides,
      connections: [...links.get(p)!].map(url),
      runningSince: 0,
    });
    const directory = Object.fromEntries(platforms.map((p) => [url(p.name), p.name]));

    // Auth: containers and connections at start are taken as set up by an ADMIN; each holds a token
    // its platform (or the platform it is connected to) issued: a container 24 h, a platform 7 days.
    const authOf = (p: string) => (platforms.find((x) => x.name === p)!.params as PlatformRole).auth;
    const issued = new Map<string, PlatformAuth['issued']>(platforms.map((p) => [p.name, []]));
    const held = new Map<string, Record<string, string>>(platforms.map((p) => [p.name, {}]));
    const containerToken = new Map<string, string>();
    for (const p of platforms) {
      if (!authOf(p.name)) continue;
      for (const c of hosted.get(p.name)!) {
        const token = `${p.name}.container.${c.actor}`;
        issued.get(p.name)!.push({ token, subject: c.actor, role: 'ADMIN', lifetimeS: TOKEN_LIFETIME_S.container, via: 'container' });
        containerToken.set(c.actor, token);
      }
      for (const q of links.get(p.name)!) {
        const token = `${p.name}.connection.${q}`;
        issued.get(p.name)!.push({ token, subject: url(q), role: 'ADMIN', lifetimeS: TOKEN_LIFETIME_S.connection, via: 'connection' });
        held.get(q)![url(p.name)] = token;
      }
    }

    // Actors in the order the file declares them (faults name them by that order), then the agents.
    const made = new Map<string, ActorDefinition>();
    for (const p of platforms) {
      const r = p.params as PlatformRole;
      const input: PlatformInput = {
        name: p.name,
        platformId: p.name,
        baseUrl: url(p.name),
        mode,
        containers: hosted.get(p.name)!,
        connected: [...links.get(p.name)!].map((q) => ({ actor: q, info: infoOf(q) })),
        directory,
        historySize: r.historySize,
        callTimeoutMs: ms(r.callTimeout),
        provides: r.provides,
        images: pools.get(p.name) ?? {},
        deployTimeoutMs: ms(r.deployTimeout),
        ...(r.auth ? { auth: { users: r.auth.users, issued: issued.get(p.name)! } } : {}),
        tokens: held.get(p.name)!,
      };
      // Platforms and containers are HTTP servers: while down, they refuse connections (the caller learns at once).
      made.set(p.name, { name: p.name, role: p.role, machine: platformMachine, input, restartInput: again(input), refuses: true });
    }
    for (const input of containerInputs) {
      const token = containerToken.get(input.name);
      const withToken = token ? { ...input, token } : input;
      made.set(input.name, {
        name: input.name,
        role: 'opaca.container',
        machine: containerMachine,
        input: withToken,
        restartInput: again(withToken),
        refuses: true,
      });
    }
    /**
     * Generated calls: Poisson arrivals at `rate`, each to a platform and of a kind drawn by weight;
     * `{agent}` in a path or body stands for an agent drawn from those running at start on the platform
     * called or on one connected to it (one hop: within reach).
     */
    const nearCache = new Map<string, string[]>();
    const nearAgents = (platform: string): string[] =>
      nearCache.get(platform) ??
      nearCache
        .set(
          platform,
          [platform, ...links.get(platform)!].flatMap((p) => startAgents.get(p) ?? []),
        )
        .get(platform)!;
    const trafficOf = (t: NonNullable<ClientRole['traffic']>, name: string, path: (string | number)[]): ClientCall[] => {
      const sels = Array.isArray(t.to) ? t.to : [t.to];
      const targets = [...new Set(sels.flatMap((x, i) => platformsOf(x, Array.isArray(t.to) ? [...path, 'to', i] : [...path, 'to'])))];
      if (targets.length === 0) return [];
      const rng = new RandomStream(ctx.seed, `opaca.traffic:${name}`);
      const total = t.mix.reduce((sum, m) => sum + m.weight, 0);
      const texts = t.mix.map((m) => (m.body === undefined ? undefined : JSON.stringify(m.body)));
      const out: ClientCall[] = [];
      const endMs = ms(t.start) + ms(t.for);
      for (
        let atMs = ms(t.start) - (Math.log(1 - rng.next()) * 1000) / t.rate;
        atMs < endMs;
        atMs -= (Math.log(1 - rng.next()) * 1000) / t.rate
      ) {
        let pick = rng.int(total);
        const i = t.mix.findIndex((m) => (pick -= m.weight) < 0);
        const m = t.mix[i];
        const platform = targets[rng.int(targets.length)];
        const near = nearAgents(platform);
        const agent = near.length > 0 ? near[rng.int(near.length)] : 'nobody';
        const fill = (text: string): string => text.replaceAll('{agent}', agent);
        const body = texts[i];
        out.push({
          atMs: Math.round(atMs * 1000) / 1000,
          platform,
          method: m.method,
          path: fill(m.path),
          ...(m.query ? { query: m.query } : {}),
          ...(body !== undefined ? { body: fill(body) } : {}),
        });
      }
      return out;
    };
    let expected = 0;
    for (const c of clients) {
      const r = c.params as ClientRole;
      const calls: ClientCall[] = r.calls.flatMap((x, i) => {
        const to = one(x.to, [...c.path, 'calls', i, 'to']);
        if (to === undefined) return [];
        const body = x.raw ?? (x.body === undefined ? undefined : JSON.stringify(x.body));
        const made: ClientCall = {
          atMs: ms(x.at),
          platform: to,
          method: x.method,
          path: x.path,
          ...(x.query ? { query: x.query } : {}),
          ...(body !== undefined ? { body } : {}),
          ...(x.as !== undefined ? { as: x.as } : {}),
          ...(x.token !== undefined ? { token: x.token } : {}),
        };
        return Array.from({ length: x.times }, () => made);
      });
      if (r.traffic) for (const x of trafficOf(r.traffic, c.name, [...c.path, 'traffic'])) calls.push(x);
      if (calls.length === 0) ctx.fail(c.path, 'expected calls or traffic');
      expected += calls.length;
      const input: ClientInput = { name: c.name, calls, timeoutMs: ms(r.timeout) };
      made.set(c.name, { name: c.name, role: c.role, machine: clientMachine, input });
    }
    const actors: ActorDefinition[] = ctx.actors.flatMap((a) => made.get(a.name) ?? []);
    for (const input of agentInputs)
      actors.push({
        name: input.name,
        role: 'opaca.agent',
        machine: agentMachine,
        input,
        restartInput: again(input),
        host: input.container,
      });
    // A platform talks most with its containers, and they with their agents: kept on one shard when there are enough groups.
    const indexOf = new Map(actors.map((a, i) => [a.name, i]));
    const affinity = platforms.map((p) =>
      [
        p.name,
        ...containerInputs
          .filter((c) => c.platform === p.name || Object.values(pools.get(p.name) ?? {}).some((x) => x.includes(c.name)))
          .flatMap((c) => [c.name, ...Object.values(c.agents)]),
      ]
        .map((name) => indexOf.get(name))
        .filter((i) => i !== undefined),
    );

    const checker = createOpacaChecker({
      mode,
      historySize: new Map(platforms.map((p) => [p.name, (p.params as PlatformRole).historySize])),
      enabled: ctx.enabledInvariants,
      recentTrace: ctx.recentTrace,
      auth: new Map(
        platforms.flatMap((p) => {
          const a = authOf(p.name);
          return a ? [[p.name, new Map(a.users.map((u) => [u.name, u.role]))] as const] : [];
        }),
      ),
    });
    const answers: Record<string, number> = {};
    const deliveries: Record<string, number> = {};
    let answered = 0;
    let unanswered = 0;
    let forwards = 0;
    /** Ping-pong, per pinger: rounds played, offers heard, jobs given (agent and the invoke's status). */
    const pingPong: Record<string, { rounds: number; offers: number; jobs: Record<string, number> }> = {};
    const metricsObserver = {
      onObserve(_t: number, actor: string, obs: { kind: string }) {
        const o = obs as ClientObservation | AgentObservation | ContainerObservation | PlatformObservation;
        if (o.kind === 'opaca.client.answer') {
          answered++;
          if (o.status === 0) unanswered++;
          else answers[o.status] = (answers[o.status] ?? 0) + 1;
        } else if (o.kind === 'opaca.delivered') deliveries[o.how] = (deliveries[o.how] ?? 0) + 1;
        else if (o.kind === 'opaca.pingpong') {
          const p = (pingPong[actor] ??= { rounds: 0, offers: 0, jobs: {} });
          p.rounds++;
          p.offers += o.offers;
          if (o.chosen !== undefined) p.jobs[`${o.chosen} ${o.status}`] = (p.jobs[`${o.chosen} ${o.status}`] ?? 0) + 1;
        } else if (o.kind === 'opaca.dispatch' && o.toPlatform) forwards++;
      },
    };

    return {
      actors,
      affinity,
      observers: [checker, metricsObserver],
      checker,
      isComplete: () => expected > 0 && answered === expected,
      metrics: () => ({
        calls: expected,
        answersByStatus: { ...answers },
        ...(unanswered > 0 ? { unanswered } : {}),
        deliveries: { ...deliveries },
        forwards,
        ...pingPongMetrics(pingPong),
      }),
    };
  },
};
