/**
 * The trace hash's share of a shard's events in local mode (parallel.ts): flat numbers, cheap to
 * move between threads. Per event that wrote lines: its key (time, kind, target, origin, originSeq),
 * its number of lines n, then n × (sub, h1, h2). Events that wrote no line are left out (they add
 * nothing to the hash).
 */
import type { EventKey } from './eventQueue.js';
import { EventKind } from './eventQueue.js';
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
  /** Each shard's position in its first log. */
  private readonly pos: number[];

  constructor(shards: number) {
    this.logs = Array.from({ length: shards }, () => []);
    this.pos = new Array<number>(shards).fill(0);
  }

  add(shard: number, log: Float64Array | undefined): void {
    if (log && log.length > 0) this.logs[shard].push(log);
  }

  /** Shard s's log that holds its next event header, or undefined. Logs read to the end are let go. */
  private head(s: number): Float64Array | undefined {
    const list = this.logs[s];
    while (list.length > 0 && this.pos[s] >= list[0].length) {
      list.shift();
      this.pos[s] = 0;
    }
    return list[0];
  }

  /**
   * Folds the logged events up to and including `upTo` (all of them without it), in the one
   * kernel's order (shared events: entries by sub, then shard). Every shard must have logged all
   * its events up to `upTo`. Allocates nothing per event: the main thread folds a million events
   * beside the shard it runs.
   */
  fold(hash: TraceHash, upTo?: EventKey): void {
    const n = this.logs.length;
    for (;;) {
      // The shard with the smallest next event (the first of equal ones).
      let minS = -1;
      let minB: Float64Array | undefined;
      for (let s = 0; s < n; s++) {
        const b = this.head(s);
        if (b !== undefined && (minB === undefined || compareAt(b, this.pos[s], minB, this.pos[minS]) < 0)) {
          minS = s;
          minB = b;
        }
      }
      if (minB === undefined) return;
      const at = this.pos[minS];
      if (upTo !== undefined && keyBefore(upTo, minB, at)) return;
      if (minB[at + 1] === EventKind.Fault) {
        this.foldShared(hash, minS, minB, at);
        continue;
      }
      // A non-shared event is one shard's only: its lines in order.
      const lines = minB[at + 5];
      for (let j = 0; j < lines; j++) {
        const p = at + HEADER + 3 * j;
        hash.fold(minB[p + 1], minB[p + 2]);
      }
      this.pos[minS] = at + HEADER + 3 * lines;
    }
  }

  /** A kernel event every shard ran (a fault), first logged by shard `first`: the shards' lines by sub, then shard. */
  private foldShared(hash: TraceHash, first: number, fb: Float64Array, fat: number): void {
    const entries: { sub: number; s: number; j: number; h1: number; h2: number }[] = [];
    let shards = 0;
    for (let s = first; s < this.logs.length; s++) {
      const b = this.head(s);
      const at = this.pos[s];
      if (b === undefined || (s !== first && compareAt(b, at, fb, fat) !== 0)) continue;
      const lines = b[at + 5];
      for (let j = 0; j < lines; j++) {
        const p = at + HEADER + 3 * j;
        entries.push({ sub: b[p], s, j, h1: b[p + 1], h2: b[p + 2] });
      }
      this.pos[s] = at + HEADER + 3 * lines;
      shards++;
    }
    // One shard's lines are in its own order already.
    if (shards > 1) entries.sort((x, y) => x.sub - y.sub || x.s - y.s || x.j - y.j);
    for (const e of entries) hash.fold(e.h1, e.h2);
  }
}

/** The order of the event headers at a[i] and b[j] (the queue's: time, kind, target, origin, originSeq). */
function compareAt(a: Float64Array, i: number, b: Float64Array, j: number): number {
  for (let k = 0; k < 5; k++) if (a[i + k] !== b[j + k]) return a[i + k] - b[j + k];
  return 0;
}

/** Does `key` run before the event header at b[i]? (The queue's `less`, on a header.) */
function keyBefore(key: EventKey, b: Float64Array, i: number): boolean {
  if (key.time !== b[i]) return key.time < b[i];
  if (key.kind !== b[i + 1]) return key.kind < b[i + 1];
  if (key.target !== b[i + 2]) return key.target < b[i + 2];
  if (key.origin !== b[i + 3]) return key.origin < b[i + 3];
  return key.originSeq < b[i + 4];
}
