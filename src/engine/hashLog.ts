/**
 * The trace hash's share of a shard's events in local mode (parallel.ts): flat numbers, cheap to
 * move between threads. Per event that wrote lines: its key (time, kind, target, origin, originSeq),
 * its number of lines n, then n × (sub, h1, h2). Events that wrote no line are left out (they add
 * nothing to the hash).
 */
import type { EventKey } from './eventQueue.js';
import { EventKind, less } from './eventQueue.js';
import type { TraceHash } from './traceHash.js';

const HEADER = 6;

export class HashLogWriter {
  private buf = new Float64Array(1 << 12);
  private n = 0;
  private head = -1;
  /** Lines of the current event so far. */
  lines = 0;

  private room(k: number): void {
    if (this.n + k <= this.buf.length) return;
    const next = new Float64Array(Math.max(this.buf.length * 2, this.n + k));
    next.set(this.buf.subarray(0, this.n));
    this.buf = next;
  }

  /** Starts an event's entry. */
  begin(key: EventKey): void {
    this.room(HEADER);
    const b = this.buf;
    const i = this.n;
    b[i] = key.time;
    b[i + 1] = key.kind;
    b[i + 2] = key.target;
    b[i + 3] = key.origin;
    b[i + 4] = key.originSeq;
    b[i + 5] = 0;
    this.head = i;
    this.n += HEADER;
    this.lines = 0;
  }

  push(sub: number, h1: number, h2: number): void {
    this.room(3);
    const b = this.buf;
    b[this.n] = sub;
    b[this.n + 1] = h1;
    b[this.n + 2] = h2;
    this.n += 3;
  }

  /** Ends the current event (dropped when it wrote no line). */
  end(): void {
    if (this.head < 0) return;
    if (this.lines === 0) this.n = this.head;
    else this.buf[this.head + 5] = this.lines;
    this.head = -1;
  }

  /** The events logged since the last take (a copy), and a fresh start. */
  take(): Float64Array {
    const out = this.buf.slice(0, this.n);
    this.n = 0;
    return out;
  }
}

/** Reads the logs of all shards, in order, and folds them into `hash` as one kernel would have. */
export class HashLogMerger {
  private readonly logs: Float64Array[][];
  private readonly at: { pos: number }[];

  constructor(shards: number) {
    this.logs = Array.from({ length: shards }, () => []);
    this.at = Array.from({ length: shards }, () => ({ pos: 0 }));
  }

  add(shard: number, log: Float64Array | undefined): void {
    if (log && log.length > 0) this.logs[shard].push(log);
  }

  /** Shard s's next event header, or undefined. Logs read to the end are let go. */
  private head(s: number): { b: Float64Array; i: number } | undefined {
    const a = this.at[s];
    const list = this.logs[s];
    while (list.length > 0 && a.pos >= list[0].length) {
      list.shift();
      a.pos = 0;
    }
    return list.length > 0 ? { b: list[0], i: a.pos } : undefined;
  }

  /**
   * Folds the logged events up to and including `upTo` (all of them without it), in the one
   * kernel's order (shared events: entries by sub, then shard). Every shard must have logged all
   * its events up to `upTo`.
   */
  fold(hash: TraceHash, upTo?: EventKey): void {
    const n = this.logs.length;
    const key = (h: { b: Float64Array; i: number }): EventKey => ({
      time: h.b[h.i],
      kind: h.b[h.i + 1] as EventKind,
      target: h.b[h.i + 2],
      origin: h.b[h.i + 3],
      originSeq: h.b[h.i + 4],
    });
    for (;;) {
      let min: EventKey | undefined;
      for (let s = 0; s < n; s++) {
        const h = this.head(s);
        if (h === undefined) continue;
        const k = key(h);
        if (min === undefined || less(k, min)) min = k;
      }
      if (min === undefined || (upTo !== undefined && less(upTo, min))) return;
      const same: { s: number; h: { b: Float64Array; i: number } }[] = [];
      for (let s = 0; s < n; s++) {
        const h = this.head(s);
        if (h !== undefined && !less(min, key(h))) same.push({ s, h });
      }
      const entries: { sub: number; s: number; j: number; h1: number; h2: number }[] = [];
      for (const { s, h } of same) {
        const lines = h.b[h.i + 5];
        for (let j = 0; j < lines; j++) {
          const p = h.i + HEADER + 3 * j;
          entries.push({ sub: h.b[p], s, j, h1: h.b[p + 1], h2: h.b[p + 2] });
        }
        this.at[s].pos = h.i + HEADER + 3 * lines;
        // A non-shared event is one shard's only; take no other shard's event of the same key.
        if (min.kind !== EventKind.Fault) break;
      }
      if (same.length > 1 && min.kind === EventKind.Fault) entries.sort((x, y) => x.sub - y.sub || x.s - y.s || x.j - y.j);
      for (const e of entries) hash.fold(e.h1, e.h2);
    }
  }
}
