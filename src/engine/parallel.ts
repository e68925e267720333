/**
 * A run split over shards (design.md, "Parallel execution"), with the same result as one kernel:
 * the same trace, bit for bit, the same counters, the same observer calls in the same order.
 *
 * Each shard is a kernel that hosts some of the actors (createShardKernel). The coordinator moves
 * the shards forward in conservative windows: a window ends at the earliest next event over all
 * shards plus the lookahead — the smallest latency of a link between shards — so no shard can
 * receive, inside a window, a message it has not been handed yet. Messages for other shards leave in
 * one batch per shard and window.
 *
 * The global order is the one kernel's: it always runs the smallest queued event. A shard's own
 * events run in that order too, and a shard's queue holds, at any moment, exactly the one kernel's
 * events of its actors (messages from other shards arrive later, but never before the window in
 * which they run). So merging the shards' event sequences by always taking the smallest head gives
 * the one kernel's sequence. Faults run on every shard (each on its own actors) and merge into one
 * event, their entries ordered by the actor's position in the fault. The coordinator feeds the
 * merged events to the trace hash, the trace sink and the observers, and checks `stopWhen` and the
 * stall limit after each, exactly where the one kernel does; shards that ran past a stop are simply
 * not listened to any more.
 *
 * @example
 * const plan = planShards({ actors: opts.actors, network: opts.network, workers: 2 });
 * const result = createShardedSimulation(opts, plan).run(); // result.traceHash as with one kernel
 */
import type {
  Counters,
  LocalChunk,
  LocalEnd,
  RunResult,
  ShardEntry,
  ShardGroup,
  ShardWindow,
  SimulationOptions,
  TraceRecord,
} from './createSimulation.js';
import { createShardKernel, emptyCounters, hooksOf, indexNames, stallLimitOf, START_KEY, tickerOf } from './createSimulation.js';
import { ProtosimError } from './errors.js';
import type { EventKey, QueuedEvent } from './eventQueue.js';
import { EventKind, less } from './eventQueue.js';
import { HashLogMerger } from './hashLog.js';
import type { LineBytesSink } from './hashLog.js';
import type { ShardPlan } from './partition.js';
import { formatDurationUs } from './time.js';
import { TraceHash } from './traceHash.js';

const RECENT = 40;
/** Events a shard runs per call at most, so the coordinator's buffers stay small. */
const WINDOW_EVENTS = 50_000;

/** A shard's answer to a call: its window, and the time of its next queued event (or Infinity). */
export interface ShardStep extends ShardWindow {
  next: number;
  /** Wall-clock ms the shard spent running the window (for the barrier figures). */
  busyMs: number;
}

/** One shard as the coordinator drives it: in this thread, or on a worker thread (shardThreads.ts). */
export interface ShardHandle {
  /** Starts the shard's actors. */
  start(): Promise<ShardStep>;
  /** Queues `incoming` (messages from other shards), then runs the events before `endUs`, at most `maxEvents`. */
  advance(incoming: QueuedEvent[], endUs: number, maxEvents: number): Promise<ShardStep>;
  /** Ends the shard (its thread, if it has one). */
  close(): Promise<void>;
  /** The shard's local mode (its kernel built with {@link LocalObserving}); see {@link runLocalMode}. */
  local?: LocalShardHandle;
  /** The shard runs in this thread (its calls are not calls to another thread). */
  here?: boolean;
}

/** A shard that runs its own observers (local mode): the calls of ShardKernel's local face. */
export interface LocalShardHandle {
  start(): Promise<LocalChunk>;
  run(bound: EventKey | undefined, maxEvents: number, pause: boolean): Promise<LocalChunk>;
  /**
   * Ends the run at `endUs` (its last event at `lastUs`); `observed` is what the host read off its
   * observers (results, metrics); `violated` as in LocalChunk.
   */
  finish(endUs: number, lastUs: number): Promise<LocalEnd & { observed: unknown; violated?: boolean }>;
  /**
   * Gives back buffers of trace lines the shard reported, once written (no answer awaited; to a
   * shard in another thread by their numbers: threads/slabs.ts). Optional: without it the shard
   * makes new ones.
   */
  recycle?(buffers: ArrayBufferLike[]): void;
}

/**
 * Local mode gave up: something happened that only the windows get right (a message between shards,
 * an actor error, a violation whose trace excerpt spans shards, a possible stall). The caller redoes
 * the run from the start, on one kernel (runScenario.ts); the result is the same, only later.
 */
export class LocalModeAbandoned extends Error {
  constructor(readonly reason: string) {
    super(`local mode abandoned: ${reason}`);
  }
}

/** Figures of a sharded run, for the benchmarks and the summary. */
export interface ParallelStats {
  shards: number;
  lookaheadUs: number;
  windows: number;
  /** Messages that crossed shards. */
  crossMessages: number;
  /** Wall-clock ms of the whole run, and per shard the ms spent running events (the rest is waiting at barriers). */
  wallMs: number;
  busyMs: number[];
  /**
   * `local`: every shard ran on its own with its own observers (no message crossed shards);
   * `windows`: conservative windows, the coordinator observing; `one-kernel`: a local try was given
   * up and the run redone on one kernel in the calling thread, `abandoned` saying why.
   */
  mode?: 'local' | 'windows' | 'one-kernel';
  abandoned?: string;
}

export interface ShardedSimulation {
  /**
   * Runs to the end; rejects with E_WORKER_CRASHED when a shard fails, and in local mode with
   * {@link LocalModeAbandoned}. In local mode `observed` holds each shard's observations.
   */
  run(): Promise<RunResult & { parallel: ParallelStats; observed?: unknown[] }>;
  readonly names: readonly string[];
  recent(): TraceRecord[];
}

/** Same key in the one kernel's queue order (`less`: time, kind, target, origin, originSeq). */
const sameKey = (a: ShardGroup, b: ShardGroup): boolean => !less(a, b) && !less(b, a);

/** The options a shard's kernel is built with: no observers, trace or stop (the coordinator has them). */
export function shardKernelOptions(opts: SimulationOptions, index: number): SimulationOptions {
  // A bulk world only ever runs on a run's single shard, shard 0.
  return {
    ...opts,
    observers: [],
    traceSink: undefined,
    hash: false,
    stopWhen: undefined,
    onProgress: undefined,
    world: index === 0 ? opts.world : undefined,
  };
}

/** owned[i] = 1 for the actors of shard `index`. */
export function ownedBy(plan: ShardPlan, index: number): Uint8Array {
  const owned = new Uint8Array(plan.shardOf.length);
  plan.shardOf.forEach((s, i) => {
    if (s === index) owned[i] = 1;
  });
  return owned;
}

/** Shards hosted in this thread, one kernel each: the merge and windows of a parallel run, without threads. */
export function localShards(opts: SimulationOptions, plan: ShardPlan): ShardHandle[] {
  const hashes = opts.traceSink !== undefined || opts.hash === true;
  const lines = opts.traceSink !== undefined;
  const hooks = hooksOf(opts.observers ?? []);
  return Array.from({ length: plan.shards }, (_, index) => {
    const kernel = createShardKernel(shardKernelOptions(opts, index), { index, owned: ownedBy(plan, index), hashes, lines, hooks });
    const step = (w: ShardWindow): Promise<ShardStep> => Promise.resolve({ ...w, next: kernel.nextTimeUs(), busyMs: 0 });
    return {
      start: () => step(kernel.start()),
      advance: (incoming, endUs, maxEvents) => {
        kernel.accept(incoming);
        return step(kernel.advance(endUs, maxEvents));
      },
      close: () => Promise.resolve(),
    };
  });
}

/**
 * A run over the shards of `plan`. `shards` makes the shard handles (in this thread by default);
 * `clock` (wall-clock ms) feeds the barrier figures only. With `mode: 'local'` the shards must have
 * a local face (their own observers): see {@link runLocalMode}.
 */
export function createShardedSimulation(
  opts: SimulationOptions,
  plan: ShardPlan,
  shards: () => Promise<ShardHandle[]> = () => Promise.resolve(localShards(opts, plan)),
  clock: () => number = () => 0,
  mode: 'windows' | 'local' = 'windows',
): ShardedSimulation {
  if (opts.world && plan.shards > 1)
    throw new Error('a run with a bulk world must stay on one shard (the world delivers to its actors at once)');
  if (plan.shards > 1 && !(plan.lookaheadUs > 0)) throw new Error(`shards need a lookahead above 0 µs, got ${plan.lookaheadUs}`);
  for (const f of opts.faults ?? []) {
    // A released message leaves at once, through its link's state on the sender's shard.
    if (f.action.kind !== 'hold') continue;
    const sides = new Set([...f.action.from, ...f.action.to].map((i) => plan.shardOf[i]));
    if (sides.size > 1) throw new Error(`${f.label}: both sides of a hold must share a shard (planShards: together)`);
  }
  // An actor and its host talk in process (0 µs): they must share a shard (most runs have no hosted
  // actors: no index of a million names then).
  if (opts.actors.some((a) => a.host !== undefined)) {
    const index = opts.indexByName ?? indexNames(opts.actors.map((a) => a.name));
    opts.actors.forEach((a, i) => {
      const h = a.host === undefined ? undefined : index.get(a.host);
      if (h !== undefined && plan.shardOf[h] !== plan.shardOf[i])
        throw new Error(`${a.name} lives in ${a.host} but is placed on another shard (planShards: together)`);
    });
  }
  const names = opts.actors.map((a) => a.name);
  const observers = opts.observers ?? [];
  const tickTo = tickerOf(observers);
  const tracing = opts.traceSink !== undefined || opts.hash === true;
  const hasher = tracing ? new TraceHash() : undefined;
  const sink = opts.traceSink;
  const counters = emptyCounters();
  const actorErrors: RunResult['actorErrors'] = [];
  const ring: TraceRecord[] = [];
  let ringN = 0;
  let now = 0;

  const recent = (): TraceRecord[] => {
    const n = Math.min(ringN, RECENT);
    const out: TraceRecord[] = [];
    for (let k = ringN - n; k < ringN; k++) out.push(ring[k % RECENT]);
    return out;
  };

  /** Plays one entry as the one kernel would have: a trace record, or an observer call. */
  const play = (e: ShardEntry): void => {
    if ('call' in e) {
      for (const o of observers) {
        const f = o[e.call] as ((...args: unknown[]) => void) | undefined;
        f?.apply(o, e.args);
      }
      return;
    }
    const rec: TraceRecord = { t: now, kind: e.kind, type: e.type };
    if (e.from !== undefined) rec.from = e.from;
    if (e.to !== undefined) rec.to = e.to;
    ring[ringN++ % RECENT] = rec;
    if (e.h1 !== undefined) {
      hasher!.fold(e.h1, e.h2!);
      if (e.line !== undefined) sink?.(e.line);
    }
    switch (e.kind) {
      case 'send':
        counters.messagesSent++;
        counters.sentByType[e.type] = (counters.sentByType[e.type] ?? 0) + 1;
        break;
      case 'recv':
        counters.messagesDelivered++;
        break;
      case 'drop':
        counters.dropped[e.reason!] = (counters.dropped[e.reason!] ?? 0) + 1;
        break;
      case 'timer':
        counters.timersFired++;
        break;
      case 'fault':
        counters.faults++;
        break;
      case 'error':
        counters.actorErrors++;
        actorErrors.push({ t: now, actor: e.to!, message: e.message! });
        break;
    }
  };

  /** Plays a group, or the groups of one shared event (entries by `sub`, then by shard). */
  const playGroups = (groups: ShardGroup[]): void => {
    for (const g of groups) counters.duplicated += g.duplicated;
    if (groups.length === 1) {
      for (const e of groups[0].entries) play(e);
      return;
    }
    const all: { e: ShardEntry; shard: number; i: number }[] = [];
    groups.forEach((g, shard) => g.entries.forEach((e, i) => all.push({ e, shard, i })));
    all.sort((x, y) => x.e.sub - y.e.sub || x.shard - y.shard || x.i - y.i);
    for (const x of all) play(x.e);
  };

  let localRecent: TraceRecord[] | undefined;
  const run = async (): Promise<RunResult & { parallel: ParallelStats; observed?: unknown[] }> => {
    if (mode === 'local') {
      const result = await runLocalMode(opts, plan, await shards(), clock);
      localRecent = result.recent;
      return result;
    }
    const t0 = clock();
    const untilUs = opts.untilUs;
    const lookahead = plan.shards > 1 ? plan.lookaheadUs : Infinity;
    const stopWhen = opts.stopWhen;
    const progressEvery = opts.progressEvery ?? 16384;
    const stallLimit = stallLimitOf(opts);
    const handles = await shards();
    const n = handles.length;
    const buffered: ShardGroup[][] = handles.map(() => []);
    const heads = handles.map(() => 0);
    const next = handles.map(() => Infinity);
    const inbox: QueuedEvent[][] = handles.map(() => []);
    const stats = statsOf(plan, n, 'windows');

    /** Takes the shards' steps: their groups, their next times, and their outboxes into the inboxes. */
    const took = (steps: readonly (ShardStep | undefined)[]): void => {
      steps.forEach((w, s) => {
        if (w === undefined) return;
        for (const g of w.groups) buffered[s].push(g);
        // Messages already waiting for this shard count too.
        next[s] = w.next;
        for (const ev of inbox[s]) if (ev.time < next[s]) next[s] = ev.time;
        stats.busyMs[s] += w.busyMs;
      });
      for (const w of steps) {
        if (w === undefined) continue;
        stats.crossMessages += w.outbox.length;
        for (const ev of w.outbox) {
          const to = plan.shardOf[ev.target];
          inbox[to].push(ev);
          if (ev.time < next[to]) next[to] = ev.time;
        }
      }
    };
    const advance = (s: number, endUs: number, maxEvents: number): Promise<ShardStep> => {
      const incoming = inbox[s];
      inbox[s] = [];
      return handles[s].advance(incoming, endUs, maxEvents);
    };

    let stoppedBecause: RunResult['stoppedBecause'] | undefined;
    let stall: RunResult['stall'];
    let sameInstant = 0;

    /** Plays, in the global order, every buffered group before `bound`; false when the run stops. */
    const emit = (bound: number): boolean => {
      for (;;) {
        let min: ShardGroup | undefined;
        for (let s = 0; s < n; s++) {
          const g = buffered[s][heads[s]];
          if (g !== undefined && g.time < bound && (min === undefined || less(g, min))) min = g;
        }
        if (min === undefined) break;
        const same: ShardGroup[] = [];
        for (let s = 0; s < n; s++) {
          const g = buffered[s][heads[s]];
          if (g !== undefined && sameKey(g, min) && (same.length === 0 || g.shared)) {
            same.push(g);
            heads[s]++;
          }
        }
        if (min.time === now) {
          if (++sameInstant > stallLimit) {
            stoppedBecause = 'stalled';
            stall = { atUs: now, events: sameInstant };
            return false;
          }
        } else sameInstant = 0;
        now = min.time;
        counters.events++;
        if (opts.onProgress && counters.events % progressEvery === 0) {
          opts.onProgress({ nowUs: now, untilUs, events: counters.events, messages: counters.messagesSent });
        }
        tickTo(now);
        playGroups(same);
        if (stopWhen?.()) {
          stoppedBecause = 'complete';
          return false;
        }
      }
      for (let s = 0; s < n; s++) {
        if (heads[s] > 1024) {
          buffered[s].splice(0, heads[s]);
          heads[s] = 0;
        }
      }
      return true;
    };

    try {
      // The start: every shard starts its actors; one shared group, not an event.
      const starts = await Promise.all(handles.map((h) => h.start()));
      playGroups(starts.map((w) => w.groups[0]));
      took(starts.map((w) => ({ ...w, groups: [] })));
      if (stopWhen?.()) stoppedBecause = 'complete';

      while (stoppedBecause === undefined) {
        const first = Math.min(...next);
        if (!emit(Math.min(first, untilUs + 1))) break;
        if (first === Infinity) {
          stoppedBecause = 'idle';
          break;
        }
        if (first > untilUs) {
          stoppedBecause = 'until';
          break;
        }
        const end = Math.min(first + lookahead, untilUs + 1);
        stats.windows++;
        const steps = await Promise.all(handles.map((_, s) => advance(s, end, WINDOW_EVENTS)));
        took(steps);
        // A shard that ran more events at one instant than the limit stopped there: the run stalls
        // at the earliest such instant. Every other shard finishes that instant (and may stall at an
        // earlier one), so the merge sees the instant's events as the one kernel did.
        let stalledAt = Infinity;
        for (const w of steps) if (w.stalled) stalledAt = Math.min(stalledAt, w.next);
        if (stalledAt < Infinity) {
          const at = stalledAt;
          const rest = await Promise.all(handles.map((_, s) => (steps[s].stalled ? undefined : advance(s, at + 1, Infinity))));
          took(rest);
          for (const w of rest) if (w?.stalled) stalledAt = Math.min(stalledAt, w.next);
          if (!emit(stalledAt + 1)) break;
          // Only the stalled shard's blocked event is left at that instant: it is one too many.
          stoppedBecause = 'stalled';
          stall = { atUs: now, events: ++sameInstant };
        }
      }
    } finally {
      await Promise.allSettled(handles.map((h) => h.close()));
    }
    if (stoppedBecause === 'until') now = untilUs;
    for (const o of observers) o.onEnd?.(now);
    stats.wallMs = clock() - t0;
    return {
      reachedUs: now,
      stoppedBecause: stoppedBecause ?? 'idle',
      stall,
      counters,
      traceHash: hasher?.digest(),
      recent: recent(),
      actorErrors,
      parallel: stats,
    };
  };

  return { run, names, recent: () => localRecent ?? recent() };
}

/** The error a failed shard ends the run with (exit 3): which shard, running which actor, at what virtual time. */
export function shardFailure(shard: number, actor: string | undefined, atUs: number, cause: string): ProtosimError {
  const where =
    actor === undefined ? 'before its first event' : `at virtual time ${formatDurationUs(atUs)}, in or after an event of ${actor}`;
  return new ProtosimError('E_WORKER_CRASHED', `shard ${shard} failed ${where}: ${cause}`, {
    shard,
    actor,
    atUs,
  });
}

/** Figures of a run on `shards` shards, before it starts. */
export function statsOf(plan: ShardPlan, shards: number, mode: ParallelStats['mode']): ParallelStats {
  return {
    shards,
    lookaheadUs: plan.lookaheadUs,
    windows: 0,
    crossMessages: 0,
    wallMs: 0,
    busyMs: new Array<number>(shards).fill(0),
    mode,
  };
}

/** Resolves once the event loop has turned: messages from worker threads are taken, and those to them are sent. */
export function eventLoopTurn(): Promise<void> {
  return new Promise((resolve) => ((globalThis as { setImmediate?: (f: () => void) => void }).setImmediate ?? setTimeout)(resolve));
}

/** Where local mode's lines go as bytes (with a line sink): the caller's byte sink, else its line sink through a decoder. */
function bytesSinkOf(opts: SimulationOptions): LineBytesSink | undefined {
  const sink = opts.traceSink;
  if (sink === undefined) return undefined;
  if (opts.traceBytes !== undefined) return opts.traceBytes;
  const decoder = new TextDecoder();
  // A copy: a decoder may refuse bytes in shared memory (Deno's does).
  return (bytes, start, end) => {
    for (const line of decoder.decode(bytes.slice(start, end - 1)).split('\n')) sink(line);
  };
}

/** Events a shard runs per call in local mode. */
const LOCAL_CHUNK = 100_000;

/**
 * Local mode: every shard runs its own events with its own observers, with no windows, and nothing
 * per event crosses a thread — only, when hashing, each event's key and line hashes (and with a
 * trace sink the lines, which go to the sink in the one kernel's order as their hashes are folded).
 * It is exact for runs where no message crosses shards (each shard's events are then exactly the one
 * kernel's events of its actors, whatever the others do); the first message that would cross, an
 * actor error, a violation or a possible stall abandons it ({@link LocalModeAbandoned}) and the
 * caller redoes the run (on one kernel: windows would be slower), after telling the sink to start
 * over (the lines it has are a prefix of the run's trace, not the trace).
 *
 * `stopWhen` is the conjunction of the shards' shares: a shard pauses right after the event that
 * makes its share true; when every share is true, the stop is the latest of those events (K), and
 * the shards that have not reached K run up to it. If all shares still hold there, the run stops at
 * K, as the one kernel would: the first event after which every share holds.
 */
export async function runLocalMode(
  opts: SimulationOptions,
  plan: ShardPlan,
  handles: ShardHandle[],
  clock: () => number,
): Promise<RunResult & { parallel: ParallelStats; observed: unknown[] }> {
  const t0 = clock();
  const n = handles.length;
  const local = handles.map((h, s) => {
    if (!h.local) throw new Error(`shard ${s} has no local mode`);
    return h.local;
  });
  const tracing = opts.traceSink !== undefined || opts.hash === true;
  // The trace file's lines are written where their hashes are folded: in the one kernel's order.
  const merger = tracing ? new HashLogMerger(n, bytesSinkOf(opts), (s, buffer) => local[s].recycle?.([buffer])) : undefined;
  const hash = tracing ? new TraceHash() : undefined;
  const stopWhen = opts.stopWhen !== undefined;
  const stallLimit = stallLimitOf(opts);
  const chunk = opts.localChunk ?? LOCAL_CHUNK;
  const stats = statsOf(plan, n, 'local');
  const last: LocalChunk[] = new Array(n);
  const done = (c: LocalChunk): boolean => c.stop === 'idle' || c.stop === 'until';

  /** Takes the shards' reports; abandons on anything local mode cannot answer. */
  const took = (chunks: readonly (LocalChunk | undefined)[], busy: readonly number[]): void => {
    chunks.forEach((c, s) => {
      if (c === undefined) return;
      last[s] = c;
      merger?.add(s, c.hashes, c.lines);
      stats.busyMs[s] += busy[s];
      if (c.crossed)
        throw new LocalModeAbandoned(`${c.crossed.from} sent to ${c.crossed.to} on another shard at ${formatDurationUs(c.crossed.atUs)}`);
      if (c.violated) throw new LocalModeAbandoned(`an invariant was violated by ${formatDurationUs(c.nowUs)}`);
      if (c.stop === 'error') throw new LocalModeAbandoned(`an actor threw at ${formatDurationUs(c.nowUs)}`);
      if (c.stop === 'stalled') throw new LocalModeAbandoned(`shard ${s} ran too many events at ${formatDurationUs(c.nowUs)}`);
    });
    // The stall limit counts events at one instant over the whole run: it could be passed only if
    // the shards' own counts add up past it.
    const instants = last.reduce((sum, c) => sum + (c ? c.maxInstant + 1 : 0), 0);
    if (instants > stallLimit) throw new LocalModeAbandoned('the shards together may have run too many events at one instant');
    if (opts.onProgress) {
      const running = last.filter((c) => !done(c));
      opts.onProgress({
        nowUs: running.length > 0 ? Math.min(...running.map((c) => c.nowUs)) : Math.max(...last.map((c) => c.nowUs)),
        untilUs: opts.untilUs,
        events: last.reduce((sum, c) => sum + c.events, 0),
        messages: last.reduce((sum, c) => sum + c.messages, 0),
      });
    }
  };
  // Calls in flight, one per shard at most: a shard goes on as soon as its last call answered (no
  // barrier between shards), until it is done, or waits with its share of stopWhen true.
  const inflight: (Promise<[number, LocalChunk, number]> | undefined)[] = new Array(n);
  /** A call to a worker thread was made since the last fold. */
  let called = false;
  const launch = (s: number, f: () => Promise<LocalChunk>): void => {
    const t = clock();
    const p = f().then((c): [number, LocalChunk, number] => [s, c, clock() - t]);
    p.catch(() => undefined);
    inflight[s] = p;
    if (!handles[s].here) {
      stats.windows++;
      called = true;
    }
  };
  const settle = async (): Promise<void> => {
    const [s, c, ms] = await Promise.race(inflight.filter((p) => p !== undefined));
    inflight[s] = undefined;
    took(
      handles.map((_, i) => (i === s ? c : undefined)),
      handles.map((_, i) => (i === s ? ms : 0)),
    );
  };
  /**
   * Folds what every shard has run past (the earliest last event of the shards still running),
   * while they go on: the logs do not pile up, and little is left to fold at the end. Called once
   * the shards that can go on have their next call, and after the event loop has turned when one
   * went to a worker thread (the call leaves a few promise steps later): the thread does not wait
   * for the fold, which with a trace file writes every line.
   */
  const foldReady = async (): Promise<void> => {
    if (called && merger) await eventLoopTurn();
    called = false;
    if (merger && last.filter((x) => x !== undefined).length === n) {
      let upTo: EventKey | undefined;
      for (const x of last) if (!done(x) && (upTo === undefined || less(x.lastKey, upTo))) upTo = x.lastKey;
      if (upTo !== undefined) merger.fold(hash!, upTo);
    }
  };

  let stoppedBecause: RunResult['stoppedBecause'] | undefined;
  let stopKey: EventKey | undefined;
  try {
    handles.forEach((_, s) => launch(s, () => local[s].start()));
    while (inflight.some((p) => p !== undefined)) await settle();
    if (stopWhen && last.every((c) => c.complete)) {
      stoppedBecause = 'complete';
      stopKey = START_KEY;
    }
    // Shards whose share holds wait at the event that made it hold, while the others go on; once a
    // share can no longer change for want of events while another is false, nobody waits.
    let waiting = stopWhen;
    while (stoppedBecause === undefined) {
      if (waiting && last.some((c) => done(c) && !c.complete)) waiting = false;
      const pause = waiting;
      for (let s = 0; s < n; s++) {
        if (inflight[s] === undefined && !done(last[s]) && !(waiting && last[s].complete))
          launch(s, () => local[s].run(undefined, chunk, pause));
      }
      await foldReady();
      if (inflight.some((p) => p !== undefined)) {
        await settle();
        continue;
      }
      if (last.every(done)) {
        stoppedBecause = last.some((c) => c.stop === 'until') ? 'until' : 'idle';
        break;
      }
      // Every shard waits: every share holds. The candidate stop is the latest event that made one
      // hold (K); the shards behind it run up to it.
      let k = START_KEY;
      for (const c of last) if (c.flipKey && less(k, c.flipKey)) k = c.flipKey;
      const key = k;
      const behind = (c: LocalChunk): boolean => !done(c) && c.stop !== 'bound' && less(c.lastKey, key);
      while (last.some(behind)) {
        for (let s = 0; s < n; s++) if (inflight[s] === undefined && behind(last[s])) launch(s, () => local[s].run(key, chunk, false));
        await settle();
      }
      while (inflight.some((p) => p !== undefined)) await settle();
      if (last.every((c) => c.complete)) {
        stoppedBecause = 'complete';
        stopKey = key;
        break;
      }
      // A share fell back before K: go on from here (shards stopped at K wait or run as their share says).
      for (let s = 0; s < n; s++) if (last[s].stop === 'bound') last[s] = { ...last[s], stop: 'chunk' };
    }
  } catch (err) {
    await Promise.allSettled(handles.map((h) => h.close()));
    throw err;
  }

  const endUs =
    stoppedBecause === 'until'
      ? opts.untilUs
      : stoppedBecause === 'complete'
        ? Math.max(0, stopKey!.time)
        : Math.max(0, ...last.map((c) => c.nowUs));
  // The run's last event: the stop, or the latest event any shard ran (-1: none).
  const lastUs = stoppedBecause === 'complete' ? stopKey!.time : Math.max(-1, ...last.map((c) => (c.events > 0 ? c.nowUs : -1)));
  let ends: (LocalEnd & { observed: unknown; violated?: boolean })[];
  try {
    ends = await Promise.all(local.map((l) => l.finish(endUs, lastUs)));
  } finally {
    await Promise.allSettled(handles.map((h) => h.close()));
  }
  // The checks at the end (a last sweep) may find a violation too.
  if (ends.some((e) => e.violated)) throw new LocalModeAbandoned(`an invariant was violated at the end (${formatDurationUs(endUs)})`);
  ends.forEach((e, s) => merger?.add(s, e.hashes, e.lines));
  const shared = last[0].sharedEvents;
  const counters = sumCounters(ends.map((e) => e.counters));
  counters.events -= (n - 1) * shared;
  counters.faults -= (n - 1) * shared;
  let traceHash: string | undefined;
  if (merger) {
    merger.fold(hash!);
    traceHash = hash!.digest();
  }
  // The run's last records: the latest of all shards' last records (shared events: by sub, then shard).
  const recent = ends
    .flatMap((e, s) => e.recent.map((r, i) => ({ ...r, s, i })))
    .sort((x, y) =>
      less(x.key, y.key)
        ? -1
        : less(y.key, x.key)
          ? 1
          : x.key.kind === EventKind.Fault
            ? x.sub - y.sub || x.s - y.s || x.i - y.i
            : x.i - y.i,
    )
    .slice(-RECENT)
    .map((r) => r.rec);
  stats.wallMs = clock() - t0;
  return {
    reachedUs: endUs,
    stoppedBecause: stoppedBecause!,
    counters,
    traceHash,
    recent,
    actorErrors: [],
    parallel: stats,
    observed: ends.map((e) => e.observed),
  };
}

/** The sum of the shards' counters. */
function sumCounters(parts: readonly Counters[]): Counters {
  const out = emptyCounters();
  const add = (into: Record<string, number>, from: Record<string, number>): void => {
    for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
  };
  for (const c of parts) {
    out.events += c.events;
    out.messagesSent += c.messagesSent;
    out.messagesDelivered += c.messagesDelivered;
    out.duplicated += c.duplicated;
    out.timersFired += c.timersFired;
    out.faults += c.faults;
    out.actorErrors += c.actorErrors;
    add(out.dropped, c.dropped);
    add(out.sentByType, c.sentByType);
  }
  return out;
}
