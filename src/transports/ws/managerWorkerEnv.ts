/**
 * A wall-clock environment for a manager/worker **worker** (the live counterpart of
 * `workerEnvironment` in scenario/families/managerWorker.ts): `fetch` and `run` succeed after
 * configurable delays. Nothing is really downloaded or executed.
 */
import type { EventObject } from 'xstate';
import type { ExecEffect } from '../../protocol/host.js';
import type { LiveEnvironment } from './liveHost.js';

/** A delay in milliseconds, fixed or computed per task (`ref` is the task id). */
export type DelayMs = number | ((ref: string) => number);

export interface MwWorkerEnvOptions {
  /** Time to fetch a program. Default 0 ms. */
  fetchMs?: DelayMs;
  /** Time a task runs. Default 20 ms. */
  runMs?: DelayMs;
  /** The result of a task. Default `ok:<taskId>` (as the simulated environment). */
  result?: (ref: string, data: unknown) => string;
}

export interface MwWorkerEnv extends LiveEnvironment {
  /** Operations started and not answered yet. */
  readonly pending: number;
  /** Clears every pending timer; pending operations then never answer. */
  close(): void;
}

/**
 * @example
 * const env = createMwWorkerEnv({ fetchMs: 5, runMs: (taskId) => 20 });
 * const worker = await createLiveNode({ name: 'w0', machine: workerMachine, input, env, peers });
 */
export function createMwWorkerEnv(opts: MwWorkerEnvOptions = {}): MwWorkerEnv {
  const timers = new Map<NodeJS.Timeout, () => void>(); // timer → settles its promise with no answer
  let closed = false;
  const ms = (d: DelayMs | undefined, fallback: number, ref: string): number => {
    const v = typeof d === 'function' ? d(ref) : (d ?? fallback);
    return Number.isFinite(v) && v > 0 ? v : 0;
  };
  const later = <A extends EventObject>(delayMs: number, answer: A): Promise<A | undefined> =>
    new Promise((resolve) => {
      if (closed) return resolve(undefined);
      const t = setTimeout(() => {
        timers.delete(t);
        resolve(answer);
      }, delayMs);
      timers.set(t, () => resolve(undefined));
    });
  return {
    get pending() {
      return timers.size;
    },
    exec(effect: ExecEffect) {
      if (effect.op === 'fetch') {
        return later(ms(opts.fetchMs, 0, effect.ref), { type: 'env.fetch', ref: effect.ref, ok: true });
      }
      if (effect.op === 'run') {
        const result = opts.result ? opts.result(effect.ref, effect.data) : `ok:${effect.ref}`;
        return later(ms(opts.runMs, 20, effect.ref), { type: 'env.run', ref: effect.ref, ok: true, result });
      }
      return undefined;
    },
    close() {
      closed = true;
      for (const [t, settle] of timers) {
        clearTimeout(t);
        settle(); // nobody waits forever
      }
      timers.clear();
    },
  };
}
