/**
 * Shards on worker threads: `worker_threads` on Node, Web Workers on Deno — one small adapter per
 * runtime — with comlink for the calls. Each worker builds its shard's kernel from the scenario
 * (shardWorker.ts: the main thread's parse, or the file's text), so nothing but plain data crosses a thread: the spec once, then one call
 * per window each way carrying that window's events and cross-shard messages in one batch.
 *
 * A worker that throws or dies ends the run: its pending call is rejected with E_WORKER_CRASHED
 * (exit 3), naming the shard, the actor it was running and the virtual time, read from a small
 * SharedArrayBuffer the shard updates before each event.
 */
import * as Comlink from 'comlink';
import type { Endpoint } from 'comlink';
import type { LocalChunk, LocalEnd } from '../engine/createSimulation.js';
import type { EventKey, QueuedEvent } from '../engine/eventQueue.js';
import type { ShardHandle, ShardStep } from '../engine/parallel.js';
import { isProtosimError } from '../engine/errors.js';
import { ownedBy, shardFailure } from '../engine/parallel.js';
import type { ShardPlan } from '../engine/partition.js';
import type { LocalObserved, ShardSpec } from '../scenario/runScenario.js';
import type { Scenario } from '../scenario/schema.js';
import type { LogLines } from '../engine/hashLog.js';
import type { Thread } from './nodeThread.js';
import type { WireLines } from './slabs.js';
import { SlabReceiver } from './slabs.js';
import { nodeThread, peekWarmThreads, takeWarmThread, workerUrl } from './nodeThread.js';

/**
 * What a shard's worker needs to build the scenario before it knows its shard (see
 * prepareWarmThreads): with `scenario`, the file as the main thread parsed and validated it (a
 * structured copy), which the worker builds without loading the YAML parser and the scenario
 * schema (yaml, scenario/schema.ts, scenario/loadScenario.ts; zod stays, for the families' own
 * schemas) — its thread has that much less to load before it can start.
 */
export type PrepareSpec = Pick<ShardSpec, 'text' | 'file' | 'overrides'> & { scenario?: Scenario };

/**
 * A warm thread's guess at its shard in local mode: the plan is a pure function of the build and the
 * number of workers, so the thread plans the run itself and makes shard `index`'s kernel while the
 * main thread plans. init takes it if its spec gives the same shard (same actors, same hashing).
 */
export interface AheadSpec {
  workers: number;
  index: number;
  hashes: boolean;
  /** It keeps the trace lines too (a trace file is written). */
  lines: boolean;
  /** The shard's progress buffer (ShardInit.progress), made now: the kernel made ahead writes to it. */
  progress: SharedArrayBuffer;
}

/** The same build asked for twice: the key a worker compares (the spec's own fields, in one order). */
export function prepareKey(p: PrepareSpec): string {
  return JSON.stringify([p.file, p.overrides.seed, p.overrides.untilUs, p.overrides.backend, p.overrides.core, p.text]);
}

export interface ShardInit extends ShardSpec {
  index: number;
  owned: Uint8Array;
  /** Float64Array(3): the virtual time and actor index of the event the shard is running, and its count of events. */
  progress: SharedArrayBuffer;
}

/** The control calls a shard's worker answers through comlink (shardWorker.ts). */
export interface ShardWorkerApi {
  /**
   * Builds the scenario ahead of init (a warm thread), and with `ahead` the local shard it will likely
   * be given; init uses them when its spec asks for the same build and shard.
   */
  prepare(spec: PrepareSpec, ahead?: AheadSpec): Promise<void>;
  init(spec: ShardInit): Promise<void>;
  /** Takes the port the window calls come through. */
  connect(port: WindowPort): void;
  start(): ShardStep;
  /**
   * Local mode (spec.local): the calls of the shard's local face (runScenario.ts: createLocalShard),
   * trace lines in shared slabs (slabs.ts), given back by number.
   */
  localStart(): Wired<LocalChunk>;
  localRun(bound: EventKey | undefined, maxEvents: number, pause: boolean): Wired<LocalChunk>;
  localFinish(endUs: number, lastUs: number): Wired<LocalEnd & { observed: LocalObserved; violated: boolean }>;
  localRecycle(slabs: number[]): void;
}

/** A local chunk or end as it crosses threads: its trace lines as {@link WireLines}. */
export type Wired<T extends { lines?: LogLines }> = Omit<T, 'lines'> & { lines?: WireLines };

/** A MessageChannel port as both runtimes have it (Node's worker_threads ports take `onmessage` too). */
export interface WindowPort {
  postMessage(message: unknown, transfer: ArrayBuffer[]): void;
  onmessage: ((e: { data: unknown }) => void) | null;
  close(): void;
}

/**
 * A window call and its answer travel as one message each way on a port of their own. Cross-shard
 * messages ride in them as JSON bytes in a transferred buffer: a batch per shard and window.
 */
export interface WindowRequest {
  endUs: number;
  maxEvents: number;
  incoming: ArrayBuffer;
}
export interface WindowReply extends Omit<ShardStep, 'outbox'> {
  outbox: ArrayBuffer;
}

// Made once, not per window and shard.
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Cross-shard messages → bytes (they are JSON by nature: they are written to the trace as JSON); none → 0 bytes. */
export function packEvents(events: readonly QueuedEvent[]): ArrayBuffer {
  return events.length === 0 ? new ArrayBuffer(0) : (encoder.encode(JSON.stringify(events)).buffer as ArrayBuffer);
}
export function unpackEvents(bytes: ArrayBuffer): QueuedEvent[] {
  return bytes.byteLength === 0 ? [] : (JSON.parse(decoder.decode(bytes)) as QueuedEvent[]);
}

interface DenoGlobal {
  Deno?: { version?: { deno?: string } };
}
export const onDeno = (globalThis as DenoGlobal).Deno?.version?.deno !== undefined;

/** An environment variable on either runtime (Deno needs --allow-env). */
export function envVar(name: string): string | undefined {
  const g = globalThis as { process?: { env: Record<string, string | undefined> }; Deno?: { env: { get(n: string): string | undefined } } };
  return onDeno ? g.Deno!.env.get(name) : g.process?.env[name];
}

/**
 * A shard on a worker thread that finishes no event for this long while the coordinator waits on it
 * has failed: an actor stuck in a loop, or a thread gone without a word (Deno reports only uncaught
 * errors). Shard 0 in local mode runs in the main thread, unwatched, as a one-thread run does.
 */
const WATCHDOG_MS = Number(envVar('PROTOSIM_SHARD_WATCHDOG_MS') ?? 60_000);

/** The Web Worker API as Deno has it. */
interface WebWorker {
  addEventListener(type: 'error', listener: (e: { message: string; preventDefault(): void }) => void): void;
  terminate(): void;
}
type WebWorkerClass = new (url: string, options: { type: 'module' }) => WebWorker;

/** Deno: a module Web Worker (it inherits the run's permissions). */
function denoThread(): Thread {
  const w = new (globalThis as unknown as { Worker: WebWorkerClass }).Worker(workerUrl.href, { type: 'module' });
  let ended = false;
  return {
    endpoint: w as unknown as Endpoint,
    onDeath(cb) {
      w.addEventListener('error', (e) => {
        e.preventDefault();
        if (!ended) cb(e.message);
        ended = true;
      });
    },
    terminate() {
      ended = true;
      w.terminate();
      return Promise.resolve();
    },
  };
}

/** The thread's comlink proxy (one per thread: a warm thread already has one). */
function proxyOf(thread: Thread): Comlink.Remote<ShardWorkerApi> {
  thread.proxy ??= Comlink.wrap<ShardWorkerApi>(thread.endpoint);
  return thread.proxy as Comlink.Remote<ShardWorkerApi>;
}

/**
 * Has the warm threads (nodeThread.ts) build `spec`'s scenario now, while the main thread plans the
 * run: init then finds it built, if it asks for the same build (else it builds its own). With
 * `local`, each also plans the run for `local.workers` and makes its local shard: the threads are
 * taken in order for shards `local.first`, `local.first + 1`, … (spawnThreadShards).
 */
export function prepareWarmThreads(spec: PrepareSpec, local?: { workers: number; first: number; hashes: boolean; lines: boolean }): void {
  peekWarmThreads().forEach((warm, k) => {
    const send = (thread: Thread): void => {
      const ahead = local && {
        workers: local.workers,
        index: local.first + k,
        hashes: local.hashes,
        lines: local.lines,
        progress: progressOf(thread),
      };
      proxyOf(thread)
        .prepare(spec, ahead)
        .catch(() => undefined);
    };
    // A thread already started gets the call now, not in a microtask: those run only once the main
    // thread has planned (planning is synchronous), and the thread would build after it, not meanwhile.
    if (warm.ready) send(warm.ready);
    else warm.thread.then(send, () => undefined);
  });
}

/** The thread's progress buffer (ShardInit.progress): one per thread, made by the first to ask. */
function progressOf(thread: Thread): SharedArrayBuffer {
  if (!thread.progress) {
    thread.progress = new SharedArrayBuffer(24);
    new Float64Array(thread.progress)[1] = -1;
  }
  return thread.progress;
}

/** Starts one worker per shard of `plan` from shard `first` on (the ones before run elsewhere) and builds its kernel there. */
export async function spawnThreadShards(spec: ShardSpec, plan: ShardPlan, names: readonly string[], first: number): Promise<ShardHandle[]> {
  // The threads build their shards at the same time; if one fails, the others are stopped.
  const started = await Promise.allSettled(
    Array.from({ length: plan.shards - first }, (_, i) => threadShard(spec, plan, first + i, names)),
  );
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.allSettled(started.map((r) => (r.status === 'fulfilled' ? r.value.close() : undefined)));
    throw failed.reason;
  }
  return started.map((r) => (r as PromiseFulfilledResult<ShardHandle>).value);
}

async function threadShard(spec: ShardSpec, plan: ShardPlan, index: number, names: readonly string[]): Promise<ShardHandle> {
  const thread = (await takeWarmThread()) ?? (onDeno ? denoThread() : await nodeThread());
  const progress = progressOf(thread);
  const where = new Float64Array(progress);
  // Every call races the thread's death: a dead worker never answers.
  let died: ((err: Error) => void) | undefined;
  const death = new Promise<never>((_, reject) => {
    died = reject;
  });
  death.catch(() => undefined);
  /** The shard's failure, named with where it was (its last event's actor and virtual time). */
  const failure = (cause: string) => shardFailure(index, where[1] >= 0 ? names[where[1]] : undefined, where[0], cause);
  thread.onDeath((cause) => died!(failure(cause)));
  const api = proxyOf(thread);
  const call = <T>(p: Promise<T>): Promise<T> => Promise.race([p, death]);
  const channel = new MessageChannel();
  try {
    await call(api.init({ ...spec, index, owned: ownedBy(plan, index), progress }));
    await call(api.connect(Comlink.transfer(channel.port2 as unknown as WindowPort, [channel.port2])));
  } catch (err) {
    channel.port1.close();
    await thread.terminate();
    throw err;
  }
  const windows = channel.port1 as unknown as WindowPort;
  const slabs = new SlabReceiver();
  let closed = false;
  const unwired = <T extends { lines?: LogLines }>(c: Wired<T>): T =>
    (c.lines === undefined ? c : { ...c, lines: slabs.receive(c.lines) }) as T;
  /**
   * A call that a dead worker, or one that finishes no event for WATCHDOG_MS, rejects. An error
   * thrown on the thread (which comlink hands back as a plain error) is the shard's failure too.
   */
  const watched = async <T>(f: () => Promise<T>): Promise<T> => {
    let seen = where[2];
    const watchdog = setInterval(() => {
      if (where[2] !== seen) seen = where[2];
      else died!(failure(`no event finished in ${WATCHDOG_MS / 1000} s`));
    }, WATCHDOG_MS);
    try {
      return await call(f());
    } catch (err) {
      throw isProtosimError(err) || closed ? err : failure((err as Error)?.message ?? String(err));
    } finally {
      clearInterval(watchdog);
    }
  };
  let answer: ((r: WindowReply) => void) | undefined;
  windows.onmessage = (e) => answer?.(e.data as WindowReply);
  return {
    start: () => watched(() => api.start()),
    async advance(incoming, endUs, maxEvents) {
      const request: WindowRequest = { endUs, maxEvents, incoming: packEvents(incoming) };
      const reply = await watched(
        () =>
          new Promise<WindowReply>((resolve) => {
            answer = resolve;
            windows.postMessage(request, [request.incoming]);
          }),
      );
      return { ...reply, outbox: unpackEvents(reply.outbox) };
    },
    local: spec.local
      ? {
          start: () => watched(async () => unwired(await api.localStart())),
          run: (bound, maxEvents, pause) => watched(async () => unwired(await api.localRun(bound, maxEvents, pause))),
          finish: (endUs, lastUs) => watched(async () => unwired(await api.localFinish(endUs, lastUs))),
          // By number; a thread that died or closed meanwhile has no use for them.
          recycle: (buffers) => {
            if (!closed) void api.localRecycle(slabs.numbersOf(buffers)).catch(() => undefined);
          },
        }
      : undefined,
    async close() {
      closed = true;
      // A call still pending (a shard stopped mid-chunk because another failed) ends now, and with it its watchdog.
      died!(new Error(`shard ${index} closed`));
      windows.close();
      api[Comlink.releaseProxy]();
      await thread.terminate();
    },
  };
}
