/**
 * An OPACA **agent container** (`shared/protocols/opaca.md`, "Message flows"): hosts agents (each
 * an actor of its own, `agent.machine.ts`) and answers the platform's calls — a send goes to the
 * agent (`tell`), a broadcast to every agent through the container's broker (`publish`), an invoke
 * to the agent with the action (`ask`), whose answer answers the call. `/info` describes the
 * container. The calls its agents make to the platform's API go out through it, with its token.
 *
 * Its agents may gain actions at run time (`changes`); with `notify` it tells its platform, which
 * then pulls `/info` (notify, then pull).
 *
 * A deployable container (an image a platform may start) stays down until a platform's
 * `OpacaStart`, answers nothing while it boots (`startupMs`; never, when undefined) and goes down
 * again on `OpacaStop`.
 */
import { enqueueActions, setup } from 'xstate';
import { effect } from '../../protocol/host.js';
import type { RefusedEvent } from '../../protocol/host.js';
import type { Action, AgentContainer, OpacaRequest, OpacaResponse } from '../../protocol/opaca.js';
import { INCARNATION_SPAN, OPACA_STATUS, opacaAnswer, parseRoute } from '../../protocol/opaca.js';
import type { AgentAnswer, AgentAsk, AgentCall, AgentTell } from './agent.machine.js';

/** A call handed to one of its agents (a tell or an ask), with the call's trace id: what a checker counts. */
export type ContainerObservation = {
  kind: 'opaca.delivered';
  how: 'send' | 'broadcast' | 'invoke';
  agent: string;
  /** The id of the call at the platform it was first made to. */
  callId: string;
};

export interface ContainerInput {
  name: string;
  info: AgentContainer;
  /** The actor of each of its agents, by agent id. */
  agents: Record<string, string>;
  /** The platform it runs on (it notifies it of changes). */
  platform?: string;
  /** Its token at that platform, when auth is on (a container token, 24 h). */
  token?: string;
  /** Its restarts so far: request ids differ between incarnations. */
  incarnation?: number;
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
  /** Action calls at its agents: its request id → whom to answer, with which request id. */
  asks: Map<number, { to: string; re: number }>;
  /** Its agents' calls to the platform: its request id → the agent and the agent's request id. */
  outgoing: Map<number, { agent: string; rid: number }>;
  rid: number;
}

type ContainerEvent =
  | { type: 'OpacaRequest'; from: string; msg: OpacaRequest; now: number }
  | { type: 'OpacaResponse'; from: string; msg: OpacaResponse; now: number }
  | { type: 'OpacaStart'; from: string; msg: OpacaStart; now: number }
  | { type: 'OpacaStop'; from: string; msg: OpacaStop; now: number }
  | { type: 'opaca.booted'; boot: number; now: number }
  | { type: 'opaca.change'; index: number; now: number }
  | { type: 'AgentAnswer'; from: string; msg: AgentAnswer; now: number }
  | { type: 'AgentCall'; from: string; msg: AgentCall; now: number }
  | RefusedEvent
  | { type: 'host.shutdown'; now: number };

const error = (re: number, status: number, message: string): OpacaResponse => opacaAnswer(re, status, { statusCode: status, message });

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
      if (!parsed.ok) return reply(opacaAnswer(req.rid, parsed.status, parsed.error));
      const route = parsed.route;
      const agents = context.info.agents;
      const actorOf = (agentId: string): string | undefined => context.cfg.agents[agentId];
      const tell = (agentId: string, how: AgentTell['how'], message: { payload: unknown; replyTo: string }, channel?: string): void => {
        const actor = actorOf(agentId);
        if (actor === undefined) return;
        const msg: AgentTell = {
          type: 'AgentTell',
          how,
          payload: message.payload,
          replyTo: message.replyTo,
          callId,
          ...(channel !== undefined ? { channel } : {}),
        };
        enqueue.emit(effect.send(actor, msg));
        enqueue.emit(effect.observe<ContainerObservation>({ kind: 'opaca.delivered', how, agent: agentId, callId }));
      };
      switch (route.kind) {
        case 'info':
          return reply(opacaAnswer(req.rid, OPACA_STATUS.ok, context.info));
        case 'agents':
          return reply(opacaAnswer(req.rid, OPACA_STATUS.ok, agents));
        case 'send': {
          if (!agents.some((a) => a.agentId === route.agent))
            return reply(error(req.rid, OPACA_STATUS.notFound, `no agent ${route.agent}`));
          // A tell is delivered to the agent's mailbox: the call is answered at once.
          tell(route.agent, 'send', route.message);
          return reply(opacaAnswer(req.rid, OPACA_STATUS.ok, null));
        }
        case 'broadcast':
          // The broker publishes on the channel: every agent hears it.
          for (const a of agents) tell(a.agentId, 'broadcast', route.message, route.channel);
          return reply(opacaAnswer(req.rid, OPACA_STATUS.ok, null));
        case 'invoke': {
          const agent = agents.find(
            (a) => (route.agent === undefined || a.agentId === route.agent) && a.actions.some((x) => x.name === route.action),
          );
          const actor = agent && actorOf(agent.agentId);
          if (!agent || actor === undefined) return reply(error(req.rid, OPACA_STATUS.notFound, `no action ${route.action}`));
          const rid = ++context.rid;
          context.asks.set(rid, { to: e.from, re: req.rid });
          enqueue.emit(effect.send(actor, { type: 'AgentAsk', rid, action: route.action, args: route.args, callId } satisfies AgentAsk));
          enqueue.emit(effect.observe<ContainerObservation>({ kind: 'opaca.delivered', how: 'invoke', agent: agent.agentId, callId }));
          return;
        }
        default:
          return reply(error(req.rid, OPACA_STATUS.notFound, `a container does not serve ${req.method} ${req.path}`));
      }
    }),
    /** An agent answered an action call: that answers the platform's invoke. */
    answered: enqueueActions(({ context, event, enqueue }) => {
      const m = (event as Extract<ContainerEvent, { type: 'AgentAnswer' }>).msg;
      const ask = context.asks.get(m.re);
      if (!ask || context.up !== 'up') return;
      context.asks.delete(m.re);
      enqueue.emit(effect.send(ask.to, opacaAnswer(ask.re, m.status, m.body)));
    }),
    /** An agent calls the platform's API: the container makes the call, with its token. */
    callOut: enqueueActions(({ context, event, enqueue }) => {
      const e = event as Extract<ContainerEvent, { type: 'AgentCall' }>;
      if (context.up !== 'up' || context.platform === undefined) return;
      const rid = ++context.rid;
      context.outgoing.set(rid, { agent: e.from, rid: e.msg.rid });
      enqueue.emit(
        effect.send(context.platform, {
          type: 'OpacaRequest',
          rid,
          method: e.msg.method,
          path: e.msg.path,
          ...(e.msg.body !== undefined ? { body: e.msg.body } : {}),
          ...(context.token !== undefined ? { token: context.token } : {}),
        } satisfies OpacaRequest),
      );
    }),
    /**
     * The platform answered: an agent's call goes back to it; a notify's answer needs nothing. A
     * platform that is down refuses the connection: the agent gets a 502.
     */
    callBack: enqueueActions(({ context, event, enqueue }) => {
      const refused = event.type === 'host.refused';
      const m = refused
        ? opacaAnswer((event as RefusedEvent).msg.re, OPACA_STATUS.badGateway, {
            statusCode: 502,
            message: 'the platform refused the connection',
          })
        : (event as Extract<ContainerEvent, { type: 'OpacaResponse' }>).msg;
      const out = context.outgoing.get(m.re);
      if (!out) return;
      context.outgoing.delete(m.re);
      enqueue.emit(effect.send(out.agent, { ...m, re: out.rid }));
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
            rid: ++context.rid,
            method: 'POST',
            path: '/containers/notify',
            body: JSON.stringify(context.info.containerId),
            ...(context.token !== undefined ? { token: context.token } : {}),
          } satisfies OpacaRequest),
        );
    }),
    start: enqueueActions(({ context, event, enqueue }) => {
      const e = event as Extract<ContainerEvent, { type: 'OpacaStart' }>;
      // A start is a fresh container, whatever ran before (a stop that never arrived included).
      context.asks.clear();
      context.outgoing.clear();
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
      context.asks.clear();
      context.outgoing.clear();
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
    asks: new Map(),
    outgoing: new Map(),
    rid: (input.incarnation ?? 0) * INCARNATION_SPAN,
  }),
  initial: 'running',
  states: {
    running: {
      entry: 'scheduleChanges',
      on: {
        OpacaRequest: { actions: 'serve' },
        AgentAnswer: { actions: 'answered' },
        AgentCall: { actions: 'callOut' },
        OpacaResponse: { actions: 'callBack' },
        'host.refused': { actions: 'callBack' },
        'opaca.change': { actions: 'change' },
        OpacaStart: { actions: 'start' },
        OpacaStop: { actions: 'stop' },
        'opaca.booted': { actions: 'booted' },
      },
    },
  },
});
