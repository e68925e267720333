/**
 * An OPACA **agent container** (`shared/protocols/opaca.md`, "Message flows"): hosts agents and
 * answers the platform's calls — a send goes to the agent (`tell`), a broadcast to every agent
 * through the container's broker (`publish`), an invoke to the agent's action (`ask`), whose result
 * answers the call. `/info` describes the container.
 *
 * The agents' behaviours come from the scenario: `echo` (its actions return their arguments),
 * `compute` (`Add` returns x + y, anything else its arguments), `slow` (answers after `delayMs`) and
 * `failing` (every invoke fails: 500). Each delivery is observed with the call's id, so a checker can
 * count how many agents a call reached. Its agents may gain actions at run time (`changes`); with
 * `notify` it tells its platform, which then pulls `/info` (notify, then pull).
 *
 * A deployable container (an image a platform may start) stays down until a platform's
 * `OpacaStart`, answers nothing while it boots (`startupMs`; never, when undefined) and goes down
 * again on `OpacaStop`.
 */
import { enqueueActions, setup } from 'xstate';
import { effect } from '../../protocol/host.js';
import type { Action, AgentContainer, OpacaRequest, OpacaResponse } from '../../protocol/opaca.js';
import { OPACA_STATUS, parseRoute } from '../../protocol/opaca.js';

export const AGENT_BEHAVIOURS = ['echo', 'compute', 'slow', 'failing'] as const;
export type AgentBehaviour = (typeof AGENT_BEHAVIOURS)[number];

export interface ContainerInput {
  name: string;
  info: AgentContainer;
  /** Behaviour per agent id (default echo). */
  behaviours: Record<string, { kind: AgentBehaviour; delayMs?: number }>;
  /** The platform it runs on (it notifies it of changes). */
  platform?: string;
  /** Its token at that platform, when auth is on (a container token, 24 h). */
  token?: string;
  /** Actions its agents gain at run time; with `notify`, it tells its platform (which pulls `/info`). */
  changes?: { atMs: number; agent: string; action: Action; notify: boolean }[];
  /**
   * Deployable (an image a platform may start): it stays down until a platform's `OpacaStart`, then
   * answers from `startupMs` later (never, when undefined) until an `OpacaStop`.
   */
  deployable?: { startupMs?: number };
}

/** A platform starts a container of an image (the simulator's `docker run`); its token with auth on. */
export type OpacaStart = { type: 'OpacaStart'; token?: string };
/** A platform stops a container (a failed deploy's cleanup, or `DELETE /containers/{id}`). */
export type OpacaStop = { type: 'OpacaStop' };

export type ContainerObservation = {
  kind: 'opaca.delivered';
  how: 'send' | 'broadcast' | 'invoke';
  agent: string;
  /** The id of the call at the platform it was first made to. */
  callId: string;
};

interface ContainerContext {
  cfg: ContainerInput;
  /** Down (not started, or stopped), booting (started, not answering yet) or up. */
  up: 'down' | 'booting' | 'up';
  /** The platform that started it (deployable containers), or the one it runs on. */
  platform?: string;
  /** Its token at the platform (auth on). */
  token?: string;
  /** Bumped on each start and stop, so a stale boot timer does nothing. */
  boot: number;
  /** Its `/info`, as its agents change. */
  info: AgentContainer;
  /** Slow invokes waiting to answer, by timer id. */
  waiting: Map<string, { to: string; answer: OpacaResponse }>;
  nextWait: number;
}

type ContainerEvent =
  | { type: 'OpacaRequest'; from: string; msg: OpacaRequest; now: number }
  | { type: 'OpacaResponse'; from: string; msg: OpacaResponse; now: number }
  | { type: 'OpacaStart'; from: string; msg: OpacaStart; now: number }
  | { type: 'OpacaStop'; from: string; msg: OpacaStop; now: number }
  | { type: 'opaca.booted'; boot: number; now: number }
  | { type: 'opaca.change'; index: number; now: number }
  | { type: 'opaca.answerDue'; wait: string; now: number }
  | { type: 'host.shutdown'; now: number };

const answer = (re: number, status: number, body: unknown): OpacaResponse => ({ type: 'OpacaResponse', re, status, body });
const error = (re: number, status: number, message: string): OpacaResponse => answer(re, status, { statusCode: status, message });

export const containerMachine = setup({
  types: {
    context: {} as ContainerContext,
    events: {} as ContainerEvent,
    input: {} as ContainerInput,
    emitted: {} as ReturnType<typeof effect.send> | ReturnType<typeof effect.observe<ContainerObservation>>,
  },
  actions: {
    serve: enqueueActions(({ context, event, enqueue }) => {
      const e = event as Extract<ContainerEvent, { type: 'OpacaRequest' }>;
      // Not running: nothing answers (the platform hears nothing, as from a refused connection).
      if (context.up !== 'up') return;
      const req = e.msg;
      const callId = req.callId ?? `${context.cfg.name}:${req.rid}`;
      const reply = (r: OpacaResponse): void => void enqueue.emit(effect.send(e.from, r));
      const parsed = parseRoute(req);
      if (!parsed.ok) return reply(answer(req.rid, parsed.status, parsed.error));
      const route = parsed.route;
      const agents = context.info.agents;
      const delivered = (how: ContainerObservation['how'], agent: string): void =>
        void enqueue.emit(effect.observe<ContainerObservation>({ kind: 'opaca.delivered', how, agent, callId }));
      switch (route.kind) {
        case 'info':
          return reply(answer(req.rid, OPACA_STATUS.ok, context.info));
        case 'agents':
          return reply(answer(req.rid, OPACA_STATUS.ok, agents));
        case 'send': {
          if (!agents.some((a) => a.agentId === route.agent))
            return reply(error(req.rid, OPACA_STATUS.notFound, `no agent ${route.agent}`));
          delivered('send', route.agent);
          return reply(answer(req.rid, OPACA_STATUS.ok, null));
        }
        case 'broadcast':
          for (const a of agents) delivered('broadcast', a.agentId);
          return reply(answer(req.rid, OPACA_STATUS.ok, null));
        case 'invoke': {
          const agent = agents.find(
            (a) => (route.agent === undefined || a.agentId === route.agent) && a.actions.some((x) => x.name === route.action),
          );
          if (!agent) return reply(error(req.rid, OPACA_STATUS.notFound, `no action ${route.action}`));
          delivered('invoke', agent.agentId);
          const behaviour = context.cfg.behaviours[agent.agentId] ?? { kind: 'echo' };
          if (behaviour.kind === 'failing') return reply(error(req.rid, 500, `${agent.agentId} failed running ${route.action}`));
          const args = route.args;
          const result = behaviour.kind === 'compute' && route.action === 'Add' ? Number(args.x) + Number(args.y) : (args.message ?? args);
          const r = answer(req.rid, OPACA_STATUS.ok, result);
          if (behaviour.kind !== 'slow' || !behaviour.delayMs) return reply(r);
          const wait = `w${++context.nextWait}`;
          context.waiting.set(wait, { to: e.from, answer: r });
          enqueue.raise({ type: 'opaca.answerDue', wait, now: 0 }, { id: wait, delay: behaviour.delayMs });
          return;
        }
        default:
          return reply(error(req.rid, OPACA_STATUS.notFound, `a container does not serve ${req.method} ${req.path}`));
      }
    }),
    scheduleChanges: enqueueActions(({ context, enqueue }) => {
      (context.cfg.changes ?? []).forEach((c, index) =>
        enqueue.raise({ type: 'opaca.change', index, now: 0 }, { id: `change:${index}`, delay: c.atMs }),
      );
    }),
    /** An agent gains an action; with notify, the platform is told (it pulls `/info`). */
    change: enqueueActions(({ context, event, enqueue }) => {
      const c = context.cfg.changes![(event as { index: number }).index];
      context.info = {
        ...context.info,
        agents: context.info.agents.map((a) => (a.agentId === c.agent ? { ...a, actions: [...a.actions, c.action] } : a)),
      };
      if (c.notify && context.platform !== undefined && context.up === 'up')
        enqueue.emit(
          effect.send(context.platform, {
            type: 'OpacaRequest',
            rid: (event as { index: number }).index + 1,
            method: 'POST',
            path: '/containers/notify',
            body: JSON.stringify(context.info.containerId),
            ...(context.token !== undefined ? { token: context.token } : {}),
          } satisfies OpacaRequest),
        );
    }),
    start: enqueueActions(({ context, event, enqueue }) => {
      const e = event as Extract<ContainerEvent, { type: 'OpacaStart' }>;
      if (context.up !== 'down') return;
      context.platform = e.from;
      context.token = e.msg.token;
      context.up = 'booting';
      const boot = ++context.boot;
      const startupMs = context.cfg.deployable?.startupMs;
      if (startupMs !== undefined) enqueue.raise({ type: 'opaca.booted', boot, now: 0 }, { id: `boot:${boot}`, delay: startupMs });
    }),
    booted: enqueueActions(({ context, event }) => {
      if ((event as { boot: number }).boot === context.boot && context.up === 'booting') context.up = 'up';
    }),
    stop: enqueueActions(({ context }) => {
      context.up = 'down';
      context.boot++;
      context.waiting.clear();
    }),
    answerLate: enqueueActions(({ context, event, enqueue }) => {
      const w = context.waiting.get((event as { wait: string }).wait);
      if (!w) return;
      context.waiting.delete((event as { wait: string }).wait);
      enqueue.emit(effect.send(w.to, w.answer));
    }),
  },
}).createMachine({
  id: 'opaca.container',
  context: ({ input }) => ({
    cfg: input,
    info: input.info,
    up: input.deployable ? 'down' : 'up',
    ...(input.platform !== undefined ? { platform: input.platform } : {}),
    ...(input.token !== undefined ? { token: input.token } : {}),
    boot: 0,
    waiting: new Map(),
    nextWait: 0,
  }),
  initial: 'running',
  states: {
    running: {
      entry: 'scheduleChanges',
      on: {
        OpacaRequest: { actions: 'serve' },
        'opaca.answerDue': { actions: 'answerLate' },
        'opaca.change': { actions: 'change' },
        OpacaStart: { actions: 'start' },
        OpacaStop: { actions: 'stop' },
        'opaca.booted': { actions: 'booted' },
      },
    },
  },
});
