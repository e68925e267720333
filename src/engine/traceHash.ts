/**
 * A streaming 64-bit hash of trace lines (two independent FNV-1a lanes). Not cryptographic: it is
 * the determinism witness — the same run yields the same hash, bit for bit, on every runtime.
 */
export class TraceHash {
  private h1 = 0x811c9dc5;
  private h2 = 0x01000193 ^ 0x5bd1e995;

  /** Feeds one line (a newline is hashed after it). */
  update(line: string): void {
    let h1 = this.h1;
    let h2 = this.h2;
    for (let i = 0; i < line.length; i++) {
      const c = line.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 0x01000193);
      h2 = Math.imul(h2 ^ c, 0x5bd1e995);
      h2 ^= h2 >>> 15;
    }
    this.h1 = Math.imul(h1 ^ 10, 0x01000193);
    this.h2 = Math.imul(h2 ^ 10, 0x5bd1e995);
  }

  /** The hash so far as 16 hex digits. */
  digest(): string {
    return (this.h1 >>> 0).toString(16).padStart(8, '0') + (this.h2 >>> 0).toString(16).padStart(8, '0');
  }
}
