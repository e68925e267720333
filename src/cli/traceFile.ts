/** Streams trace lines to a file in chunks; `close()` flushes what is left (also after a crash). */
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';

export interface TraceFile {
  write(line: string): void;
  /**
   * Empties the file: the lines written so far are void and the trace starts again (a run on
   * shards that gave up local mode is redone on one kernel).
   */
  restart(): void;
  close(): void;
}

export function openTraceFile(path: string): TraceFile {
  const fd = openSync(path, 'wx');
  let chunk: string[] = [];
  let size = 0;
  // Writes go to explicit positions: after a restart the next one is at 0 again.
  let at = 0;
  const flush = (): void => {
    if (chunk.length === 0) return;
    at += writeSync(fd, `${chunk.join('\n')}\n`, at);
    chunk = [];
    size = 0;
  };
  return {
    write(line) {
      chunk.push(line);
      size += line.length;
      if (size > 1 << 16) flush();
    },
    restart() {
      chunk = [];
      size = 0;
      ftruncateSync(fd, 0);
      at = 0;
    },
    close() {
      flush();
      closeSync(fd);
    },
  };
}
