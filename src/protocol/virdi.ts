/**
 * Virdi protocol types (`shared/protocols/virdi.md`): the gRPC service's messages as protosim
 * envelopes, its status codes, the modes, and a validator for messages that arrive from outside.
 *
 * The gRPC calls become request/answer envelopes: a call is a request with `rid`; everything the
 * server sends on that call's stream answers it with `re = rid`. Client identity (gRPC metadata
 * `client-id`) travels as `client_id`; absent means the metadata was missing. The units themselves
 * (`ResourceProduction.amount`, `ResourceConsumption.amount`) flow through the buffer/rate core in
 * bulk, not as one message each; actors see only the core's edges (`core.*` events).
 */
import { z } from 'zod';

/** `strict` follows the protocol's corrections; `virdi` reproduces the original implementation. */
export const VIRDI_MODES = ['strict', 'virdi'] as const;
export type VirdiMode = (typeof VIRDI_MODES)[number];

/** gRPC status codes the protocol uses. */
export const STATUS_CODES = ['OK', 'CANCELLED', 'INVALID_ARGUMENT', 'FAILED_PRECONDITION', 'RESOURCE_EXHAUSTED', 'INTERNAL'] as const;
export type StatusCode = (typeof STATUS_CODES)[number];

// ---- producer → server -------------------------------------------------------------------------
/** `OfferProduction(ProductionOffer)`: registers for a resource; the server streams ProductionRequests back. */
export type OfferProduction = { type: 'OfferProduction'; rid: number; client_id?: string; resource_id: string };
/** `Produce`: opens the stream with its `init_info`; the amounts flow through the core. */
export type Produce = { type: 'Produce'; rid: number; client_id?: string; init_info: { resource_id: string } };
/** The producer closes its Produce stream (`re`: the Produce call). */
export type ProduceClose = { type: 'ProduceClose'; re: number };

// ---- consumer → server -------------------------------------------------------------------------
/** `Consume(ConsumptionRequest)`. */
export type Consume = {
  type: 'Consume';
  rid: number;
  client_id?: string;
  consumer_id: string;
  resource_id: string;
  /** Units per minute. */
  max_rate: number;
  /** 0: max_rate. */
  buffer_limit: number;
  current_buffer_amount: number;
};
/** The consumer cancels its stream (`code`: CANCELLED, or RESOURCE_EXHAUSTED when its buffer is full). */
export type ConsumeCancel = { type: 'ConsumeCancel'; re: number; code: StatusCode };

// ---- server → clients --------------------------------------------------------------------------
/** On the OfferProduction stream: produce now. */
export type ProductionRequest = { type: 'ProductionRequest'; re: number };
/** The Consume stream is open (the first streamed message; units follow through the core). */
export type ConsumeOpened = { type: 'ConsumeOpened'; re: number };
/** A call ends with a status: OK (ProductionResponse{} for a closed Produce), or an error. */
export type CallEnd = { type: 'CallEnd'; re: number; call: 'OfferProduction' | 'Produce' | 'Consume'; code: StatusCode; message?: string };

export type VirdiRequest = OfferProduction | Produce | Consume;
export type VirdiMessage = VirdiRequest | ProduceClose | ConsumeCancel | ProductionRequest | ConsumeOpened | CallEnd;

/** Events the buffer/rate core delivers (its edges), addressed to the actor they concern. */
export type CoreEvent =
  | { type: 'core.globalFull'; resource: string; now: number }
  | { type: 'core.globalNotFull'; resource: string; now: number }
  /** The core closed this producer's stream: the server aborts it with RESOURCE_EXHAUSTED. */
  | { type: 'core.produceAborted'; producer: string; now: number }
  /** The server's estimate reached 25 % and there was nothing to send. */
  | { type: 'core.starved'; now: number }
  /** The consumer's own buffer became full. */
  | { type: 'core.clientFull'; now: number }
  /**
   * The transport noticed that the peer's streams broke (it crashed or went away): the server learns
   * it of a client, a client of the server. Delivered with the next core step.
   */
  | { type: 'host.streamBroken'; peer: string; now: number };

/** Observations for the invariant checkers and metrics. */
export type VirdiObservation =
  /** Server: a Consume stream opened / closed for `consumer_id` (invariant 7). */
  | { kind: 'virdi.consume.open'; consumer_id: string; by: string }
  | { kind: 'virdi.consume.close'; consumer_id: string; by: string; reason: 'cancel' | 'crash' }
  /** Server (virdi mode): a reconnect refused because the registry keeps deleted ids. */
  | { kind: 'virdi.reconnect.rejected'; consumer_id: string; by: string }
  /** Server: its registries changed (invariant 9: a refused request must not change them). */
  | { kind: 'virdi.registry'; what: 'producer' | 'stream' | 'consumer' }
  /** Consumer: it gave up (a call ended with an error). */
  | { kind: 'virdi.client.refused'; call: string; code: StatusCode };

const ridField = z.number().int().min(0);
const clientId = z.string().min(1).optional();
const units = z.number().int().min(0).max(0xffffffff);

const messageSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('OfferProduction'), rid: ridField, client_id: clientId, resource_id: z.string() }),
  z.strictObject({
    type: z.literal('Produce'),
    rid: ridField,
    client_id: clientId,
    init_info: z.strictObject({ resource_id: z.string() }),
  }),
  z.strictObject({ type: z.literal('ProduceClose'), re: ridField }),
  z.strictObject({
    type: z.literal('Consume'),
    rid: ridField,
    client_id: clientId,
    consumer_id: z.string(),
    resource_id: z.string(),
    max_rate: units,
    buffer_limit: units,
    current_buffer_amount: units,
  }),
  z.strictObject({ type: z.literal('ConsumeCancel'), re: ridField, code: z.enum(STATUS_CODES) }),
  z.strictObject({ type: z.literal('ProductionRequest'), re: ridField }),
  z.strictObject({ type: z.literal('ConsumeOpened'), re: ridField }),
  z.strictObject({
    type: z.literal('CallEnd'),
    re: ridField,
    call: z.enum(['OfferProduction', 'Produce', 'Consume']),
    code: z.enum(STATUS_CODES),
    message: z.string().optional(),
  }),
]);

/** Validates a Virdi message from outside (an injected message in a scenario, a live transport). */
export function parseVirdiMessage(input: unknown): { ok: true; msg: VirdiMessage } | { ok: false; error: string } {
  const r = messageSchema.safeParse(input);
  if (r.success) return { ok: true, msg: r.data as VirdiMessage };
  const issue = r.error.issues[0];
  return { ok: false, error: `${issue.path.join('.') || '(message)'}: ${issue.message.replace(/^Invalid input: /, '')}` };
}
