// One step of the buffer/rate core in WebAssembly: the same computation as the TypeScript reference
// in src/buffers/referenceStep.ts (read its header for the rules; the differential property tests
// in test/buffers/ hold the two to identical arrays and events, bit for bit).
//
// The host lays the state out as structure of arrays in linear memory (src/buffers/layout.ts) and
// passes a table of field addresses, in the layout's field order.
//
// Written for speed, with the reference's results bit for bit:
// - every field address is read from the table once per step and handed to the helpers;
// - the pass that measures a resource's free room also counts the connected consumers and those
//   with room, so the distribution does not count them again; when the members are a run of slots
//   it goes four at a time and adds in two f64x2 sums — only when every term is a whole number and
//   the total is below 2⁵³ (then every order of adding is exact), else one term at a time in order;
// - the distribution keeps the count of consumers with room up to date as they fill (exactly the
//   count the reference takes at the start of every round), and the fairness spread looks only at
//   the positions the lazy shuffle reached (the others were given nothing);
// - when every member of a resource is connected, its shuffle order starts as a copy of its members;
// - the consumer loop goes over a resource's run of slots in one pass, two consumers at a time in
//   f64x2 lanes (lane-wise IEEE operations are identical to scalar ones): decay, drain, whether a
//   send is due, and the take from the global buffer in consumer order (its amount kept in a
//   register; the second lane recomputed only when the first changed it); the send size's division
//   is done only where the size can bind, and one test finds the pairs where no unit moves;
// - conditional updates are lane selects (pmin, pmax, bitselect) rather than branches where the
//   outcome is data-dependent.
// The delivered sum is still added one term at a time in the reference's order.
import { nextInt } from './rng';

// Field numbers in the address table (src/buffers/layout.ts, FIELDS).
const G_AMOUNT = 0;
const G_LIMIT = 1;
const G_FULL = 2;
const MEM_START = 3;
const MEM_COUNT = 4;
const PROD_START = 5;
const PROD_COUNT = 6;
const SPREAD = 7;
const PROD_LIST = 8;
const P_OPEN = 9;
const P_CHUNK = 10;
const P_INTERVAL = 11;
const P_COUNTDOWN = 12;
const MEM_LIST = 13;
const C_ACTIVE = 14;
const C_RESOURCE = 15;
const C_MAX_RATE = 16;
const C_LIMIT = 17;
const C_SERVER = 18;
const C_ESTIMATE = 19;
const C_CLIENT = 20;
const C_DRAIN = 21;
const C_FLAGS = 22;
const C_SENT = 23;
const ORDER = 24;
const GIVEN = 25;
const EVENTS = 26;
const TOTALS = 27;

const SCALE: f64 = 60000.0;
const EDGE_GLOBAL_FULL: i32 = 1;
const EDGE_GLOBAL_NOT_FULL: i32 = 2;
const EDGE_PRODUCE_ABORTED: i32 = 3;
const EDGE_STARVED: i32 = 4;
const EDGE_CLIENT_FULL: i32 = 5;
const FLAG_FAIR: i32 = 1;
const FLAG_REFUSE: i32 = 2;
const STARVED: i32 = 1;
const CLIENT_FULL: i32 = 2;
const T_PRODUCED: i32 = 0;
const T_DELIVERED: i32 = 1;
const T_REFUSED: i32 = 3;
const T_SHUFFLES: i32 = 4;

function field(table: usize, f: i32): usize {
  return <usize>load<u32>(table + ((<usize>f) << 2));
}
function f64At(base: usize, i: i32): f64 {
  return load<f64>(base + ((<usize>i) << 3));
}
function setF64(base: usize, i: i32, v: f64): void {
  store<f64>(base + ((<usize>i) << 3), v);
}
function i32At(base: usize, i: i32): i32 {
  return load<i32>(base + ((<usize>i) << 2));
}
function setI32(base: usize, i: i32, v: i32): void {
  store<i32>(base + ((<usize>i) << 2), v);
}

let nEvents: i32 = 0;

function emit(events: usize, kind: i32, index: i32): void {
  setI32(events, nEvents++, kind);
  setI32(events, nEvents++, index);
}

// Set by freeRoom: the members of the resource that are connected, and those of them with room.
let activeCount: i32 = 0;
let roomCount: i32 = 0;

/**
 * Free room of the connected consumers in memList[start, end); sets activeCount and roomCount.
 * When the members are a run of slots, freeRoomRun; else two members at a time when they are
 * neighbours in memory (the terms are added one by one, in order; a member without room adds +0,
 * which leaves the sum's bits as they are: it starts at +0 and only grows).
 */
function freeRoom(memList: usize, active: usize, server: usize, limits: usize, start: i32, end: i32): f64 {
  if (end > start) {
    const first = i32At(memList, start);
    if (i32At(memList, end - 1) - first == end - 1 - start) {
      const free = freeRoomRun(active, server, limits, first, first + (end - start));
      if (free >= 0) return free;
    }
  }
  return freeRoomOrdered(memList, active, server, limits, start, end);
}

/** 2⁵³: below it, sums of whole numbers are exact. */
const EXACT: f64 = 9007199254740992.0;

/**
 * Free room of the connected consumers in slots [from, to), four at a time in two f64x2 sums, with
 * activeCount and roomCount; or −1 when that sum might differ from the reference's (the terms added
 * one by one in slot order). It cannot differ when every term is a whole number and the total is
 * below 2⁵³: every partial sum, in any order, is then a whole number below 2⁵³, so exact — and
 * exact sums of the same terms are equal.
 */
function freeRoomRun(active: usize, server: usize, limits: usize, from: i32, to: i32): f64 {
  const zero = f64x2.splat(0);
  let acc0 = zero;
  let acc1 = zero;
  let whole = i64x2.splat(-1);
  let nActive: i32 = 0;
  let nRoom: i32 = 0;
  let c = from;
  for (; c + 3 < to; c += 4) {
    const o8 = (<usize>c) << 3;
    const a = v128.load(active + ((<usize>c) << 2));
    const on0 = i64x2.ne(i64x2.extend_low_i32x4_s(a), zero);
    const on1 = i64x2.ne(i64x2.extend_high_i32x4_s(a), zero);
    const s0 = v128.load(server + o8);
    const s1 = v128.load(server + o8, 16);
    const l0 = v128.load(limits + o8);
    const l1 = v128.load(limits + o8, 16);
    const room0 = v128.and(on0, f64x2.lt(s0, l0));
    const room1 = v128.and(on1, f64x2.lt(s1, l1));
    const d0 = v128.and(f64x2.sub(l0, s0), room0);
    const d1 = v128.and(f64x2.sub(l1, s1), room1);
    acc0 = f64x2.add(acc0, d0);
    acc1 = f64x2.add(acc1, d1);
    whole = v128.and(whole, v128.and(f64x2.eq(f64x2.floor(d0), d0), f64x2.eq(f64x2.floor(d1), d1)));
    nActive += popcnt(i64x2.bitmask(on0) | (i64x2.bitmask(on1) << 2));
    nRoom += popcnt(i64x2.bitmask(room0) | (i64x2.bitmask(room1) << 2));
  }
  let rest: f64 = 0;
  for (; c < to; c++) {
    if (i32At(active, c) != 0) {
      nActive++;
      const s = f64At(server, c);
      const l = f64At(limits, c);
      if (s < l) {
        const d = l - s;
        if (Math.floor(d) != d) return -1;
        rest += d;
        nRoom++;
      }
    }
  }
  if (!i64x2.all_true(whole)) return -1;
  const total =
    f64x2.extract_lane(acc0, 0) + f64x2.extract_lane(acc0, 1) + f64x2.extract_lane(acc1, 0) + f64x2.extract_lane(acc1, 1) + rest;
  if (!(total < EXACT)) return -1;
  activeCount = nActive;
  roomCount = nRoom;
  return total;
}

/** Free room of the connected consumers in memList[start, end), added in order (see freeRoom). */
function freeRoomOrdered(memList: usize, active: usize, server: usize, limits: usize, start: i32, end: i32): f64 {
  const zero = f64x2.splat(0);
  let free: f64 = 0;
  let nActive: i32 = 0;
  let nRoom: i32 = 0;
  let k = start;
  for (; k + 1 < end; k += 2) {
    const c = i32At(memList, k);
    if (i32At(memList, k + 1) == c + 1) {
      const on = i64x2.ne(v128.load_ext<i32>(active + ((<usize>c) << 2)), zero);
      const s = v128.load(server + ((<usize>c) << 3));
      const l = v128.load(limits + ((<usize>c) << 3));
      const room = v128.and(on, f64x2.lt(s, l));
      const d = v128.and(f64x2.sub(l, s), room);
      free += f64x2.extract_lane(d, 0);
      free += f64x2.extract_lane(d, 1);
      nActive += popcnt(i64x2.bitmask(on));
      nRoom += popcnt(i64x2.bitmask(room));
      continue;
    }
    for (let i = k; i < k + 2; i++) {
      const ci = i32At(memList, i);
      if (i32At(active, ci) != 0) {
        nActive++;
        const s = f64At(server, ci);
        const l = f64At(limits, ci);
        if (s < l) {
          free += l - s;
          nRoom++;
        }
      }
    }
  }
  if (k < end) {
    const c = i32At(memList, k);
    if (i32At(active, c) != 0) {
      nActive++;
      const s = f64At(server, c);
      const l = f64At(limits, c);
      if (s < l) {
        free += l - s;
        nRoom++;
      }
    }
  }
  activeCount = nActive;
  roomCount = nRoom;
  return free;
}

/** Fills every connected consumer in memList[start, end) to its limit. */
function fillAll(memList: usize, active: usize, server: usize, limits: usize, start: i32, end: i32): void {
  for (let k = start; k < end; k++) {
    const c = i32At(memList, k);
    if (i32At(active, c) != 0 && f64At(server, c) < f64At(limits, c)) setF64(server, c, f64At(limits, c));
  }
}

/**
 * Distributes `amount` among the connected consumers of resource `r` (memList[start, end)); returns
 * the leftover. `nActive` and `nRoom` are freeRoom's counts for the same members and state.
 */
function distribute(t: usize, r: i32, start: i32, end: i32, nActive: i32, nRoom: i32, amount: f64, fair: bool): f64 {
  const memList = field(t, MEM_LIST);
  const active = field(t, C_ACTIVE);
  const server = field(t, C_SERVER);
  const limits = field(t, C_LIMIT);
  const order = field(t, ORDER);
  const given = field(t, GIVEN);
  let count: i32 = 0;
  if (nActive == end - start) {
    count = nActive;
    memory.copy(order, memList + ((<usize>start) << 2), (<usize>count) << 2);
  } else {
    for (let k = start; k < end; k++) {
      const c = i32At(memList, k);
      if (i32At(active, c) != 0) setI32(order, count++, c);
    }
  }
  // Lazy forward Fisher–Yates: position k is drawn when a round first reaches it. `withRoom` is the
  // number of consumers in `order` below their limit, kept up to date as they fill.
  let withRoom = nRoom;
  let shuffled: i32 = 0;
  let left = amount;
  let cursor: i32 = 0;
  while (left > 0) {
    if (withRoom == 0) break;
    const share = Math.floor(left / <f64>withRoom);
    let extra = left - share * <f64>withRoom;
    let k: i32 = fair ? cursor : 0;
    for (let step = 0; step < count; step++, k++) {
      if (share == 0 && extra == 0) break;
      if (k == count) k = 0;
      if (k == shuffled) {
        const j = k + nextInt(r, count - k);
        const x = i32At(order, k);
        setI32(order, k, i32At(order, j));
        setI32(order, j, x);
        setF64(given, k, 0);
        shuffled++;
      }
      const c = i32At(order, k);
      const held = f64At(server, c);
      const limit = f64At(limits, c);
      if (held >= limit) continue;
      let give = share;
      if (extra > 0) {
        give += 1;
        extra -= 1;
        cursor = k + 1;
      }
      if (give > limit - held) give = limit - held;
      const now = held + give;
      setF64(server, c, now);
      setF64(given, k, f64At(given, k) + give);
      left -= give;
      withRoom -= <i32>(held < limit && !(now < limit));
    }
  }
  // Fairness spread over the consumers with room: those the shuffle reached hold given[k], the others
  // (withRoom − roomShuffled of them) were given nothing.
  let lo: f64 = Infinity;
  let hi: f64 = -Infinity;
  let roomShuffled: i32 = 0;
  for (let k = 0; k < shuffled; k++) {
    const c = i32At(order, k);
    if (f64At(server, c) < f64At(limits, c)) {
      const g = f64At(given, k);
      if (g < lo) lo = g;
      if (g > hi) hi = g;
      roomShuffled++;
    }
  }
  if (withRoom > roomShuffled) {
    if (0 < lo) lo = 0;
    if (0 > hi) hi = 0;
  }
  const spread = hi >= lo ? <i32>(hi - lo) : 0;
  const spreads = field(t, SPREAD);
  if (spread > i32At(spreads, r)) setI32(spreads, r, spread);
  return left;
}

/** Distributes `amount` among resource `r`'s connected consumers; returns the leftover. */
export function distributeStep(t: usize, r: i32, amount: f64, fair: bool): f64 {
  const start = i32At(field(t, MEM_START), r);
  const end = start + i32At(field(t, MEM_COUNT), r);
  freeRoom(field(t, MEM_LIST), field(t, C_ACTIVE), field(t, C_SERVER), field(t, C_LIMIT), start, end);
  return distribute(t, r, start, end, activeCount, roomCount, amount, fair);
}

// Field addresses the consumer loop reads, set once per step.
let aGAmount: usize = 0;
let aEvents: usize = 0;
let aCActive: usize = 0;
let aCResource: usize = 0;
let aCMaxRate: usize = 0;
let aCLimit: usize = 0;
let aCServer: usize = 0;
let aCEstimate: usize = 0;
let aCClient: usize = 0;
let aCDrain: usize = 0;
let aCFlags: usize = 0;
let aCSent: usize = 0;
/** Units sent in this step so far. */
let stepDelivered: f64 = 0;

/** Steps the consumers in [from, to), all members of resource `r` (see step, 3). */
function consumerRange(r: i32, from: i32, to: i32, dtMs: f64): void {
  const gAmount = aGAmount;
  const events = aEvents;
  const cActive = aCActive;
  const cMaxRate = aCMaxRate;
  const cLimit = aCLimit;
  const cServer = aCServer;
  const cEstimate = aCEstimate;
  const cClient = aCClient;
  const cDrain = aCDrain;
  const cFlags = aCFlags;
  const cSent = aCSent;
  // 3. Consumers in order, two at a time in f64x2 lanes when both are connected (else one at a
  // time, the reference's code). The reference's `x < 0 ? 0 : x` is pmax(x, 0) and `a < b ? a : b`
  // is pmin(b, a), lane by lane (pmin(p, q) = q < p ? q : p; pmax(p, q) = p < q ? q : p), to the
  // bit, signed zeros and NaN included. The decay, the drain and whether a send is due have no dependence
  // between consumers; the units are taken from the global buffer in consumer order (its amount is
  // held in `gVal`, written back at the end and around the one-at-a-time code).
  let gVal: f64 = f64At(gAmount, r);
  let delivered: f64 = 0;
  let n = nEvents;
  const zero = f64x2.splat(0);
  const four = f64x2.splat(4);
  const dt = f64x2.splat(dtMs);
  const scale = f64x2.splat(SCALE);
  const k45000 = f64x2.splat(45000.0);
  const small = f64x2.splat(68719476736.0); // 2³⁶: times SCALE, below 2⁵³
  let c = from;
  for (; c + 1 < to; c += 2) {
    const o4 = (<usize>c) << 2;
    const o8 = (<usize>c) << 3;
    if (load<i32>(cActive + o4) == 0 || load<i32>(cActive + o4, 4) == 0) {
      setF64(gAmount, r, gVal);
      nEvents = n;
      delivered += consumerOne(c, dtMs);
      delivered += consumerOne(c + 1, dtMs);
      n = nEvents;
      gVal = f64At(gAmount, r);
      continue;
    }
    let est = f64x2.sub(v128.load(cEstimate + o8), f64x2.mul(v128.load(cMaxRate + o8), dt));
    est = f64x2.pmax(est, zero);
    let client = f64x2.sub(v128.load(cClient + o8), f64x2.mul(v128.load(cDrain + o8), dt));
    client = f64x2.pmax(client, zero);
    const limit = v128.load(cLimit + o8);
    const limitScaled = f64x2.mul(limit, scale);
    // The send's size is floor(x / SCALE) with x = limit·45000 − est, divided only when there are
    // units to take; it is positive exactly when x ≥ SCALE (a quotient below 1 never rounds up to 1).
    const x = f64x2.sub(f64x2.mul(limit, k45000), est);
    const send = v128.and(f64x2.le(f64x2.mul(est, four), limitScaled), f64x2.ge(x, scale));
    const held = v128.load(cServer + o8);
    let pm: i32 = 0;
    const g = gVal;
    let gv = f64x2.splat(g);
    let avail = f64x2.add(gv, held);
    if (!v128.any_true(v128.and(send, f64x2.gt(avail, zero)))) {
      // No consumer that asks has units to take (the common cases): no unit moves — lane 0 takes
      // nothing, so lane 1's units stay as they are.
      v128.store(cSent + o8, zero);
    } else {
      // Units are taken in consumer order: lane 1 sees what lane 0 left. Both lanes are computed
      // from gVal; only when a send changed it (bit for bit) is lane 1 computed again from what
      // lane 0 left, and gVal updated.
      // take = min(want, avail), want = floor(x / SCALE). The division is needed only where want
      // may be below avail: when x ≥ m·SCALE with m = ceil(avail) (a product of whole numbers below
      // 2⁵³, so exact), x / SCALE ≥ m and want ≥ m ≥ avail, so take = avail — also for lane 1's
      // avail after lane 0 took from the global buffer, which is no larger when the global amount
      // is not negative. (It can be: whole extra units out of a fractional chunk overshoot it.)
      const m = f64x2.ceil(avail);
      const sure = v128.and(f64x2.ge(x, f64x2.mul(m, scale)), f64x2.le(avail, small));
      const divide = v128.any_true(v128.andnot(send, sure)) || !(g >= 0);
      const want = v128.and(divide ? f64x2.floor(f64x2.div(x, scale)) : avail, send);
      let take = f64x2.pmin(avail, want);
      let pos = v128.and(send, f64x2.gt(take, zero));
      let fromG = f64x2.pmin(gv, take);
      let newG = f64x2.sub(gv, fromG);
      if (v128.any_true(v128.andnot(pos, i64x2.eq(newG, gv)))) {
        const g1 = i64x2.extract_lane(pos, 0) != 0 ? f64x2.extract_lane(newG, 0) : g;
        gv = f64x2.replace_lane(gv, 1, g1);
        avail = f64x2.add(gv, held);
        take = f64x2.pmin(avail, want);
        pos = v128.and(send, f64x2.gt(take, zero));
        fromG = f64x2.pmin(gv, take);
        newG = f64x2.sub(gv, fromG);
        gVal = i64x2.extract_lane(pos, 1) != 0 ? f64x2.extract_lane(newG, 1) : g1;
      }
      v128.store(cServer + o8, v128.bitselect(f64x2.sub(held, f64x2.sub(take, fromG)), held, pos));
      const add = v128.and(f64x2.mul(take, scale), pos);
      // Adding +0 to a consumer that got nothing leaves its bits as they are (est, client ≥ +0).
      est = v128.bitselect(f64x2.add(est, add), est, pos);
      client = v128.bitselect(f64x2.add(client, add), client, pos);
      const sent = v128.bitselect(take, zero, pos);
      delivered += f64x2.extract_lane(sent, 0);
      delivered += f64x2.extract_lane(sent, 1);
      v128.store(cSent + o8, sent);
      pm = i64x2.bitmask(pos);
    }
    v128.store(cEstimate + o8, est);
    v128.store(cClient + o8, client);
    // Flags, lane by lane: Starved is set when a send found nothing, cleared when units flowed;
    // ClientFull follows the client's buffer. Edges go out in consumer order.
    const sm = i64x2.bitmask(send);
    const fm = i64x2.bitmask(f64x2.ge(client, limitScaled));
    const f0 = load<i32>(cFlags + o4);
    const f1 = load<i32>(cFlags + o4, 4);
    const starve = sm & ~pm;
    const set0 = (starve & 1) | ((fm & 1) << 1);
    const set1 = ((starve >> 1) & 1) | (fm & 2);
    store<i32>(cFlags + o4, (f0 & ~(((pm | sm) & 1) | CLIENT_FULL)) | set0);
    store<i32>(cFlags + o4, (f1 & ~((((pm | sm) >> 1) & 1) | CLIENT_FULL)) | set1, 4);
    const edges0 = set0 & ~f0;
    const edges1 = set1 & ~f1;
    if ((edges0 | edges1) != 0) {
      if ((edges0 & STARVED) != 0) {
        setI32(events, n++, EDGE_STARVED);
        setI32(events, n++, c);
      }
      if ((edges0 & CLIENT_FULL) != 0) {
        setI32(events, n++, EDGE_CLIENT_FULL);
        setI32(events, n++, c);
      }
      if ((edges1 & STARVED) != 0) {
        setI32(events, n++, EDGE_STARVED);
        setI32(events, n++, c + 1);
      }
      if ((edges1 & CLIENT_FULL) != 0) {
        setI32(events, n++, EDGE_CLIENT_FULL);
        setI32(events, n++, c + 1);
      }
    }
  }
  setF64(gAmount, r, gVal);
  nEvents = n;
  if (c < to) delivered += consumerOne(c, dtMs);
  stepDelivered += delivered;
}

/**
 * Steps consumer `c` alone, the reference's code (where two cannot go together); returns the units
 * sent. Reads and writes the global buffers and the edge count in memory.
 */
function consumerOne(c: i32, dtMs: f64): f64 {
  if (i32At(aCActive, c) == 0) return 0;
  let est = f64At(aCEstimate, c) - f64At(aCMaxRate, c) * dtMs;
  if (est < 0) est = 0;
  let client = f64At(aCClient, c) - f64At(aCDrain, c) * dtMs;
  if (client < 0) client = 0;
  const limit = f64At(aCLimit, c);
  let flag = i32At(aCFlags, c);
  let sent: f64 = 0;
  if (est * 4 <= limit * SCALE) {
    const want = Math.floor((limit * 45000.0 - est) / SCALE);
    if (want > 0) {
      const r = i32At(aCResource, c);
      const g = f64At(aGAmount, r);
      const held = f64At(aCServer, c);
      const avail = g + held;
      const take = want < avail ? want : avail;
      if (take > 0) {
        const fromG = take < g ? take : g;
        setF64(aGAmount, r, g - fromG);
        setF64(aCServer, c, held - (take - fromG));
        est += take * SCALE;
        client += take * SCALE;
        sent = take;
        flag &= ~STARVED;
      } else if ((flag & STARVED) == 0) {
        flag |= STARVED;
        emit(aEvents, EDGE_STARVED, c);
      }
    }
  }
  if (client >= limit * SCALE) {
    if ((flag & CLIENT_FULL) == 0) {
      flag |= CLIENT_FULL;
      emit(aEvents, EDGE_CLIENT_FULL, c);
    }
  } else flag &= ~CLIENT_FULL;
  setF64(aCSent, c, sent);
  setF64(aCEstimate, c, est);
  setF64(aCClient, c, client);
  setI32(aCFlags, c, flag);
  return sent;
}

/**
 * Advances every buffer by `dtMs` milliseconds. `table` holds the field addresses; `nr`, `np`, `nc`
 * are the numbers of resources, producers and consumers. Returns the number of edges written.
 */
export function step(table: usize, nr: i32, np: i32, nc: i32, dtMs: f64, flags: i32): i32 {
  const fair = (flags & FLAG_FAIR) != 0;
  const refuse = (flags & FLAG_REFUSE) != 0;
  const gAmount = field(table, G_AMOUNT);
  const gLimit = field(table, G_LIMIT);
  const gFull = field(table, G_FULL);
  const spreads = field(table, SPREAD);
  const memStart = field(table, MEM_START);
  const memCount = field(table, MEM_COUNT);
  const memList = field(table, MEM_LIST);
  const prodStart = field(table, PROD_START);
  const prodCount = field(table, PROD_COUNT);
  const prodList = field(table, PROD_LIST);
  const pOpen = field(table, P_OPEN);
  const pChunk = field(table, P_CHUNK);
  const pInterval = field(table, P_INTERVAL);
  const pCountdown = field(table, P_COUNTDOWN);
  const events = field(table, EVENTS);
  const totals = field(table, TOTALS);
  const cActive = field(table, C_ACTIVE);
  const cResource = field(table, C_RESOURCE);
  const cMaxRate = field(table, C_MAX_RATE);
  const cLimit = field(table, C_LIMIT);
  const cServer = field(table, C_SERVER);
  const cEstimate = field(table, C_ESTIMATE);
  const cClient = field(table, C_CLIENT);
  const cDrain = field(table, C_DRAIN);
  const cFlags = field(table, C_FLAGS);
  const cSent = field(table, C_SENT);
  nEvents = 0;
  stepDelivered = 0;
  aGAmount = gAmount;
  aEvents = events;
  aCActive = cActive;
  aCResource = cResource;
  aCMaxRate = cMaxRate;
  aCLimit = cLimit;
  aCServer = cServer;
  aCEstimate = cEstimate;
  aCClient = cClient;
  aCDrain = cDrain;
  aCFlags = cFlags;
  aCSent = cSent;

  // Resource by resource: 1–2. production, distribution, full edge; 3. its consumers; 4. not-full edge.
  for (let r = 0; r < nr; r++) {
    setI32(spreads, r, 0);
    const pStart = i32At(prodStart, r);
    const pEnd = pStart + i32At(prodCount, r);
    const limitR = f64At(gLimit, r);
    let amountR = f64At(gAmount, r);
    let accepted: f64 = 0;
    let free: f64 = -1;
    let nActive: i32 = 0;
    let nRoom: i32 = 0;
    let fullReached = amountR >= limitR;
    for (let k = pStart; k < pEnd; k++) {
      const p = i32At(prodList, k);
      if (i32At(pOpen, p) == 0) continue;
      let cd = f64At(pCountdown, p) - dtMs;
      while (cd < 0) {
        if (fullReached && refuse) {
          setF64(totals, T_REFUSED, f64At(totals, T_REFUSED) + 1);
          setI32(pOpen, p, 0);
          emit(events, EDGE_PRODUCE_ABORTED, p);
          break;
        }
        if (free < 0) {
          const start = i32At(memStart, r);
          free = freeRoom(memList, cActive, cServer, cLimit, start, start + i32At(memCount, r));
          nActive = activeCount;
          nRoom = roomCount;
        }
        accepted += f64At(pChunk, p);
        cd += f64At(pInterval, p);
        const over = accepted - free;
        if (amountR + (over > 0 ? over : 0) >= limitR) {
          fullReached = true;
          setI32(pOpen, p, 0);
          emit(events, EDGE_PRODUCE_ABORTED, p);
          break;
        }
      }
      setF64(pCountdown, p, cd);
    }
    if (accepted > 0) {
      setF64(totals, T_PRODUCED, f64At(totals, T_PRODUCED) + accepted);
      const start = i32At(memStart, r);
      const end = start + i32At(memCount, r);
      let left: f64;
      if (free == 0) left = accepted;
      else if (accepted >= free) {
        fillAll(memList, cActive, cServer, cLimit, start, end);
        left = accepted - free;
      } else {
        setF64(totals, T_SHUFFLES, f64At(totals, T_SHUFFLES) + 1);
        left = distribute(table, r, start, end, nActive, nRoom, accepted, fair);
      }
      amountR += left;
      setF64(gAmount, r, amountR);
    }
    if (i32At(gFull, r) == 0 && amountR >= limitR) {
      setI32(gFull, r, 1);
      emit(events, EDGE_GLOBAL_FULL, r);
    }

    // 3. This resource's consumers, while its buffers are still in cache. Members are in ascending
    // slot order: when the first and last are count − 1 apart they are a contiguous run of slots.
    const mStart = i32At(memStart, r);
    const mCount = i32At(memCount, r);
    if (mCount > 0) {
      const first = i32At(memList, mStart);
      if (i32At(memList, mStart + mCount - 1) - first == mCount - 1) consumerRange(r, first, first + mCount, dtMs);
      else for (let k = mStart; k < mStart + mCount; k++) consumerRange(r, i32At(memList, k), i32At(memList, k) + 1, dtMs);
    }

    // 4. Not-full edge.
    if (i32At(gFull, r) != 0 && f64At(gAmount, r) < limitR) {
      setI32(gFull, r, 0);
      emit(events, EDGE_GLOBAL_NOT_FULL, r);
    }
  }
  setF64(totals, T_DELIVERED, f64At(totals, T_DELIVERED) + stepDelivered);
  return nEvents >> 1;
}

/** Reserves `bytes` of linear memory (8-byte aligned) for the host's arrays. */
export function alloc(bytes: usize): usize {
  return heap.alloc(bytes);
}
