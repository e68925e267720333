// Virdi's distribution step (shared/protocols/virdi.md, "Produce"): an amount produced for a
// resource is shared among that resource's consumers. They are put in a seeded random order; each
// consumer with room gets an equal share, the remainder going one unit each to the first ones, every
// share capped by the free space of that consumer's server-side buffer; this repeats while units are
// left and someone has room. The caller puts what is left into the global buffer.
//
// Rounds after the first: with `fair` (strict mode) the extra units keep going round the shuffled
// order where the last round stopped, so two consumers that still have room never differ by more
// than one unit (invariant 8). Without it (virdi mode, the original) every round gives its extra
// units to the first consumers again, and a consumer can get ahead by several units.
//
// Arrays are in linear memory, indexed by consumer: `serverBuffer` (u32) and `bufferLimit` (u32).
// `members` (i32) lists the resource's consumers in a stable order; `order` (i32) is scratch of the
// same length. src/buffers/distribute.ts is the TypeScript reference with the same semantics.
import { rngInt } from './rng';

/** Distributes `amount` among `count` members; returns the units no consumer had room for. */
export function distribute(
  amount: u32,
  members: usize,
  count: i32,
  order: usize,
  serverBuffer: usize,
  bufferLimit: usize,
  slot: i32,
  fair: bool,
): u32 {
  // Seeded Fisher–Yates shuffle of the members into `order`.
  for (let i = 0; i < count; i++) store<i32>(order + ((<usize>i) << 2), load<i32>(members + ((<usize>i) << 2)));
  for (let i = count - 1; i > 0; i--) {
    const j = rngInt(slot, i + 1);
    const pi = order + ((<usize>i) << 2);
    const pj = order + ((<usize>j) << 2);
    const t = load<i32>(pi);
    store<i32>(pi, load<i32>(pj));
    store<i32>(pj, t);
  }
  let left = amount;
  // Position in the shuffled order where the next extra unit goes (fair mode).
  let cursor: i32 = 0;
  while (left > 0) {
    // Consumers with room, in shuffled order.
    let withRoom: i32 = 0;
    for (let k = 0; k < count; k++) {
      const c = <usize>load<i32>(order + ((<usize>k) << 2));
      if (load<u32>(serverBuffer + (c << 2)) < load<u32>(bufferLimit + (c << 2))) withRoom++;
    }
    if (withRoom == 0) break;
    const share = left / <u32>withRoom;
    let extra = left % <u32>withRoom;
    const start = fair ? cursor : 0;
    for (let step = 0; step < count; step++) {
      const k = (start + step) % count;
      const c = <usize>load<i32>(order + ((<usize>k) << 2));
      const held = load<u32>(serverBuffer + (c << 2));
      const limit = load<u32>(bufferLimit + (c << 2));
      if (held >= limit) continue;
      let give = share;
      if (extra > 0) {
        give++;
        extra--;
        cursor = k + 1;
      }
      const room = limit - held;
      if (give > room) give = room;
      store<u32>(serverBuffer + (c << 2), held + give);
      left -= give;
    }
  }
  return left;
}

/** Reserves `bytes` of linear memory (8-byte aligned) for the host's arrays. */
export function alloc(bytes: usize): usize {
  return heap.alloc(bytes);
}
