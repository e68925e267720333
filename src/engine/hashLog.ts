/**
 * The trace hash's share of a shard's events in local mode (parallel.ts): flat numbers, cheap to
 * move between threads. Per event that wrote lines: its key (time, kind, target, origin, originSeq),
 * its number of lines n, the bytes of its lines' text (0 when not kept), then n × (sub, h1, h2).
 * Events that wrote no line are left out (they add nothing to the hash). When a trace file is
 * written the lines themselves ride along, in the same order, apart from the numbers
 * ({@link LogLines}); the merger writes them where it folds their hashes.
 */
import type { EventKey } from './eventQueue.js';
import { EventKind } from './eventQueue.js';
import type { TraceHash } from './traceHash.js';
import { lineHashInto, lineLanes } from './traceHash.js';

const HEADER = 7;

/** Bytes for trace lines: shared memory where the runtime has it (a shard's thread shares it once: threads/slabs.ts). */
function newBytes(n: number): Uint8Array {
  return typeof SharedArrayBuffer === 'function' ? new Uint8Array(new SharedArrayBuffer(n)) : new Uint8Array(n);
}

export class HashLogWriter {
  private buf = new Float64Array(1 << 12);
  private n = 0;
  private head = -1;
  /** Lines of the current event so far. */
  private lines = 0;
  /** The lines' text as UTF-8, each ended by a newline, when it is kept (a trace file is written). */
  private text: Uint8Array | undefined;
  private textN = 0;
  /**
   * Buffers of taken lines given back once written (see take): new ones would each add to the
   * memory outside V8's heap, whose growth makes V8 collect its whole heap far more often
   * (threads/slabs.ts).
   */
  private spare: Uint8Array[] = [];

  constructor(keepText = false) {
    if (keepText) this.text = newBytes(1 << 20);
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
    b[i + 6] = 0;
    this.head = i;
    this.n += HEADER;
    this.lines = 0;
  }

  /** One line of the current event: its sub and its hash lanes. */
  push(sub: number, h1: number, h2: number): void {
    this.room(3);
    const b = this.buf;
    b[this.n] = sub;
    b[this.n + 1] = h1;
    b[this.n + 2] = h2;
    this.n += 3;
    this.lines++;
  }

  /**
   * One line of the current event, with its text (the writer keeps text): hashed as it is copied
   * into the bytes (traceHash.ts: lineHashInto), so the string can die young.
   */
  pushLine(sub: number, line: string): void {
    let text = this.text!;
    const need = this.textN + 3 * line.length + 1;
    if (need > text.length) {
      const next = newBytes(Math.max(text.length * 2, need));
      next.set(text.subarray(0, this.textN));
      this.text = text = next;
    }
    const end = lineHashInto(line, text, this.textN);
    this.buf[this.head + 6] += end - this.textN;
    this.textN = end;
    this.push(sub, lineLanes[0], lineLanes[1]);
  }

  /** Ends the current event (dropped when it wrote no line). */
  end(): void {
    if (this.head < 0) return;
    if (this.lines === 0) this.n = this.head;
    else this.buf[this.head + 5] = this.lines;
    this.head = -1;
  }

  /**
   * The events logged since the last take (a copy) with their lines' bytes when kept, and a fresh
   * start. The bytes are a view from the start of a buffer of their own (shared memory where there
   * is: threads/slabs.ts); the writer goes on in one given back ({@link recycle}) or a new one.
   */
  take(): { hashes: Float64Array; lines?: LogLines } {
    const hashes = this.buf.slice(0, this.n);
    this.n = 0;
    if (this.text === undefined) return { hashes };
    const lines = this.text.subarray(0, this.textN);
    this.text = this.spare.pop() ?? newBytes(this.text.length);
    this.textN = 0;
    return { hashes, lines };
  }

  /** Buffers of lines this writer gave in {@link take}, written and given back to be filled again. */
  recycle(buffers: readonly ArrayBufferLike[]): void {
    if (this.text === undefined) return;
    for (const b of buffers) this.spare.push(new Uint8Array(b));
  }
}

/**
 * The lines of a piece of log: their UTF-8 bytes, each line ended by a newline (a trace line never
 * holds a raw newline: it is JSON), as they go to the file. A worker thread shares them with the
 * main thread (threads/slabs.ts), which writes byte ranges without decoding or encoding them.
 */
export type LogLines = Uint8Array;

/**
 * Receives lines as bytes: `bytes[start, end)` is one or more whole lines, each ended by a newline.
 * The bytes are the sink's to read during the call only (their buffer may go back to its shard).
 */
export type LineBytesSink = (bytes: Uint8Array, start: number, end: number) => void;

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

  /** Lines read but not yet given to the sink: shard runS's, from runStart to runEnd (runS -1: none). */
  private runS = -1;
  private runStart = 0;
  private runEnd = 0;

  /**
   * `sink` receives the lines in the one kernel's order, each run of one shard's lines that follow
   * each other at once; `free` receives each piece's line buffer once the sink is done with it (to
   * go back to its shard's writer: HashLogWriter.recycle).
   */
  constructor(
    shards: number,
    private readonly sink?: LineBytesSink,
    private readonly free?: (shard: number, buffer: ArrayBufferLike) => void,
  ) {
    this.logs = Array.from({ length: shards }, () => []);
    this.pos = new Array<number>(shards).fill(0);
    this.linePos = new Array<number>(shards).fill(0);
  }

  /** Shard `shard`'s next piece of log: its hashes, and its lines' text (needed when there is a sink). */
  add(shard: number, hashes: Float64Array | undefined, lines?: LogLines): void {
    if (hashes === undefined || hashes.length === 0) {
      // Nothing to fold or write: its buffer goes back at once.
      if (lines !== undefined) this.free?.(shard, lines.buffer);
      return;
    }
    if (this.sink !== undefined && lines === undefined) throw new Error(`shard ${shard} kept no trace lines`);
    this.logs[shard].push({ hashes, lines });
  }

  /** Shard s's log that holds its next event header, or undefined. Logs read to the end are let go. */
  private head(s: number): Float64Array | undefined {
    const list = this.logs[s];
    while (list.length > 0 && this.pos[s] >= list[0].hashes.length) {
      if (this.runS === s) this.endRun();
      const lines = list.shift()!.lines;
      if (lines !== undefined) this.free?.(s, lines.buffer);
      this.pos[s] = 0;
      this.linePos[s] = 0;
    }
    return list[0]?.hashes;
  }

  /** Where shard s's next line (of its current log) ends, after its newline; its start is linePos[s]. */
  private lineEnd(s: number): number {
    const lines = this.logs[s][0].lines!;
    const end = lines.indexOf(10, this.linePos[s]);
    return end < 0 ? lines.length : end + 1;
  }

  /** Shard s's next lines, up to `end`, for the sink: they join the pending run when they follow it, else start one. */
  private write(s: number, end: number): void {
    const start = this.linePos[s];
    this.linePos[s] = end;
    if (this.runS === s && this.runEnd === start) {
      this.runEnd = end;
      return;
    }
    this.endRun();
    this.runS = s;
    this.runStart = start;
    this.runEnd = end;
  }

  /** Gives the pending run of lines to the sink. */
  private endRun(): void {
    if (this.runS < 0) return;
    this.sink!(this.logs[this.runS][0].lines!, this.runStart, this.runEnd);
    this.runS = -1;
  }

  /**
   * Folds the logged events up to and including `upTo` (all of them without it), in the one
   * kernel's order (shared events: entries by sub, then shard). Every shard must have logged all
   * its events up to `upTo`. Allocates nothing per event: the main thread folds a million events
   * beside the shard it runs.
   */
  fold(hash: TraceHash, upTo?: EventKey): void {
    this.foldRuns(hash, upTo);
    this.endRun();
  }

  /** {@link fold}, its last run of lines left pending. */
  private foldRuns(hash: TraceHash, upTo?: EventKey): void {
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
      // A non-shared event is one shard's only: its lines in order, and their bytes at once.
      const lines = minB[at + 5];
      for (let j = 0; j < lines; j++) {
        const p = at + HEADER + 3 * j;
        hash.fold(minB[p + 1], minB[p + 2]);
      }
      if (sink !== undefined) this.write(minS, this.linePos[minS] + minB[at + 6]);
      this.pos[minS] = at + HEADER + 3 * lines;
    }
  }

  /** A kernel event every shard ran (a fault), first logged by shard `first`: the shards' lines by sub, then shard. */
  private foldShared(hash: TraceHash, first: number, fb: Float64Array, fat: number): void {
    const entries: { sub: number; s: number; j: number; h1: number; h2: number; bytes?: Uint8Array; start: number; end: number }[] = [];
    let shards = 0;
    for (let s = first; s < this.logs.length; s++) {
      const b = this.head(s);
      const at = this.pos[s];
      if (b === undefined || (s !== first && compareAt(b, at, fb, fat) !== 0)) continue;
      const lines = b[at + 5];
      for (let j = 0; j < lines; j++) {
        const p = at + HEADER + 3 * j;
        const e = { sub: b[p], s, j, h1: b[p + 1], h2: b[p + 2], bytes: undefined as Uint8Array | undefined, start: 0, end: 0 };
        if (this.sink !== undefined) {
          e.bytes = this.logs[s][0].lines!;
          e.start = this.linePos[s];
          e.end = this.linePos[s] = this.lineEnd(s);
        }
        entries.push(e);
      }
      this.pos[s] = at + HEADER + 3 * lines;
      shards++;
    }
    // One shard's lines are in its own order already.
    if (shards > 1) entries.sort((x, y) => x.sub - y.sub || x.s - y.s || x.j - y.j);
    this.endRun();
    for (const e of entries) {
      hash.fold(e.h1, e.h2);
      if (e.bytes !== undefined) this.sink!(e.bytes, e.start, e.end);
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
