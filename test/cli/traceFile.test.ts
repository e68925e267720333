/** The trace file on disk: lines (as text or as bytes) in chunks, kept after a close, emptied by a restart. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openTraceFile } from '../../src/cli/traceFile.js';

const dir = mkdtempSync(join(tmpdir(), 'protosim-trace-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const lines = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `{"t":${i},"kind":"${prefix}"}`);

describe('trace file', () => {
  it('writes every line once, in order, across many chunks', () => {
    const path = join(dir, 'plain.jsonl');
    const f = openTraceFile(path);
    const all = lines('send', 20_000);
    for (const l of all) f.write(l);
    f.close();
    expect(readFileSync(path, 'utf8')).toBe(`${all.join('\n')}\n`);
  });

  it('a restart voids what was written, flushed or not: the file holds only the lines after it', () => {
    const path = join(dir, 'restarted.jsonl');
    const f = openTraceFile(path);
    // Far more than one chunk (64 KiB): most of it is on disk when the restart comes.
    for (const l of lines('before', 20_000)) f.write(l);
    expect(readFileSync(path, 'utf8').length).toBeGreaterThan(100_000);
    f.restart();
    expect(readFileSync(path, 'utf8')).toBe('');
    const after = lines('after', 5_000);
    for (const l of after) f.write(l);
    f.close();
    expect(readFileSync(path, 'utf8')).toBe(`${after.join('\n')}\n`);
  });

  it('lines given as bytes (from shared memory, in runs of any size) keep their place among lines given as text', () => {
    const path = join(dir, 'bytes.jsonl');
    const f = openTraceFile(path);
    const encoder = new TextEncoder();
    const shared = (text: string): Uint8Array => {
      const bytes = new Uint8Array(new SharedArrayBuffer(text.length * 3 + 8));
      const { written } = encoder.encodeInto(text, bytes.subarray(4));
      return bytes.subarray(0, 4 + written);
    };
    const small = shared('{"t":1,"é":2}\n{"t":2}\n');
    // More than the 1 MiB the file gathers before a write.
    const big = lines('big', 60_000).join('\n') + '\n';
    const bigBytes = shared(big);
    f.write('{"t":0}');
    f.writeBytes(small, 4, small.length);
    f.write('{"t":3}');
    f.writeBytes(bigBytes, 4, bigBytes.length);
    f.writeBytes(small, 4, small.length);
    f.close();
    expect(big.length).toBeGreaterThan(1 << 20);
    expect(readFileSync(path, 'utf8')).toBe(`{"t":0}\n{"t":1,"é":2}\n{"t":2}\n{"t":3}\n${big}{"t":1,"é":2}\n{"t":2}\n`);
  });

  it('a restart voids lines given as bytes too', () => {
    const path = join(dir, 'bytes-restarted.jsonl');
    const f = openTraceFile(path);
    const bytes = new TextEncoder().encode('{"t":1}\n');
    f.writeBytes(bytes, 0, bytes.length);
    f.restart();
    f.write('{"t":2}');
    f.close();
    expect(readFileSync(path, 'utf8')).toBe('{"t":2}\n');
  });

  it('never overwrites a file that is there', () => {
    const path = join(dir, 'plain.jsonl');
    expect(() => openTraceFile(path)).toThrow(/EEXIST/);
  });
});
