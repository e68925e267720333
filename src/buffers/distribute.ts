/**
 * Virdi's distribution step, the TypeScript reference (`shared/protocols/virdi.md`, "Produce"): an
 * amount produced for a resource is shared among that resource's consumers. They are put in a
 * seeded random order. Each consumer with room gets an equal share, the remainder going one unit
 * each to the first ones, and every share is capped by the free space of that consumer's
 * server-side buffer. This repeats while units are left and someone has room. The caller puts what
 * is left into the global buffer.
 *
 * Rounds after the first: with `fair` (strict mode) the extra units keep going round the shuffled
 * order where the last round stopped, so two consumers that still have room never differ by more
 * than one unit (invariant 8). Without it (virdi mode, the original) every round gives its extra
 * units to the first consumers again, so one consumer can get several units ahead. The protocol
 * text describes the original; its invariant 8 needs the fair variant.
 *
 * assembly/distribute.ts computes the same in WebAssembly; the differential property tests in
 * test/buffers/ hold the two to identical results, bit for bit.
 */

/** The part of a random stream the shuffle needs (RandomStream in src/engine/rng.ts). */
export interface IntSource {
  int(n: number): number;
}

/**
 * Distributes `amount` among `members` (consumer indices, in a stable order); updates
 * `serverBuffer` in place and returns the units no consumer had room for.
 */
export function distributeReference(
  amount: number,
  members: ArrayLike<number>,
  serverBuffer: Uint32Array,
  bufferLimit: Uint32Array,
  rng: IntSource,
  fair: boolean,
): number {
  const order = Int32Array.from(members);
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  let left = amount;
  let cursor = 0;
  const count = order.length;
  while (left > 0) {
    let withRoom = 0;
    for (const c of order) if (serverBuffer[c] < bufferLimit[c]) withRoom++;
    if (withRoom === 0) break;
    const share = Math.floor(left / withRoom);
    let extra = left % withRoom;
    const start = fair ? cursor : 0;
    for (let step = 0; step < count; step++) {
      const k = (start + step) % count;
      const c = order[k];
      const held = serverBuffer[c];
      const limit = bufferLimit[c];
      if (held >= limit) continue;
      let give = share;
      if (extra > 0) {
        give++;
        extra--;
        cursor = k + 1;
      }
      give = Math.min(give, limit - held);
      serverBuffer[c] = held + give;
      left -= give;
    }
  }
  return left;
}
