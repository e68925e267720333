/** Streams trace lines to a file in chunks; `close()` flushes what is left (also after a crash). */
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';

export interface TraceFile {
  write(line: string): void;
  /**
   * Lines as UTF-8 bytes: `bytes[start, end)` is one or more lines, each ended by a newline (how
   * the shards of local mode keep their lines), copied before it returns. Lines from write and
   * writeBytes keep their order.
   */
  writeBytes(bytes: Uint8Array, start: number, end: number): void;
  /**
   * Empties the file: the lines written so far are void and the trace starts again (a run on
   * shards that gave up local mode is redone on one kernel).
   */
  restart(): void;
  close(): void;
}

/** Bytes gathered before a write. */
const CHUNK = 1 << 20;

export function openTraceFile(path: string): TraceFile {
  const fd = openSync(path, 'wx');
  // Lines given as strings, joined at a flush (one thread's run)…
  let chunk: string[] = [];
  let size = 0;
  // …and lines given as bytes, copied into one buffer.
  const out = new Uint8Array(CHUNK);
  let outN = 0;
  // Writes go to explicit positions: after a restart the next one is at 0 again.
  let at = 0;
  const flushLines = (): void => {
    if (chunk.length === 0) return;
    at += writeSync(fd, `${chunk.join('\n')}\n`, at);
    chunk = [];
    size = 0;
  };
  const flushBytes = (): void => {
    for (let done = 0; done < outN;) {
      const n = writeSync(fd, out, done, outN - done, at + done);
      if (n <= 0) throw new Error(`the trace file took no bytes (${outN - done} left to write)`);
      done += n;
    }
    at += outN;
    outN = 0;
  };
  const flush = (): void => {
    flushBytes();
    flushLines();
  };
  return {
    write(line) {
      if (outN > 0) flushBytes();
      chunk.push(line);
      size += line.length;
      if (size > 1 << 16) flushLines();
    },
    writeBytes(bytes, start, end) {
      if (chunk.length > 0) flushLines();
      // Through the buffer even when larger: the bytes may be in shared memory, which not every
      // runtime's file writes take.
      for (let from = start; from < end;) {
        if (outN === CHUNK) flushBytes();
        const n = Math.min(end - from, CHUNK - outN);
        out.set(bytes.subarray(from, from + n), outN);
        outN += n;
        from += n;
      }
    },
    restart() {
      chunk = [];
      size = 0;
      outN = 0;
      ftruncateSync(fd, 0);
      at = 0;
    },
    close() {
      try {
        flush();
      } finally {
        closeSync(fd);
      }
    },
  };
}
