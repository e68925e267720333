/**
 * A streaming 64-bit hash of trace lines (two independent FNV-1a lanes). Not cryptographic: it is
 * the determinism witness — the same run yields the same hash, bit for bit, on every runtime.
 *
 * Each line is hashed on its own ({@link lineHash}) and the line hashes are folded in order, so the
 * shards of a parallel run hash their lines where they write them and the coordinator only folds.
 */
/** The lanes' starting values (a line's hash, and the fold of a run's lines, start from them). */
const START1 = 0x811c9dc5;
const START2 = 0x01000193 ^ 0x5bd1e995;

export class TraceHash {
  private h1 = START1;
  private h2 = START2;

  /** Feeds one line. */
  update(line: string): void {
    const h = lineHash(line);
    this.fold(h[0], h[1]);
  }

  /** Feeds the hash of one line (from {@link lineHash}). */
  fold(a: number, b: number): void {
    let h1 = Math.imul(this.h1 ^ a, 0x01000193);
    let h2 = Math.imul(this.h2 ^ b, 0x5bd1e995);
    h1 ^= h1 >>> 13;
    h2 ^= h2 >>> 15;
    this.h1 = h1;
    this.h2 = h2;
  }

  /** The hash so far as 16 hex digits. */
  digest(): string {
    return (this.h1 >>> 0).toString(16).padStart(8, '0') + (this.h2 >>> 0).toString(16).padStart(8, '0');
  }
}

/** The lanes while a line or a record is hashed (module state: one at a time, and no reentry). */
let r1 = 0;
let r2 = 0;
const lanes: [number, number] = [0, 0];

/** The two 32-bit lanes of one line's hash (in an array reused by the next call: read it at once). */
export function lineHash(line: string): readonly [number, number] {
  r1 = START1;
  r2 = START2;
  feed(line);
  return taken();
}

/**
 * lineHash(line), and the line's UTF-8 bytes and a newline written to `out` from `at` in the same
 * pass over its code units (a shard keeps its trace lines as bytes: no string to hold, join or
 * encode later). `out` must have room for 3 × line.length + 1 bytes from `at`. Returns where the
 * bytes end; the lanes are then in {@link lineLanes}. A lone surrogate is written as U+FFFD, as
 * TextEncoder and Node's files write it (JSON.stringify escapes them: trace lines have none).
 */
export function lineHashInto(line: string, out: Uint8Array, at: number): number {
  let h1 = START1;
  let h2 = START2;
  let p = at;
  const n = line.length;
  for (let i = 0; i < n; i++) {
    let c = line.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
    h2 ^= h2 >>> 15;
    if (c < 0x80) {
      out[p++] = c;
      continue;
    }
    if (c < 0x800) {
      out[p++] = 0xc0 | (c >> 6);
      out[p++] = 0x80 | (c & 63);
      continue;
    }
    if ((c & 0xf800) === 0xd800) {
      const d = c <= 0xdbff && i + 1 < n ? line.charCodeAt(i + 1) : 0;
      if ((d & 0xfc00) !== 0xdc00) c = 0xfffd;
      else {
        // A pair: the trail is hashed as a unit of its own, and the two make one 4-byte sequence.
        i++;
        h1 = Math.imul(h1 ^ d, 0x01000193);
        h2 = Math.imul(h2 ^ d, 0x5bd1e995);
        h2 ^= h2 >>> 15;
        const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        out[p++] = 0xf0 | (cp >> 18);
        out[p++] = 0x80 | ((cp >> 12) & 63);
        out[p++] = 0x80 | ((cp >> 6) & 63);
        out[p++] = 0x80 | (cp & 63);
        continue;
      }
    }
    out[p++] = 0xe0 | (c >> 12);
    out[p++] = 0x80 | ((c >> 6) & 63);
    out[p++] = 0x80 | (c & 63);
  }
  out[p++] = 10;
  r1 = h1;
  r2 = h2;
  taken();
  return p;
}

/** The lanes of the last {@link lineHashInto} (the array lineHash returns: read it at once). */
export const lineLanes: readonly [number, number] = lanes;

/** The lanes fed so far, as lineHash and recordHash return them. */
function taken(): readonly [number, number] {
  lanes[0] = r1 | 0;
  lanes[1] = r2 | 0;
  return lanes;
}

/*
 * The hash of a trace record computed from its fields, without building the line: the same lanes
 * as lineHash(traceLine(...)) (src/engine/createSimulation.ts), for a run that hashes its trace but
 * writes no file. A line costs a JSON.stringify, a string to hash and garbage; with --hash that
 * was about a third of a run. The serialisation below follows JSON.stringify step by step (toJSON,
 * boxed primitives, omitted members, keys and lengths read once, escapes, lone surrogates,
 * cycles); a property test holds the two to the same hash for any value. Known to differ only
 * for a boxed primitive whose prototype was set to Object.prototype or null (see unboxed), and
 * where JSON.stringify would overflow the stack (thousands of levels deep: the two overflow at
 * different depths).
 */

/** Feeds the UTF-16 code units of `s`, as they are. */
function feed(s: string): void {
  let h1 = r1;
  let h2 = r2;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
    h2 ^= h2 >>> 15;
  }
  r1 = h1;
  r2 = h2;
}

/** Feeds one code unit. */
function feedUnit(c: number): void {
  r1 = Math.imul(r1 ^ c, 0x01000193);
  const h2 = Math.imul(r2 ^ c, 0x5bd1e995);
  r2 = h2 ^ (h2 >>> 15);
}

const HEX = '0123456789abcdef';

/** Feeds `\uXXXX` (lower-case hex, as JSON.stringify writes it). */
function feedEscape(c: number): void {
  feedUnit(92);
  feedUnit(117);
  feedUnit(HEX.charCodeAt((c >> 12) & 15));
  feedUnit(HEX.charCodeAt((c >> 8) & 15));
  feedUnit(HEX.charCodeAt((c >> 4) & 15));
  feedUnit(HEX.charCodeAt(c & 15));
}

/** Feeds `s` as JSON.stringify quotes it. */
function feedQuoted(s: string): void {
  feedUnit(34);
  let h1 = r1;
  let h2 = r2;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 34 || c === 92 || (c & 0xf800) === 0xd800) {
      // Rare: escape it through the slow path, then go on.
      r1 = h1;
      r2 = h2;
      i = feedSpecial(s, i, c);
      h1 = r1;
      h2 = r2;
      continue;
    }
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
    h2 ^= h2 >>> 15;
  }
  r1 = h1;
  r2 = h2;
  feedUnit(34);
}

/** Feeds the code unit at `i` that needs care (and its pair); returns the index of the last unit fed. */
function feedSpecial(s: string, i: number, c: number): number {
  if (c === 34 || c === 92) {
    feedUnit(92);
    feedUnit(c);
  } else if (c < 0x20) {
    const short = c === 8 ? 98 : c === 9 ? 116 : c === 10 ? 110 : c === 12 ? 102 : c === 13 ? 114 : 0;
    if (short) {
      feedUnit(92);
      feedUnit(short);
    } else feedEscape(c);
  } else if (c <= 0xdbff) {
    // A lead surrogate: as it is when a trail follows (and the trail with it), else escaped.
    const next = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
    if (next >= 0xdc00 && next <= 0xdfff) {
      feedUnit(c);
      feedUnit(next);
      return i + 1;
    }
    feedEscape(c);
  } else feedEscape(c); // a trail surrogate with no lead before it
  return i;
}

/** Objects being serialised, outermost first (JSON.stringify refuses a cycle). */
const open: object[] = [];

/** What JSON.stringify leaves out (a member) or writes as null (an element). */
const OMIT = Symbol('omit');

/**
 * A member or element as JSON.stringify reads it (SerializeJSONProperty without replacer: its
 * toJSON called with the member's name, a boxed primitive unboxed), or {@link OMIT}.
 */
function resolve(value: unknown, key: string | number): unknown {
  let v = value;
  if ((typeof v === 'object' && v !== null) || typeof v === 'function' || typeof v === 'bigint') {
    const toJSON = (v as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') v = toJSON.call(v, String(key));
  }
  if (typeof v === 'object' && v !== null) v = unboxed(v);
  return v === undefined || typeof v === 'function' || typeof v === 'symbol' ? OMIT : v;
}

/**
 * A boxed primitive's value as JSON.stringify takes it (a Number by ToNumber, a String by
 * ToString, a Boolean's or a BigInt's own value); any other object as it is. JSON.stringify asks
 * what the object holds, not what its prototype is (a Number from another realm is a Number,
 * Object.create(Number.prototype) is not), and so does this: by calling each type's valueOf on it,
 * which throws for any other object. Object and array literals, what messages are made of, skip
 * the test; a boxed primitive whose prototype was set to Object.prototype or null is missed.
 */
function unboxed(v: object): unknown {
  const proto = Object.getPrototypeOf(v);
  if (proto === Object.prototype || proto === Array.prototype || proto === null) return v;
  if (holds(Number.prototype.valueOf, v)) return +(v as unknown as number);
  if (holds(String.prototype.valueOf, v)) return String(v);
  if (holds(Boolean.prototype.valueOf, v)) return Boolean.prototype.valueOf.call(v);
  if (holds(BigInt.prototype.valueOf, v)) return BigInt.prototype.valueOf.call(v);
  return v;
}

/** Does `valueOf` (a primitive type's own) accept `v`: is `v` a box of that type? */
function holds(valueOf: () => unknown, v: object): boolean {
  try {
    valueOf.call(v);
    return true;
  } catch {
    return false;
  }
}

/** Feeds a value {@link resolve} gave (not OMIT). */
function feedResolved(v: unknown): void {
  switch (typeof v) {
    case 'string':
      feedQuoted(v);
      return;
    case 'number':
      feed(Number.isFinite(v) ? String(v) : 'null');
      return;
    case 'boolean':
      feed(v ? 'true' : 'false');
      return;
    case 'bigint':
      throw new TypeError('Do not know how to serialize a BigInt');
    default:
      if (v === null) feed('null');
      else feedObject(v as object);
  }
}

function feedObject(v: object): void {
  if (open.includes(v)) throw new TypeError('Converting circular structure to JSON');
  open.push(v);
  if (Array.isArray(v)) {
    feedUnit(91);
    // The length as it is now: a toJSON that grows or shrinks the array changes nothing here.
    const n = v.length;
    for (let i = 0; i < n; i++) {
      if (i > 0) feedUnit(44);
      const x = resolve(v[i], i);
      if (x === OMIT) feed('null');
      else feedResolved(x);
    }
    feedUnit(93);
  } else {
    feedUnit(123);
    let first = true;
    const o = v as Record<string, unknown>;
    // The keys as they are now (a getter or toJSON that adds or deletes one changes nothing here).
    for (const k of Object.keys(o)) {
      const x = resolve(o[k], k);
      if (x === OMIT) continue;
      if (!first) feedUnit(44);
      first = false;
      feedQuoted(k);
      feedUnit(58);
      feedResolved(x);
    }
    feedUnit(125);
  }
  open.pop();
}

/** Feeds `,"name":value`, or nothing where JSON.stringify leaves the member out. */
function member(prefix: string, value: unknown, key: string): void {
  const x = resolve(value, key);
  if (x === OMIT) return;
  feed(prefix);
  feedResolved(x);
}

/**
 * lineHash(traceLine(t, kind, from, to, type, body)) without the line (in an array reused by the
 * next call: read it at once). Fields left undefined are left out, as traceLine does.
 */
export function recordHash(t: number, kind: string, from: unknown, to: unknown, type: unknown, body: unknown): readonly [number, number] {
  r1 = START1;
  r2 = START2;
  // A throw (a cycle, a BigInt) may have left some open.
  open.length = 0;
  // Someone gave every object a toJSON: the record itself has one too. Hash it as traceLine
  // builds it, through the general path.
  if (typeof (Object.prototype as { toJSON?: unknown }).toJSON === 'function') {
    const rec: Record<string, unknown> = { t, kind };
    if (from !== undefined) rec.from = from;
    if (to !== undefined) rec.to = to;
    rec.type = type;
    if (body !== undefined) rec.body = body;
    const x = resolve(rec, '');
    // JSON.stringify gives undefined, which lineHash cannot read.
    if (x === OMIT) throw new TypeError('the trace record serialises to nothing');
    feedResolved(x);
    return taken();
  }
  feed('{"t":');
  feed(Number.isFinite(t) ? String(t) : 'null');
  member(',"kind":', kind, 'kind');
  if (from !== undefined) member(',"from":', from, 'from');
  if (to !== undefined) member(',"to":', to, 'to');
  member(',"type":', type, 'type');
  if (body !== undefined) member(',"body":', body, 'body');
  feedUnit(125);
  return taken();
}
