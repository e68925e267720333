/**
 * Node worker threads for the shards, and warm ones: threads started from the command line before
 * the CLI has loaded its own modules and planned the run. A shard's thread spends about 0.4 s
 * importing its modules and 0.25 s building the scenario; started when the run starts, all of that
 * is on the run's clock, while the main thread waits. Started at once (bin/protosim.js reads
 * `run … --workers N` and calls {@link prestartThreads}), a thread imports while the main thread
 * imports, and builds the scenario (shardThreads.ts: prepareWarmThreads) while the main thread
 * plans. spawnThreadShards then takes them ({@link takeWarmThread}) instead of starting its own.
 * Until taken, a warm thread does not keep the process alive, and the CLI stops the ones the plan
 * does not need ({@link releaseWarmThreads}).
 *
 * This module is loaded before everything else: it imports nothing heavy.
 */
import type { Endpoint } from 'comlink';
import type { Worker } from 'node:worker_threads';
import { nodePortEndpoint } from './threadPort.js';

/** A worker thread as the coordinator needs it, whatever the runtime. */
export interface Thread {
  endpoint: Endpoint;
  /** Calls `cb` once if the thread throws or exits (not after terminate); at once if it already has. */
  onDeath(cb: (cause: string) => void): void;
  terminate(): Promise<void>;
  /** The comlink proxy of the thread's calls, made once (shardThreads.ts). */
  proxy?: unknown;
  /** The progress buffer of the thread's shard, made once (shardThreads.ts). */
  progress?: SharedArrayBuffer;
}

/** The entry of a shard's worker (JavaScript: from the TypeScript sources, the built one in dist/). */
export const workerUrl = import.meta.url.endsWith('.ts')
  ? new URL('../../dist/threads/shardWorker.js', import.meta.url)
  : new URL('./shardWorker.js', import.meta.url);

/** Starts a worker thread on Node; `warm`: it does not keep the process alive until {@link Thread} is taken. */
export async function nodeThread(warm = false): Promise<Thread & { worker: Worker; take(): void }> {
  const { Worker } = await import('node:worker_threads');
  const w = new Worker(workerUrl);
  if (warm) w.unref();
  // Listened to from the start: a thread that dies before anyone asks is not missed.
  let ended = false;
  let death: string | undefined;
  let notify: ((cause: string) => void) | undefined;
  const died = (cause: string): void => {
    if (ended) return;
    ended = true;
    death = cause;
    notify?.(cause);
  };
  w.on('error', (err) => died(err instanceof Error ? err.message : String(err)));
  w.on('exit', (code) => died(`its thread exited with code ${code}`));
  // A 'message' listener (comlink's) refs the worker again: a warm one is unref'd after each.
  const endpoint = nodePortEndpoint(w);
  const listen = endpoint.addEventListener.bind(endpoint);
  endpoint.addEventListener = (...args: Parameters<typeof listen>) => {
    listen(...args);
    if (warm) w.unref();
  };
  return {
    worker: w,
    take() {
      warm = false;
      w.ref();
    },
    endpoint,
    onDeath(cb) {
      notify = cb;
      if (death !== undefined) queueMicrotask(() => cb(death!));
    },
    async terminate() {
      ended = true;
      await w.terminate();
    },
  };
}

/**
 * The first shard that runs on a worker thread: shard 0 runs in the main thread in local mode (the
 * default), and on a thread of its own in windows (`--windows`).
 */
export function firstThreadShard(windows: boolean): number {
  return windows ? 0 : 1;
}

/** A warm thread: being started, and once started (`ready`: callable at once, not a microtask later). */
export interface WarmThread {
  thread: Promise<Thread & { worker: Worker; take(): void }>;
  ready?: Thread & { worker: Worker; take(): void };
}

const warmThreads: WarmThread[] = [];

/** Starts `count` warm threads (Node only; nothing on Deno). */
export function prestartThreads(count: number): void {
  const onDeno = (globalThis as { Deno?: unknown }).Deno !== undefined;
  if (onDeno) return;
  for (let i = 0; i < count; i++) {
    const warm: WarmThread = { thread: nodeThread(true) };
    warm.thread.then(
      (t) => void (warm.ready = t),
      () => undefined,
    );
    warmThreads.push(warm);
  }
}

/** The warm threads not taken yet. */
export function warmThreadCount(): number {
  return warmThreads.length;
}

/** The warm threads not taken yet, for a call to each (they stay in the pool). */
export function peekWarmThreads(): readonly WarmThread[] {
  return warmThreads;
}

/** A warm thread, now keeping the process alive; undefined when none is left. */
export async function takeWarmThread(): Promise<Thread | undefined> {
  const warm = warmThreads.shift();
  if (!warm) return undefined;
  const thread = await warm.thread;
  thread.take();
  return thread;
}

/** Stops the warm threads beyond the first `keep`. */
export async function releaseWarmThreads(keep: number): Promise<void> {
  const extra = warmThreads.splice(keep);
  await Promise.allSettled(extra.map(async (w) => (await w.thread).terminate()));
}
