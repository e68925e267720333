/**
 * The REAR **consumer** — the solver (`shared/protocols/rear.md`, "Consumer behaviour"): discovers
 * (lists on every known provider), picks a candidate, reserves it, purchases it. Each phase runs at
 * most `phaseTimeoutMs` (2 min in the implementation) or the solver ends Timed Out. A refused
 * reserve or purchase releases the candidate and the next one is tried; with none left the solver
 * Fails. A consumer with `givesUpAfterReserve` walks away between reserve and purchase, leaving its
 * reservation to expire.
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
  ReserveAnswer,
  Selector,
} from '../../protocol/rear.js';
import { REAR_STATUS } from '../../protocol/rear.js';

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
  | { kind: 'rear.solver.released'; provider: string; flavorId: string; status: number };

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
}

type ConsumerEvent =
  | { type: RearMessage['type']; from: string; msg: RearMessage; now: number }
  | { type: `xstate.after.${string}`; now: number }
  | { type: 'host.shutdown'; now: number };

const msgOf = (e: ConsumerEvent): (RearMessage & { re?: number }) | undefined => (e as { msg?: RearMessage & { re?: number } }).msg;

/** The answer to the request in flight, OK or not. */
const answered = (context: ConsumerContext, event: ConsumerEvent, ok: boolean): boolean => {
  const m = msgOf(event) as ReserveAnswer | PurchaseAnswer | undefined;
  return m !== undefined && m.re === context.pending && (m.status === REAR_STATUS.ok) === ok;
};

const byPrice = (a: Candidate, b: Candidate): number =>
  a.flavor.price.amount - b.flavor.price.amount ||
  (a.provider < b.provider ? -1 : a.provider > b.provider ? 1 : 0) ||
  (a.flavor.flavorId < b.flavor.flavorId ? -1 : a.flavor.flavorId > b.flavor.flavorId ? 1 : 0);

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
      context.transactionId = (msgOf(event) as ReserveAnswer).transaction!.transactionId;
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
    /** A refused reserve or purchase: the candidate's lock is released. */
    release: enqueueActions(({ context, event, enqueue }) => {
      const c = context.current!;
      const status = (msgOf(event) as ReserveAnswer | PurchaseAnswer).status;
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
  }),
  initial: 'idle',
  states: {
    idle: {
      after: {
        startAfter: [
          { guard: 'needsToken', target: 'authenticating', actions: 'askToken' },
          { target: 'discovering', actions: 'discover' },
        ],
      },
    },
    authenticating: {
      after: { phase: { target: 'timedOut', actions: { type: 'end', params: { outcome: 'timedOut', reason: 'no token in time' } } } },
      on: { TokenIssued: { guard: 'tokenIssued', target: 'discovering', actions: ['takeToken', 'discover'] } },
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
          { guard: 'reservedOrSold', target: 'purchasing', actions: 'purchase' },
          { guard: 'refusedNext', target: 'reserving', reenter: true, actions: ['release', 'reserve'] },
          {
            guard: 'refusedLast',
            target: 'failed',
            actions: ['release', { type: 'end', params: { outcome: 'failed', reason: 'every candidate refused' } }],
          },
        ],
      },
    },
    purchasing: {
      after: {
        phase: { target: 'timedOut', actions: { type: 'end', params: { outcome: 'timedOut', reason: 'purchase ran past its time' } } },
      },
      on: {
        PurchaseAnswer: [
          { guard: 'reservedOrSold', target: 'solved', actions: { type: 'end', params: { outcome: 'solved', reason: 'contract' } } },
          { guard: 'refusedNext', target: 'reserving', actions: ['release', 'reserve'] },
          {
            guard: 'refusedLast',
            target: 'failed',
            actions: ['release', { type: 'end', params: { outcome: 'failed', reason: 'every candidate refused' } }],
          },
        ],
      },
    },
    solved: { type: 'final' },
    failed: { type: 'final' },
    timedOut: { type: 'final' },
    gaveUp: { type: 'final' },
  },
});
