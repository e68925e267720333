// One step of the buffer/rate core in WebAssembly: the same computation as the TypeScript reference
// in src/buffers/referenceStep.ts (read its header for the rules; the differential property tests
// in test/buffers/ hold the two to identical arrays and events, bit for bit).
//
// The host lays the state out as structure of arrays in linear memory (src/buffers/layout.ts) and
// passes a table of field addresses, in the layout's field order.
import { rngInt } from './rng';

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

function freeRoom(t: usize, r: i32): f64 {
  const memList = field(t, MEM_LIST);
  const active = field(t, C_ACTIVE);
  const server = field(t, C_SERVER);
  const limit = field(t, C_LIMIT);
  let free: f64 = 0;
  const start = i32At(field(t, MEM_START), r);
  const end = start + i32At(field(t, MEM_COUNT), r);
  for (let k = start; k < end; k++) {
    const c = i32At(memList, k);
    if (i32At(active, c) != 0) {
      const s = f64At(server, c);
      const l = f64At(limit, c);
      if (s < l) free += l - s;
    }
  }
  return free;
}

function fillAll(t: usize, r: i32): void {
  const memList = field(t, MEM_LIST);
  const active = field(t, C_ACTIVE);
  const server = field(t, C_SERVER);
  const limit = field(t, C_LIMIT);
  const start = i32At(field(t, MEM_START), r);
  const end = start + i32At(field(t, MEM_COUNT), r);
  for (let k = start; k < end; k++) {
    const c = i32At(memList, k);
    if (i32At(active, c) != 0 && f64At(server, c) < f64At(limit, c)) setF64(server, c, f64At(limit, c));
  }
}

/** Distributes `amount` among resource `r`'s connected consumers; returns the leftover. */
export function distributeStep(t: usize, r: i32, amount: f64, fair: bool): f64 {
  const memList = field(t, MEM_LIST);
  const active = field(t, C_ACTIVE);
  const server = field(t, C_SERVER);
  const limits = field(t, C_LIMIT);
  const order = field(t, ORDER);
  const given = field(t, GIVEN);
  let count: i32 = 0;
  const start = i32At(field(t, MEM_START), r);
  const end = start + i32At(field(t, MEM_COUNT), r);
  for (let k = start; k < end; k++) {
    const c = i32At(memList, k);
    if (i32At(active, c) != 0) setI32(order, count++, c);
  }
  // Lazy forward Fisher–Yates: position k is drawn when a round first reaches it.
  let shuffled: i32 = 0;
  let left = amount;
  let cursor: i32 = 0;
  while (left > 0) {
    let withRoom: i32 = 0;
    for (let k = 0; k < count; k++) {
      const c = i32At(order, k);
      if (f64At(server, c) < f64At(limits, c)) withRoom++;
    }
    if (withRoom == 0) break;
    const share = Math.floor(left / <f64>withRoom);
    let extra = left - share * <f64>withRoom;
    let k: i32 = fair ? cursor : 0;
    for (let step = 0; step < count; step++, k++) {
      if (share == 0 && extra == 0) break;
      if (k == count) k = 0;
      if (k == shuffled) {
        const j = k + rngInt(r, count - k);
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
      setF64(server, c, held + give);
      setF64(given, k, f64At(given, k) + give);
      left -= give;
    }
  }
  let lo: f64 = Infinity;
  let hi: f64 = -Infinity;
  for (let k = 0; k < count; k++) {
    const c = i32At(order, k);
    if (f64At(server, c) < f64At(limits, c)) {
      const g = k < shuffled ? f64At(given, k) : 0;
      if (g < lo) lo = g;
      if (g > hi) hi = g;
    }
  }
  const spread = hi >= lo ? <i32>(hi - lo) : 0;
  const spreads = field(t, SPREAD);
  if (spread > i32At(spreads, r)) setI32(spreads, r, spread);
  return left;
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
  const prodStart = field(table, PROD_START);
  const prodCount = field(table, PROD_COUNT);
  const prodList = field(table, PROD_LIST);
  const pOpen = field(table, P_OPEN);
  const pChunk = field(table, P_CHUNK);
  const pInterval = field(table, P_INTERVAL);
  const pCountdown = field(table, P_COUNTDOWN);
  const events = field(table, EVENTS);
  const totals = field(table, TOTALS);
  nEvents = 0;

  for (let r = 0; r < nr; r++) {
    setI32(spreads, r, 0);
    const pStart = i32At(prodStart, r);
    const pEnd = pStart + i32At(prodCount, r);
    let accepted: f64 = 0;
    let free: f64 = -1;
    let fullReached = f64At(gAmount, r) >= f64At(gLimit, r);
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
        if (free < 0) free = freeRoom(table, r);
        accepted += f64At(pChunk, p);
        cd += f64At(pInterval, p);
        const over = accepted - free;
        if (f64At(gAmount, r) + (over > 0 ? over : 0) >= f64At(gLimit, r)) {
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
      let left: f64;
      if (free == 0) left = accepted;
      else if (accepted >= free) {
        fillAll(table, r);
        left = accepted - free;
      } else {
        setF64(totals, T_SHUFFLES, f64At(totals, T_SHUFFLES) + 1);
        left = distributeStep(table, r, accepted, fair);
      }
      setF64(gAmount, r, f64At(gAmount, r) + left);
    }
    if (i32At(gFull, r) == 0 && f64At(gAmount, r) >= f64At(gLimit, r)) {
      setI32(gFull, r, 1);
      emit(events, EDGE_GLOBAL_FULL, r);
    }
  }

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
  let delivered: f64 = 0;
  for (let c = 0; c < nc; c++) {
    if (i32At(cActive, c) == 0) continue;
    let est = f64At(cEstimate, c) - f64At(cMaxRate, c) * dtMs;
    if (est < 0) est = 0;
    let client = f64At(cClient, c) - f64At(cDrain, c) * dtMs;
    if (client < 0) client = 0;
    const limit = f64At(cLimit, c);
    let flag = i32At(cFlags, c);
    let sent: f64 = 0;
    if (est * 4 <= limit * SCALE) {
      const want = Math.floor((limit * 45000.0 - est) / SCALE);
      if (want > 0) {
        const r = i32At(cResource, c);
        const g = f64At(gAmount, r);
        const held = f64At(cServer, c);
        const avail = g + held;
        const take = want < avail ? want : avail;
        if (take > 0) {
          const fromG = take < g ? take : g;
          setF64(gAmount, r, g - fromG);
          setF64(cServer, c, held - (take - fromG));
          est += take * SCALE;
          client += take * SCALE;
          sent = take;
          delivered += take;
          flag &= ~STARVED;
        } else if ((flag & STARVED) == 0) {
          flag |= STARVED;
          emit(events, EDGE_STARVED, c);
        }
      }
    }
    if (client >= limit * SCALE) {
      if ((flag & CLIENT_FULL) == 0) {
        flag |= CLIENT_FULL;
        emit(events, EDGE_CLIENT_FULL, c);
      }
    } else flag &= ~CLIENT_FULL;
    setF64(cSent, c, sent);
    setF64(cEstimate, c, est);
    setF64(cClient, c, client);
    setI32(cFlags, c, flag);
  }
  setF64(totals, T_DELIVERED, f64At(totals, T_DELIVERED) + delivered);

  for (let r = 0; r < nr; r++) {
    if (i32At(gFull, r) != 0 && f64At(gAmount, r) < f64At(gLimit, r)) {
      setI32(gFull, r, 0);
      emit(events, EDGE_GLOBAL_NOT_FULL, r);
    }
  }
  return nEvents >> 1;
}

/** Reserves `bytes` of linear memory (8-byte aligned) for the host's arrays. */
export function alloc(bytes: usize): usize {
  return heap.alloc(bytes);
}
