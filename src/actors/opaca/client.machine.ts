/**
 * An OPACA **client**: makes the calls a scenario gives it — each an HTTP-shaped request to a
 * platform at a virtual time — and observes every answer with its status and body. With auth on, a
 * call can name a user (`as`): it carries the token that user's last `/login` or `/token` answer at
 * that platform gave (none before one).
 */
import { enqueueActions, setup } from 'xstate';
import { effect } from '../../protocol/host.js';
import type { RefusedEvent } from '../../protocol/host.js';
import type { OpacaRequest, OpacaResponse } from '../../protocol/opaca.js';

export interface ClientCall {
  atMs: number;
  platform: string;
  method: OpacaRequest['method'];
  path: string;
  query?: Record<string, string>;
  body?: string;
  /** Auth on: call as this user, with the token its last `/login` (or `/token`) at that platform gave. */
  as?: string;
  /** Auth on: call with this token as is (a forged or stale one). */
  token?: string;
}

export interface ClientInput {
  name: string;
  calls: ClientCall[];
  /** How long it waits for an answer before it gives the call up (an HTTP client's read timeout). */
  timeoutMs: number;
}

/** An answer (status 0: none came within the timeout, or the platform is down and refused the connection — the call is given up). */
export type ClientObservation = { kind: 'opaca.client.answer'; rid: number; path: string; status: number; body: unknown };

interface ClientContext {
  cfg: ClientInput;
  /** Call indices in time order. */
  order: number[];
  /** Request id → the call asked (for the observation, and for the token a login gives). */
  asked: Map<number, ClientCall>;
  /** Tokens it got, by platform and user (`platform|user`). */
  tokens: Map<string, string>;
}

type ClientEvent =
  | { type: 'opaca.callDue'; index: number; now: number }
  | { type: 'opaca.giveUp'; rid: number; now: number }
  | RefusedEvent
  | { type: 'OpacaResponse'; from: string; msg: OpacaResponse; now: number }
  | { type: 'host.shutdown'; now: number };

/** The user a login body names (undefined when it is not one). */
function loginUser(body: string | undefined): string | undefined {
  try {
    const v = JSON.parse(body ?? '') as { username?: unknown };
    return typeof v.username === 'string' ? v.username : undefined;
  } catch {
    return undefined;
  }
}

export const clientMachine = setup({
  types: {
    context: {} as ClientContext,
    events: {} as ClientEvent,
    input: {} as ClientInput,
    emitted: {} as ReturnType<typeof effect.send> | ReturnType<typeof effect.observe<ClientObservation>>,
  },
  actions: {
    /** One timer at a time: the earliest call's (each call schedules the next in time order). */
    schedule: enqueueActions(({ context, enqueue }) => {
      const first = context.order[0];
      if (first !== undefined)
        enqueue.raise({ type: 'opaca.callDue', index: 0, now: 0 }, { id: 'call:0', delay: context.cfg.calls[first].atMs });
    }),
    call: enqueueActions(({ context, event, enqueue }) => {
      const position = (event as { index: number }).index;
      const index = context.order[position];
      const c = context.cfg.calls[index];
      const next = context.order[position + 1];
      if (next !== undefined)
        enqueue.raise(
          { type: 'opaca.callDue', index: position + 1, now: 0 },
          { id: `call:${position + 1}`, delay: context.cfg.calls[next].atMs - c.atMs },
        );
      // Request ids are the call's index + 1: stable whatever order answers come in.
      const rid = index + 1;
      context.asked.set(rid, c);
      enqueue.raise({ type: 'opaca.giveUp', rid, now: 0 }, { id: `give-up:${rid}`, delay: context.cfg.timeoutMs });
      const token = c.token ?? (c.as !== undefined ? context.tokens.get(`${c.platform}|${c.as}`) : undefined);
      enqueue.emit(
        effect.send(c.platform, {
          type: 'OpacaRequest',
          rid,
          method: c.method,
          path: c.path,
          ...(c.query ? { query: c.query } : {}),
          ...(c.body !== undefined ? { body: c.body } : {}),
          ...(token !== undefined ? { token } : {}),
        } satisfies OpacaRequest),
      );
    }),
    take: enqueueActions(({ context, event, enqueue }) => {
      const m = (event as { msg: OpacaResponse }).msg;
      const c = context.asked.get(m.re);
      if (c === undefined) return;
      context.asked.delete(m.re);
      enqueue.cancel(`give-up:${m.re}`);
      if (m.status === 200 && typeof m.body === 'string') {
        // A login's token is its user's from now on; a renewal's replaces the one it was asked with.
        const user = c.path === '/login' ? loginUser(c.body) : c.path === '/token' ? c.as : undefined;
        if (user !== undefined) context.tokens.set(`${c.platform}|${user}`, m.body);
      }
      enqueue.emit(
        effect.observe<ClientObservation>({ kind: 'opaca.client.answer', rid: m.re, path: c.path, status: m.status, body: m.body }),
      );
    }),
    /** No answer in time, or the platform is down and refused the connection: the call is given up. */
    giveUp: enqueueActions(({ context, event, enqueue }) => {
      const refused = event.type === 'host.refused';
      const rid = refused ? (event as RefusedEvent).msg.re : (event as { rid: number }).rid;
      const c = context.asked.get(rid);
      if (c === undefined) return;
      context.asked.delete(rid);
      if (refused) enqueue.cancel(`give-up:${rid}`);
      enqueue.emit(
        effect.observe<ClientObservation>({
          kind: 'opaca.client.answer',
          rid,
          path: c.path,
          status: 0,
          body: refused ? 'refused' : 'no answer',
        }),
      );
    }),
  },
}).createMachine({
  id: 'opaca.client',
  context: ({ input }) => ({
    cfg: input,
    // Call indices in time order (a stable sort: calls at one time go in the order given).
    order: input.calls.map((_, i) => i).sort((a, b) => input.calls[a].atMs - input.calls[b].atMs || a - b),
    asked: new Map(),
    tokens: new Map(),
  }),
  initial: 'calling',
  states: {
    calling: {
      entry: 'schedule',
      on: {
        'opaca.callDue': { actions: 'call' },
        OpacaResponse: { actions: 'take' },
        'opaca.giveUp': { actions: 'giveUp' },
        'host.refused': { actions: 'giveUp' },
      },
    },
  },
});
