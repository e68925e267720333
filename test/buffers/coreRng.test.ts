/**
 * The WebAssembly core continues a RandomStream bit for bit: a distribution step shuffled in
 * WebAssembly must draw exactly what the TypeScript reference draws (design.md, "The buffer/rate
 * core"; determinism across runtimes).
 */
import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { instantiateCore } from '../../src/buffers/loadCore.js';
import { RandomStream } from '../../src/engine/rng.js';
import { sample } from '../helpers/property.js';

describe('WebAssembly core: random streams', () => {
  const core = instantiateCore();

  test.prop([fc.nat(), fc.string(), fc.nat(500)], sample(200))('the same u32, float and int draws as RandomStream', (seed, name, skip) => {
    const ts = new RandomStream(seed, name);
    for (let i = 0; i < skip; i++) ts.nextUint32();
    core.rngSeed(3, ...ts.state());
    for (let i = 0; i < 50; i++) {
      expect(core.rngNextU32(3)).toBe(ts.nextUint32());
      expect(core.rngNext(3)).toBe(ts.next());
      expect(core.rngInt(3, 1 + i)).toBe(ts.int(1 + i));
    }
    expect([0, 1, 2, 3].map((w) => core.rngState(3, w))).toEqual(ts.state());
  });

  it('streams in different slots are independent', () => {
    const a = new RandomStream(1, 'a');
    const b = new RandomStream(1, 'b');
    core.rngSeed(0, ...a.state());
    core.rngSeed(1, ...b.state());
    const fromA = [core.rngNextU32(0), core.rngNextU32(0)];
    expect(core.rngNextU32(1)).toBe(b.nextUint32());
    expect(fromA).toEqual([a.nextUint32(), a.nextUint32()]);
  });

  it('each instance has its own state', () => {
    const other = instantiateCore();
    core.rngSeed(0, 1, 2, 3, 4);
    other.rngSeed(0, 1, 2, 3, 4);
    core.rngNextU32(0);
    expect(other.rngState(0, 0)).toBe(1);
  });
});
