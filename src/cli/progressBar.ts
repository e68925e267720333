/** A progress line on stderr, only when stderr is a terminal; redrawn at most ten times a second. */
import { formatDurationUs } from '../engine/time.js';

export interface ProgressBar {
  update(p: { nowUs: number; untilUs: number; events: number; messages: number }): void;
  done(): void;
}

export function createProgressBar(label: string, stream: NodeJS.WriteStream, wallMs: () => number): ProgressBar {
  if (!stream.isTTY) return { update() {}, done() {} };
  const start = wallMs();
  let last = 0;
  let drawn = false;
  return {
    update(p) {
      const now = wallMs();
      if (now - last < 100) return;
      last = now;
      const frac = Math.min(1, p.untilUs > 0 ? p.nowUs / p.untilUs : 0);
      const width = 24;
      const fill = Math.round(frac * width);
      const rate = Math.round((p.messages / Math.max(1, now - start)) * 1000);
      const line = `${label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${(frac * 100).toFixed(0).padStart(3)}%  t=${formatDurationUs(p.nowUs)}  events ${p.events.toLocaleString('en-US')}  ${rate.toLocaleString('en-US')} msg/s`;
      stream.write(`\r${line.slice(0, (stream.columns ?? 120) - 1)}\x1b[K`);
      drawn = true;
    },
    done() {
      if (drawn) stream.write('\r\x1b[K');
    },
  };
}
