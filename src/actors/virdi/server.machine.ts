/**
 * The Virdi **server** (`shared/protocols/virdi.md`, "Server behaviour"): registers producers and
 * consumers, validates calls, asks producers for production when the global buffer is not full,
 * aborts Produce streams on the core's say-so and opens or closes the core's buffers. The units
 * themselves move in the buffer/rate core; this machine sees only its edges (`core.*` events) and
 * asks the host for buffer operations as `host.exec` effects:
 *
 * - `core.openProducer` / `core.closeProducer` (`ref`: the producer),
 * - `core.openConsumer` (`ref`: the consumer actor; data: maxRate, limit, current),
 * - `core.closeConsumer` (`ref`: the consumer actor; data: keep — strict mode returns its units to the
 *   global buffer, the original loses them).
 *
 * The context is owned, mutable state (see actors/manager-worker/worker.machine.ts).
 */
import { enqueueActions, setup } from 'xstate';
import type { ExecEffect, ObserveEffect, SendEffect } from '../../protocol/host.js';
import { effect } from '../../protocol/host.js';
import type { CallEnd, Consume, CoreEvent, StatusCode, VirdiMessage, VirdiMode, VirdiObservation } from '../../protocol/virdi.js';

export interface ServerInput {
  name: string;
  mode: VirdiMode;
  /** The resources this server knows (its configuration). */
  resources: string[];
  /** Resources whose global buffer is full when it starts (a restart finds buffers as they are). */
  full?: string[];
}

export type VirdiMessageEvent = { type: VirdiMessage['type']; from: string; msg: VirdiMessage; now: number };
export type ServerEvent = VirdiMessageEvent | CoreEvent | { type: 'host.shutdown'; now: number };
export type VirdiEmitted = SendEffect<VirdiMessage> | ObserveEffect<VirdiObservation> | ExecEffect;

export interface ServerContext {
  cfg: ServerInput;
  known: Set<string>;
  /** Registered producers per resource, with the id of their OfferProduction call. */
  offers: Map<string, Map<string, number>>;
  /** Open Produce streams: producer → call id. */
  streams: Map<string, number>;
  /** Open Consume streams: consumer_id → the consumer actor and its call id. */
  consumers: Map<string, { from: string; rid: number }>;
  /** consumer actor → its open consumer_id. */
  byActor: Map<string, string>;
  /** Every consumer_id ever registered (the original never forgets one). */
  everSeen: Set<string>;
  /** Resources whose global buffer is full (from the core's edges). */
  full: Set<string>;
}

type Enqueue = { emit: (e: VirdiEmitted) => void };

/** Requests above these are absurd: strict mode refuses them with INVALID_ARGUMENT. */
export const MAX_RATE_PER_MINUTE = 10_000_000;
export const MAX_BUFFER_LIMIT = 1_000_000_000;

function msgOf(ev: ServerEvent): VirdiMessage {
  return (ev as VirdiMessageEvent).msg;
}
function fromOf(ev: ServerEvent): string {
  return (ev as VirdiMessageEvent).from;
}

function end(enqueue: Enqueue, to: string, re: number, call: CallEnd['call'], code: StatusCode, message?: string): void {
  const msg: CallEnd = { type: 'CallEnd', re, call, code };
  if (message !== undefined) msg.message = message;
  enqueue.emit(effect.send(to, msg));
}

const registry = (what: 'producer' | 'stream' | 'consumer'): ObserveEffect<VirdiObservation> =>
  effect.observe({ kind: 'virdi.registry', what });

/** Why a Consume is refused in strict mode (INVALID_ARGUMENT), or undefined. */
export function invalidConsume(m: Consume): string | undefined {
  if (m.max_rate === 0) return 'max_rate must be above 0';
  if (m.max_rate > MAX_RATE_PER_MINUTE) return `max_rate ${m.max_rate} is above ${MAX_RATE_PER_MINUTE} per minute`;
  const limit = m.buffer_limit || m.max_rate;
  if (limit > MAX_BUFFER_LIMIT) return `buffer_limit ${limit} is above ${MAX_BUFFER_LIMIT}`;
  if (limit * 2 < m.max_rate) return `buffer_limit ${limit} holds less than 30 s of max_rate ${m.max_rate}`;
  return undefined;
}

export const serverMachine = setup({
  types: {
    context: {} as ServerContext,
    events: {} as ServerEvent,
    input: {} as ServerInput,
    emitted: {} as VirdiEmitted,
  },
  actions: {
    offer: enqueueActions(({ context, event, enqueue }) => {
      const m = msgOf(event);
      if (m.type !== 'OfferProduction') return;
      const from = fromOf(event);
      if (m.client_id === undefined || !context.known.has(m.resource_id)) {
        end(
          enqueue,
          from,
          m.rid,
          'OfferProduction',
          'FAILED_PRECONDITION',
          m.client_id === undefined ? 'missing client-id' : 'unknown resource',
        );
        return;
      }
      let producers = context.offers.get(m.resource_id);
      if (!producers) context.offers.set(m.resource_id, (producers = new Map()));
      producers.set(from, m.rid);
      enqueue.emit(registry('producer'));
      if (!context.full.has(m.resource_id)) enqueue.emit(effect.send(from, { type: 'ProductionRequest', re: m.rid }));
    }),
    produce: enqueueActions(({ context, event, enqueue }) => {
      const m = msgOf(event);
      if (m.type !== 'Produce') return;
      const from = fromOf(event);
      if (m.client_id === undefined || !context.known.has(m.init_info.resource_id)) {
        end(enqueue, from, m.rid, 'Produce', 'FAILED_PRECONDITION', m.client_id === undefined ? 'missing client-id' : 'unknown resource');
        return;
      }
      if (context.streams.has(from)) return; // one stream per producer; a second Produce changes nothing
      context.streams.set(from, m.rid);
      enqueue.emit(registry('stream'));
      enqueue.emit(effect.exec('core.openProducer', from, { resource: m.init_info.resource_id }));
    }),
    produceClose: enqueueActions(({ context, event, enqueue }) => {
      const m = msgOf(event);
      const from = fromOf(event);
      if (m.type !== 'ProduceClose' || context.streams.get(from) !== m.re) return;
      context.streams.delete(from);
      enqueue.emit(registry('stream'));
      enqueue.emit(effect.exec('core.closeProducer', from));
      end(enqueue, from, m.re, 'Produce', 'OK'); // ProductionResponse{}
    }),
    aborted: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'core.produceAborted') return;
      const rid = context.streams.get(event.producer);
      if (rid === undefined) return;
      context.streams.delete(event.producer);
      enqueue.emit(registry('stream'));
      end(enqueue, event.producer, rid, 'Produce', 'RESOURCE_EXHAUSTED');
    }),
    globalFull: ({ context, event }) => {
      if (event.type === 'core.globalFull') context.full.add(event.resource);
    },
    /** Full → not full: every registered producer of the resource is asked at once. */
    globalNotFull: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'core.globalNotFull') return;
      context.full.delete(event.resource);
      for (const [producer, rid] of context.offers.get(event.resource) ?? []) {
        enqueue.emit(effect.send(producer, { type: 'ProductionRequest', re: rid }));
      }
    }),
    consume: enqueueActions(({ context, event, enqueue }) => {
      const m = msgOf(event);
      if (m.type !== 'Consume') return;
      const from = fromOf(event);
      const refuse = (code: StatusCode, message: string): void => end(enqueue, from, m.rid, 'Consume', code, message);
      if (m.client_id === undefined) return refuse('FAILED_PRECONDITION', 'missing client-id');
      if (!context.known.has(m.resource_id)) return refuse('FAILED_PRECONDITION', 'unknown resource');
      const strict = context.cfg.mode === 'strict';
      if (context.consumers.has(m.consumer_id)) return refuse('FAILED_PRECONDITION', 'duplicate consumer_id');
      if (!strict && context.everSeen.has(m.consumer_id)) {
        // The original's registry keeps deleted ids: a consumer can never come back.
        enqueue.emit(effect.observe({ kind: 'virdi.reconnect.rejected', consumer_id: m.consumer_id, by: from }));
        return refuse('FAILED_PRECONDITION', 'duplicate consumer_id');
      }
      if (strict) {
        const invalid = invalidConsume(m);
        if (invalid !== undefined) return refuse('INVALID_ARGUMENT', invalid);
      } else if (m.max_rate === 0) {
        // The original registers the id, then divides by max_rate and the stream dies.
        context.everSeen.add(m.consumer_id);
        enqueue.emit(registry('consumer'));
        return refuse('INTERNAL', 'division by zero');
      }
      context.consumers.set(m.consumer_id, { from, rid: m.rid });
      context.byActor.set(from, m.consumer_id);
      context.everSeen.add(m.consumer_id);
      enqueue.emit(registry('consumer'));
      enqueue.emit(effect.observe({ kind: 'virdi.consume.open', consumer_id: m.consumer_id, by: from }));
      enqueue.emit(
        effect.exec('core.openConsumer', from, {
          resource: m.resource_id,
          maxRate: m.max_rate,
          limit: m.buffer_limit || m.max_rate,
          current: m.current_buffer_amount,
        }),
      );
      enqueue.emit(effect.send(from, { type: 'ConsumeOpened', re: m.rid }));
    }),
    /** A client's streams broke: its Consume or Produce stream ends, its offer is forgotten. */
    streamBroken: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'host.streamBroken') return;
      const peer = event.peer;
      const id = context.byActor.get(peer);
      if (id !== undefined) {
        context.consumers.delete(id);
        context.byActor.delete(peer);
        enqueue.emit(registry('consumer'));
        enqueue.emit(effect.exec('core.closeConsumer', peer, { keep: context.cfg.mode === 'strict' }));
        enqueue.emit(effect.observe({ kind: 'virdi.consume.close', consumer_id: id, by: peer, reason: 'crash' }));
      }
      if (context.streams.delete(peer)) {
        enqueue.emit(registry('stream'));
        enqueue.emit(effect.exec('core.closeProducer', peer));
      }
      for (const producers of context.offers.values()) if (producers.delete(peer)) enqueue.emit(registry('producer'));
    }),
    consumeCancel: enqueueActions(({ context, event, enqueue }) => {
      const m = msgOf(event);
      const from = fromOf(event);
      const id = context.byActor.get(from);
      if (m.type !== 'ConsumeCancel' || id === undefined || context.consumers.get(id)?.rid !== m.re) return;
      context.consumers.delete(id);
      context.byActor.delete(from);
      enqueue.emit(registry('consumer'));
      enqueue.emit(effect.exec('core.closeConsumer', from, { keep: context.cfg.mode === 'strict' }));
      enqueue.emit(effect.observe({ kind: 'virdi.consume.close', consumer_id: id, by: from, reason: 'cancel' }));
    }),
  },
}).createMachine({
  id: 'virdi.server',
  context: ({ input }) => ({
    cfg: input,
    known: new Set(input.resources),
    offers: new Map(),
    streams: new Map(),
    consumers: new Map(),
    byActor: new Map(),
    everSeen: new Set(),
    full: new Set(input.full),
  }),
  initial: 'serving',
  states: {
    serving: {
      on: {
        OfferProduction: { actions: 'offer' },
        Produce: { actions: 'produce' },
        ProduceClose: { actions: 'produceClose' },
        Consume: { actions: 'consume' },
        ConsumeCancel: { actions: 'consumeCancel' },
        'core.produceAborted': { actions: 'aborted' },
        'core.globalFull': { actions: 'globalFull' },
        'core.globalNotFull': { actions: 'globalNotFull' },
        'host.streamBroken': { actions: 'streamBroken' },
      },
    },
  },
});
