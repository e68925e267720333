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
 *   Subscriptions: every `refreshMs` each subscriber of an available flavor gets a Refresh; a sale
 *   that changes a flavor pushes a modified Refresh, one that leaves nothing to sell a Withdraw; an
 *   operator's WithdrawFlavor withdraws it (subscribers told, open transactions cancelled: a purchase
 *   of one → 409, a later reserve → 409).
 * - `fluidos` (the implementation): no availability check at reserve and none at purchase (two
 *   buyers can both buy one flavor: the double sell); a sale shows in the listing only after the
 *   asynchronous allocation (`allocationMs`); partitions are not checked against the grid or what is
 *   left; unknown flavor or transaction and a repeated purchase → 500; the sweep drops one expired
 *   transaction per tick; subscriptions, refresh and withdraw are not implemented (subscribe → 500,
 *   an operator's withdraw is ignored).
 *
 * Restart (a crash fault with `restart`): the catalogue, the contracts and the withdrawals are
 * durable (the implementation keeps them as Kubernetes resources) and come back through
 * `restore`; open transactions and subscriptions lived in memory and are gone, so a purchase of a
 * transaction reserved before the crash is refused as unknown (404; 500 in fluidos).
 *
 * The remainder of a partition stays on offer under the same flavor id with its characteristics set
 * to what is left (the spec publishes it as a new flavor).
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
  Refresh,
  ReserveAnswer,
  SubscribeAnswer,
  Transaction,
  Withdraw,
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
  /** Strict: period of the Refresh pushed to subscribers (0: never). */
  refreshMs: number;
  /** Fluidos: how long after a sale the listing shows it (the asynchronous allocation). */
  allocationMs: number;
  /** After a restart: what was durable. Incarnation k > 0 names its transactions `<name>-r<k>-tx-<n>`. */
  restore?: ProviderDurable;
  incarnation?: number;
}

/** A sale as the provider made it durable: the contract, the flavor id it was reserved under, when. */
export interface DurableSale {
  contract: Contract;
  flavorId: string;
  atUs: number;
}

/** What a provider keeps across a restart: its sales, in order, and its withdrawals. */
export interface ProviderDurable {
  sales: DurableSale[];
  withdrawn: { flavorId: string; reason: string }[];
}

/** An open or purchased transaction. */
interface Held {
  tx: Transaction;
  /** The flavor as it was offered when reserved (a contract sells this). */
  flavor: Flavor;
  partition?: Partition;
  /** A reservation of the whole of a partitionable flavor: it holds everything left. */
  whole?: boolean;
  contract?: Contract;
  /** When it was bought. */
  soldAtUs?: number;
}

/** A flavor and what is left of it. */
interface Offer {
  flavor: Flavor;
  /** Capacity left to sell (partitionable k8slices): contracts taken off. */
  left?: Partition;
  /** Contracts sold on it. */
  sold: number;
  withdrawn: boolean;
  withdrawnReason?: string;
  /** Fluidos: sales made but not yet allocated — the listing shows `flavor` until each `atUs`. */
  allocations: { atUs: number; flavor: Flavor }[];
  /** The catalogue's flavor id this offer started as; remainders are `<root>-r1`, `-r2`, … */
  root: string;
  remainders: number;
}

export interface ProviderContext {
  cfg: ProviderInput;
  /** Offers by flavor id: every id of a partitioned flavor's line (the first and each remainder) names its offer. */
  offers: Map<string, Offer>;
  /** The offers, once each, in catalogue order. */
  catalogue: Offer[];
  /** Open transactions (the sweep walks these only). */
  held: Map<string, Held>;
  /** Purchased transactions, with their contracts. */
  bought: Map<string, Held>;
  /** Open transaction of a (buyer node, flavor) pair. */
  openOf: Map<string, string>;
  nextTx: number;
  nextContract: number;
  /** Requests waiting for the authority's verdict on their token, by the ValidateToken's rid. */
  parked: Map<number, { from: string; msg: RearMessage }>;
  authRid: number;
  /** Subscribers per flavor, in the order they subscribed. */
  subscribers: Map<string, string[]>;
  /** Prefix of transaction ids (differs per incarnation, so a pre-crash id never names a new one). */
  txPrefix: string;
  /** Transactions cancelled by a withdrawal (a purchase of one is refused with 409, not 404). */
  cancelled: Set<string>;
  /** Expired transactions dropped (a late purchase of one is refused with 408, not 404). */
  swept: Set<string>;
}

type MessageEvent = { type: RearMessage['type']; from: string; msg: RearMessage; now: number };
type ProviderEvent =
  | MessageEvent
  | { type: 'rear.sweep' | 'rear.refresh'; now: number }
  | { type: `xstate.after.${string}`; now: number }
  | { type: 'host.shutdown'; now: number };

export type ProviderObservation =
  | { kind: 'rear.reserved'; transactionId: string; flavorId: string; buyer: string; expirationTimeUs: number; partition?: Partition }
  | { kind: 'rear.refused'; call: 'reserve' | 'purchase'; status: number; id: string; reason: string; cause: RefusalCause }
  /** `remainder`: the new flavor that offers what is left (a partition sold). */
  | {
      kind: 'rear.sold';
      contractId: string;
      transactionId: string;
      flavorId: string;
      buyer: string;
      partition?: Partition;
      /** What the contract takes of a partitionable flavor: the partition, or all the flavor offered when reserved whole. */
      takes?: Partition;
      remainder?: string;
    }
  | { kind: 'rear.expired'; transactionId: string; flavorId: string }
  /** An open transaction dropped because its flavor was withdrawn. */
  | { kind: 'rear.cancelled'; transactionId: string; flavorId: string; reason: string }
  | { kind: 'rear.withdrawn'; flavorId: string; reason: string; subscribers: number }
  | { kind: 'rear.subscribed'; flavorId: string; subscriber: string }
  | { kind: 'rear.refreshed'; flavors: number; notices: number }
  /** Fluidos: a request the implementation does not support (an operator's withdraw). */
  | { kind: 'rear.unsupported'; what: string };

/** Why a reserve or purchase was refused, as a stable word (the `reason` text names the ids). */
export type RefusalCause =
  | 'token'
  | 'unknown-flavor'
  | 'withdrawn'
  | 'partitioned'
  | 'unavailable'
  | 'not-partitionable'
  | 'partition'
  | 'partly-taken'
  | 'reserved'
  | 'cancelled'
  | 'expired'
  | 'unknown-transaction'
  | 'repeated';

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
function refusal(
  to: string,
  call: 'reserve' | 'purchase',
  re: number,
  id: string,
  status: RearStatus,
  cause: RefusalCause,
  reason: string,
) {
  const answer: ReserveAnswer | PurchaseAnswer =
    call === 'reserve' ? { type: 'ReserveAnswer', re, status, error: reason } : { type: 'PurchaseAnswer', re, status, error: reason };
  return [effect.send(to, answer), effect.observe<ProviderObservation>({ kind: 'rear.refused', call, status, id, reason, cause })] as const;
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
    if (ctx.offers.get(h.tx.flavorId) !== offer || h.tx.expirationTimeUs < nowUs) continue;
    if (h.whole) return { cpuMilli: 0, memoryBytes: 0, pods: 0 };
    if (h.partition) free = sub(free, h.partition);
  }
  return free;
}

/**
 * Strict: drops the expired transactions on an offer before a reserve looks at what is free, as the
 * sweep would. Left in place, one could be bought after all should the provider's clock be set back
 * — while its capacity was given to someone else.
 */
function expireHolds(ctx: ProviderContext, offer: Offer, nowUs: number) {
  const out: ReturnType<typeof effect.observe<ProviderObservation>>[] = [];
  for (const [id, h] of ctx.held)
    if (ctx.offers.get(h.tx.flavorId) === offer && h.tx.expirationTimeUs < nowUs) out.push(expire(ctx, id, h));
  return out;
}

/** Drops an expired transaction (its capacity returns; a late purchase of it gets 408): the observation to emit. */
function expire(ctx: ProviderContext, id: string, h: Held) {
  ctx.held.delete(id);
  ctx.swept.add(id);
  const pair = pairKey(h.tx.buyer, h.tx.flavorId);
  if (ctx.openOf.get(pair) === id) ctx.openOf.delete(pair);
  return effect.observe<ProviderObservation>({ kind: 'rear.expired', transactionId: id, flavorId: h.tx.flavorId });
}

/** Is someone else holding or owning a non-partitionable flavor (strict)? */
function takenBy(ctx: ProviderContext, offer: Offer, nowUs: number, pair: string): boolean {
  if (offer.sold > 0) return true;
  for (const [id, h] of ctx.held) {
    if (ctx.offers.get(h.tx.flavorId) !== offer || h.tx.expirationTimeUs < nowUs) continue;
    if (ctx.openOf.get(pair) !== id) return true;
  }
  return false;
}

/** What a sale changed: the flavor shrank and is offered as a new flavor (its remainder), or nothing is left to sell. */
type SaleChange = { kind: 'remainder'; replaces: string; id: string } | { kind: 'soldOut' };

/**
 * Takes a sale off an offer. What is left of a partitioned flavor is offered as a new flavor,
 * `<root>-r<k>`, with the remainder's characteristics (strict offers it only while every dimension
 * is at least the minimum; the implementation while anything is left); the sold flavor's id is no
 * longer offered. A whole sale makes the flavor unavailable. Fluidos publishes the change only after
 * the allocation (`allocationMs`).
 */
function sell(ctx: ProviderContext, offer: Offer, partition: Partition | undefined, nowUs: number): SaleChange {
  const strict = ctx.cfg.mode === 'strict';
  offer.sold++;
  // What the listing shows last (fluidos: the latest allocation still to come).
  const shown = offer.allocations.length > 0 ? offer.allocations[offer.allocations.length - 1].flavor : offer.flavor;
  let next: Flavor;
  const t = shown.type;
  if (partition && offer.left && t.name === 'k8slice') {
    const left = sub(offer.left, partition);
    offer.left = left;
    const p = t.partitionability!;
    const offered = strict
      ? left.cpuMilli >= p.cpuMinMilli && left.memoryBytes >= p.memoryMinBytes && left.pods >= p.podsMin
      : left.cpuMilli > 0 || left.memoryBytes > 0 || left.pods > 0;
    if (offered && !offer.withdrawn) {
      next = {
        ...shown,
        flavorId: `${offer.root}-r${++offer.remainders}`,
        timestamp: nowUs,
        type: { ...t, characteristics: { ...t.characteristics, cpuMilli: left.cpuMilli, memoryBytes: left.memoryBytes, pods: left.pods } },
      };
      ctx.offers.set(next.flavorId, offer);
    } else next = { ...shown, timestamp: nowUs, availability: false };
  } else {
    next = { ...shown, timestamp: nowUs, availability: false };
    if (offer.left) offer.left = { cpuMilli: 0, memoryBytes: 0, pods: 0 };
  }
  if (!strict && ctx.cfg.allocationMs > 0) offer.allocations.push({ atUs: nowUs + ctx.cfg.allocationMs * 1000, flavor: next });
  else offer.flavor = next;
  return next.availability ? { kind: 'remainder', replaces: shown.flavorId, id: next.flavorId } : { kind: 'soldOut' };
}

/** Fluidos: publishes the allocations that are done by `nowUs`. */
function settle(ctx: ProviderContext, nowUs: number): void {
  if (ctx.cfg.mode !== 'fluidos') return;
  for (const offer of ctx.catalogue) {
    while (offer.allocations.length > 0 && offer.allocations[0].atUs <= nowUs) offer.flavor = offer.allocations.shift()!.flavor;
  }
}

/**
 * Strict: what a flavor's subscribers are told after a sale — a Refresh with its remainder (a new
 * flavor that `replaces` the sold one; the subscriptions move to it), or a Withdraw.
 */
function notify(ctx: ProviderContext, offer: Offer, change: SaleChange, nowUs: number) {
  if (change.kind === 'soldOut') return withdraw(ctx, offer, 'sold out', nowUs);
  const subs = ctx.subscribers.get(change.replaces) ?? [];
  ctx.subscribers.delete(change.replaces);
  if (subs.length > 0) ctx.subscribers.set(offer.flavor.flavorId, subs);
  const expiresAtUs = nowUs + ctx.cfg.refreshMs * 1000;
  return subs.map((to) =>
    effect.send(to, { type: 'Refresh', flavor: offer.flavor, expiresAtUs, modified: true, replaces: change.replaces } satisfies Refresh),
  );
}

/**
 * Strict: takes a flavor off the market — its subscribers get a Withdraw, its open transactions are
 * cancelled (their capacity returns with the flavor), later reserves are refused.
 */
function withdraw(ctx: ProviderContext, offer: Offer, reason: string, nowUs: number) {
  const out: (ReturnType<typeof effect.send> | ReturnType<typeof effect.observe<ProviderObservation>>)[] = [];
  const flavorId = offer.flavor.flavorId;
  offer.withdrawn = true;
  offer.withdrawnReason = reason;
  offer.flavor = { ...offer.flavor, timestamp: nowUs, availability: false };
  for (const [id, h] of ctx.held) {
    // Expired ones are left to the sweep (their purchase is refused with 408 meanwhile).
    if (ctx.offers.get(h.tx.flavorId) !== offer || h.tx.expirationTimeUs < nowUs) continue;
    ctx.held.delete(id);
    const pair = pairKey(h.tx.buyer, h.tx.flavorId);
    if (ctx.openOf.get(pair) === id) ctx.openOf.delete(pair);
    ctx.cancelled.add(id);
    out.push(
      effect.observe<ProviderObservation>({
        kind: 'rear.cancelled',
        transactionId: id,
        flavorId: h.tx.flavorId,
        reason: `flavor ${reason}`,
      }),
    );
  }
  const subs = ctx.subscribers.get(flavorId) ?? [];
  for (const to of subs) out.push(effect.send(to, { type: 'Withdraw', flavorId, reason } satisfies Withdraw));
  out.push(effect.observe<ProviderObservation>({ kind: 'rear.withdrawn', flavorId, reason, subscribers: subs.length }));
  ctx.subscribers.delete(flavorId);
  return out;
}

/**
 * What a provider keeps across a crash (its "disk"): the sales, in order, and the withdrawals. The
 * engine reads it off the context when the provider crashes (ActorDefinition.durable) and hands it
 * back as `restore` at the restart.
 */
export function durableOf(context: unknown): ProviderDurable {
  const ctx = context as ProviderContext;
  const sales: DurableSale[] = [];
  for (const h of ctx.bought.values()) sales.push({ contract: h.contract!, flavorId: h.tx.flavorId, atUs: h.soldAtUs! });
  const withdrawn = ctx.catalogue
    .filter((o) => o.withdrawn)
    .map((o) => ({ flavorId: o.flavor.flavorId, reason: o.withdrawnReason ?? 'withdrawn' }));
  return { sales, withdrawn };
}

/** The provider's state at start: its catalogue, with the durable sales and withdrawals of earlier incarnations applied. */
function initialContext(input: ProviderInput): ProviderContext {
  const k = input.incarnation ?? 0;
  const ctx: ProviderContext = {
    cfg: input,
    offers: new Map(),
    catalogue: input.flavors.map((f) => ({
      flavor: f,
      left: capacityOf(f),
      sold: 0,
      withdrawn: false,
      allocations: [],
      root: f.flavorId,
      remainders: 0,
    })),
    held: new Map(),
    bought: new Map(),
    openOf: new Map(),
    nextTx: 0,
    nextContract: 0,
    parked: new Map(),
    // Each incarnation asks the authority with its own request ids: a verdict meant for the one
    // before a crash must not match a request of this one.
    authRid: k * 1_000_000_000,
    subscribers: new Map(),
    txPrefix: k > 0 ? `${input.name}-r${k}-tx-` : `${input.name}-tx-`,
    cancelled: new Set(),
    swept: new Set(),
  };
  for (const offer of ctx.catalogue) ctx.offers.set(offer.flavor.flavorId, offer);
  for (const sale of input.restore?.sales ?? []) {
    const offer = ctx.offers.get(sale.flavorId);
    if (!offer) continue;
    const c = sale.contract;
    ctx.bought.set(c.transactionId, {
      flavor: c.flavor,
      tx: { transactionId: c.transactionId, flavorId: sale.flavorId, buyer: c.buyer, expirationTimeUs: sale.atUs },
      partition: c.partition,
      contract: c,
      soldAtUs: sale.atUs,
    });
    sell(ctx, offer, c.partition, sale.atUs);
    ctx.nextContract++;
  }
  settle(ctx, Number.MAX_SAFE_INTEGER);
  for (const w of input.restore?.withdrawn ?? []) {
    const offer = ctx.offers.get(w.flavorId);
    if (offer) withdraw(ctx, offer, w.reason, 0);
  }
  ctx.cancelled.clear();
  return ctx;
}

export const providerMachine = setup({
  types: {
    context: {} as ProviderContext,
    events: {} as ProviderEvent,
    input: {} as ProviderInput,
    emitted: {} as ReturnType<typeof effect.send> | ReturnType<typeof effect.observe<ProviderObservation>>,
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
      for (const x of refusal(e.from, call, m.rid, id, REAR_STATUS.unauthorized, 'token', reason)) enqueue.emit(x);
    }),
    list: enqueueActions(({ context, event, enqueue }) => {
      const e = event as Extract<ProviderEvent, { from: string }>;
      const m = e.msg as Extract<RearMessage, { type: 'ListFlavors' }>;
      settle(context, e.now);
      const bad = m.selector ? selectorProblem(m.selector) : undefined;
      const flavors = bad
        ? []
        : context.catalogue
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
      const refuse = (status: RearStatus, cause: RefusalCause, reason: string): void => {
        for (const x of refusal(e.from, 'reserve', m.rid, flavorId, status, cause, reason)) enqueue.emit(x);
      };
      const offer = context.offers.get(flavorId);
      if (!offer) return refuse(strict ? REAR_STATUS.notFound : REAR_STATUS.internal, 'unknown-flavor', `no flavor ${flavorId}`);
      if (offer.withdrawn) return refuse(REAR_STATUS.conflict, 'withdrawn', `flavor ${flavorId} was withdrawn`);
      if (strict) for (const x of expireHolds(context, offer, e.now)) enqueue.emit(x);
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
        if (offer.flavor.flavorId !== flavorId)
          return refuse(
            REAR_STATUS.conflict,
            'partitioned',
            `flavor ${flavorId} was partitioned: what is left is offered as ${offer.flavor.flavorId}`,
          );
        if (!offer.flavor.availability) return refuse(REAR_STATUS.conflict, 'unavailable', `flavor ${flavorId} is no longer available`);
        const t = offer.flavor.type;
        if (partition) {
          if (t.name !== 'k8slice' || !t.partitionability)
            return refuse(REAR_STATUS.conflict, 'not-partitionable', `flavor ${flavorId} cannot be partitioned`);
          const problem = partitionProblem(partition, t.partitionability, freeOf(context, offer, e.now)!);
          if (problem) return refuse(REAR_STATUS.conflict, 'partition', problem);
        } else if (offer.left) {
          // The whole of a partitionable flavor: nothing may be sold or held of it.
          const free = freeOf(context, offer, e.now)!;
          const cap = capacityOf(offer.flavor)!;
          if (free.cpuMilli !== cap.cpuMilli || free.memoryBytes !== cap.memoryBytes || free.pods !== cap.pods)
            return refuse(REAR_STATUS.conflict, 'partly-taken', `flavor ${flavorId} is partly taken`);
        } else if (takenBy(context, offer, e.now, pair))
          return refuse(REAR_STATUS.conflict, 'reserved', `flavor ${flavorId} is already reserved`);
      }
      const tx: Transaction = {
        transactionId: `${context.txPrefix}${++context.nextTx}`,
        flavorId,
        buyer,
        expirationTimeUs: e.now + context.cfg.ttpMs * 1000,
      };
      context.held.set(tx.transactionId, { tx, flavor: offer.flavor, partition, whole: !partition && offer.left !== undefined });
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
      const refuse = (status: RearStatus, cause: RefusalCause, reason: string): void => {
        for (const x of refusal(e.from, 'purchase', m.rid, m.transactionId, status, cause, reason)) enqueue.emit(x);
      };
      const h = context.held.get(m.transactionId) ?? context.bought.get(m.transactionId);
      if (!h && context.cancelled.has(m.transactionId))
        return refuse(REAR_STATUS.conflict, 'cancelled', `transaction ${m.transactionId} was cancelled: its flavor was withdrawn`);
      // Strict remembers what expired (408); the implementation keeps no record of it: unknown (500).
      if (!h && strict && context.swept.has(m.transactionId))
        return refuse(REAR_STATUS.expired, 'expired', `transaction ${m.transactionId} expired`);
      if (!h)
        return refuse(strict ? REAR_STATUS.notFound : REAR_STATUS.internal, 'unknown-transaction', `no transaction ${m.transactionId}`);
      if (h.contract) {
        // Strict: idempotent. The implementation answers 500.
        if (!strict) return refuse(REAR_STATUS.internal, 'repeated', `transaction ${m.transactionId} already purchased`);
        enqueue.emit(
          effect.send(e.from, { type: 'PurchaseAnswer', re: m.rid, status: REAR_STATUS.ok, contract: h.contract } satisfies PurchaseAnswer),
        );
        return;
      }
      if (e.now > h.tx.expirationTimeUs) {
        enqueue.emit(expire(context, m.transactionId, h));
        return refuse(REAR_STATUS.expired, 'expired', `transaction ${m.transactionId} expired at ${h.tx.expirationTimeUs}`);
      }
      const offer = context.offers.get(h.tx.flavorId);
      if (!offer) return refuse(strict ? REAR_STATUS.notFound : REAR_STATUS.internal, 'unknown-flavor', `no flavor ${h.tx.flavorId}`);
      const contractId = `${context.cfg.name}-contract-${++context.nextContract}`;
      const contract: Contract = {
        contractId,
        transactionId: h.tx.transactionId,
        flavor: h.flavor,
        buyer: h.tx.buyer,
        seller: context.cfg.identity,
        expirationTimeUs: e.now + context.cfg.contractDays * DAY_US,
        credentials: `credentials-${contractId}`,
        ...(h.partition ? { partition: h.partition } : {}),
      };
      h.contract = contract;
      h.soldAtUs = e.now;
      context.held.delete(h.tx.transactionId);
      context.bought.set(h.tx.transactionId, h);
      context.openOf.delete(pairKey(h.tx.buyer, h.tx.flavorId));
      const takes = h.partition ?? (h.whole ? capacityOf(h.flavor) : undefined);
      const change = sell(context, offer, h.partition, e.now);
      enqueue.emit(effect.send(e.from, { type: 'PurchaseAnswer', re: m.rid, status: REAR_STATUS.ok, contract } satisfies PurchaseAnswer));
      enqueue.emit(
        effect.observe<ProviderObservation>({
          kind: 'rear.sold',
          contractId: contract.contractId,
          transactionId: contract.transactionId,
          flavorId: h.tx.flavorId,
          buyer: h.tx.buyer.nodeId,
          ...(h.partition ? { partition: h.partition } : {}),
          ...(takes ? { takes } : {}),
          ...(change.kind === 'remainder' ? { remainder: change.id } : {}),
        }),
      );
      if (strict) for (const x of notify(context, offer, change, e.now)) enqueue.emit(x);
    }),

    /** Drops expired transactions (strict: all of them; the implementation: one per sweep). */
    sweep: enqueueActions(({ context, event, enqueue }) => {
      const nowUs = (event as { now: number }).now;
      for (const [id, h] of context.held) {
        if (h.tx.expirationTimeUs >= nowUs) continue;
        enqueue.emit(expire(context, id, h));
        if (context.cfg.mode === 'fluidos') break;
      }
      enqueue.raise({ type: 'rear.sweep', now: 0 }, { id: 'sweep', delay: context.cfg.sweepMs });
    }),
    /** Strict: every available flavor's subscribers hear it is still on offer, until the next refresh. */
    refresh: enqueueActions(({ context, event, enqueue }) => {
      const nowUs = (event as { now: number }).now;
      if (context.cfg.mode !== 'strict' || context.cfg.refreshMs <= 0) return;
      const expiresAtUs = nowUs + context.cfg.refreshMs * 1000;
      let flavors = 0;
      let notices = 0;
      for (const [flavorId, subs] of context.subscribers) {
        const offer = context.offers.get(flavorId)!;
        if (offer.withdrawn || !offer.flavor.availability) continue;
        offer.flavor = { ...offer.flavor, timestamp: nowUs };
        flavors++;
        for (const to of subs) {
          notices++;
          enqueue.emit(effect.send(to, { type: 'Refresh', flavor: offer.flavor, expiresAtUs, modified: false } satisfies Refresh));
        }
      }
      if (notices > 0) enqueue.emit(effect.observe<ProviderObservation>({ kind: 'rear.refreshed', flavors, notices }));
      enqueue.raise({ type: 'rear.refresh', now: 0 }, { id: 'refresh', delay: context.cfg.refreshMs });
    }),
    /** The first sweep and refresh. */
    startTimers: enqueueActions(({ context, enqueue }) => {
      enqueue.raise({ type: 'rear.sweep', now: 0 }, { id: 'sweep', delay: context.cfg.sweepMs });
      if (context.cfg.mode === 'strict' && context.cfg.refreshMs > 0)
        enqueue.raise({ type: 'rear.refresh', now: 0 }, { id: 'refresh', delay: context.cfg.refreshMs });
    }),
    /** Opens a flavor's subscription channel (strict; the implementation has none: 500). */
    subscribe: enqueueActions(({ context, event, enqueue }) => {
      const e = event as MessageEvent;
      const m = e.msg as Extract<RearMessage, { type: 'SubscribeFlavor' }>;
      const answer = (status: RearStatus, error?: string): void =>
        enqueue.emit(
          effect.send(e.from, {
            type: 'SubscribeAnswer',
            re: m.rid,
            status,
            flavorId: m.flavorId,
            ...(error ? { error } : {}),
          } satisfies SubscribeAnswer),
        );
      if (context.cfg.mode === 'fluidos') return answer(REAR_STATUS.internal, 'subscriptions are not implemented');
      const offer = context.offers.get(m.flavorId);
      if (!offer) return answer(REAR_STATUS.notFound, `no flavor ${m.flavorId}`);
      if (offer.withdrawn) return answer(REAR_STATUS.conflict, `flavor ${m.flavorId} was withdrawn`);
      if (offer.flavor.flavorId !== m.flavorId)
        return answer(REAR_STATUS.conflict, `flavor ${m.flavorId} was partitioned: what is left is offered as ${offer.flavor.flavorId}`);
      const subs = context.subscribers.get(m.flavorId) ?? [];
      if (!subs.includes(e.from)) subs.push(e.from);
      context.subscribers.set(m.flavorId, subs);
      answer(REAR_STATUS.ok);
      enqueue.emit(effect.observe<ProviderObservation>({ kind: 'rear.subscribed', flavorId: m.flavorId, subscriber: e.from }));
    }),
    /** The operator withdraws a flavor (strict; the implementation has no withdraw and ignores it). */
    operatorWithdraw: enqueueActions(({ context, event, enqueue }) => {
      const e = event as MessageEvent;
      const m = e.msg as Extract<RearMessage, { type: 'WithdrawFlavor' }>;
      if (context.cfg.mode === 'fluidos') {
        enqueue.emit(effect.observe<ProviderObservation>({ kind: 'rear.unsupported', what: `withdraw of ${m.flavorId}` }));
        return;
      }
      const offer = context.offers.get(m.flavorId);
      if (!offer || offer.withdrawn) return;
      for (const x of withdraw(context, offer, m.reason, e.now)) enqueue.emit(x);
    }),
  },
}).createMachine({
  id: 'rear.provider',
  context: ({ input }) => initialContext(input),
  initial: 'serving',
  states: {
    serving: {
      entry: 'startTimers',
      on: {
        'rear.sweep': { actions: 'sweep' },
        'rear.refresh': { actions: 'refresh' },
        ListFlavors: { actions: 'list' },
        SubscribeFlavor: { actions: 'subscribe' },
        WithdrawFlavor: { actions: 'operatorWithdraw' },
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
