/**
 * How a shard's trace lines cross from its thread to the main thread (local mode with a trace
 * file): in slabs of shared memory (hashLog.ts: HashLogWriter allocates them), each shared once and
 * then named by its number. The main thread writes a slab's lines to the file and gives its number
 * back (recycle); the shard fills it again.
 *
 * Why not move (transfer) the buffers back and forth: each ArrayBuffer a thread receives counts in
 * full towards the memory outside its heap until its next full collection, and that growth makes
 * V8 collect the whole heap far more often (a 2-worker run of the large manager/worker scenario
 * with a trace file: 11 full collections with moved buffers, 14 with new ones, 6 with shared slabs
 * or with no bytes at all). A SharedArrayBuffer shared once counts once.
 */

/** A slab's lines on the wire: its number and how many bytes are filled, the slab itself the first time. */
export interface WireLines {
  slab: number;
  length: number;
  /** The slab, when this is the first time it crosses. */
  shared?: SharedArrayBuffer;
  /** The bytes themselves (copied), where they are not in shared memory. */
  copy?: Uint8Array;
}

/** The shard's side: names each slab it sends, and finds it again by its number. */
export class SlabSender {
  private readonly numbers = new Map<ArrayBufferLike, number>();
  private readonly slabs: ArrayBufferLike[] = [];

  /** `lines` (a view from the start of its buffer) for the wire. */
  send(lines: Uint8Array): WireLines {
    const buffer = lines.buffer;
    if (lines.byteOffset !== 0 || !(typeof SharedArrayBuffer === 'function' && buffer instanceof SharedArrayBuffer))
      // Only the filled bytes (a view would take its whole buffer along).
      return { slab: -1, length: lines.length, copy: lines.slice() };
    const known = this.numbers.get(buffer);
    if (known !== undefined) return { slab: known, length: lines.length };
    const slab = this.slabs.length;
    this.numbers.set(buffer, slab);
    this.slabs.push(buffer);
    return { slab, length: lines.length, shared: buffer };
  }

  /** The slabs given back, by number. */
  slabsOf(numbers: readonly number[]): ArrayBufferLike[] {
    return numbers.map((n) => this.slabs[n]).filter((b) => b !== undefined);
  }
}

/** The main thread's side: a shard's slabs by number, and the number of each. */
export class SlabReceiver {
  private readonly views: Uint8Array[] = [];
  private readonly numbers = new Map<ArrayBufferLike, number>();

  /** The lines a shard sent, as a view of its slab. */
  receive(w: WireLines): Uint8Array {
    if (w.copy !== undefined) return w.copy;
    if (w.shared !== undefined) {
      this.views[w.slab] = new Uint8Array(w.shared);
      this.numbers.set(w.shared, w.slab);
    }
    const view = this.views[w.slab];
    if (view === undefined) throw new Error(`trace lines in slab ${w.slab}, which never arrived`);
    return view.subarray(0, w.length);
  }

  /** The numbers of slabs this receiver knows (lines given back); others (copies) are dropped. */
  numbersOf(buffers: readonly ArrayBufferLike[]): number[] {
    const out: number[] = [];
    for (const b of buffers) {
      const n = this.numbers.get(b);
      if (n !== undefined) out.push(n);
    }
    return out;
  }
}
