/**
 * REAR invariants (`shared/protocols/rear.md`, "Invariants"), checked from outside the actors: from
 * the providers' and solvers' observations, and from the messages themselves (the order of list,
 * reserve and purchase; what a listing contains). Numbers follow the protocol document.
 *
 * Each check reads what one actor did — a solver's messages, or a provider's answers and
 * observations — so it holds the same on every shard of a parallel run.
 */
import type { Envelope } from '../protocol/host.js';
import type {
  Flavor,
  ListAnswer,
  Partition,
  Partitionability,
  PurchaseFlavor,
  Refresh,
  ReserveAnswer,
  ReserveFlavor,
  Selector,
} from '../protocol/rear.js';
import { matchesSelector, onGrid } from '../protocol/rear.js';
import type { ProviderObservation } from '../actors/rear/provider.machine.js';
import type { ConsumerObservation } from '../actors/rear/consumer.machine.js';
import type { FaultAction, TraceRecord } from '../engine/createSimulation.js';
import type { InvariantChecker, InvariantInfo } from './types.js';
import { InvariantLedger } from './types.js';

export const REAR_INVARIANTS: readonly InvariantInfo[] = [
  {
    id: 'rear.no-oversell',
    number: 1,
    title: 'resources under contract never exceed a flavor’s capacity; a non-partitionable flavor has at most one contract',
  },
  {
    id: 'rear.ttp',
    number: 2,
    title: 'a transaction past its Time To Purchase is never purchased; its held capacity returns by the next sweep',
  },
  {
    id: 'rear.one-open-transaction',
    number: 3,
    title: 'at most one open transaction per (buyer, flavor); a re-reserve never shortens the expiry',
  },
  { id: 'rear.one-contract-per-transaction', number: 4, title: 'a transaction is bought by at most one contract' },
  {
    id: 'rear.message-order',
    number: 5,
    title: 'a solver reserves only what a provider listed to it, and purchases only what it reserved; no reserve succeeds after a withdraw',
  },
  { id: 'rear.listing', number: 6, title: 'a listing holds only available flavors that match its selector, never more than is left' },
  { id: 'rear.partition-grid', number: 7, title: 'partitions are min + k·step per dimension; remainders are never negative' },
  { id: 'rear.solver-ends-once', number: 8, title: 'every solver ends once, in exactly one of Solved, Failed, Timed Out (or gave up)' },
  { id: 'rear.contract-consistency', number: 9, title: 'a contract’s flavor and buyer are its transaction’s; its seller is the provider' },
];

/** What the checker knows of a provider's catalogue: capacity and partition policy per flavor. */
export interface RearFlavorInfo {
  provider: string;
  flavorId: string;
  /** The whole capacity of a partitionable flavor (undefined: sold whole). */
  capacity?: Partition;
  /** Its CPU in millicores (k8slice; a vm's cores × 1000; 0 for others), for the held-capacity metric. */
  cpuMilli?: number;
  policy?: Partitionability;
}

export interface RearCheckerOptions {
  flavors: RearFlavorInfo[];
  /** Each provider's sweep period: an expired transaction must be gone by the next sweep. */
  sweepUs?: ReadonlyMap<string, number>;
  enabled: ReadonlySet<string>;
  recentTrace: () => TraceRecord[];
}

interface OpenTransaction {
  provider: string;
  flavorId: string;
  buyer: string;
  expirationTimeUs: number;
  sold: string | undefined;
  /** Gone: expired, cancelled, or forgotten by a restart. */
  closed: boolean;
  /** A late sweep already reported. */
  late: boolean;
}

/** How often the checker looks for expired transactions still held. */
const SWEEP_CHECK_US = 1_000_000;

export function createRearChecker(opts: RearCheckerOptions): InvariantChecker {
  const L = new InvariantLedger(REAR_INVARIANTS, opts.enabled, opts.recentTrace);
  const flavors = new Map(opts.flavors.map((f) => [`${f.provider}|${f.flavorId}`, f]));
  /** A partitioned flavor's remainders (new flavor ids) share its capacity: their keys map to its key. */
  const rootOf = new Map<string, string>();
  const keyOf = (provider: string, flavorId: string): string => {
    const k = `${provider}|${flavorId}`;
    return rootOf.get(k) ?? k;
  };
  const txs = new Map<string, OpenTransaction>();
  /** Open transaction per provider|buyer|flavor. */
  const openOf = new Map<string, string>();
  const contracts = new Map<string, number>();
  const used = new Map<string, Partition>();
  const ended = new Set<string>();
  const withdrawn = new Set<string>();
  /** Per solver: flavor ids each provider listed to it; transactions each provider gave it. */
  const listedTo = new Map<string, Map<string, Set<string>>>();
  const reservedTo = new Map<string, Map<string, string>>();
  /** Listing requests being answered: provider|solver|rid → selector. */
  const asked = new Map<string, Selector | undefined>();
  /** Open transactions, for the sweep check; clock skew and pauses per provider. */
  const openTxs = new Set<string>();
  const skewUs = new Map<string, number>();
  const pausedSince = new Map<string, number>();
  const resumedAt = new Map<string, number>();
  /** Listing checks passed, per provider and flavor; a provider's version moves with each sale or withdraw. */
  const fine = new Map<string, Map<string, { flavor: Flavor; selector: Selector | undefined; version: number }>>();
  const versionOf = new Map<string, number>();

  const provider = (t: number, actor: string, o: ProviderObservation): void => {
    switch (o.kind) {
      case 'rear.reserved': {
        L.check('rear.message-order');
        if (withdrawn.has(keyOf(actor, o.flavorId)))
          L.violate('rear.message-order', t, [actor, o.buyer], `${o.buyer} reserved ${o.flavorId} at ${actor} after it was withdrawn`);
        const key = `${actor}|${o.buyer}|${o.flavorId}`;
        const known = txs.get(o.transactionId);
        L.check('rear.one-open-transaction');
        if (known) {
          // A re-reserve: the same transaction, its expiry extended.
          if (o.expirationTimeUs < known.expirationTimeUs)
            L.violate(
              'rear.one-open-transaction',
              t,
              [actor, o.buyer],
              `${o.transactionId}'s expiry moved back from ${known.expirationTimeUs} to ${o.expirationTimeUs}`,
            );
          known.expirationTimeUs = o.expirationTimeUs;
          return;
        }
        const open = txs.get(openOf.get(key) ?? '');
        // Open: not bought, not gone (expired, cancelled, forgotten in a crash), not past its expiry on the provider's clock.
        if (open && open.sold === undefined && !open.closed && open.expirationTimeUs >= t + (skewUs.get(actor) ?? 0))
          L.violate(
            'rear.one-open-transaction',
            t,
            [actor, o.buyer],
            `${o.buyer} holds ${openOf.get(key)} and ${o.transactionId} on ${o.flavorId}`,
          );
        txs.set(o.transactionId, {
          provider: actor,
          flavorId: o.flavorId,
          buyer: o.buyer,
          expirationTimeUs: o.expirationTimeUs,
          sold: undefined,
          closed: false,
          late: false,
        });
        openOf.set(key, o.transactionId);
        openTxs.add(o.transactionId);
        return;
      }
      case 'rear.sold': {
        versionOf.set(actor, (versionOf.get(actor) ?? 0) + 1);
        const tx = txs.get(o.transactionId);
        L.check('rear.contract-consistency');
        if (!tx || tx.provider !== actor || tx.flavorId !== o.flavorId || tx.buyer !== o.buyer) {
          L.violate(
            'rear.contract-consistency',
            t,
            [actor, o.buyer],
            `${o.contractId} sells ${o.flavorId} to ${o.buyer} on ${o.transactionId}, reserved ${tx ? `for ${tx.buyer} on ${tx.flavorId} at ${tx.provider}` : 'nowhere'}`,
          );
        }
        if (tx) {
          L.check('rear.ttp');
          openTxs.delete(o.transactionId);
          if (t + (skewUs.get(actor) ?? 0) > tx.expirationTimeUs)
            L.violate('rear.ttp', t, [actor, o.buyer], `${o.transactionId} bought at ${t} µs, past its TTP (${tx.expirationTimeUs} µs)`);
          L.check('rear.one-contract-per-transaction');
          if (tx.sold !== undefined && tx.sold !== o.contractId)
            L.violate(
              'rear.one-contract-per-transaction',
              t,
              [actor, o.buyer],
              `${o.transactionId} bought twice: ${tx.sold} and ${o.contractId}`,
            );
          tx.sold = o.contractId;
        }
        const key = keyOf(actor, o.flavorId);
        if (o.remainder !== undefined) rootOf.set(`${actor}|${o.remainder}`, key);
        const flavor = flavors.get(key);
        L.check('rear.no-oversell');
        if (!flavor?.capacity) {
          const n = (contracts.get(key) ?? 0) + 1;
          contracts.set(key, n);
          if (n > 1) L.violate('rear.no-oversell', t, [actor, o.buyer], `${o.flavorId} at ${actor} sold ${n} times`);
          return;
        }
        // A partitionable flavor sold whole takes all it offered (all of it, or a remainder's all).
        const part = o.takes ?? o.partition ?? flavor.capacity;
        const before = used.get(key) ?? { cpuMilli: 0, memoryBytes: 0, pods: 0 };
        const now = {
          cpuMilli: before.cpuMilli + part.cpuMilli,
          memoryBytes: before.memoryBytes + part.memoryBytes,
          pods: before.pods + part.pods,
        };
        used.set(key, now);
        const cap = flavor.capacity;
        if (now.cpuMilli > cap.cpuMilli || now.memoryBytes > cap.memoryBytes || now.pods > cap.pods)
          L.violate(
            'rear.no-oversell',
            t,
            [actor, o.buyer],
            `${o.flavorId} at ${actor}: contracts hold ${now.cpuMilli}m CPU, ${now.memoryBytes} B, ${now.pods} pods of ${cap.cpuMilli}m, ${cap.memoryBytes} B, ${cap.pods}`,
          );
        if (!o.partition) return;
        const p = flavor.policy!;
        L.check('rear.partition-grid');
        const off =
          !onGrid(o.partition.cpuMilli, p.cpuMinMilli, p.cpuStepMilli) ||
          !onGrid(o.partition.memoryBytes, p.memoryMinBytes, p.memoryStepBytes) ||
          !onGrid(o.partition.pods, p.podsMin, p.podsStep);
        if (off)
          L.violate(
            'rear.partition-grid',
            t,
            [actor, o.buyer],
            `${o.contractId} cuts ${o.partition.cpuMilli}m, ${o.partition.memoryBytes} B, ${o.partition.pods} pods off the grid of ${o.flavorId}`,
          );
        return;
      }
      case 'rear.expired':
      case 'rear.cancelled': {
        const tx = txs.get(o.transactionId);
        if (tx && tx.sold === undefined) {
          tx.expirationTimeUs = Math.min(tx.expirationTimeUs, t + (skewUs.get(actor) ?? 0));
          tx.closed = true;
        }
        openTxs.delete(o.transactionId);
        return;
      }
      case 'rear.withdrawn':
        versionOf.set(actor, (versionOf.get(actor) ?? 0) + 1);
        withdrawn.add(keyOf(actor, o.flavorId));
        return;
      default:
    }
  };

  /** The flavor ids `provider` advertised to `solver` (listings, refreshes). */
  const listedIds = (solver: string, provider: string): Set<string> => {
    const byProvider = listedTo.get(solver) ?? new Map<string, Set<string>>();
    listedTo.set(solver, byProvider);
    const ids = byProvider.get(provider) ?? new Set<string>();
    byProvider.set(provider, ids);
    return ids;
  };

  /** Invariant 6: what a provider lists to a solver (`msg`, answering a request with `selector`). */
  const listing = (t: number, provider: string, to: string, msg: ListAnswer, selector: Selector | undefined): void => {
    if (msg.status !== 200) return;
    L.check('rear.listing', msg.flavors.length);
    // A flavor object found fine for the same selector object, with nothing sold or withdrawn at its
    // provider since, is fine again (a provider hands out the same object until the flavor changes).
    const version = versionOf.get(provider) ?? 0;
    let cache = fine.get(provider);
    if (!cache) fine.set(provider, (cache = new Map()));
    for (const f of msg.flavors) {
      const hit = cache.get(f.flavorId);
      if (hit && hit.flavor === f && hit.selector === selector && hit.version === version) continue;
      const problem = listingProblem(provider, f, selector);
      if (problem) L.violate('rear.listing', t, [provider, to], `${provider} listed ${f.flavorId} to ${to}: ${problem}`);
      else cache.set(f.flavorId, { flavor: f, selector, version });
    }
  };
  const listingProblem = (provider: string, f: Flavor, selector: Selector | undefined): string | undefined => {
    const key = keyOf(provider, f.flavorId);
    if (!matchesSelector(f, selector)) return `it does not match the selector ${JSON.stringify(selector)}`;
    if (!f.availability) return 'it is marked unavailable';
    if (withdrawn.has(key)) return 'it was withdrawn';
    const info = flavors.get(key);
    if (!info?.capacity) return (contracts.get(key) ?? 0) > 0 ? 'it is sold' : undefined;
    if (f.type.name !== 'k8slice') return undefined;
    const c = f.type.characteristics;
    const u = used.get(key) ?? { cpuMilli: 0, memoryBytes: 0, pods: 0 };
    const cap = info.capacity;
    if (c.cpuMilli > cap.cpuMilli - u.cpuMilli || c.memoryBytes > cap.memoryBytes - u.memoryBytes || c.pods > cap.pods - u.pods)
      return `it offers ${c.cpuMilli}m CPU, ${c.memoryBytes} B, ${c.pods} pods, but contracts left ${cap.cpuMilli - u.cpuMilli}m, ${cap.memoryBytes - u.memoryBytes} B, ${cap.pods - u.pods}`;
    return undefined;
  };

  /** Invariant 2, second half: an expired transaction is gone by its provider's next sweep. */
  const sweepCheck = (t: number): void => {
    for (const id of openTxs) {
      const tx = txs.get(id)!;
      const sweep = opts.sweepUs?.get(tx.provider);
      if (tx.closed || tx.sold !== undefined || tx.late) {
        openTxs.delete(id);
        continue;
      }
      if (sweep === undefined) continue;
      if (pausedSince.has(tx.provider)) continue;
      // The provider's clock, and a paused provider's sweeps counted from its resume.
      const due = Math.max(tx.expirationTimeUs, (resumedAt.get(tx.provider) ?? 0) + (skewUs.get(tx.provider) ?? 0)) + sweep;
      L.check('rear.ttp');
      if (t + (skewUs.get(tx.provider) ?? 0) > due) {
        tx.late = true;
        L.violate(
          'rear.ttp',
          t,
          [tx.provider, tx.buyer],
          `${id} expired at ${tx.expirationTimeUs} µs and still holds ${tx.flavorId} at ${t} µs (the sweep runs every ${sweep} µs)`,
        );
      }
    }
  };

  return {
    tickUs: opts.sweepUs && opts.sweepUs.size > 0 ? SWEEP_CHECK_US : undefined,
    onTick: sweepCheck,
    onObserve(t, actor, obs) {
      const o = obs as ProviderObservation | ConsumerObservation;
      if (o.kind === 'rear.solver.end') {
        L.check('rear.solver-ends-once');
        if (ended.has(actor)) L.violate('rear.solver-ends-once', t, [actor], `${actor} ended twice (again ${o.outcome}: ${o.reason})`);
        ended.add(actor);
        // It sends nothing more: what it was listed and given can go.
        listedTo.delete(actor);
        reservedTo.delete(actor);
        return;
      }
      if (o.kind.startsWith('rear.') && !o.kind.startsWith('rear.solver')) provider(t, actor, o as ProviderObservation);
    },
    onDeliver(_t, to, from, env: Envelope) {
      if (env.type === 'ListAnswer') {
        const m = env as ListAnswer;
        if (m.status !== 200) return;
        const ids = listedIds(to, from);
        for (const f of m.flavors) ids.add(f.flavorId);
      } else if (env.type === 'Refresh') {
        // A Refresh advertises its flavor (a remainder's new id, say) as a listing does.
        listedIds(to, from).add((env as Refresh).flavor.flavorId);
      } else if (env.type === 'ReserveAnswer') {
        const m = env as ReserveAnswer;
        if (m.status !== 200 || !m.transaction) return;
        const given = reservedTo.get(to) ?? new Map<string, string>();
        reservedTo.set(to, given);
        given.set(m.transaction.transactionId, from);
      } else if (env.type === 'ListFlavors') {
        asked.set(`${to}|${from}|${env.rid}`, (env as { selector?: Selector }).selector);
      }
    },
    onSend(t, from, to, env: Envelope) {
      if (env.type === 'ReserveFlavor') {
        const flavorId = (env as ReserveFlavor).reservation.flavorId;
        L.check('rear.message-order');
        if (!listedTo.get(from)?.get(to)?.has(flavorId))
          L.violate('rear.message-order', t, [from, to], `${from} reserves ${flavorId} at ${to}, which ${to} never listed to it`);
      } else if (env.type === 'PurchaseFlavor') {
        const tx = (env as PurchaseFlavor).transactionId;
        L.check('rear.message-order');
        if (reservedTo.get(from)?.get(tx) !== to)
          L.violate('rear.message-order', t, [from, to], `${from} purchases ${tx} at ${to}, which ${to} never gave it`);
      } else if (env.type === 'ListAnswer') {
        const key = `${from}|${to}|${env.re}`;
        if (!asked.has(key)) return;
        const selector = asked.get(key);
        asked.delete(key);
        listing(t, from, to, env as ListAnswer, selector);
      }
    },
    onFault(t, action: FaultAction, actors) {
      // A provider that crashes (or shuts down) takes its open transactions with it: they lived in
      // memory, and nothing will sweep them.
      if (action.kind === 'crash' || action.kind === 'restart' || action.kind === 'shutdown') {
        for (const id of openTxs) if (actors.includes(txs.get(id)!.provider)) txs.get(id)!.closed = true;
        for (const a of actors) pausedSince.delete(a);
      }
      // A restarted solver is a new one: it may end again.
      if (action.kind === 'restart') for (const a of actors) ended.delete(a);
      if (action.kind === 'pause') for (const a of actors) pausedSince.set(a, t);
      if (action.kind === 'resume')
        for (const a of actors) {
          pausedSince.delete(a);
          resumedAt.set(a, t);
        }
      if (action.kind === 'skew')
        for (const a of actors) {
          skewUs.set(a, (skewUs.get(a) ?? 0) + action.byUs);
          // A clock jumped forward can put transactions past their expiry at once: the provider's
          // next sweep (up to one period away) is counted from here.
          resumedAt.set(a, t);
        }
    },
    results: () => L.results(),
  };
}
