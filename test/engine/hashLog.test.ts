/**
 * The shards' hash logs with their lines as bytes (local mode with a trace file): the merger gives
 * the sink the one kernel's lines in its order, a shard's lines that follow each other at once, and
 * gives each piece's buffer back once written; a writer fills the buffers it is given back. The
 * property test gives every buffer back at its worst: overwritten and refilled the moment it is
 * freed.
 */
import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import type { EventKey } from '../../src/engine/eventQueue.js';
import { EventKind, less } from '../../src/engine/eventQueue.js';
import { HashLogMerger, HashLogWriter } from '../../src/engine/hashLog.js';
import { TraceHash } from '../../src/engine/traceHash.js';
import { sample } from '../helpers/property.js';

const key = (time: number, target: number, kind: EventKind = EventKind.Message): EventKey => ({
  time,
  kind,
  target,
  origin: -1,
  originSeq: 0,
});
const decoder = new TextDecoder();

/** An event of `writer` at `k` that wrote `lines` (subs 0, 1, …). */
function event(writer: HashLogWriter, k: EventKey, lines: string[]): void {
  writer.begin(k);
  lines.forEach((line, sub) => writer.pushLine(sub, line));
  writer.end();
}

/** A merger whose sink keeps the text and counts its calls, and whose frees are recorded. */
function merging(shards: number) {
  const out = { text: '', calls: 0, freed: [] as { shard: number; buffer: ArrayBufferLike }[] };
  const merger = new HashLogMerger(
    shards,
    (bytes, start, end) => {
      out.calls++;
      out.text += decoder.decode(bytes.slice(start, end));
    },
    (shard, buffer) => out.freed.push({ shard, buffer }),
  );
  return { merger, out };
}

/** Each writer's log so far, given to the merger as its shard's next piece. */
function takeAll(merger: HashLogMerger, writers: HashLogWriter[]): void {
  writers.forEach((w, s) => {
    const piece = w.take();
    merger.add(s, piece.hashes, piece.lines);
  });
}

describe('hash log with lines as bytes', () => {
  it("merges two shards' lines in event order, one sink call per run of a shard's lines, and the one kernel's hash", () => {
    const a = new HashLogWriter(true);
    const b = new HashLogWriter(true);
    event(a, key(1, 0), ['a1', 'a1.2']);
    event(a, key(2, 0), ['a2']);
    event(b, key(3, 1), ['b3']);
    event(a, key(4, 0), ['a4 é']);
    event(b, key(5, 1), ['b5', 'b5.2']);
    event(b, key(6, 1), ['b6']);
    const { merger, out } = merging(2);
    takeAll(merger, [a, b]);
    const hash = new TraceHash();
    merger.fold(hash);
    const lines = ['a1', 'a1.2', 'a2', 'b3', 'a4 é', 'b5', 'b5.2', 'b6'];
    expect(out.text).toBe(`${lines.join('\n')}\n`);
    // a1–a2, b3, a4, b5–b6.
    expect(out.calls).toBe(4);
    const whole = new TraceHash();
    for (const line of lines) whole.update(line);
    expect(hash.digest()).toBe(whole.digest());
  });

  it("a kernel event every shard ran writes the shards' lines by sub, then shard", () => {
    const a = new HashLogWriter(true);
    const b = new HashLogWriter(true);
    const fault = key(1, -1, EventKind.Fault);
    a.begin(fault);
    a.pushLine(0, 'fault');
    a.pushLine(2, 'a:2');
    a.end();
    b.begin(fault);
    b.pushLine(1, 'b:1');
    b.end();
    event(a, key(2, 0), ['after']);
    const { merger, out } = merging(2);
    takeAll(merger, [a, b]);
    merger.fold(new TraceHash());
    expect(out.text).toBe('fault\nb:1\na:2\nafter\n');
  });

  it('folds only up to a key, the rest waits; a piece is given back once written, and its writer fills it again', () => {
    const a = new HashLogWriter(true);
    event(a, key(1, 0), ['one']);
    event(a, key(2, 0), ['two']);
    const first = a.take();
    event(a, key(3, 0), ['three']);
    const second = a.take();
    const { merger, out } = merging(1);
    merger.add(0, first.hashes, first.lines);
    merger.add(0, second.hashes, second.lines);
    merger.fold(new TraceHash(), key(1, 0));
    expect(out.text).toBe('one\n');
    expect(out.freed).toEqual([]);
    merger.fold(new TraceHash(), key(2, 0));
    expect(out.text).toBe('one\ntwo\n');
    // The first piece, read to its end, goes back (when the merger next looks at the shard); the second is still being read.
    merger.fold(new TraceHash(), key(2, 0));
    expect(out.freed.length).toBe(1);
    expect(out.freed[0].shard).toBe(0);
    expect(out.freed[0].buffer).toBe(first.lines!.buffer);
    a.recycle([out.freed[0].buffer]);
    // The writer is filling the buffer it took after the second piece; the one given back comes next.
    event(a, key(4, 0), ['four']);
    const third = a.take();
    event(a, key(5, 0), ['five']);
    const fourth = a.take();
    expect(fourth.lines!.buffer).toBe(first.lines!.buffer);
    expect(decoder.decode(fourth.lines!.slice())).toBe('five\n');
    merger.add(0, third.hashes, third.lines);
    merger.add(0, fourth.hashes, fourth.lines);
    merger.fold(new TraceHash());
    expect(out.text).toBe('one\ntwo\nthree\nfour\nfive\n');
    expect(out.freed.map((f) => f.buffer)).toHaveLength(4);
    expect(out.freed[1].buffer).toBe(second.lines!.buffer);
  });

  it('a line longer than the buffer grows it; events without lines are left out', () => {
    const a = new HashLogWriter(true);
    const long = 'x'.repeat(3 << 20);
    a.begin(key(1, 0));
    a.end();
    event(a, key(2, 0), [long, 'short']);
    const t = a.take();
    // One event: key (5), lines, bytes, then 2 × (sub, h1, h2).
    expect(t.hashes.length).toBe(7 + 6);
    expect(t.hashes[6]).toBe(long.length + 1 + 'short'.length + 1);
    const { merger, out } = merging(1);
    merger.add(0, t.hashes, t.lines);
    merger.fold(new TraceHash());
    expect(out.text).toBe(`${long}\nshort\n`);
  });
});

/** A line of any UTF-16 code units but a raw newline (trace lines are JSON: they hold none). */
const lineText = fc.string({ unit: 'binary', maxLength: 12 }).map((t) => t.replaceAll('\n', ' '));

/**
 * Events of up to 4 shards in the one kernel's order: a shard's own (its lines in order), or a
 * kernel event every shard ran (a fault: each line written by one shard, lines merged by sub).
 */
const runs = fc
  .record({
    shards: fc.integer({ min: 1, max: 4 }),
    events: fc.array(
      fc.record({
        dt: fc.integer({ min: 0, max: 2 }),
        shared: fc.boolean(),
        shard: fc.nat(),
        lines: fc.array(fc.record({ text: lineText, shard: fc.nat() }), { maxLength: 4 }),
      }),
      { maxLength: 40 },
    ),
    // How the shards report: piece sizes, and when the merger folds.
    schedule: fc.array(fc.record({ shard: fc.nat(), events: fc.nat({ max: 4 }), fold: fc.boolean() }), { maxLength: 80 }),
  })
  .map(({ shards, events, schedule }) => {
    let time = 0;
    const all = events.map((e, i) => {
      time += e.dt;
      const shard = e.shard % shards;
      const key: EventKey = e.shared
        ? { time, kind: EventKind.Fault, target: -1, origin: -1, originSeq: i }
        : { time, kind: EventKind.Message, target: shard, origin: -1, originSeq: i };
      return { key, shared: e.shared, shard, lines: e.lines.map((l, sub) => ({ sub, text: l.text, shard: l.shard % shards })) };
    });
    // The one kernel's order (at one instant a fault runs before a message).
    all.sort((x, y) => (less(x.key, y.key) ? -1 : less(y.key, x.key) ? 1 : 0));
    const perShard: { key: EventKey; lines: { sub: number; text: string }[] }[][] = Array.from({ length: shards }, () => []);
    const expected: string[] = [];
    for (const e of all) {
      // A fault's lines by sub (each sub written by one shard here); a shard's event, its lines in order.
      expected.push(...e.lines.map((l) => l.text));
      if (e.shared) perShard.forEach((events, s) => events.push({ key: e.key, lines: e.lines.filter((l) => l.shard === s) }));
      else perShard[e.shard].push({ key: e.key, lines: e.lines });
    }
    return { shards, perShard, expected, schedule };
  });

describe('hash log with lines as bytes: any run', () => {
  const encoder = new TextEncoder();
  test.prop([runs], sample(300))(
    "the sink gets the one kernel's bytes and the hash is its hash, however the shards report, with every buffer overwritten and refilled once freed",
    ({ shards, perShard, expected, schedule }) => {
      const writers = perShard.map(() => new HashLogWriter(true));
      const chunks: Uint8Array[] = [];
      const merger = new HashLogMerger(
        shards,
        (bytes, start, end) => void chunks.push(bytes.slice(start, end)),
        (s, buffer) => {
          new Uint8Array(buffer).fill(0x21);
          writers[s].recycle([buffer]);
        },
      );
      const hash = new TraceHash();
      const next = perShard.map(() => 0);
      const last: (EventKey | undefined)[] = perShard.map(() => undefined);
      const report = (s: number, events: number): void => {
        for (let k = 0; k < events && next[s] < perShard[s].length; k++) {
          const ev = perShard[s][next[s]++];
          writers[s].begin(ev.key);
          for (const l of ev.lines) writers[s].pushLine(l.sub, l.text);
          writers[s].end();
          last[s] = ev.key;
        }
        const piece = writers[s].take();
        merger.add(s, piece.hashes, piece.lines);
      };
      for (const step of schedule) {
        report(step.shard % shards, step.events);
        // Fold as far as every shard that has more to report has got (as runLocalMode does).
        if (step.fold && last.every((k) => k !== undefined)) {
          let upTo: EventKey | undefined;
          perShard.forEach((events, s) => {
            if (next[s] < events.length && (upTo === undefined || less(last[s]!, upTo))) upTo = last[s];
          });
          merger.fold(hash, upTo);
        }
      }
      for (let s = 0; s < shards; s++) report(s, Infinity);
      merger.fold(hash);
      const got = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let at = 0;
      for (const c of chunks) {
        got.set(c, at);
        at += c.length;
      }
      expect(got).toEqual(encoder.encode(expected.map((l) => `${l}\n`).join('')));
      const whole = new TraceHash();
      for (const l of expected) whole.update(l);
      expect(hash.digest()).toBe(whole.digest());
    },
  );

  it('a piece with no events gives its buffer back at once', () => {
    const a = new HashLogWriter(true);
    const empty = a.take();
    const freed: ArrayBufferLike[] = [];
    new HashLogMerger(
      1,
      () => undefined,
      (_s, b) => void freed.push(b),
    ).add(0, empty.hashes, empty.lines);
    expect(freed).toEqual([empty.lines!.buffer]);
    expect(freed[0]).toBe(empty.lines!.buffer);
  });
});
