/**
 * REAR invariants (`shared/protocols/rear.md`, "Invariants"), checked from outside the actors: from
 * the providers' and solvers' observations. Numbers follow the protocol document; invariants 5
 * (message order, no reserve after a withdraw) and 6 (listings) are not checked yet.
 */
import type { Partition, Partitionability } from '../protocol/rear.js';
import { onGrid } from '../protocol/rear.js';
import type { ProviderObservation } from '../actors/rear/provider.machine.js';
import type { ConsumerObservation } from '../actors/rear/consumer.machine.js';
import type { TraceRecord } from '../engine/createSimulation.js';
import type { InvariantChecker, InvariantInfo } from './types.js';
import { InvariantLedger } from './types.js';

export const REAR_INVARIANTS: readonly InvariantInfo[] = [
  {
    id: 'rear.no-oversell',
    number: 1,
    title: 'resources under contract never exceed a flavor’s capacity; a non-partitionable flavor has at most one contract',
  },
  { id: 'rear.ttp', number: 2, title: 'a transaction past its Time To Purchase is never purchased' },
  {
    id: 'rear.one-open-transaction',
    number: 3,
    title: 'at most one open transaction per (buyer, flavor); a re-reserve never shortens the expiry',
  },
  { id: 'rear.one-contract-per-transaction', number: 4, title: 'a transaction is bought by at most one contract' },
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
  policy?: Partitionability;
}

export interface RearCheckerOptions {
  flavors: RearFlavorInfo[];
  enabled: ReadonlySet<string>;
  recentTrace: () => TraceRecord[];
}

interface OpenTransaction {
  provider: string;
  flavorId: string;
  buyer: string;
  expirationTimeUs: number;
  sold: string | undefined;
}

export function createRearChecker(opts: RearCheckerOptions): InvariantChecker {
  const L = new InvariantLedger(REAR_INVARIANTS, opts.enabled, opts.recentTrace);
  const flavors = new Map(opts.flavors.map((f) => [`${f.provider}|${f.flavorId}`, f]));
  const txs = new Map<string, OpenTransaction>();
  /** Open transaction per provider|buyer|flavor. */
  const openOf = new Map<string, string>();
  const contracts = new Map<string, number>();
  const used = new Map<string, Partition>();
  const ended = new Set<string>();

  const provider = (t: number, actor: string, o: ProviderObservation): void => {
    switch (o.kind) {
      case 'rear.reserved': {
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
        if (open && open.sold === undefined && open.expirationTimeUs >= t)
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
        });
        openOf.set(key, o.transactionId);
        return;
      }
      case 'rear.sold': {
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
          if (t > tx.expirationTimeUs)
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
        const key = `${actor}|${o.flavorId}`;
        const flavor = flavors.get(key);
        L.check('rear.no-oversell');
        if (!flavor?.capacity || !o.partition) {
          const n = (contracts.get(key) ?? 0) + 1;
          contracts.set(key, n);
          if (n > 1) L.violate('rear.no-oversell', t, [actor, o.buyer], `${o.flavorId} at ${actor} sold ${n} times`);
          return;
        }
        const before = used.get(key) ?? { cpuMilli: 0, memoryBytes: 0, pods: 0 };
        const now = {
          cpuMilli: before.cpuMilli + o.partition.cpuMilli,
          memoryBytes: before.memoryBytes + o.partition.memoryBytes,
          pods: before.pods + o.partition.pods,
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
      case 'rear.expired': {
        const tx = txs.get(o.transactionId);
        if (tx && tx.sold === undefined) tx.expirationTimeUs = Math.min(tx.expirationTimeUs, t);
        return;
      }
      default:
    }
  };

  return {
    onObserve(t, actor, obs) {
      const o = obs as ProviderObservation | ConsumerObservation;
      if (o.kind === 'rear.solver.end') {
        L.check('rear.solver-ends-once');
        if (ended.has(actor)) L.violate('rear.solver-ends-once', t, [actor], `${actor} ended twice (again ${o.outcome}: ${o.reason})`);
        ended.add(actor);
        return;
      }
      if (o.kind.startsWith('rear.') && !o.kind.startsWith('rear.solver')) provider(t, actor, o as ProviderObservation);
    },
    results: () => L.results(),
  };
}
