/**
 * The trace hash's share of a shard's events in local mode (parallel.ts): flat numbers, cheap to
 * move between threads. Per event that wrote lines: its key (time, kind, target, origin, originSeq),
 * its number of lines n, then n × (sub, h1, h2). Events that wrote no line are left out (they add
 * nothing to the hash). When a trace file is written the lines themselves ride along, in the same
 * order, apart from the numbers ({@link LogLines}); the merger writes them where it folds their hashes.
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
  private lines = 0;
  /** The lines' text, when it is kept (a trace file is written). */
  private text: string[] | undefined;

  constructor(keepText = false) {
    if (keepText) this.text = [];
  }

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

  /** One line of the current event: its sub, its hash lanes, and its text (given and kept when asked for). */
  push(sub: number, h1: number, h2: number, line?: string): void {
    this.room(3);
    const b = this.buf;
    b[this.n] = sub;
    b[this.n + 1] = h1;
    b[this.n + 2] = h2;
    this.n += 3;
    this.lines++;
    this.text?.push(line!);
  }

  /** Ends the current event (dropped when it wrote no line). */
  end(): void {
    if (this.head < 0) return;
    if (this.lines === 0) this.n = this.head;
    else this.buf[this.head + 5] = this.lines;
    this.head = -1;
  }

  /** The events logged since the last take (a copy) with their lines' text when kept, and a fresh start. */
  take(): { hashes: Float64Array; lines?: string[] } {
    const hashes = this.buf.slice(0, this.n);
    this.n = 0;
    if (this.text === undefined) return { hashes };
    const lines = this.text;
    this.text = [];
    return { hashes, lines };
  }
}

/**
 * The lines of a piece of log: an array, or joined by newlines (how a worker thread sends them: one
 * string crosses threads far faster than a hundred thousand). A trace line never holds a raw newline
 * (it is JSON).
 */
export type LogLines = string[] | string;

/** One taken piece of a shard's log: the hashes, and the lines' text when kept. */
interface HashLogPiece {
  hashes: Float64Array;
  lines?: LogLines;
}

/**
 * Reads the logs of all shards, in order, and folds them into `hash` as one kernel would have;
 * given a sink, it writes each line there too, in the same order (the one kernel's trace).
 */
export class HashLogMerger {
  private readonly logs: HashLogPiece[][];
  /** Each shard's position in its first log, and in that log's lines. */
  private readonly pos: number[];
  private readonly linePos: number[];

  constructor(
    shards: number,
    private readonly sink?: (line: string) => void,
  ) {
    this.logs = Array.from({ length: shards }, () => []);
    this.pos = new Array<number>(shards).fill(0);
    this.linePos = new Array<number>(shards).fill(0);
  }

  /** Shard `shard`'s next piece of log: its hashes, and its lines' text (needed when there is a sink). */
  add(shard: number, hashes: Float64Array | undefined, lines?: LogLines): void {
    if (hashes === undefined || hashes.length === 0) return;
    if (this.sink !== undefined && lines === undefined) throw new Error(`shard ${shard} kept no trace lines`);
    this.logs[shard].push({ hashes, lines });
  }

  /** Shard s's log that holds its next event header, or undefined. Logs read to the end are let go. */
  private head(s: number): Float64Array | undefined {
    const list = this.logs[s];
    while (list.length > 0 && this.pos[s] >= list[0].hashes.length) {
      list.shift();
      this.pos[s] = 0;
      this.linePos[s] = 0;
    }
    return list[0]?.hashes;
  }

  /** Shard s's next line (of its current log). */
  private next(s: number): string {
    const lines = this.logs[s][0].lines!;
    if (typeof lines !== 'string') return lines[this.linePos[s]++];
    const at = this.linePos[s];
    const end = lines.indexOf('\n', at);
    this.linePos[s] = end < 0 ? lines.length : end + 1;
    return lines.slice(at, end < 0 ? lines.length : end);
  }

  /**
   * Folds the logged events up to and including `upTo` (all of them without it), in the one
   * kernel's order (shared events: entries by sub, then shard). Every shard must have logged all
   * its events up to `upTo`. Allocates nothing per event: the main thread folds a million events
   * beside the shard it runs.
   */
  fold(hash: TraceHash, upTo?: EventKey): void {
    const n = this.logs.length;
    const sink = this.sink;
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
        if (sink !== undefined) sink(this.next(minS));
      }
      this.pos[minS] = at + HEADER + 3 * lines;
    }
  }

  /** A kernel event every shard ran (a fault), first logged by shard `first`: the shards' lines by sub, then shard. */
  private foldShared(hash: TraceHash, first: number, fb: Float64Array, fat: number): void {
    const entries: { sub: number; s: number; j: number; h1: number; h2: number; line?: string }[] = [];
    let shards = 0;
    for (let s = first; s < this.logs.length; s++) {
      const b = this.head(s);
      const at = this.pos[s];
      if (b === undefined || (s !== first && compareAt(b, at, fb, fat) !== 0)) continue;
      const lines = b[at + 5];
      for (let j = 0; j < lines; j++) {
        const p = at + HEADER + 3 * j;
        entries.push({ sub: b[p], s, j, h1: b[p + 1], h2: b[p + 2], line: this.sink !== undefined ? this.next(s) : undefined });
      }
      this.pos[s] = at + HEADER + 3 * lines;
      shards++;
    }
    // One shard's lines are in its own order already.
    if (shards > 1) entries.sort((x, y) => x.sub - y.sub || x.s - y.s || x.j - y.j);
    for (const e of entries) {
      hash.fold(e.h1, e.h2);
      if (e.line !== undefined) this.sink!(e.line);
    }
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
