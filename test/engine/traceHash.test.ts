/**
 * recordHash (a record's hash without its line) against the definition it stands for:
 * lineHash(traceLine(...)), the hash of the line JSON.stringify writes. A run with --hash uses the
 * first, a run with --trace the second: any value where the two differ would give a trace file
 * whose hash is not the hash the same run prints without it.
 *
 * lineHashInto (a line hashed as it is copied into a shard's bytes) against lineHash and TextEncoder.
 */
import { fc, test } from '@fast-check/vitest';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { traceLine } from '../../src/engine/createSimulation.js';
import type { TraceRecord } from '../../src/engine/createSimulation.js';
import { lineHash, lineHashInto, lineLanes, recordHash } from '../../src/engine/traceHash.js';
import { sample } from '../helpers/property.js';

type Outcome = { hash: [number, number] } | { threw: string };

function viaLine(t: number, kind: string, from: unknown, to: unknown, type: unknown, body: unknown): Outcome {
  try {
    const h = lineHash(traceLine(t, kind as TraceRecord['kind'], from as string, to as string, type as string, body));
    return { hash: [h[0], h[1]] };
  } catch (err) {
    return { threw: (err as Error).constructor.name };
  }
}

function direct(t: number, kind: string, from: unknown, to: unknown, type: unknown, body: unknown): Outcome {
  try {
    const h = recordHash(t, kind, from, to, type, body);
    return { hash: [h[0], h[1]] };
  } catch (err) {
    return { threw: (err as Error).constructor.name };
  }
}

const same = (t: number, kind: string, from: unknown, to: unknown, type: unknown, body: unknown): void =>
  expect(direct(t, kind, from, to, type, body)).toEqual(viaLine(t, kind, from, to, type, body));

/** Strings with every kind of UTF-16 code unit: quotes, backslashes, control characters, lone and paired surrogates. */
const anyString = fc.string({ unit: 'binary' });
const values = fc.anything({
  key: fc.oneof(anyString, fc.constantFrom('0', '1', '10', '-1', 'toJSON', '__proto__')),
  values: [anyString, fc.double(), fc.integer(), fc.boolean(), fc.constant(null), fc.constant(undefined)],
  withBoxedValues: true,
  withMap: true,
  withSet: true,
  withObjectString: true,
  withNullPrototype: true,
  withBigInt: true,
  withDate: true,
  withTypedArray: true,
  withSparseArray: true,
  withUnicodeString: true,
});

describe('recordHash', () => {
  test.prop(
    [
      fc.oneof(fc.integer(), fc.double()),
      fc.constantFrom('send', 'recv', 'drop', 'timer', 'env', 'obs', 'fault', 'error'),
      fc.option(fc.oneof(anyString, values), { nil: undefined }),
      fc.option(anyString, { nil: undefined }),
      fc.oneof(anyString, values),
      fc.option(values, { nil: undefined }),
    ],
    sample(2000),
  )('hashes any record as lineHash(traceLine(...)) does, or throws as it does', (t, kind, from, to, type, body) => {
    same(t, kind, from, to, type, body);
  });

  it('follows JSON.stringify on the values messages seldom carry', () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    const shared = { x: 1 };
    const withGetter = Object.defineProperty({ a: 1 }, 'b', { get: () => 'got', enumerable: true });
    const hidden = Object.defineProperty({ a: 1 }, 'b', { value: 2, enumerable: false });
    const inherited = Object.assign(Object.create({ up: 1 }) as object, { own: 2 });
    const fnWithToJSON = Object.assign(() => 1, { toJSON: () => 'fn' });
    const cases: unknown[] = [
      { date: new Date(0), when: new Date(Number.NaN) },
      { toJSON: (key: string) => `key ${key}` },
      { inner: { toJSON: (key: string) => ({ key, toJSON: () => 'not called twice' }) } },
      { gone: { toJSON: () => undefined }, fn: () => 1, sym: Symbol('s'), undef: undefined, kept: 1 },
      [undefined, () => 1, Symbol('s'), { toJSON: () => undefined }, 1],
      { n: new Number(3), s: new String('s'), b: new Boolean(false), z: -0, inf: Infinity, nan: Number.NaN },
      { 2: 'b', 1: 'a', x: 'c', [Symbol('k')]: 'd' },
      { a: shared, b: shared, c: [shared, shared] },
      withGetter,
      hidden,
      inherited,
      { fnWithToJSON },
      { text: 'quote " backslash \\ newline \n tab \t nul \u0000 del \u007f lone \ud800 pair \ud83d\ude00 trail \udc00' },
      { big: 1n },
      { big: Object(1n) as object },
      cyclic,
      { deep: { deeper: [cyclic] } },
    ];
    for (const body of cases) same(1_000_000, 'send', 'a', 'b', 'Msg', body);
    // Fields that are not strings, and fields left out.
    same(5, 'obs', undefined, undefined, undefined, undefined);
    same(5, 'obs', 7, { toJSON: () => undefined }, { type: 'x' }, null);
  });

  it('reads keys and lengths once, and knows a box by what it holds (a second review found these)', () => {
    const grows = (): unknown[] => {
      const a: unknown[] = [{ toJSON: () => (a.push(1), 0) }];
      return a;
    };
    const shrinks = (): unknown[] => {
      const a: unknown[] = [{ toJSON: () => ((a.length = 1), 0) }, 1, 2];
      return a;
    };
    const deletesLater = (): object => {
      const o = Object.create({ b: 'from the prototype' }) as Record<string, unknown>;
      Object.defineProperty(o, 'a', {
        get() {
          delete o.b;
          return 1;
        },
        enumerable: true,
      });
      o.b = 2;
      return o;
    };
    const addsShadow = (): object => {
      const o = Object.create({ p: 5 }) as Record<string, unknown>;
      Object.defineProperty(o, 'a', {
        get() {
          o.p = 2;
          return 1;
        },
        enumerable: true,
      });
      return o;
    };
    const valueOfBigInt = (): object => {
      const n = new Number(1) as unknown as { valueOf(): unknown };
      n.valueOf = () => 5n;
      return { x: n };
    };
    // Each body is made afresh for each side: reading it changes it.
    const cases: (() => unknown)[] = [
      grows,
      shrinks,
      deletesLater,
      addsShadow,
      valueOfBigInt,
      () => ({ x: Object.create(Number.prototype) as object, y: Object.create(String.prototype) as object }),
      () => ({ x: Object.create(Boolean.prototype) as object }),
      () => ({ n: runInNewContext('new Number(7)'), s: runInNewContext('new String("q")'), b: runInNewContext('new Boolean(true)') }),
      () => ({ big: runInNewContext('Object(1n)') }),
      () => runInNewContext('({ a: [1, 2, { b: "c" }] })'),
    ];
    for (const body of cases) {
      const a = direct(1, 'send', 'a', 'b', 'M', body());
      expect(a).toEqual(viaLine(1, 'send', 'a', 'b', 'M', body()));
    }
  });

  it('follows a toJSON that someone gave every object, the record included', () => {
    const proto = Object.prototype as { toJSON?: (key: string) => unknown };
    proto.toJSON = function (this: object, key: string) {
      return key === '' ? { wrapped: Object.keys(this) } : this;
    };
    try {
      same(1, 'send', 'a', 'b', 'M', { x: 1 });
      proto.toJSON = () => undefined;
      same(1, 'send', 'a', 'b', 'M', { x: 1 });
    } finally {
      delete proto.toJSON;
    }
    same(1, 'send', 'a', 'b', 'M', { x: 1 });
  });

  it('goes on hashing correctly after a record that threw', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => recordHash(1, 'send', 'a', 'b', 'M', cyclic)).toThrow(TypeError);
    same(1, 'send', 'a', 'b', 'M', { ok: [1, 2, { x: 'y' }] });
  });
});

describe('lineHashInto', () => {
  const encoder = new TextEncoder();
  test.prop([anyString, fc.nat({ max: 16 })], sample(2000))(
    "hashes a line as lineHash does and writes the bytes a file of it holds: TextEncoder's UTF-8 and a newline",
    (line, at) => {
      const out = new Uint8Array(at + 3 * line.length + 1 + 4).fill(0xaa);
      const end = lineHashInto(line, out, at);
      const expected = encoder.encode(`${line}\n`);
      const h = lineHash(line);
      expect([lineLanes[0], lineLanes[1]]).toEqual([h[0], h[1]]);
      expect(end - at).toBe(expected.length);
      expect(out.subarray(at, end)).toEqual(expected);
      // Nothing written before or after.
      expect(out.subarray(0, at).every((b) => b === 0xaa)).toBe(true);
      expect(out.subarray(end).every((b) => b === 0xaa)).toBe(true);
    },
  );

  it('writes each length of UTF-8 sequence, pairs as one and lone surrogates as U+FFFD', () => {
    const line = 'a \u00e9 \u0800 \uffff \ud83d\ude00 \ud800x \udc00 \ud83d';
    const out = new Uint8Array(3 * line.length + 1);
    const end = lineHashInto(line, out, 0);
    expect(new TextDecoder().decode(out.subarray(0, end))).toBe('a \u00e9 \u0800 \uffff \ud83d\ude00 \ufffdx \ufffd \ufffd\n');
    expect([...lineLanes]).toEqual([...lineHash(line)]);
  });
});
