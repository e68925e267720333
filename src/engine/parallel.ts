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
  RunResult,
  ShardEntry,
  ShardGroup,
  ShardKernel,
  Simulation,
  SimulationOptions,
  TraceRecord,
} from './createSimulation.js';
import { createShardKernel } from './createSimulation.js';
import type { QueuedEvent } from './eventQueue.js';
import type { ShardPlan } from './partition.js';
import { TraceHash } from './traceHash.js';

const RECENT = 40;
/** Events a shard runs per call at most, so the coordinator's buffers stay small. */
const WINDOW_EVENTS = 50_000;

/** The order of the one kernel's queue: (time, kind, target, origin, originSeq). */
function before(a: ShardGroup, b: ShardGroup): boolean {
  if (a.time !== b.time) return a.time < b.time;
  if (a.kind !== b.kind) return a.kind < b.kind;
  if (a.target !== b.target) return a.target < b.target;
  if (a.origin !== b.origin) return a.origin < b.origin;
  return a.originSeq < b.originSeq;
}

const sameKey = (a: ShardGroup, b: ShardGroup): boolean => !before(a, b) && !before(b, a);

/** A run over the shards of `plan`, hosted in this thread (each shard a kernel of its own). */
export function createShardedSimulation(opts: SimulationOptions, plan: ShardPlan): Simulation {
  if (opts.world && plan.shards > 1)
    throw new Error('a run with a bulk world must stay on one shard (the world delivers to its actors at once)');
  if (plan.shards > 1 && !(plan.lookaheadUs > 0)) throw new Error(`shards need a lookahead above 0 µs, got ${plan.lookaheadUs}`);
  const names = opts.actors.map((a) => a.name);
  const tracing = opts.traceSink !== undefined || opts.hash === true;
  const shardOpts: SimulationOptions = {
    ...opts,
    observers: [],
    traceSink: undefined,
    hash: false,
    stopWhen: undefined,
    onProgress: undefined,
  };
  const shards: ShardKernel[] = [];
  for (let index = 0; index < plan.shards; index++) {
    const owned = new Uint8Array(names.length);
    for (let i = 0; i < names.length; i++) owned[i] = plan.shardOf[i] === index ? 1 : 0;
    shards.push(createShardKernel({ ...shardOpts, world: index === 0 ? opts.world : undefined }, { index, owned, lines: tracing }));
  }

  const observers = opts.observers ?? [];
  const hasher = tracing ? new TraceHash() : undefined;
  const sink = opts.traceSink;
  const counters: Counters = {
    events: 0,
    messagesSent: 0,
    messagesDelivered: 0,
    dropped: {},
    duplicated: 0,
    timersFired: 0,
    faults: 0,
    actorErrors: 0,
    sentByType: {},
  };
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
    if (e.line !== undefined) {
      hasher!.update(e.line);
      sink?.(e.line);
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

  const run = (): RunResult => {
    const untilUs = opts.untilUs;
    const lookahead = plan.shards > 1 ? plan.lookaheadUs : Infinity;
    const stopWhen = opts.stopWhen;
    const progressEvery = opts.progressEvery ?? 16384;
    const stallLimit = opts.stallEvents ?? Math.max(10_000_000, 20 * names.length);
    const buffered: ShardGroup[][] = shards.map(() => []);
    const heads = shards.map(() => 0);
    const route = (outbox: readonly QueuedEvent[]): void => {
      if (outbox.length === 0) return;
      const per: QueuedEvent[][] = shards.map(() => []);
      for (const ev of outbox) per[plan.shardOf[ev.target]].push(ev);
      per.forEach((batch, s) => {
        if (batch.length > 0) shards[s].accept(batch);
      });
    };

    let stoppedBecause: RunResult['stoppedBecause'] | undefined;
    let stall: RunResult['stall'];
    let sameInstant = 0;

    // The start: every shard starts its actors; one shared group, not an event.
    const starts = shards.map((s) => s.start());
    playGroups(starts.map((w) => w.groups[0]));
    for (const w of starts) route(w.outbox);
    if (stopWhen?.()) stoppedBecause = 'complete';

    /** Plays, in the global order, every buffered group before `bound`; false when the run stops. */
    const emit = (bound: number): boolean => {
      for (;;) {
        let min: ShardGroup | undefined;
        for (let s = 0; s < shards.length; s++) {
          const g = buffered[s][heads[s]];
          if (g !== undefined && g.time < bound && (min === undefined || before(g, min))) min = g;
        }
        if (min === undefined) break;
        const same: ShardGroup[] = [];
        for (let s = 0; s < shards.length; s++) {
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
        playGroups(same);
        if (stopWhen?.()) {
          stoppedBecause = 'complete';
          return false;
        }
      }
      for (let s = 0; s < shards.length; s++) {
        if (heads[s] > 1024) {
          buffered[s].splice(0, heads[s]);
          heads[s] = 0;
        }
      }
      return true;
    };

    while (stoppedBecause === undefined) {
      let next = Infinity;
      for (const s of shards) next = Math.min(next, s.nextTimeUs());
      if (!emit(Math.min(next, untilUs + 1))) break;
      if (next === Infinity) {
        stoppedBecause = 'idle';
        break;
      }
      if (next > untilUs) {
        stoppedBecause = 'until';
        break;
      }
      const end = Math.min(next + lookahead, untilUs + 1);
      let stalledAt = -1;
      const windows = shards.map((s) => s.advance(end, WINDOW_EVENTS));
      windows.forEach((w, s) => {
        for (const g of w.groups) buffered[s].push(g);
        route(w.outbox);
        if (w.stalled) stalledAt = shards[s].nextTimeUs();
      });
      if (stalledAt >= 0) {
        // A shard ran more events at one instant than the limit: the run stalls there. Every other
        // shard finishes that instant, so the merge sees the instant's events as the one kernel did.
        shards.forEach((s, i) => {
          if (windows[i].stalled) return;
          const w = s.advance(stalledAt + 1, Infinity);
          for (const g of w.groups) buffered[i].push(g);
          route(w.outbox);
        });
        if (!emit(stalledAt + 1)) break;
        // Only the stalled shard's blocked event is left at that instant: it is one too many.
        stoppedBecause = 'stalled';
        stall = { atUs: now, events: ++sameInstant };
      }
    }
    if (stoppedBecause === 'until') now = untilUs;
    for (const o of observers) o.onEnd?.(now);
    return {
      reachedUs: now,
      stoppedBecause: stoppedBecause ?? 'idle',
      stall,
      counters,
      traceHash: hasher?.digest(),
      recent: recent(),
      actorErrors,
    };
  };

  return {
    run,
    names,
    recent,
    actorState: (name) => {
      const i = names.indexOf(name);
      return i < 0 ? undefined : shards[plan.shardOf[i]].actorState(name);
    },
  };
}
