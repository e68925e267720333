/**
 * The REAR **consumer** — the solver (`shared/protocols/rear.md`, "Consumer behaviour"): discovers
 * (lists on every known provider), picks a candidate, reserves it, purchases it. Each phase runs at
 * most `phaseTimeoutMs` (2 min in the implementation) or the solver ends Timed Out. A refused
 * reserve or purchase releases the candidate and the next one is tried; with none left the solver
 * Fails. A consumer with `givesUpAfterReserve` walks away between reserve and purchase, leaving its
 * reservation to expire; one with `stallMs` waits that long between them (past the TTP: 408); one
 * with `patienceMs` gives up when it has no contract that long after it started.
 *
 * Subscriptions (`subscribe`): the solver subscribes to each flavor it tries and stays subscribed
 * after its contract. A Refresh updates a candidate still to try (one that no longer matches is
 * dropped); a Withdraw of the candidate being reserved (or waited on before purchase) releases it
 * and the next is tried. During the purchase a Withdraw is not acted on: the purchase's own answer
 * (a contract, or 409 for a cancelled transaction) says what happened, whatever order the two
 * messages arrive in.
 *
 * Modes: `strict` skips a provider that answers the listing with an error, or has not answered
 * when the discovery phase runs out (then it goes on with what it found);
 * `fluidos` fails the whole discovery when any one provider errors (the implementation's defect).
 * Candidates are ordered by price, then provider, then flavor id, so a run is reproducible.
 */
import { enqueueActions, setup } from 'xstate';
import { effect } from '../../protocol/host.js';
import type {
  Flavor,
  ListAnswer,
  NodeIdentity,
  Partition,
  PurchaseAnswer,
  RearMessage,
  RearMode,
  Refresh,
  ReserveAnswer,
  Selector,
  Withdraw,
} from '../../protocol/rear.js';
import { matchesSelector, REAR_STATUS } from '../../protocol/rear.js';

export interface ConsumerInput {
  name: string;
  mode: RearMode;
  identity: NodeIdentity;
  /** Actor names of the providers it knows. */
  providers: string[];
  /** What it wants: flavors matching `selector`, and a partition of them when given. */
  selector: Selector;
  partition?: Partition;
  /** When it starts solving (after the run's start). */
  startAfterMs: number;
  phaseTimeoutMs: number;
  /** Walks away after a successful reserve instead of purchasing (its reservation expires). */
  givesUpAfterReserve: boolean;
  /** Waits this long between a successful reserve and the purchase (0: none). */
  stallMs: number;
  /** Gives up when still without a contract this long after starting (0: never). */
  patienceMs: number;
  /** Subscribes to each flavor it tries (Refresh and Withdraw notices). */
  subscribe: boolean;
  /** The token to send when there is no authority (or when forging one). */
  token: string;
  /** The token authority's actor name: the consumer asks it for a token first. */
  authority?: string;
  /** Skip the authority and send `token`, which it never issued. */
  forgeToken?: boolean;
}

type Outcome = 'solved' | 'failed' | 'timedOut' | 'gaveUp';

export type ConsumerObservation =
  | { kind: 'rear.solver.phase'; phase: 'discovery' | 'reserve' | 'purchase' }
  | { kind: 'rear.solver.end'; outcome: Outcome; reason: string; contractId?: string; transactionId?: string }
  | { kind: 'rear.solver.released'; provider: string; flavorId: string; status: number }
  /** A notice on a subscription; `dropped`: candidates removed because they no longer match. */
  | { kind: 'rear.solver.notice'; notice: 'refresh' | 'withdraw'; flavorId: string; dropped?: number };

interface Candidate {
  provider: string;
  flavor: Flavor;
}

export interface ConsumerContext {
  cfg: ConsumerInput;
  rid: number;
  /** Request id → provider, for the listing in flight. */
  listing: Map<number, string>;
  found: Candidate[];
  /** Candidates still to try, and the one being tried (its local lock). */
  candidates: Candidate[];
  current: Candidate | undefined;
  transactionId: string | undefined;
  /** The request in flight (reserve or purchase). */
  pending: number;
  outcome: Outcome | undefined;
  token: string;
  /** Flavors it subscribed to (provider|flavor). */
  subscribed: Set<string>;
}

type ConsumerEvent =
  | { type: RearMessage['type']; from: string; msg: RearMessage; now: number }
  | { type: 'rear.patience' | 'rear.stalled'; now: number }
  | { type: `xstate.after.${string}`; now: number }
  | { type: 'host.shutdown'; now: number };

const msgOf = (e: ConsumerEvent): (RearMessage & { re?: number }) | undefined => (e as { msg?: RearMessage & { re?: number } }).msg;

/** The answer to the request in flight, OK or not. */
const answered = (context: ConsumerContext, event: ConsumerEvent, ok: boolean): boolean => {
  const m = msgOf(event) as ReserveAnswer | PurchaseAnswer | undefined;
  return m !== undefined && m.re === context.pending && (m.status === REAR_STATUS.ok) === ok;
};

const withdrawsCurrent = (context: ConsumerContext, event: ConsumerEvent): boolean => {
  const m = msgOf(event) as Withdraw | undefined;
  const c = context.current;
  return m?.type === 'Withdraw' && c !== undefined && (event as { from: string }).from === c.provider && m.flavorId === c.flavor.flavorId;
};

const byPrice = (a: Candidate, b: Candidate): number =>
  a.flavor.price.amount - b.flavor.price.amount ||
  (a.provider < b.provider ? -1 : a.provider > b.provider ? 1 : 0) ||
  (a.flavor.flavorId < b.flavor.flavorId ? -1 : a.flavor.flavorId > b.flavor.flavorId ? 1 : 0);

const everyRefused = { type: 'end', params: { outcome: 'failed', reason: 'every candidate refused' } } as const;
const impatient = {
  target: 'gaveUp',
  actions: { type: 'end', params: { outcome: 'gaveUp', reason: 'ran out of patience' } },
} as const;
/** A Withdraw of the candidate being tried: the next one, or Failed with none left. */
const withdrawn = (state: string) =>
  [
    { guard: 'currentWithdrawnNext', target: state, reenter: true, actions: ['release', 'notice', 'reserve'] },
    { guard: 'currentWithdrawnLast', target: 'failed', actions: ['release', 'notice', everyRefused] },
    { actions: 'notice' },
  ] as const;

export const consumerMachine = setup({
  types: {
    context: {} as ConsumerContext,
    events: {} as ConsumerEvent,
    input: {} as ConsumerInput,
    emitted: {} as ReturnType<typeof effect.send> | ReturnType<typeof effect.observe<ConsumerObservation>>,
  },
  delays: {
    startAfter: ({ context }) => context.cfg.startAfterMs,
    phase: ({ context }) => context.cfg.phaseTimeoutMs,
  },
  guards: {
    /** One of the listings in flight; `last`: the one the discovery waited for. */
    listed: ({ context, event }) => context.listing.has(msgOf(event)?.re ?? -1),
    lastWithCandidates: ({ context, event }) => {
      const m = msgOf(event) as ListAnswer;
      if (!context.listing.has(m.re) || context.listing.size !== 1) return false;
      return context.found.length + (m.status === REAR_STATUS.ok ? m.flavors.length : 0) > 0;
    },
    lastWithout: ({ context, event }) => context.listing.has(msgOf(event)?.re ?? -1) && context.listing.size === 1,
    needsToken: ({ context }) => context.cfg.authority !== undefined && !context.cfg.forgeToken,
    tokenIssued: ({ context, event }) => msgOf(event)?.re === context.pending,
    foundSome: ({ context }) => context.cfg.mode === 'strict' && context.found.length > 0,
    discoveryBroken: ({ context, event }) =>
      context.cfg.mode === 'fluidos' &&
      context.listing.has(msgOf(event)?.re ?? -1) &&
      (msgOf(event) as ListAnswer).status !== REAR_STATUS.ok,
    reservedGivesUp: ({ context, event }) => answered(context, event, true) && context.cfg.givesUpAfterReserve,
    reservedStalls: ({ context, event }) => answered(context, event, true) && context.cfg.stallMs > 0,
    /** A Withdraw of the candidate being tried, from its provider. */
    currentWithdrawnNext: ({ context, event }) => withdrawsCurrent(context, event) && context.candidates.length > 0,
    currentWithdrawnLast: ({ context, event }) => withdrawsCurrent(context, event),
    solvedSubscribed: ({ context, event }) => answered(context, event, true) && context.cfg.subscribe,
    reservedOrSold: ({ context, event }) => answered(context, event, true),
    refusedNext: ({ context, event }) => answered(context, event, false) && context.candidates.length > 0,
    refusedLast: ({ context, event }) => answered(context, event, false),
  },
  actions: {
    askToken: enqueueActions(({ context, enqueue }) => {
      context.pending = ++context.rid;
      enqueue.emit(effect.send(context.cfg.authority!, { type: 'IssueToken', rid: context.rid, node: context.cfg.identity }));
    }),
    takeToken: ({ context, event }) => {
      context.token = (msgOf(event) as Extract<RearMessage, { type: 'TokenIssued' }>).token;
      context.pending = -1;
    },
    discover: enqueueActions(({ context, enqueue }) => {
      enqueue.emit(effect.observe<ConsumerObservation>({ kind: 'rear.solver.phase', phase: 'discovery' }));
      for (const p of context.cfg.providers) {
        context.listing.set(++context.rid, p);
        enqueue.emit(effect.send(p, { type: 'ListFlavors', rid: context.rid, selector: context.cfg.selector, token: context.token }));
      }
    }),
    takeListing: ({ context, event }) => {
      const m = msgOf(event) as ListAnswer;
      const provider = context.listing.get(m.re)!;
      context.listing.delete(m.re);
      if (m.status === REAR_STATUS.ok) for (const flavor of m.flavors) context.found.push({ provider, flavor });
    },
    choose: ({ context }) => {
      context.candidates = [...context.found].sort(byPrice);
      context.found = [];
    },
    reserve: enqueueActions(({ context, enqueue }) => {
      const c = context.candidates.shift()!;
      context.current = c;
      const key = `${c.provider}|${c.flavor.flavorId}`;
      if (context.cfg.subscribe && !context.subscribed.has(key)) {
        context.subscribed.add(key);
        enqueue.emit(effect.send(c.provider, { type: 'SubscribeFlavor', rid: ++context.rid, flavorId: c.flavor.flavorId }));
      }
      context.pending = ++context.rid;
      enqueue.emit(effect.observe<ConsumerObservation>({ kind: 'rear.solver.phase', phase: 'reserve' }));
      enqueue.emit(
        effect.send(c.provider, {
          type: 'ReserveFlavor',
          rid: context.rid,
          reservation: {
            flavorId: c.flavor.flavorId,
            buyer: context.cfg.identity,
            ...(context.cfg.partition ? { configuration: { type: 'k8slice' as const, data: context.cfg.partition } } : {}),
          },
          token: context.token,
        }),
      );
    }),
    purchase: enqueueActions(({ context, event, enqueue }) => {
      if (event.type === 'ReserveAnswer') context.transactionId = (msgOf(event) as ReserveAnswer).transaction!.transactionId;
      context.pending = ++context.rid;
      enqueue.emit(effect.observe<ConsumerObservation>({ kind: 'rear.solver.phase', phase: 'purchase' }));
      enqueue.emit(
        effect.send(context.current!.provider, {
          type: 'PurchaseFlavor',
          rid: context.rid,
          transactionId: context.transactionId,
          token: context.token,
        }),
      );
    }),
    noteTransaction: ({ context, event }) => {
      context.transactionId = (msgOf(event) as ReserveAnswer).transaction!.transactionId;
    },
    stall: enqueueActions(({ context, event, enqueue }) => {
      context.transactionId = (msgOf(event) as ReserveAnswer).transaction!.transactionId;
      context.pending = -1;
      enqueue.raise({ type: 'rear.stalled', now: 0 }, { id: 'stall', delay: context.cfg.stallMs });
    }),
    /** Starts the patience clock with the discovery. */
    startPatience: enqueueActions(({ context, enqueue }) => {
      if (context.cfg.patienceMs > 0) enqueue.raise({ type: 'rear.patience', now: 0 }, { id: 'patience', delay: context.cfg.patienceMs });
    }),
    /**
     * A Refresh or Withdraw: candidates still to try are updated, or dropped when they no longer
     * match. A remainder (a Refresh that `replaces` a flavor) takes the place of the flavor it
     * replaces — and when that is the one being reserved, it is tried next should the reserve fail.
     */
    notice: enqueueActions(({ context, event, enqueue }) => {
      const m = msgOf(event) as Refresh | Withdraw;
      const from = (event as { from: string }).from;
      const flavorId = m.type === 'Refresh' ? (m.replaces ?? m.flavor.flavorId) : m.flavorId;
      const fits = m.type === 'Refresh' && m.flavor.availability && matchesSelector(m.flavor, context.cfg.selector);
      const before = context.candidates.length;
      context.candidates = context.candidates.flatMap((c) => {
        if (c.provider !== from || c.flavor.flavorId !== flavorId) return [c];
        return fits ? [{ provider: from, flavor: (m as Refresh).flavor }] : [];
      });
      const dropped = before - context.candidates.length;
      const c = context.current;
      if (fits && m.type === 'Refresh' && m.replaces !== undefined && c?.provider === from && c.flavor.flavorId === m.replaces)
        context.candidates.unshift({ provider: from, flavor: m.flavor });
      enqueue.emit(
        effect.observe<ConsumerObservation>({
          kind: 'rear.solver.notice',
          notice: m.type === 'Refresh' ? 'refresh' : 'withdraw',
          flavorId,
          ...(dropped > 0 ? { dropped } : {}),
        }),
      );
    }),
    /** A refused reserve or purchase: the candidate's lock is released. */
    release: enqueueActions(({ context, event, enqueue }) => {
      const c = context.current!;
      const m = msgOf(event) as ReserveAnswer | PurchaseAnswer | Withdraw;
      // A Withdraw releases the candidate as a 409 would (the spec's answer to a withdrawn flavor).
      const status = m.type === 'Withdraw' ? REAR_STATUS.conflict : m.status;
      enqueue.emit(
        effect.observe<ConsumerObservation>({ kind: 'rear.solver.released', provider: c.provider, flavorId: c.flavor.flavorId, status }),
      );
      context.current = undefined;
      context.transactionId = undefined;
      context.pending = -1;
    }),
    end: enqueueActions(({ context, event, enqueue }, params: { outcome: Outcome; reason: string }) => {
      context.outcome = params.outcome;
      const contractId = params.outcome === 'solved' ? (msgOf(event) as PurchaseAnswer).contract?.contractId : undefined;
      enqueue.emit(
        effect.observe<ConsumerObservation>({
          kind: 'rear.solver.end',
          outcome: params.outcome,
          reason: params.reason,
          ...(contractId ? { contractId } : {}),
          ...(context.transactionId ? { transactionId: context.transactionId } : {}),
        }),
      );
    }),
  },
}).createMachine({
  id: 'rear.consumer',
  context: ({ input }) => ({
    cfg: input,
    rid: 0,
    listing: new Map(),
    found: [],
    candidates: [],
    current: undefined,
    transactionId: undefined,
    pending: -1,
    outcome: undefined,
    token: input.token,
    subscribed: new Set(),
  }),
  initial: 'idle',
  states: {
    idle: {
      after: {
        startAfter: [
          { guard: 'needsToken', target: 'authenticating', actions: ['startPatience', 'askToken'] },
          { target: 'discovering', actions: ['startPatience', 'discover'] },
        ],
      },
    },
    authenticating: {
      after: { phase: { target: 'timedOut', actions: { type: 'end', params: { outcome: 'timedOut', reason: 'no token in time' } } } },
      on: {
        TokenIssued: { guard: 'tokenIssued', target: 'discovering', actions: ['takeToken', 'discover'] },
        'rear.patience': impatient,
      },
    },
    discovering: {
      after: {
        phase: [
          // Strict: a provider that never answered (down, unreachable) is skipped.
          { guard: 'foundSome', target: 'reserving', actions: ['choose', 'reserve'] },
          { target: 'timedOut', actions: { type: 'end', params: { outcome: 'timedOut', reason: 'discovery ran past its time' } } },
        ],
      },
      on: {
        ListAnswer: [
          {
            guard: 'discoveryBroken',
            target: 'failed',
            actions: { type: 'end', params: { outcome: 'failed', reason: 'a provider failed the discovery' } },
          },
          { guard: 'lastWithCandidates', target: 'reserving', actions: ['takeListing', 'choose', 'reserve'] },
          {
            guard: 'lastWithout',
            target: 'failed',
            actions: ['takeListing', { type: 'end', params: { outcome: 'failed', reason: 'no provider offers a matching flavor' } }],
          },
          { guard: 'listed', actions: 'takeListing' },
        ],
        'rear.patience': impatient,
      },
    },
    reserving: {
      after: {
        phase: { target: 'timedOut', actions: { type: 'end', params: { outcome: 'timedOut', reason: 'reserve ran past its time' } } },
      },
      on: {
        ReserveAnswer: [
          {
            guard: 'reservedGivesUp',
            target: 'gaveUp',
            actions: ['noteTransaction', { type: 'end', params: { outcome: 'gaveUp', reason: 'walked away before purchasing' } }],
          },
          { guard: 'reservedStalls', target: 'stalling', actions: 'stall' },
          { guard: 'reservedOrSold', target: 'purchasing', actions: 'purchase' },
          { guard: 'refusedNext', target: 'reserving', reenter: true, actions: ['release', 'reserve'] },
          { guard: 'refusedLast', target: 'failed', actions: ['release', everyRefused] },
        ],
        Withdraw: withdrawn('reserving'),
        Refresh: { actions: 'notice' },
        'rear.patience': impatient,
      },
    },
    stalling: {
      on: {
        'rear.stalled': { target: 'purchasing', actions: 'purchase' },
        Withdraw: withdrawn('reserving'),
        Refresh: { actions: 'notice' },
        'rear.patience': impatient,
      },
    },
    purchasing: {
      after: {
        phase: { target: 'timedOut', actions: { type: 'end', params: { outcome: 'timedOut', reason: 'purchase ran past its time' } } },
      },
      on: {
        PurchaseAnswer: [
          { guard: 'solvedSubscribed', target: 'holding', actions: { type: 'end', params: { outcome: 'solved', reason: 'contract' } } },
          { guard: 'reservedOrSold', target: 'solved', actions: { type: 'end', params: { outcome: 'solved', reason: 'contract' } } },
          { guard: 'refusedNext', target: 'reserving', actions: ['release', 'reserve'] },
          { guard: 'refusedLast', target: 'failed', actions: ['release', everyRefused] },
        ],
        // The purchase's answer decides (see the header): a Withdraw only updates the candidates.
        Withdraw: { actions: 'notice' },
        Refresh: { actions: 'notice' },
        'rear.patience': impatient,
      },
    },
    /** Solved, and still subscribed: it keeps hearing its flavors' notices. */
    holding: {
      on: { Refresh: { actions: 'notice' }, Withdraw: { actions: 'notice' } },
    },
    solved: { type: 'final' },
    failed: { type: 'final' },
    timedOut: { type: 'final' },
    gaveUp: { type: 'final' },
  },
});
