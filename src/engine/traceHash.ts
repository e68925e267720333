/**
 * A streaming 64-bit hash of trace lines (two independent FNV-1a lanes). Not cryptographic: it is
 * the determinism witness — the same run yields the same hash, bit for bit, on every runtime.
 *
 * Each line is hashed on its own ({@link lineHash}) and the line hashes are folded in order, so the
 * shards of a parallel run hash their lines where they write them and the coordinator only folds.
 */
export class TraceHash {
  private h1 = 0x811c9dc5;
  private h2 = 0x01000193 ^ 0x5bd1e995;

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

const lanes: [number, number] = [0, 0];

/** The two 32-bit lanes of one line's hash (in an array reused by the next call: read it at once). */
export function lineHash(line: string): readonly [number, number] {
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
    h2 ^= h2 >>> 15;
  }
  lanes[0] = h1 | 0;
  lanes[1] = h2 | 0;
  return lanes;
}
