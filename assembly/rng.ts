// Seeded random streams inside the core: xoshiro128**, bit-identical to src/engine/rng.ts
// (RandomStream). The host derives each stream's four state words from (seed, stable name) and hands
// them over, so a shuffle in WebAssembly draws exactly the numbers the TypeScript reference draws.

const MAX_STREAMS: i32 = 1 << 16;
const state = new StaticArray<u32>(MAX_STREAMS * 4);

/** Sets stream `slot` to the state words `a, b, c, d` (from RandomStream.state()). */
export function rngSeed(slot: i32, a: u32, b: u32, c: u32, d: u32): void {
  const o = slot << 2;
  unchecked((state[o] = a));
  unchecked((state[o + 1] = b));
  unchecked((state[o + 2] = c));
  unchecked((state[o + 3] = d));
}

/** A uniform 32-bit unsigned integer from stream `slot`. */
export function rngNextU32(slot: i32): u32 {
  const o = slot << 2;
  let a = unchecked(state[o]);
  let b = unchecked(state[o + 1]);
  let c = unchecked(state[o + 2]);
  let d = unchecked(state[o + 3]);
  const result = rotl<u32>(b * 5, 7) * 9;
  const t = b << 9;
  c ^= a;
  d ^= b;
  b ^= c;
  a ^= d;
  c ^= t;
  d = rotl<u32>(d, 11);
  unchecked((state[o] = a));
  unchecked((state[o + 1] = b));
  unchecked((state[o + 2] = c));
  unchecked((state[o + 3] = d));
  return result;
}

/** A uniform float in [0, 1) with 53 bits, as RandomStream.next(). */
export function rngNext(slot: i32): f64 {
  const hi = <f64>(rngNextU32(slot) >>> 5);
  const lo = <f64>(rngNextU32(slot) >>> 6);
  return (hi * 67108864.0 + lo) / 9007199254740992.0;
}

/** A uniform integer in [0, n), as RandomStream.int(n) (see nextInt). */
export function rngInt(slot: i32, n: i32): i32 {
  return nextInt(slot, n);
}

/**
 * rngInt, inlined where it is called (the shuffle's hot path): rngNext's two draws with the state in
 * locals, and its division by 2⁵³ as a product with 2⁻⁵³ (exact both ways: a power of two only
 * moves the exponent). (AssemblyScript's @inline on a function is not TypeScript syntax: Prettier
 * skips this file, see .prettierignore.)
 */
// @ts-ignore: decorator
@inline
export function nextInt(slot: i32, n: i32): i32 {
  const o = slot << 2;
  let a = unchecked(state[o]);
  let b = unchecked(state[o + 1]);
  let c = unchecked(state[o + 2]);
  let d = unchecked(state[o + 3]);
  const r1 = rotl<u32>(b * 5, 7) * 9;
  let t = b << 9;
  c ^= a;
  d ^= b;
  b ^= c;
  a ^= d;
  c ^= t;
  d = rotl<u32>(d, 11);
  const r2 = rotl<u32>(b * 5, 7) * 9;
  t = b << 9;
  c ^= a;
  d ^= b;
  b ^= c;
  a ^= d;
  c ^= t;
  d = rotl<u32>(d, 11);
  unchecked((state[o] = a));
  unchecked((state[o + 1] = b));
  unchecked((state[o + 2] = c));
  unchecked((state[o + 3] = d));
  const x = (<f64>(r1 >>> 5) * 67108864.0 + <f64>(r2 >>> 6)) * (1.0 / 9007199254740992.0);
  // x·n is in [0, n): truncation is the floor. The whole number (< 2³¹) is read from the low bits
  // of itself + 2⁵² (exact), which is cheaper than a float-to-integer conversion and its range checks.
  const whole = Math.trunc(x * <f64>n);
  return <i32>reinterpret<i64>(whole + 4503599627370496.0);
}

/** The state words of stream `slot` (for tests: `which` 0..3). */
export function rngState(slot: i32, which: i32): u32 {
  return unchecked(state[(slot << 2) + which]);
}
