/**
 * An OPACA **agent** (`shared/protocols/opaca.md`, "Message flows"): it lives in an agent container,
 * which hands it what the platform delivers — a message (`tell`, from a send or a broadcast through
 * the container's broker) or an action call (`ask`, whose answer the container returns). An agent
 * calls other agents through its platform's HTTP API, which its container makes for it.
 *
 * Its behaviour comes from the scenario:
 * - `echo`: an action answers its `message` argument, or its arguments;
 * - `compute`: `Add` answers x + y, anything else as `echo`;
 * - `slow`: as `echo`, `delayMs` later;
 * - `failing`: every action call fails (500);
 * - `pinger` (ping-pong): every `everyMs` it broadcasts a Ping on `channel`, collects the Pong offers
 *   agents send back for `collectMs`, then invokes `Pong` on the agent with the best offer;
 * - `ponger`: on a Ping it sends its offer (a number drawn from its id and the round, deterministic)
 *   to the pinger; its `Pong` action accepts the job.
 *
 * Its container observes each message and action call it hands it, with the call's trace id (so a
 * checker can count how many agents a call reached). Pure protocol logic: its container (and
 * through it the platform) carries everything it says.
 */
import { enqueueActions, setup } from 'xstate';
import { effect } from '../../protocol/host.js';
import type { OpacaRequest, OpacaResponse } from '../../protocol/opaca.js';
import { digestOf, INCARNATION_SPAN, OPACA_STATUS } from '../../protocol/opaca.js';

export const AGENT_BEHAVIOURS = ['echo', 'compute', 'slow', 'failing', 'pinger', 'ponger'] as const;
export type AgentBehaviour = (typeof AGENT_BEHAVIOURS)[number];

/** Ping-pong: how a pinger plays (a ponger needs none of it). */
export interface PingPlan {
  /** The broadcast channel. */
  channel: string;
  /** First round, then one every `everyMs`; `rounds` in all. */
  startMs: number;
  everyMs: number;
  rounds: number;
  /** How long it waits for offers after each Ping. */
  collectMs: number;
}

export interface AgentInput {
  /** Its actor name. */
  name: string;
  agentId: string;
  /** The actor of the container it lives in. */
  container: string;
  behaviour: AgentBehaviour;
  /** slow: how long an action call takes. */
  delayMs?: number;
  /** pinger: how it plays. */
  ping?: PingPlan;
  /** Its restarts so far: request ids differ between incarnations. */
  incarnation?: number;
}

/** Container → agent: a message (a send, or a broadcast through the broker). */
export type AgentTell = {
  type: 'AgentTell';
  how: 'send' | 'broadcast';
  channel?: string;
  payload: unknown;
  replyTo: string;
  callId: string;
};
/** Container → agent: an action call; the agent answers with an `AgentAnswer` carrying `re`. */
export type AgentAsk = { type: 'AgentAsk'; rid: number; action: string; args: Record<string, unknown>; callId: string };
export type AgentAnswer = { type: 'AgentAnswer'; re: number; status: number; body: unknown };
/** Agent → container: a call to the platform's API, made for it (the answer comes back as an `OpacaResponse`). */
export type AgentCall = { type: 'AgentCall'; rid: number; method: OpacaRequest['method']; path: string; body?: string };

export type AgentObservation =
  /** A pinger's round, at its end: offers heard, the agent chosen (with its offer), and the invoke's status. */
  { kind: 'opaca.pingpong'; round: number; offers: number; chosen?: string; offer?: number; status?: number };

interface AgentContext {
  cfg: AgentInput;
  /** Slow answers waiting, by timer id. */
  waiting: Map<string, AgentAnswer>;
  nextWait: number;
  /** Its calls to the platform in flight: request id → what for. */
  calls: Map<number, { round: number; what: 'ping' | 'offer' | 'job'; agent?: string; offer?: number }>;
  rid: number;
  /** pinger: the round in play and its offers (agent id → offer). */
  round: number;
  offers: Map<string, number>;
}

type AgentEvent =
  | { type: 'AgentTell'; from: string; msg: AgentTell; now: number }
  | { type: 'AgentAsk'; from: string; msg: AgentAsk; now: number }
  | { type: 'OpacaResponse'; from: string; msg: OpacaResponse; now: number }
  | { type: 'opaca.answerDue'; wait: string; now: number }
  | { type: 'opaca.pingDue'; round: number; now: number }
  | { type: 'opaca.collectDone'; round: number; now: number }
  | { type: 'host.shutdown'; now: number };

type Emit = ReturnType<typeof effect.send> | ReturnType<typeof effect.observe<AgentObservation>>;

/** A ponger's offer for a round: a number 0–99 from its id and the round (deterministic, no random source). */
export const offerOf = (agentId: string, round: number): number => parseInt(digestOf(`${agentId}#${round}`), 16) % 100;

/** The Pong action a ponger offers (the job a pinger gives the best offer). */
export const PONG_ACTION = {
  name: 'Pong',
  parameters: { round: { type: 'integer', required: true }, offer: { type: 'integer', required: true } },
  result: { type: 'string', required: true },
} as const;

export const agentMachine = setup({
  types: {
    context: {} as AgentContext,
    events: {} as AgentEvent,
    input: {} as AgentInput,
    emitted: {} as Emit,
  },
  actions: {
    /** A message: observed; a ponger answers a Ping with its offer. */
    hear: enqueueActions(({ context, event, enqueue }) => {
      const m = (event as Extract<AgentEvent, { type: 'AgentTell' }>).msg;
      const cfg = context.cfg;
      const p = m.payload as { ping?: unknown; pong?: unknown; offer?: unknown; agent?: unknown } | null;
      if (cfg.behaviour === 'ponger' && m.how === 'broadcast' && typeof p?.ping === 'number' && m.replyTo !== '') {
        const offer = offerOf(cfg.agentId, p.ping);
        const rid = ++context.rid;
        context.calls.set(rid, { round: p.ping, what: 'offer' });
        const body = JSON.stringify({ payload: { pong: p.ping, offer, agent: cfg.agentId }, replyTo: cfg.agentId });
        enqueue.emit(
          effect.send(cfg.container, { type: 'AgentCall', rid, method: 'POST', path: `/send/${m.replyTo}`, body } satisfies AgentCall),
        );
      }
      if (
        cfg.behaviour === 'pinger' &&
        m.how === 'send' &&
        p?.pong === context.round &&
        typeof p.offer === 'number' &&
        typeof p.agent === 'string'
      )
        context.offers.set(p.agent, p.offer);
    }),
    /** An action call: answered by its behaviour. */
    act: enqueueActions(({ context, event, enqueue }) => {
      const e = event as Extract<AgentEvent, { type: 'AgentAsk' }>;
      const m = e.msg;
      const cfg = context.cfg;
      const reply = (status: number, body: unknown): AgentAnswer => ({ type: 'AgentAnswer', re: m.rid, status, body });
      if (cfg.behaviour === 'failing')
        return void enqueue.emit(
          effect.send(e.from, reply(500, { statusCode: 500, message: `${cfg.agentId} failed running ${m.action}` })),
        );
      const args = m.args;
      const result =
        cfg.behaviour === 'compute' && m.action === 'Add'
          ? Number(args.x) + Number(args.y)
          : cfg.behaviour === 'ponger' && m.action === 'Pong'
            ? `${cfg.agentId} takes round ${String(args.round)} at ${String(args.offer)}`
            : (args.message ?? args);
      const answer = reply(OPACA_STATUS.ok, result);
      if (cfg.behaviour !== 'slow' || !cfg.delayMs) return void enqueue.emit(effect.send(e.from, answer));
      const wait = `w${++context.nextWait}`;
      context.waiting.set(wait, answer);
      enqueue.raise({ type: 'opaca.answerDue', wait, now: 0 }, { id: wait, delay: cfg.delayMs });
    }),
    answerLate: enqueueActions(({ context, event, enqueue }) => {
      const wait = (event as { wait: string }).wait;
      const a = context.waiting.get(wait);
      if (!a) return;
      context.waiting.delete(wait);
      enqueue.emit(effect.send(context.cfg.container, a));
    }),
    schedulePings: enqueueActions(({ context, enqueue }) => {
      const p = context.cfg.ping;
      if (context.cfg.behaviour !== 'pinger' || !p) return;
      for (let round = 1; round <= p.rounds; round++)
        enqueue.raise({ type: 'opaca.pingDue', round, now: 0 }, { id: `ping:${round}`, delay: p.startMs + (round - 1) * p.everyMs });
    }),
    /** pinger: a new round — broadcast the Ping, collect offers for a while. */
    ping: enqueueActions(({ context, event, enqueue }) => {
      const round = (event as { round: number }).round;
      const p = context.cfg.ping!;
      context.round = round;
      context.offers.clear();
      const rid = ++context.rid;
      context.calls.set(rid, { round, what: 'ping' });
      const body = JSON.stringify({ payload: { ping: round, from: context.cfg.agentId }, replyTo: context.cfg.agentId });
      enqueue.emit(
        effect.send(context.cfg.container, {
          type: 'AgentCall',
          rid,
          method: 'POST',
          path: `/broadcast/${p.channel}`,
          body,
        } satisfies AgentCall),
      );
      enqueue.raise({ type: 'opaca.collectDone', round, now: 0 }, { id: `collect:${round}`, delay: p.collectMs });
    }),
    /** pinger: the offers are in — invoke Pong on the best (highest offer; ties: the first agent id). */
    choose: enqueueActions(({ context, event, enqueue }) => {
      const round = (event as { round: number }).round;
      if (round !== context.round) return;
      const ranked = [...context.offers].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      if (ranked.length === 0) return void enqueue.emit(effect.observe<AgentObservation>({ kind: 'opaca.pingpong', round, offers: 0 }));
      const [agent, offer] = ranked[0];
      const rid = ++context.rid;
      context.calls.set(rid, { round, what: 'job', agent, offer });
      const body = JSON.stringify({ round, offer });
      enqueue.emit(
        effect.send(context.cfg.container, {
          type: 'AgentCall',
          rid,
          method: 'POST',
          path: `/invoke/Pong/${agent}`,
          body,
        } satisfies AgentCall),
      );
    }),
    /** An answer to one of its calls: a pinger's job ends its round. */
    heard: enqueueActions(({ context, event, enqueue }) => {
      const m = (event as { msg: OpacaResponse }).msg;
      const c = context.calls.get(m.re);
      if (!c) return;
      context.calls.delete(m.re);
      if (c.what === 'job')
        enqueue.emit(
          effect.observe<AgentObservation>({
            kind: 'opaca.pingpong',
            round: c.round,
            offers: context.offers.size,
            chosen: c.agent!,
            offer: c.offer!,
            status: m.status,
          }),
        );
    }),
  },
}).createMachine({
  id: 'opaca.agent',
  context: ({ input }) => ({
    cfg: input,
    waiting: new Map(),
    nextWait: 0,
    calls: new Map(),
    rid: (input.incarnation ?? 0) * INCARNATION_SPAN,
    round: 0,
    offers: new Map(),
  }),
  initial: 'living',
  states: {
    living: {
      entry: 'schedulePings',
      on: {
        AgentTell: { actions: 'hear' },
        AgentAsk: { actions: 'act' },
        OpacaResponse: { actions: 'heard' },
        'opaca.answerDue': { actions: 'answerLate' },
        'opaca.pingDue': { actions: 'ping' },
        'opaca.collectDone': { actions: 'choose' },
      },
    },
  },
});
