/**
 * Virdi clients (`shared/protocols/virdi.md`): the **producer** (offers a resource; each
 * ProductionRequest opens a Produce stream whose chunks the buffer/rate core generates at the
 * producer's interval, until the server aborts it with RESOURCE_EXHAUSTED) and the **consumer**
 * (asks for a resource at a maximum rate, receives through the core, may cancel when its own buffer
 * is full, leaves and may come back with the same id). Pure protocol logic: effects are data.
 */
import { enqueueActions, setup } from 'xstate';
import { effect } from '../../protocol/host.js';
import type { CallEnd, CoreEvent, StatusCode } from '../../protocol/virdi.js';
import type { VirdiEmitted, VirdiMessageEvent } from './server.machine.js';

type ClientEvent = VirdiMessageEvent | CoreEvent | { type: `xstate.after.${string}`; now: number } | { type: 'host.shutdown'; now: number };

const callEnd = (ev: ClientEvent): CallEnd | undefined => {
  const m = (ev as VirdiMessageEvent).msg;
  return m?.type === 'CallEnd' ? m : undefined;
};

export interface ProducerInput {
  name: string;
  server: string;
  resource: string;
  /** The gRPC `client-id` metadata; undefined: missing. */
  clientId: string | undefined;
  /** When the producer offers (after the start). */
  offerAfterMs: number;
  /** When it closes its stream and leaves, if ever (after the start). */
  leaveAfterMs: number | undefined;
  /** How long it waits to offer again after the server's streams broke. */
  retryMs: number;
}

export interface ProducerContext {
  cfg: ProducerInput;
  rid: number;
  /** The open Produce call, or -1. */
  stream: number;
}

export const producerMachine = setup({
  types: { context: {} as ProducerContext, events: {} as ClientEvent, input: {} as ProducerInput, emitted: {} as VirdiEmitted },
  delays: {
    offerAfter: ({ context }) => context.cfg.offerAfterMs,
    retry: ({ context }) => context.cfg.retryMs,
    /** leaveAt is a point in time: the delay counts from the event that entered the state. */
    leaveAfter: ({ context, event }) => Math.max(0, (context.cfg.leaveAfterMs ?? 0) - (event as { now?: number }).now! / 1000),
  },
  guards: {
    leaves: ({ context }) => context.cfg.leaveAfterMs !== undefined,
    offerRefused: ({ event }) => callEnd(event)?.call === 'OfferProduction',
    streamEnded: ({ context, event }) => callEnd(event)?.call === 'Produce' && callEnd(event)?.re === context.stream,
  },
  actions: {
    offer: enqueueActions(({ context, enqueue }) => {
      context.rid++;
      enqueue.emit(
        effect.send(context.cfg.server, {
          type: 'OfferProduction',
          rid: context.rid,
          client_id: context.cfg.clientId,
          resource_id: context.cfg.resource,
        }),
      );
    }),
    /** A ProductionRequest: open a Produce stream unless one is open. */
    produce: enqueueActions(({ context, enqueue }) => {
      if (context.stream >= 0) return;
      context.rid++;
      context.stream = context.rid;
      enqueue.emit(
        effect.send(context.cfg.server, {
          type: 'Produce',
          rid: context.rid,
          client_id: context.cfg.clientId,
          init_info: { resource_id: context.cfg.resource },
        }),
      );
    }),
    streamEnded: enqueueActions(({ context, event, enqueue }) => {
      context.stream = -1;
      const end = callEnd(event)!;
      if (end.code !== 'RESOURCE_EXHAUSTED' && end.code !== 'OK') {
        enqueue.emit(effect.observe({ kind: 'virdi.client.refused', call: end.call, code: end.code }));
      }
    }),
    refused: enqueueActions(({ event, enqueue }) => {
      const end = callEnd(event)!;
      enqueue.emit(effect.observe({ kind: 'virdi.client.refused', call: end.call, code: end.code }));
    }),
    forgetStream: ({ context }) => {
      context.stream = -1;
    },
    leave: enqueueActions(({ context, enqueue }) => {
      if (context.stream >= 0) enqueue.emit(effect.send(context.cfg.server, { type: 'ProduceClose', re: context.stream }));
      context.stream = -1;
    }),
  },
}).createMachine({
  id: 'virdi.producer',
  context: ({ input }) => ({ cfg: input, rid: 0, stream: -1 }),
  initial: 'starting',
  states: {
    starting: { after: { offerAfter: { target: 'offered', actions: 'offer' } } },
    offered: {
      after: { leaveAfter: { guard: 'leaves', target: 'gone', actions: 'leave' } },
      on: {
        ProductionRequest: { actions: 'produce' },
        CallEnd: [
          { guard: 'offerRefused', target: 'gone', actions: 'refused' },
          { guard: 'streamEnded', actions: 'streamEnded' },
        ],
        'host.streamBroken': { target: 'broken', actions: 'forgetStream' },
      },
    },
    /** The server went away: offer again after a while. */
    broken: {
      after: { retry: { target: 'offered', actions: 'offer' } },
    },
    gone: { type: 'final' },
  },
});

export interface ConsumerInput {
  name: string;
  server: string;
  consumerId: string;
  clientId: string | undefined;
  resource: string;
  maxRate: number;
  bufferLimit: number;
  current: number;
  /** When it first asks (after the start). */
  arriveAfterMs: number;
  /** How long a stream lasts before the consumer leaves, if it does. */
  stayMs: number | undefined;
  /** Cancel with RESOURCE_EXHAUSTED when its own buffer is full. */
  cancelWhenFull: boolean;
  /** How long after leaving it comes back with the same id, and how many times. */
  reconnectAfterMs: number;
  reconnects: number;
}

export interface ConsumerContext {
  cfg: ConsumerInput;
  rid: number;
  reconnectsLeft: number;
}

export const consumerMachine = setup({
  types: { context: {} as ConsumerContext, events: {} as ClientEvent, input: {} as ConsumerInput, emitted: {} as VirdiEmitted },
  delays: {
    arriveAfter: ({ context }) => context.cfg.arriveAfterMs,
    stay: ({ context }) => context.cfg.stayMs ?? 0,
    reconnectAfter: ({ context }) => context.cfg.reconnectAfterMs,
  },
  guards: {
    leaves: ({ context }) => context.cfg.stayMs !== undefined,
    cancelsWhenFull: ({ context }) => context.cfg.cancelWhenFull,
    comesBack: ({ context }) => context.reconnectsLeft > 0,
    ours: ({ context, event }) => callEnd(event)?.re === context.rid,
  },
  actions: {
    ask: enqueueActions(({ context, enqueue }) => {
      const c = context.cfg;
      context.rid++;
      enqueue.emit(
        effect.send(c.server, {
          type: 'Consume',
          rid: context.rid,
          client_id: c.clientId,
          consumer_id: c.consumerId,
          resource_id: c.resource,
          max_rate: c.maxRate,
          buffer_limit: c.bufferLimit,
          current_buffer_amount: c.current,
        }),
      );
    }),
    cancel: enqueueActions(({ context, event, enqueue }) => {
      const code: StatusCode = event.type === 'core.clientFull' ? 'RESOURCE_EXHAUSTED' : 'CANCELLED';
      enqueue.emit(effect.send(context.cfg.server, { type: 'ConsumeCancel', re: context.rid, code }));
    }),
    refused: enqueueActions(({ event, enqueue }) => {
      const end = callEnd(event)!;
      enqueue.emit(effect.observe({ kind: 'virdi.client.refused', call: end.call, code: end.code }));
    }),
    countReconnect: ({ context }) => {
      context.reconnectsLeft--;
    },
  },
}).createMachine({
  id: 'virdi.consumer',
  context: ({ input }) => ({ cfg: input, rid: 0, reconnectsLeft: input.reconnects }),
  initial: 'waiting',
  states: {
    waiting: { after: { arriveAfter: { target: 'asking', actions: 'ask' } } },
    asking: {
      on: {
        ConsumeOpened: { target: 'streaming' },
        CallEnd: { guard: 'ours', target: 'left', actions: 'refused' },
        'host.streamBroken': { target: 'left' },
      },
    },
    streaming: {
      after: { stay: { guard: 'leaves', target: 'left', actions: 'cancel' } },
      on: {
        'core.clientFull': { guard: 'cancelsWhenFull', target: 'left', actions: 'cancel' },
        CallEnd: { guard: 'ours', target: 'left', actions: 'refused' },
        'host.streamBroken': { target: 'left' },
      },
    },
    left: {
      after: { reconnectAfter: { guard: 'comesBack', target: 'asking', actions: ['countReconnect', 'ask'] } },
    },
  },
});
