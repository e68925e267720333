/**
 * An OPACA **client**: makes the calls a scenario gives it — each an HTTP-shaped request to a
 * platform at a virtual time — and observes every answer with its status and body.
 */
import { enqueueActions, setup } from 'xstate';
import { effect } from '../../protocol/host.js';
import type { OpacaRequest, OpacaResponse } from '../../protocol/opaca.js';

export interface ClientCall {
  atMs: number;
  platform: string;
  method: OpacaRequest['method'];
  path: string;
  query?: Record<string, string>;
  body?: string;
}

export interface ClientInput {
  name: string;
  calls: ClientCall[];
}

export type ClientObservation = { kind: 'opaca.client.answer'; rid: number; path: string; status: number; body: unknown };

interface ClientContext {
  cfg: ClientInput;
  /** Request id → the path asked (for the observation). */
  asked: Map<number, string>;
}

type ClientEvent =
  | { type: 'opaca.callDue'; index: number; now: number }
  | { type: 'OpacaResponse'; from: string; msg: OpacaResponse; now: number }
  | { type: 'host.shutdown'; now: number };

export const clientMachine = setup({
  types: {
    context: {} as ClientContext,
    events: {} as ClientEvent,
    input: {} as ClientInput,
    emitted: {} as ReturnType<typeof effect.send> | ReturnType<typeof effect.observe<ClientObservation>>,
  },
  actions: {
    schedule: enqueueActions(({ context, enqueue }) => {
      context.cfg.calls.forEach((c, index) =>
        enqueue.raise({ type: 'opaca.callDue', index, now: 0 }, { id: `call:${index}`, delay: c.atMs }),
      );
    }),
    call: enqueueActions(({ context, event, enqueue }) => {
      const index = (event as { index: number }).index;
      const c = context.cfg.calls[index];
      // Request ids are the call's index + 1: stable whatever order answers come in.
      const rid = index + 1;
      context.asked.set(rid, c.path);
      enqueue.emit(
        effect.send(c.platform, {
          type: 'OpacaRequest',
          rid,
          method: c.method,
          path: c.path,
          ...(c.query ? { query: c.query } : {}),
          ...(c.body !== undefined ? { body: c.body } : {}),
        } satisfies OpacaRequest),
      );
    }),
    take: enqueueActions(({ context, event, enqueue }) => {
      const m = (event as { msg: OpacaResponse }).msg;
      const path = context.asked.get(m.re);
      if (path === undefined) return;
      context.asked.delete(m.re);
      enqueue.emit(effect.observe<ClientObservation>({ kind: 'opaca.client.answer', rid: m.re, path, status: m.status, body: m.body }));
    }),
  },
}).createMachine({
  id: 'opaca.client',
  context: ({ input }) => ({ cfg: input, asked: new Map() }),
  initial: 'calling',
  states: {
    calling: {
      entry: 'schedule',
      on: { 'opaca.callDue': { actions: 'call' }, OpacaResponse: { actions: 'take' } },
    },
  },
});
