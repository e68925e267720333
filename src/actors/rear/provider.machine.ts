/**
 * The REAR **provider** (`shared/protocols/rear.md`, "Provider behaviour"): publishes a catalogue of
 * flavors, lists the available ones that match a selector, reserves (a transaction with a Time To
 * Purchase deadline), sells (a contract; a partition of a partitionable k8slice leaves its remainder
 * on offer), and sweeps expired transactions so their held capacity returns.
 *
 * Two modes:
 * - `strict` (the spec): unknown flavor or transaction → 404; a flavor or partition that is no longer
 *   available → 409 at reserve (an open transaction holds its capacity); an expired transaction →
 *   408; a repeated purchase returns the same contract; the sweep drops every expired transaction.
 * - `fluidos` (the implementation): no availability check at reserve and none at purchase (two
 *   buyers can both buy one flavor: the double sell); partitions are not checked against the grid or
 *   what is left; unknown flavor or transaction and a repeated purchase → 500; the sweep drops one
 *   expired transaction per tick.
 *
 * Not modelled yet: token checks (the token authority; every token is accepted), subscriptions with
 * refresh and withdraw, and the implementation's asynchronous allocation. The remainder of a
 * partition stays on offer under the same flavor id with its characteristics set to what is left
 * (the spec publishes it as a new flavor).
 * The context is owned, mutable state (see the manager/worker machines).
 */
import { enqueueActions, setup } from 'xstate';
import { effect } from '../../protocol/host.js';
import type {
  Contract,
  Flavor,
  ListAnswer,
  NodeIdentity,
  Partition,
  PurchaseAnswer,
  RearMessage,
  RearMode,
  RearStatus,
  ReserveAnswer,
  Transaction,
} from '../../protocol/rear.js';
import { matchesSelector, partitionProblem, REAR_STATUS, selectorProblem } from '../../protocol/rear.js';

export interface ProviderInput {
  name: string;
  mode: RearMode;
  identity: NodeIdentity;
  /** The catalogue at start. */
  flavors: Flavor[];
  /** Time To Purchase of a transaction. */
  ttpMs: number;
  /** Period of the expired-transaction sweep. */
  sweepMs: number;
  contractDays: number;
  /** The token authority's actor name: reserves and purchases wait for its verdict (401 when refused). */
  authority?: string;
}

/** An open or purchased transaction. */
interface Held {
  tx: Transaction;
  partition?: Partition;
  /** A reservation of the whole of a partitionable flavor: it holds everything left. */
  whole?: boolean;
  contract?: Contract;
}

/** A flavor and what is left of it. */
interface Offer {
  flavor: Flavor;
  /** Capacity left to sell (partitionable k8slices): contracts taken off. */
  left?: Partition;
  /** Contracts sold on it. */
  sold: number;
  withdrawn: boolean;
}

export interface ProviderContext {
  cfg: ProviderInput;
  offers: Map<string, Offer>;
  held: Map<string, Held>;
  /** Open transaction of a (buyer node, flavor) pair. */
  openOf: Map<string, string>;
  nextTx: number;
  nextContract: number;
  nextFlavor: number;
  /** Requests waiting for the authority's verdict on their token, by the ValidateToken's rid. */
  parked: Map<number, { from: string; msg: RearMessage }>;
  authRid: number;
}

type MessageEvent = { type: RearMessage['type']; from: string; msg: RearMessage; now: number };
type ProviderEvent = MessageEvent | { type: `xstate.after.${string}`; now: number } | { type: 'host.shutdown'; now: number };

export type ProviderObservation =
  | { kind: 'rear.reserved'; transactionId: string; flavorId: string; buyer: string; expirationTimeUs: number; partition?: Partition }
  | { kind: 'rear.refused'; call: 'reserve' | 'purchase'; status: number; id: string; reason: string }
  | { kind: 'rear.sold'; contractId: string; transactionId: string; flavorId: string; buyer: string; partition?: Partition }
  | { kind: 'rear.expired'; transactionId: string; flavorId: string };

/** The request an action serves: the event itself, or the request parked for the verdict that came. */
function requestOf(context: ProviderContext, event: ProviderEvent): MessageEvent {
  const e = event as MessageEvent;
  if (e.msg.type !== 'TokenVerdict') return e;
  const parked = context.parked.get(e.msg.re)!;
  context.parked.delete(e.msg.re);
  return { type: parked.msg.type, from: parked.from, msg: parked.msg, now: e.now };
}

const verdictOf = (context: ProviderContext, event: ProviderEvent) => {
  const m = (event as MessageEvent).msg;
  return m?.type === 'TokenVerdict' && context.parked.has(m.re) ? { verdict: m, request: context.parked.get(m.re)!.msg } : undefined;
};

/**
 * A refused reserve or purchase: the error answer to `to`, and the observation the checker and the
 * metrics read (`id`: the flavor asked for, or the transaction).
 */
function refusal(to: string, call: 'reserve' | 'purchase', re: number, id: string, status: RearStatus, reason: string) {
  const answer: ReserveAnswer | PurchaseAnswer =
    call === 'reserve' ? { type: 'ReserveAnswer', re, status, error: reason } : { type: 'PurchaseAnswer', re, status, error: reason };
  return [effect.send(to, answer), effect.observe<ProviderObservation>({ kind: 'rear.refused', call, status, id, reason })] as const;
}

const pairKey = (buyer: NodeIdentity, flavorId: string): string => `${buyer.domain}/${buyer.nodeId}|${flavorId}`;
const sub = (a: Partition, b: Partition): Partition => ({
  cpuMilli: a.cpuMilli - b.cpuMilli,
  memoryBytes: a.memoryBytes - b.memoryBytes,
  pods: a.pods - b.pods,
});
const DAY_US = 86_400_000_000;

/** The whole capacity of a partitionable k8slice, or undefined for any other flavor. */
function capacityOf(f: Flavor): Partition | undefined {
  const t = f.type;
  if (t.name !== 'k8slice' || !t.partitionability) return undefined;
  return { cpuMilli: t.characteristics.cpuMilli, memoryBytes: t.characteristics.memoryBytes, pods: t.characteristics.pods };
}

/** Capacity an offer has for a new reservation in strict mode: what is left minus open holds. */
function freeOf(ctx: ProviderContext, offer: Offer, nowUs: number): Partition | undefined {
  let free = offer.left;
  if (!free) return undefined;
  for (const h of ctx.held.values()) {
    if (h.tx.flavorId !== offer.flavor.flavorId || h.contract || h.tx.expirationTimeUs < nowUs) continue;
    if (h.whole) return { cpuMilli: 0, memoryBytes: 0, pods: 0 };
    if (h.partition) free = sub(free, h.partition);
  }
  return free;
}

/** Is someone else holding or owning a non-partitionable flavor (strict)? */
function takenBy(ctx: ProviderContext, offer: Offer, nowUs: number, pair: string): boolean {
  if (offer.sold > 0) return true;
  for (const [id, h] of ctx.held) {
    if (h.tx.flavorId !== offer.flavor.flavorId || h.contract || h.tx.expirationTimeUs < nowUs) continue;
    if (ctx.openOf.get(pair) !== id) return true;
  }
  return false;
}

export const providerMachine = setup({
  types: {
    context: {} as ProviderContext,
    events: {} as ProviderEvent,
    input: {} as ProviderInput,
    emitted: {} as ReturnType<typeof effect.send> | ReturnType<typeof effect.observe<ProviderObservation>>,
  },
  delays: {
    sweep: ({ context }) => context.cfg.sweepMs,
  },
  guards: {
    needsToken: ({ context }) => context.cfg.authority !== undefined,
    validReserve: ({ context, event }) => {
      const v = verdictOf(context, event);
      return v !== undefined && v.verdict.valid && v.request.type === 'ReserveFlavor';
    },
    validPurchase: ({ context, event }) => {
      const v = verdictOf(context, event);
      return v !== undefined && v.verdict.valid && v.request.type === 'PurchaseFlavor';
    },
    refusedToken: ({ context, event }) => verdictOf(context, event) !== undefined,
  },
  actions: {
    /** Parks a reserve or purchase and asks the authority about its token. */
    askAuthority: enqueueActions(({ context, event, enqueue }) => {
      const e = event as MessageEvent;
      const token = (e.msg as { token?: string }).token ?? '';
      context.parked.set(++context.authRid, { from: e.from, msg: e.msg });
      enqueue.emit(effect.send(context.cfg.authority!, { type: 'ValidateToken', rid: context.authRid, token }));
    }),
    /** An expired or forged token: 401. */
    unauthorized: enqueueActions(({ context, event, enqueue }) => {
      const { verdict } = verdictOf(context, event)!;
      const e = requestOf(context, event);
      const m = e.msg as Extract<RearMessage, { type: 'ReserveFlavor' | 'PurchaseFlavor' }>;
      const reason = `token ${(verdict as Extract<RearMessage, { type: 'TokenVerdict' }>).reason ?? 'refused'}`;
      const [call, id] =
        m.type === 'ReserveFlavor' ? (['reserve', m.reservation.flavorId] as const) : (['purchase', m.transactionId] as const);
      for (const x of refusal(e.from, call, m.rid, id, REAR_STATUS.unauthorized, reason)) enqueue.emit(x);
    }),
    list: enqueueActions(({ context, event, enqueue }) => {
      const e = event as Extract<ProviderEvent, { from: string }>;
      const m = e.msg as Extract<RearMessage, { type: 'ListFlavors' }>;
      const bad = m.selector ? selectorProblem(m.selector) : undefined;
      const flavors = bad
        ? []
        : [...context.offers.values()]
            .filter((o) => !o.withdrawn && o.flavor.availability && matchesSelector(o.flavor, m.selector))
            .map((o) => o.flavor);
      const answer: ListAnswer = { type: 'ListAnswer', re: m.rid, status: bad ? REAR_STATUS.badRequest : REAR_STATUS.ok, flavors };
      enqueue.emit(effect.send(e.from, answer));
    }),

    reserve: enqueueActions(({ context, event, enqueue }) => {
      const e = requestOf(context, event);
      const m = e.msg as Extract<RearMessage, { type: 'ReserveFlavor' }>;
      const { flavorId, buyer, configuration } = m.reservation;
      const strict = context.cfg.mode === 'strict';
      const refuse = (status: RearStatus, reason: string): void => {
        for (const x of refusal(e.from, 'reserve', m.rid, flavorId, status, reason)) enqueue.emit(x);
      };
      const offer = context.offers.get(flavorId);
      if (!offer) return refuse(strict ? REAR_STATUS.notFound : REAR_STATUS.internal, `no flavor ${flavorId}`);
      const pair = pairKey(buyer, flavorId);
      const openId = context.openOf.get(pair);
      const open = openId === undefined ? undefined : context.held.get(openId);
      // A repeated reserve by the same buyer extends its open transaction (never shortens it).
      if (open && !open.contract && open.tx.expirationTimeUs >= e.now) {
        open.tx.expirationTimeUs = Math.max(open.tx.expirationTimeUs, e.now + context.cfg.ttpMs * 1000);
        enqueue.emit(effect.send(e.from, { type: 'ReserveAnswer', re: m.rid, status: REAR_STATUS.ok, transaction: { ...open.tx } }));
        enqueue.emit(
          effect.observe<ProviderObservation>({
            kind: 'rear.reserved',
            transactionId: open.tx.transactionId,
            flavorId,
            buyer: buyer.nodeId,
            expirationTimeUs: open.tx.expirationTimeUs,
            ...(open.partition ? { partition: open.partition } : {}),
          }),
        );
        return;
      }
      const partition = configuration?.data;
      if (strict) {
        if (offer.withdrawn || !offer.flavor.availability) return refuse(REAR_STATUS.conflict, `flavor ${flavorId} is no longer available`);
        const t = offer.flavor.type;
        if (partition) {
          if (t.name !== 'k8slice' || !t.partitionability) return refuse(REAR_STATUS.conflict, `flavor ${flavorId} cannot be partitioned`);
          const problem = partitionProblem(partition, t.partitionability, freeOf(context, offer, e.now)!);
          if (problem) return refuse(REAR_STATUS.conflict, problem);
        } else if (offer.left) {
          // The whole of a partitionable flavor: nothing may be sold or held of it.
          const free = freeOf(context, offer, e.now)!;
          const cap = capacityOf(offer.flavor)!;
          if (free.cpuMilli !== cap.cpuMilli || free.memoryBytes !== cap.memoryBytes || free.pods !== cap.pods)
            return refuse(REAR_STATUS.conflict, `flavor ${flavorId} is partly taken`);
        } else if (takenBy(context, offer, e.now, pair)) return refuse(REAR_STATUS.conflict, `flavor ${flavorId} is already reserved`);
      }
      const tx: Transaction = {
        transactionId: `${context.cfg.name}-tx-${++context.nextTx}`,
        flavorId,
        buyer,
        expirationTimeUs: e.now + context.cfg.ttpMs * 1000,
      };
      context.held.set(tx.transactionId, { tx, partition, whole: !partition && offer.left !== undefined });
      context.openOf.set(pair, tx.transactionId);
      enqueue.emit(
        effect.send(e.from, { type: 'ReserveAnswer', re: m.rid, status: REAR_STATUS.ok, transaction: { ...tx } } satisfies ReserveAnswer),
      );
      enqueue.emit(
        effect.observe<ProviderObservation>({
          kind: 'rear.reserved',
          transactionId: tx.transactionId,
          flavorId,
          buyer: buyer.nodeId,
          expirationTimeUs: tx.expirationTimeUs,
          ...(partition ? { partition } : {}),
        }),
      );
    }),

    purchase: enqueueActions(({ context, event, enqueue }) => {
      const e = requestOf(context, event);
      const m = e.msg as Extract<RearMessage, { type: 'PurchaseFlavor' }>;
      const strict = context.cfg.mode === 'strict';
      const refuse = (status: RearStatus, reason: string): void => {
        for (const x of refusal(e.from, 'purchase', m.rid, m.transactionId, status, reason)) enqueue.emit(x);
      };
      const h = context.held.get(m.transactionId);
      if (!h) return refuse(strict ? REAR_STATUS.notFound : REAR_STATUS.internal, `no transaction ${m.transactionId}`);
      if (h.contract) {
        // Strict: idempotent. The implementation answers 500.
        if (!strict) return refuse(REAR_STATUS.internal, `transaction ${m.transactionId} already purchased`);
        enqueue.emit(
          effect.send(e.from, { type: 'PurchaseAnswer', re: m.rid, status: REAR_STATUS.ok, contract: h.contract } satisfies PurchaseAnswer),
        );
        return;
      }
      if (e.now > h.tx.expirationTimeUs) {
        context.held.delete(m.transactionId);
        context.openOf.delete(pairKey(h.tx.buyer, h.tx.flavorId));
        enqueue.emit(
          effect.observe<ProviderObservation>({ kind: 'rear.expired', transactionId: m.transactionId, flavorId: h.tx.flavorId }),
        );
        return refuse(REAR_STATUS.expired, `transaction ${m.transactionId} expired at ${h.tx.expirationTimeUs}`);
      }
      const offer = context.offers.get(h.tx.flavorId);
      if (!offer) return refuse(strict ? REAR_STATUS.notFound : REAR_STATUS.internal, `no flavor ${h.tx.flavorId}`);
      const contract: Contract = {
        contractId: `${context.cfg.name}-contract-${++context.nextContract}`,
        transactionId: h.tx.transactionId,
        flavor: offer.flavor,
        buyer: h.tx.buyer,
        seller: context.cfg.identity,
        expirationTimeUs: e.now + context.cfg.contractDays * DAY_US,
        credentials: `token-${context.cfg.name}-${context.nextContract}`,
        ...(h.partition ? { partition: h.partition } : {}),
      };
      h.contract = contract;
      context.openOf.delete(pairKey(h.tx.buyer, h.tx.flavorId));
      offer.sold++;
      if (h.partition && offer.left && offer.flavor.type.name === 'k8slice') {
        // What is left stays on offer, with its characteristics set to the remainder; strict mode
        // offers it only while every dimension is at least the minimum (the implementation does not check).
        const left = sub(offer.left, h.partition);
        offer.left = left;
        const t = offer.flavor.type;
        const p = t.partitionability!;
        const offered = strict
          ? left.cpuMilli >= p.cpuMinMilli && left.memoryBytes >= p.memoryMinBytes && left.pods >= p.podsMin
          : left.cpuMilli > 0 || left.memoryBytes > 0 || left.pods > 0;
        offer.flavor = {
          ...offer.flavor,
          timestamp: e.now,
          availability: offered,
          type: {
            ...t,
            characteristics: { ...t.characteristics, cpuMilli: left.cpuMilli, memoryBytes: left.memoryBytes, pods: left.pods },
          },
        };
      } else {
        // The whole flavor is sold.
        offer.flavor = { ...offer.flavor, availability: false };
        if (offer.left) offer.left = { cpuMilli: 0, memoryBytes: 0, pods: 0 };
      }
      enqueue.emit(effect.send(e.from, { type: 'PurchaseAnswer', re: m.rid, status: REAR_STATUS.ok, contract } satisfies PurchaseAnswer));
      enqueue.emit(
        effect.observe<ProviderObservation>({
          kind: 'rear.sold',
          contractId: contract.contractId,
          transactionId: contract.transactionId,
          flavorId: h.tx.flavorId,
          buyer: h.tx.buyer.nodeId,
          ...(h.partition ? { partition: h.partition } : {}),
        }),
      );
    }),

    /** Drops expired transactions (strict: all of them; the implementation: one per sweep). */
    sweep: enqueueActions(({ context, event, enqueue }) => {
      const nowUs = (event as { now: number }).now;
      for (const [id, h] of context.held) {
        if (h.contract || h.tx.expirationTimeUs >= nowUs) continue;
        context.held.delete(id);
        if (context.openOf.get(pairKey(h.tx.buyer, h.tx.flavorId)) === id) context.openOf.delete(pairKey(h.tx.buyer, h.tx.flavorId));
        enqueue.emit(effect.observe<ProviderObservation>({ kind: 'rear.expired', transactionId: id, flavorId: h.tx.flavorId }));
        if (context.cfg.mode === 'fluidos') break;
      }
    }),
  },
}).createMachine({
  id: 'rear.provider',
  context: ({ input }) => ({
    cfg: input,
    offers: new Map(input.flavors.map((f) => [f.flavorId, { flavor: f, left: capacityOf(f), sold: 0, withdrawn: false }])),
    held: new Map(),
    openOf: new Map(),
    nextTx: 0,
    nextContract: 0,
    nextFlavor: 0,
    parked: new Map(),
    authRid: 0,
  }),
  initial: 'serving',
  states: {
    serving: {
      after: { sweep: { target: 'serving', reenter: true, actions: 'sweep' } },
      on: {
        ListFlavors: { actions: 'list' },
        ReserveFlavor: [{ guard: 'needsToken', actions: 'askAuthority' }, { actions: 'reserve' }],
        PurchaseFlavor: [{ guard: 'needsToken', actions: 'askAuthority' }, { actions: 'purchase' }],
        TokenVerdict: [
          { guard: 'validReserve', actions: 'reserve' },
          { guard: 'validPurchase', actions: 'purchase' },
          { guard: 'refusedToken', actions: 'unauthorized' },
        ],
      },
    },
  },
});
