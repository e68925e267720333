/**
 * Virdi's nine invariants (`shared/protocols/virdi.md`, "Invariants") as a checker. Buffer-level
 * invariants are judged on the buffer/rate core's arrays after every step (the core reports, this
 * checker judges: it recomputes sums and bounds itself); protocol-level ones on the messages and
 * observations of the actors.
 *
 * Judgement rules where the protocol text leaves room:
 * - Conservation: produced = delivered + global + server-side buffers + lost, every step; any unit
 *   lost (a leaving consumer's buffer in `virdi` mode, the original's defect) is reported as a
 *   violation, so the loss is never hidden.
 * - Overshoot (2): judged when production raised a global buffer in a step (a strict-mode consumer
 *   that leaves returns its units to the global buffer, which may lift it further — that is not
 *   overshoot). "Concurrently producing streams" are those open at any step since the buffer was
 *   last below its limit: each may land one chunk after it filled.
 * - Abort when full (3): a producer that sends a chunk while its resource's global buffer is full
 *   (as the step begins) must be aborted in that step, and the server must end the stream with
 *   RESOURCE_EXHAUSTED at that instant.
 * - Requests (4): judged on the core's full flag, i.e. the edges the server has seen.
 */
import type { CoreSizes, CoreViews } from '../buffers/layout.js';
import { Edge, SCALE } from '../buffers/layout.js';
import type { Envelope } from '../protocol/host.js';
import type { CallEnd, VirdiMessage, VirdiMode, VirdiObservation } from '../protocol/virdi.js';
import type { InvariantChecker, InvariantInfo } from './types.js';
import { InvariantLedger } from './types.js';
import type { TraceRecord } from '../engine/createSimulation.js';

export const VIRDI_INVARIANTS: readonly InvariantInfo[] = [
  { id: 'virdi.conservation', number: 1, title: 'Produced = delivered + global + server-side buffers; no unit lost' },
  { id: 'virdi.buffer-limits', number: 2, title: 'Consumer buffers within their limits; global overshoot bounded' },
  { id: 'virdi.abort-when-full', number: 3, title: 'A stream producing into a full global buffer is aborted right after that message' },
  { id: 'virdi.request-when-not-full', number: 4, title: 'ProductionRequests only while the global buffer is not full' },
  { id: 'virdi.rate-bound', number: 5, title: 'Units sent over any window ≤ round(0.75 × limit) + max_rate × T / 60 + 1' },
  { id: 'virdi.send-size', number: 6, title: 'Every sent amount is > 0 and ≤ round(0.75 × limit)' },
  { id: 'virdi.one-stream-per-id', number: 7, title: 'At most one open Consume stream per consumer_id' },
  { id: 'virdi.fairness', number: 8, title: 'Within one distribution, consumers with room differ by at most one unit' },
  { id: 'virdi.precondition', number: 9, title: 'Unknown resource or missing client id → FAILED_PRECONDITION, no state change' },
];

/** What the checker may see of the world: the core's arrays and the names of its slots. */
export interface CoreProbe {
  views: CoreViews;
  sizes: CoreSizes;
  resourceName(r: number): string;
  producerName(p: number): string;
  consumerName(c: number): string;
  /** The resource index of a producer actor, or -1. */
  producerResource(name: string): number;
  known(resource: string): boolean;
}

export interface VirdiChecker extends InvariantChecker {
  beforeStep(t: number): void;
  afterStep(t: number, dtMs: number, edges: number): void;
  /** A consumer's stream opened in the core (its rate window starts afresh). */
  consumerOpened(c: number): void;
  /** Units vanished with a leaving consumer. */
  lost(t: number, consumer: string, units: number): void;
  /** The server went down: its streams are gone. */
  serverLost(): void;
  /** Units sent per consumer slot so far. */
  deliveredPerConsumer(): Float64Array;
}

export interface VirdiCheckerOptions {
  mode: VirdiMode;
  server: string;
  probe: CoreProbe;
  enabled: ReadonlySet<string>;
  recentTrace: () => TraceRecord[];
}

export function createVirdiChecker(o: VirdiCheckerOptions): VirdiChecker {
  const ledger = new InvariantLedger(VIRDI_INVARIANTS, o.enabled, o.recentTrace);
  const { views: v, sizes } = o.probe;
  const strict = o.mode === 'strict';
  const gBefore = new Float64Array(sizes.resources);
  /** Σ chunks of the streams open at any step since the global buffer was last below its limit. */
  const allowance = new Float64Array(sizes.resources);
  const counted = new Uint8Array(sizes.producers);
  const maxChunk = new Float64Array(sizes.resources);
  for (let r = 0; r < sizes.resources; r++) {
    for (let k = v.prodStart[r]; k < v.prodStart[r] + v.prodCount[r]; k++) maxChunk[r] = Math.max(maxChunk[r], v.pChunk[v.prodList[k]]);
  }
  const pOpenBefore = new Int32Array(sizes.producers);
  const pCountdownBefore = new Float64Array(sizes.producers);
  const bucket = new Float64Array(sizes.consumers);
  const delivered = new Float64Array(sizes.consumers);
  /** Producers whose stream the core aborted and the server has not yet ended. */
  const pendingAborts = new Map<string, number>();
  const openIds = new Map<string, string>();
  /** A refused-by-precondition request the server is handling in this step. */
  let precondition: { from: string; rid: number; call: string; t: number } | undefined;

  return {
    beforeStep(t) {
      for (const [producer, at] of pendingAborts) {
        ledger.violate(
          'virdi.abort-when-full',
          t,
          [o.server, producer],
          `the core aborted ${producer}'s stream at ${at} µs but the server never ended it`,
        );
      }
      pendingAborts.clear();
      gBefore.set(v.gAmount);
      pOpenBefore.set(v.pOpen);
      pCountdownBefore.set(v.pCountdown);
      for (let r = 0; r < sizes.resources; r++) {
        const below = v.gAmount[r] < v.gLimit[r];
        if (below) allowance[r] = 0;
        for (let k = v.prodStart[r]; k < v.prodStart[r] + v.prodCount[r]; k++) {
          const p = v.prodList[k];
          if (below) counted[p] = 0;
          if (v.pOpen[p] !== 0 && counted[p] === 0) {
            counted[p] = 1;
            allowance[r] += v.pChunk[p];
          }
        }
      }
    },

    afterStep(t, dtMs, edges) {
      // One pass over the consumers: held units, limits (2), rates (5) and send sizes (6).
      let held = 0;
      for (let r = 0; r < sizes.resources; r++) held += v.gAmount[r];
      let overLimit = -1;
      let sends = 0;
      const { cServer, cLimit, cActive, cSent, cMaxRate } = v;
      for (let c = 0; c < sizes.consumers; c++) {
        const s = cServer[c];
        held += s;
        if (s > cLimit[c] && overLimit < 0) overLimit = c;
        if (cActive[c] === 0) continue;
        const sent = cSent[c];
        let x = bucket[c] - cMaxRate[c] * dtMs;
        if (x < 0) x = 0;
        if (sent === 0) {
          bucket[c] = x;
          continue;
        }
        x += sent * SCALE;
        bucket[c] = x;
        delivered[c] += sent;
        sends++;
        const burst = Math.round(0.75 * cLimit[c]);
        if (x > (burst + 1) * SCALE) {
          ledger.violate(
            'virdi.rate-bound',
            t,
            [o.probe.consumerName(c)],
            `${(x / SCALE).toFixed(2)} units sent beyond what max_rate ${cMaxRate[c]}/min allows after a burst of ${burst}`,
          );
        }
        if (!(sent > 0 && sent <= burst && Number.isInteger(sent))) {
          ledger.violate('virdi.send-size', t, [o.probe.consumerName(c)], `sent ${sent} units (allowed 1 … ${burst})`);
        }
      }
      ledger.check('virdi.rate-bound', sends);
      ledger.check('virdi.send-size', sends);
      // 1. Conservation.
      const tot = v.totals;
      ledger.check('virdi.conservation');
      const gap = tot[0] - tot[1] - held - tot[2];
      if (gap !== 0) {
        ledger.violate(
          'virdi.conservation',
          t,
          [o.server],
          `produced ${tot[0]} ≠ delivered ${tot[1]} + held ${held} + lost ${tot[2]} (gap ${gap})`,
        );
      }
      // 2. Limits and overshoot.
      ledger.check('virdi.buffer-limits');
      if (overLimit >= 0) {
        ledger.violate(
          'virdi.buffer-limits',
          t,
          [o.probe.consumerName(overLimit)],
          `server-side buffer ${v.cServer[overLimit]} above its limit ${v.cLimit[overLimit]}`,
        );
      }
      for (let r = 0; r < sizes.resources; r++) {
        if (v.gAmount[r] <= gBefore[r]) continue;
        const ok = strict ? v.gAmount[r] <= v.gLimit[r] - 1 + maxChunk[r] : v.gAmount[r] < v.gLimit[r] + allowance[r];
        if (!ok) {
          const bound = strict
            ? `limit ${v.gLimit[r]} − 1 + largest chunk ${maxChunk[r]}`
            : `limit ${v.gLimit[r]} + the chunks of the streams producing since it filled, ${allowance[r]}`;
          ledger.violate(
            'virdi.buffer-limits',
            t,
            [o.server],
            `global buffer of ${o.probe.resourceName(r)} at ${v.gAmount[r]}, above ${bound}`,
          );
        }
      }
      // 3. A chunk into a full buffer ends its stream.
      for (let r = 0; r < sizes.resources; r++) {
        if (gBefore[r] < v.gLimit[r]) continue;
        for (let k = v.prodStart[r]; k < v.prodStart[r] + v.prodCount[r]; k++) {
          const p = v.prodList[k];
          if (pOpenBefore[p] === 0 || pCountdownBefore[p] - dtMs >= 0) continue;
          ledger.check('virdi.abort-when-full');
          if (v.pOpen[p] !== 0) {
            ledger.violate(
              'virdi.abort-when-full',
              t,
              [o.probe.producerName(p)],
              `${o.probe.producerName(p)} sent a chunk into the full global buffer of ${o.probe.resourceName(r)} and its stream stays open`,
            );
          }
        }
      }
      for (let i = 0; i < edges; i++) {
        if (v.events[2 * i] === Edge.ProduceAborted) {
          ledger.check('virdi.abort-when-full');
          pendingAborts.set(o.probe.producerName(v.events[2 * i + 1]), t);
        }
      }
      // 8. Fairness.
      for (let r = 0; r < sizes.resources; r++) {
        if (v.spread[r] > 1) {
          ledger.violate(
            'virdi.fairness',
            t,
            [o.server],
            `one distribution of ${o.probe.resourceName(r)} gave consumers with room amounts ${v.spread[r]} units apart`,
          );
        }
      }
      ledger.check('virdi.fairness');
    },

    serverLost() {
      openIds.clear();
      pendingAborts.clear();
      precondition = undefined;
    },

    consumerOpened(c) {
      bucket[c] = 0;
    },

    lost(t, consumer, units) {
      if (units > 0) {
        ledger.violate('virdi.conservation', t, [consumer], `${units} units vanished with ${consumer}'s server-side buffer when it left`);
      }
    },

    deliveredPerConsumer: () => delivered,

    onSend(t, from, to, msg: Envelope) {
      const m = msg as VirdiMessage;
      if (from !== o.server) return;
      if (m.type === 'ProductionRequest') {
        ledger.check('virdi.request-when-not-full');
        const r = o.probe.producerResource(to);
        if (r >= 0 && v.gFull[r] !== 0) {
          ledger.violate(
            'virdi.request-when-not-full',
            t,
            [from, to],
            `ProductionRequest to ${to} while the global buffer of ${o.probe.resourceName(r)} is full`,
          );
        }
      } else if (m.type === 'CallEnd') {
        const end = m as CallEnd;
        if (end.call === 'Produce' && end.code === 'RESOURCE_EXHAUSTED') pendingAborts.delete(to);
        if (precondition && precondition.from === to && precondition.rid === end.re) {
          ledger.check('virdi.precondition');
          if (end.code !== 'FAILED_PRECONDITION') {
            ledger.violate(
              'virdi.precondition',
              t,
              [from, to],
              `${precondition.call} without client id or with an unknown resource answered ${end.code}`,
            );
          }
          precondition = undefined;
        }
      }
    },

    onDeliver(t, to, from, msg) {
      if (to !== o.server) return;
      const m = msg as VirdiMessage;
      let resource: string | undefined;
      if (m.type === 'OfferProduction' || m.type === 'Consume') resource = m.resource_id;
      else if (m.type === 'Produce') resource = m.init_info?.resource_id;
      else return;
      if (m.client_id === undefined || !o.probe.known(resource ?? '')) precondition = { from, rid: m.rid, call: m.type, t };
    },

    onObserve(t, actor, obs) {
      const ob = obs as VirdiObservation;
      if (ob.kind === 'virdi.registry' && precondition && actor === o.server) {
        ledger.violate(
          'virdi.precondition',
          t,
          [actor, precondition.from],
          `a refused ${precondition.call} changed the server's ${ob.what} registry`,
        );
      } else if (ob.kind === 'virdi.consume.open') {
        ledger.check('virdi.one-stream-per-id');
        const other = openIds.get(ob.consumer_id);
        if (other !== undefined) {
          ledger.violate(
            'virdi.one-stream-per-id',
            t,
            [other, ob.by],
            `a second Consume stream for ${ob.consumer_id} (${other} still holds one)`,
          );
        }
        openIds.set(ob.consumer_id, ob.by);
      } else if (ob.kind === 'virdi.consume.close') {
        if (openIds.get(ob.consumer_id) === ob.by) openIds.delete(ob.consumer_id);
      }
    },

    onStepEnd(t, actor) {
      if (actor !== o.server || !precondition) return;
      ledger.check('virdi.precondition');
      ledger.violate(
        'virdi.precondition',
        t,
        [actor, precondition.from],
        `a ${precondition.call} without client id or with an unknown resource got no answer`,
      );
      precondition = undefined;
    },

    results: () => ledger.results(),
  };
}
