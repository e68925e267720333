/** Streams trace lines to a file in chunks; `close()` flushes what is left (also after a crash). */
import { closeSync, openSync, writeSync } from 'node:fs';

export interface TraceFile {
  write(line: string): void;
  close(): void;
}

export function openTraceFile(path: string): TraceFile {
  const fd = openSync(path, 'wx');
  let chunk: string[] = [];
  let size = 0;
  const flush = (): void => {
    if (chunk.length === 0) return;
    writeSync(fd, `${chunk.join('\n')}\n`);
    chunk = [];
    size = 0;
  };
  return {
    write(line) {
      chunk.push(line);
      size += line.length;
      if (size > 1 << 16) flush();
    },
    close() {
      flush();
      closeSync(fd);
    },
  };
}
