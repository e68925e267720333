/**
 * One step of the buffer/rate core, the TypeScript reference (`shared/protocols/virdi.md`).
 * assembly/step.ts computes the same in WebAssembly; the differential property tests in
 * test/buffers/ hold the two to identical arrays and events, bit for bit.
 *
 * A step of `dtMs` milliseconds does, resource by resource (consumers of different resources never
 * touch each other's units, so this order only decides the order of the edges):
 *
 * 1. **Production**, resource by resource. Each open producer whose interval elapsed sends its chunk
 *    (several if its interval is shorter than the step). Every accepted chunk is checked against the
 *    global buffer as it would stand after distribution (`global + max(0, accepted − free room of the
 *    consumers)`); the chunk that brings it to its limit aborts its stream ("right after its next
 *    message"), and so does every later chunk while it stays full. With `RefuseWhenFull` (strict
 *    mode) a chunk that arrives while the buffer is already full is refused instead of accepted, so
 *    the overshoot stays below one chunk. The step's accepted units are then **distributed** once:
 *    seeded shuffle of the resource's connected consumers (drawn lazily, position by position, as the
 *    rounds reach them), equal shares, the remainder one unit each,
 *    capped by free space, repeated while units are left and someone has room; the rest goes to the
 *    global buffer (whole, even past its limit). When the units cover all free room no shuffle is
 *    needed (everyone is filled); when nobody has room everything goes to the global buffer.
 * 2. **Global full edge** per resource.
 * 3. **Its consumers** (in slot order): the estimate of the client's buffer decays by `max_rate × dt`; once it is at or
 *    below 25 % of the buffer limit the server sends `floor(0.75 × limit − estimate)` units, first
 *    from the global buffer, then from the consumer's server-side buffer; nothing available → the
 *    consumer is *starved* (an edge, once, until units flow again). The client's real buffer drains
 *    at its real rate, then receives what was sent; reaching its limit is an edge.
 * 4. **Global not-full edge** of the resource.
 */
import type { CoreSizes, CoreViews } from './layout.js';
import { ConsumerFlag, Edge, SCALE, StepFlag, Total } from './layout.js';

/** The part of a random stream the shuffle needs (RandomStream in src/engine/rng.ts). */
export interface IntSource {
  int(n: number): number;
}

/**
 * Distributes `amount` among the connected consumers of resource `r` (shuffled into `order`);
 * returns the units nobody had room for and records the fairness spread in `spread[r]`.
 */
export function distributeReference(v: CoreViews, r: number, amount: number, rng: IntSource, fair: boolean): number {
  const { memList, cActive, cServer, cLimit, order, given } = v;
  let count = 0;
  const start = v.memStart[r];
  const end = start + v.memCount[r];
  for (let k = start; k < end; k++) {
    const c = memList[k];
    if (cActive[c] !== 0) order[count++] = c;
  }
  // The shuffle is a forward Fisher–Yates done lazily: position k is drawn when a round first reaches
  // it, so a step that hands out a few units draws a few numbers, not one per consumer.
  let shuffled = 0;
  let left = amount;
  let cursor = 0;
  while (left > 0) {
    let withRoom = 0;
    for (let k = 0; k < count; k++) {
      const c = order[k];
      if (cServer[c] < cLimit[c]) withRoom++;
    }
    if (withRoom === 0) break;
    const share = Math.floor(left / withRoom);
    let extra = left - share * withRoom;
    let k = fair ? cursor : 0;
    for (let step = 0; step < count; step++, k++) {
      if (share === 0 && extra === 0) break;
      if (k === count) k = 0;
      if (k === shuffled) {
        const j = k + rng.int(count - k);
        const t = order[k];
        order[k] = order[j];
        order[j] = t;
        given[k] = 0;
        shuffled++;
      }
      const c = order[k];
      const held = cServer[c];
      const limit = cLimit[c];
      if (held >= limit) continue;
      let give = share;
      if (extra > 0) {
        give++;
        extra--;
        cursor = k + 1;
      }
      if (give > limit - held) give = limit - held;
      cServer[c] = held + give;
      given[k] += give;
      left -= give;
    }
  }
  // Fairness (invariant 8): how far apart the consumers that still have room ended up.
  let lo = Infinity;
  let hi = -Infinity;
  for (let k = 0; k < count; k++) {
    const c = order[k];
    if (cServer[c] < cLimit[c]) {
      const g = k < shuffled ? given[k] : 0;
      if (g < lo) lo = g;
      if (g > hi) hi = g;
    }
  }
  const spread = hi >= lo ? hi - lo : 0;
  if (spread > v.spread[r]) v.spread[r] = spread;
  return left;
}

/** Advances every buffer by `dtMs`; writes edges to `v.events`, returns how many (pairs). */
export function stepReference(v: CoreViews, s: CoreSizes, dtMs: number, flags: number, rngs: readonly IntSource[]): number {
  const fair = (flags & StepFlag.Fair) !== 0;
  const refuse = (flags & StepFlag.RefuseWhenFull) !== 0;
  const { gAmount, gLimit, gFull, prodList, pOpen, pChunk, pInterval, pCountdown, events, totals } = v;
  const { cActive, cMaxRate, cLimit, cServer, cEstimate, cClient, cDrain, cFlags, cSent, memStart, memCount, memList } = v;
  let n = 0;
  let delivered = 0;

  // Resource by resource: 1–2. production, distribution, full edge; 3. its consumers; 4. not-full edge.
  for (let r = 0; r < s.resources; r++) {
    v.spread[r] = 0;
    const pEnd = v.prodStart[r] + v.prodCount[r];
    let accepted = 0;
    let free = -1;
    let fullReached = gAmount[r] >= gLimit[r];
    for (let k = v.prodStart[r]; k < pEnd; k++) {
      const p = prodList[k];
      if (pOpen[p] === 0) continue;
      let cd = pCountdown[p] - dtMs;
      while (cd < 0) {
        if (fullReached && refuse) {
          totals[Total.refusedChunks] += 1;
          pOpen[p] = 0;
          events[n++] = Edge.ProduceAborted;
          events[n++] = p;
          break;
        }
        if (free < 0) free = freeRoom(v, r);
        accepted += pChunk[p];
        cd += pInterval[p];
        const over = accepted - free;
        if (gAmount[r] + (over > 0 ? over : 0) >= gLimit[r]) {
          fullReached = true;
          pOpen[p] = 0;
          events[n++] = Edge.ProduceAborted;
          events[n++] = p;
          break;
        }
      }
      pCountdown[p] = cd;
    }
    if (accepted > 0) {
      totals[Total.produced] += accepted;
      let left: number;
      if (free === 0) left = accepted;
      else if (accepted >= free) {
        fillAll(v, r);
        left = accepted - free;
      } else {
        totals[Total.shuffles] += 1;
        left = distributeReference(v, r, accepted, rngs[r], fair);
      }
      gAmount[r] += left;
    }
    if (gFull[r] === 0 && gAmount[r] >= gLimit[r]) {
      gFull[r] = 1;
      events[n++] = Edge.GlobalFull;
      events[n++] = r;
    }

    // 3. This resource's consumers.
    const mEnd = memStart[r] + memCount[r];
    for (let k = memStart[r]; k < mEnd; k++) {
      const c = memList[k];
      if (cActive[c] === 0) continue;
      let est = cEstimate[c] - cMaxRate[c] * dtMs;
      if (est < 0) est = 0;
      let client = cClient[c] - cDrain[c] * dtMs;
      if (client < 0) client = 0;
      const limit = cLimit[c];
      let flag = cFlags[c];
      let sent = 0;
      if (est * 4 <= limit * SCALE) {
        const want = Math.floor((limit * 45_000 - est) / SCALE);
        if (want > 0) {
          const g = gAmount[r];
          const held = cServer[c];
          const avail = g + held;
          const take = want < avail ? want : avail;
          if (take > 0) {
            const fromG = take < g ? take : g;
            gAmount[r] = g - fromG;
            cServer[c] = held - (take - fromG);
            est += take * SCALE;
            client += take * SCALE;
            sent = take;
            delivered += take;
            flag &= ~ConsumerFlag.Starved;
          } else if ((flag & ConsumerFlag.Starved) === 0) {
            flag |= ConsumerFlag.Starved;
            events[n++] = Edge.Starved;
            events[n++] = c;
          }
        }
      }
      if (client >= limit * SCALE) {
        if ((flag & ConsumerFlag.ClientFull) === 0) {
          flag |= ConsumerFlag.ClientFull;
          events[n++] = Edge.ClientFull;
          events[n++] = c;
        }
      } else flag &= ~ConsumerFlag.ClientFull;
      cSent[c] = sent;
      cEstimate[c] = est;
      cClient[c] = client;
      cFlags[c] = flag;
    }

    // 4. Not-full edge.
    if (gFull[r] !== 0 && gAmount[r] < gLimit[r]) {
      gFull[r] = 0;
      events[n++] = Edge.GlobalNotFull;
      events[n++] = r;
    }
  }
  // Units are whole numbers (exact in f64), so the order of this sum does not change it.
  totals[Total.delivered] += delivered;
  return n >> 1;
}

/** Free room of resource `r`'s connected consumers' server-side buffers. */
function freeRoom(v: CoreViews, r: number): number {
  const { memList, cActive, cServer, cLimit } = v;
  let free = 0;
  const end = v.memStart[r] + v.memCount[r];
  for (let k = v.memStart[r]; k < end; k++) {
    const c = memList[k];
    if (cActive[c] !== 0 && cServer[c] < cLimit[c]) free += cLimit[c] - cServer[c];
  }
  return free;
}

/** Fills every connected consumer of `r` to its limit (the units cover all free room). */
function fillAll(v: CoreViews, r: number): void {
  const { memList, cActive, cServer, cLimit } = v;
  const end = v.memStart[r] + v.memCount[r];
  for (let k = v.memStart[r]; k < end; k++) {
    const c = memList[k];
    if (cActive[c] !== 0 && cServer[c] < cLimit[c]) cServer[c] = cLimit[c];
  }
}
