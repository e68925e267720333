/** The trace file on disk: lines in chunks, kept after a close, emptied by a restart. */
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

  it('never overwrites a file that is there', () => {
    const path = join(dir, 'plain.jsonl');
    expect(() => openTraceFile(path)).toThrow(/EEXIST/);
  });
});
