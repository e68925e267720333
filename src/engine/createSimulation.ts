/**
 * The simulation kernel: virtual time, the event queue, the network, faults, actor hosting, the
 * trace and counters. One scenario + one seed = one run, bit for bit.
 *
 * @example
 * const sim = createSimulation({ seed: 42, untilUs: 60_000_000, actors, network });
 * const result = sim.run();
 * console.log(result.reachedUs, result.counters.messagesSent);
 */
import type { AnyStateMachine, EventObject } from 'xstate';
import type { Envelope, ExecEffect } from '../protocol/host.js';
import type { EventKey, QueuedEvent } from './eventQueue.js';
import { EventKind, EventQueue, less } from './eventQueue.js';
import type { BackendName, KernelEffect, MachineInstance } from './machineBackend.js';
import { backendByName } from './machineBackend.js';
import type { ActorSet, Cut, NetworkSpec } from './network.js';
import { sampleLatencyUs, Network } from './network.js';
import { RandomStream } from './rng.js';
import { HashLogWriter } from './hashLog.js';
import type { LineBytesSink, LogLines } from './hashLog.js';
import { lineHash, recordHash, TraceHash } from './traceHash.js';

/** The environment that answers an actor's `host.exec` effects in virtual time. */
export interface SimEnvironment {
  /** Returns the event to deliver back to the actor and when, or `undefined` for no answer. */
  exec(effect: ExecEffect, rng: RandomStream, nowUs: number): { delayUs: number; event: EventObject } | undefined;
}

export interface ActorDefinition {
  /** Stable name: the actor's address, its trace name, and the key of its random stream. */
  name: string;
  role: string;
  machine: AnyStateMachine;
  input: unknown;
  env?: SimEnvironment;
  /**
   * What survives a crash — the actor's "disk": read off its context when it crashes (the rest of
   * the context is lost) and handed to `restartInput`. It lives where the actor lives, so a restart
   * is the same on one thread and on any shard of a parallel run.
   */
  durable?: (context: unknown) => unknown;
  /**
   * Input for a restart after a crash (incarnation 1, 2, …): what the actor keeps (`durable`: what
   * `durable` read at the last crash, if defined), and anything that must differ between
   * incarnations (request id ranges). Defaults to the original input.
   */
  restartInput?: (incarnation: number, durable: unknown) => unknown;
  /**
   * The actor it lives inside (an OPACA agent in its container's process): messages between the two
   * are in process (delivered at once, never lost, duplicated or cut), the two share a shard in a
   * parallel run, and a scenario's faults aimed at the host — crash, restart, pause, partition,
   * hold, skew — take it along.
   */
  host?: string;
  /**
   * A server that refuses connections while it is down: a request sent to it then (a message with a
   * `rid`) is answered by `{ type: 'host.refused', re: rid }`, which travels back over the network as
   * a closed port's reset would — a caller learns at once, instead of by waiting out a timeout.
   */
  refuses?: boolean;
}

/**
 * A world stepped in bulk beside the actors (Virdi's buffer/rate core): every `stepUs` of virtual
 * time the kernel calls `step`, and delivers the events it returns — edges, never one per buffer —
 * to the actors named, at once and in order, before anything else happens at that instant.
 */
export interface SimWorld {
  stepUs: number;
  /** Advances the world to `nowUs`; returns the events to deliver (at most one list per step). */
  step(nowUs: number): readonly { to: string; event: EventObject }[];
}

/** A fault or control action at a virtual time. Actor sets are indices into the actor list. */
export type FaultAction =
  | { kind: 'crash' | 'restart' | 'pause' | 'resume' | 'shutdown'; actors: number[] }
  | { kind: 'skew'; actors: number[]; byUs: number }
  | { kind: 'partition'; id: number; groups: ActorSet[] }
  | { kind: 'partition-one-way'; id: number; from: ActorSet; to: ActorSet }
  | { kind: 'heal'; id: number }
  | { kind: 'hold'; id: number; from: ActorSet; to: ActorSet }
  | { kind: 'release'; id: number }
  | { kind: 'inject'; from: string; to: number; msg: Envelope };

export interface ScheduledFault {
  atUs: number;
  action: FaultAction;
  /** Text for the trace (`crash worker-3`). */
  label: string;
}

/** One trace record, as written to `trace.jsonl`. */
export interface TraceRecord {
  t: number;
  kind: 'send' | 'recv' | 'drop' | 'timer' | 'env' | 'obs' | 'fault' | 'error';
  from?: string;
  to?: string;
  type: string;
  body?: unknown;
}

/** Hooks for invariant checkers and metrics. Names are stable actor names. */
export interface SimObserver {
  /** A message is about to be processed by `to`. */
  onDeliver?(t: number, to: string, from: string, msg: Envelope): void;
  /** `from` sent `msg` (during the current step). */
  onSend?(t: number, from: string, to: string, msg: Envelope): void;
  onObserve?(t: number, actor: string, obs: { kind: string }): void;
  /** The current step (one event processed by `actor`) is over. */
  onStepEnd?(t: number, actor: string): void;
  onFault?(t: number, action: FaultAction, actors: string[]): void;
  onEnd?(t: number): void;
  /**
   * Called at every multiple of `tickUs` of virtual time (0, tickUs, 2·tickUs, …) that the run
   * reaches, just before the first event at or after it: a periodic check (a checker's sweep) sees
   * exactly the events before that instant, whichever actors they came from — the same on one
   * kernel and on each shard of a parallel run.
   */
  tickUs?: number;
  onTick?(t: number): void;
}

/**
 * Events allowed at one virtual instant before a run counts as stalled: a zero-delay loop (a 0 s
 * timer re-arming itself, say) would never let time advance.
 */
export function stallLimitOf(opts: Pick<SimulationOptions, 'stallEvents' | 'actors'>): number {
  return opts.stallEvents ?? Math.max(10_000_000, 20 * opts.actors.length);
}

/** Fires the observers' ticks (SimObserver.tickUs) up to and including virtual time `t`. */
export function tickerOf(observers: readonly SimObserver[]): (t: number) => void {
  const list = observers.filter((o) => o.onTick && (o.tickUs ?? 0) > 0).map((o) => ({ o, next: 0 }));
  if (list.length === 0) return () => undefined;
  return (t) => {
    for (const x of list) {
      while (x.next <= t) {
        x.o.onTick!(x.next);
        x.next += x.o.tickUs!;
      }
    }
  };
}

export interface SimulationOptions {
  seed: number;
  actors: ActorDefinition[];
  network: NetworkSpec;
  faults?: ScheduledFault[];
  /** Virtual time at which the run stops. */
  untilUs: number;
  backend?: BackendName;
  /** Receives every trace line (JSON text without newline). */
  traceSink?: (line: string) => void;
  /**
   * With `traceSink`: receives the lines as UTF-8 bytes instead where a run has them so (the shards
   * of local mode, which keep their lines as bytes): `bytes[start, end)` is one line and its
   * newline. Without it those lines are decoded for `traceSink`.
   */
  traceBytes?: LineBytesSink;
  /** Compute the trace hash even without a sink. */
  hash?: boolean;
  /** Local mode (parallel.ts): events a shard runs per call (default 100 000; tests make it small to cross many calls). */
  localChunk?: number;
  observers?: SimObserver[];
  /** Checked after every step; `true` ends the run ("complete"). */
  stopWhen?: () => boolean;
  /** Events allowed at one virtual instant before the run counts as stalled (default max(10⁷, 20 × actors)). */
  stallEvents?: number;
  /** A world stepped every `world.stepUs` (see {@link SimWorld}). */
  world?: SimWorld;
  /** Called about every `progressEvery` events. */
  onProgress?: (p: { nowUs: number; untilUs: number; events: number; messages: number }) => void;
  progressEvery?: number;
  /**
   * Each actor's index by name, when the caller has one already (it must agree with `actors`): a
   * million names indexed once, not once per builder.
   */
  indexByName?: ReadonlyMap<string, number>;
}

/**
 * One shard of a parallel run (src/engine/parallel.ts): the kernel hosts only the actors it owns,
 * hands messages for the others to its outbox, and instead of hashing its trace and calling the
 * observers it returns both, per event, for the coordinator to merge in the global event order.
 */
export interface ShardOptions {
  /** This shard's number. Shard 0 also writes the kernel's own records (fault headers). */
  index: number;
  /** owned[i] is 1 when actor i runs on this shard. */
  owned: Uint8Array;
  /** Hash each record's trace line (the coordinator folds the hashes in order). */
  hashes: boolean;
  /** Also hand over each line (the coordinator writes them to the trace; in local mode beside the hashes). */
  lines: boolean;
  /** The observer calls the coordinator has a use for (the others are not recorded). */
  hooks: readonly ObserverHook[];
  /**
   * When given: [virtual time, actor index, events run] of the event running — for a report if the
   * shard dies, and for a watchdog that notices a shard making no progress.
   */
  progress?: Float64Array;
  /**
   * Shard-local observing (parallel.ts, "local" mode): the shard calls these observers itself, on
   * its own events, and hands over no records or calls — only, when hashing, each event's key and
   * line hashes (a {@link HashLog}). Used when no message is expected to cross shards.
   */
  local?: LocalObserving;
}

/** The observers a shard runs itself, and its part of `stopWhen`. */
export interface LocalObserving {
  observers: SimObserver[];
  /** True when this shard's own actors' work is done (its share of `stopWhen: complete`). */
  complete?: () => boolean;
}

/** The key of a run's start (the actors' starts): before every event. */
export const START_KEY: EventKey = { time: -1, kind: EventKind.Fault, target: -1, origin: -1, originSeq: 0 };

/**
 * A shard's events as the trace hash needs them, flat: per event its key (time, kind, target,
 * origin, originSeq), its number of lines n, their bytes (hashLog.ts), then n × (sub, h1, h2). Kernel events (faults, the
 * start) are shared: every shard logs its part, merged by `sub` (parallel.ts).
 */
export type HashLog = Float64Array;

/** Why {@link ShardKernel.runLocal} returned. */
export type LocalStop = 'chunk' | 'complete' | 'bound' | 'idle' | 'until' | 'stalled' | 'crossed' | 'error';

/** What a shard reports after running on its own (local mode). */
export interface LocalChunk {
  stop: LocalStop;
  /** Its share of `stopWhen` after its last event, and the event that last made it true. */
  complete: boolean;
  flipKey?: EventKey;
  /** The last event it ran (START_KEY before any). */
  lastKey: EventKey;
  /** Virtual time of its last event, and of its next queued one (Infinity: none). */
  nowUs: number;
  next: number;
  events: number;
  messages: number;
  /** Most events run at one instant beyond the first (the stall limit's count). */
  maxInstant: number;
  /** Events run at kernel events shared by every shard (faults): counted once in the whole run. */
  sharedEvents: number;
  /** A message for another shard (local mode is then wrong for this run), and the first such. */
  crossed?: { from: string; to: string; atUs: number };
  /** Set by the shard's host: one of its invariants was violated (the report would quote other shards' trace). */
  violated?: boolean;
  hashes?: HashLog;
  /** The trace lines of `hashes`, in its order (when a trace file is written; see {@link LogLines}). */
  lines?: LogLines;
}

/** A shard's end (local mode): its counters and its last trace records with their event keys. */
export interface LocalEnd {
  counters: Counters;
  recent: { key: EventKey; sub: number; rec: TraceRecord }[];
  hashes?: HashLog;
  lines?: LogLines;
}

/** What one event did on a shard: its trace records and observer calls, in order. */
export interface ShardGroup {
  time: number;
  kind: EventKind;
  target: number;
  origin: number;
  originSeq: number;
  /**
   * A kernel event every shard runs (a fault, or the start of the run when `time` is -1): the
   * coordinator merges the groups of all shards into one, entries ordered by `sub`.
   */
  shared: boolean;
  entries: ShardEntry[];
  /** Messages duplicated by the network in this event. */
  duplicated: number;
}

/** A trace record or an observer call; `sub` orders the entries of a shared event across shards. */
export type ShardEntry =
  | {
      sub: number;
      kind: TraceRecord['kind'];
      from?: string;
      to?: string;
      type: string;
      /** The line's hash lanes (lineHash), when hashing. */
      h1?: number;
      h2?: number;
      line?: string;
      reason?: string;
      message?: string;
    }
  | { sub: number; call: ObserverHook; args: unknown[] };

/** The observer calls a shard can record. */
export type ObserverHook = 'onDeliver' | 'onSend' | 'onObserve' | 'onStepEnd' | 'onFault';
export const OBSERVER_HOOKS: readonly ObserverHook[] = ['onDeliver', 'onSend', 'onObserve', 'onStepEnd', 'onFault'];

/** The hooks any of `observers` implements. */
export function hooksOf(observers: readonly SimObserver[]): ObserverHook[] {
  return OBSERVER_HOOKS.filter((h) => observers.some((o) => typeof o[h] === 'function'));
}

/** A shard's output for one window. */
export interface ShardWindow {
  groups: ShardGroup[];
  /** Messages for actors on other shards (time ≥ the window's end). */
  outbox: QueuedEvent[];
  /** More events ran at one instant than the stall limit allows; the shard stopped there. */
  stalled: boolean;
}

/** The shard face of the kernel (see {@link ShardOptions}). */
export interface ShardKernel {
  /** Starts the owned actors: the run's start group. */
  start(): ShardWindow;
  /** The time of the next queued event, or Infinity. */
  nextTimeUs(): number;
  /** Queues messages from other shards. */
  accept(events: readonly QueuedEvent[]): void;
  /** Runs the events before `endUs`, at most `maxEvents` of them (then it stops early). */
  advance(endUs: number, maxEvents: number): ShardWindow;
  /** Local mode: starts the owned actors. */
  startLocal(): LocalChunk;
  /**
   * Local mode: runs its events in order, at most `maxEvents`, none after `bound`; with `pause` it
   * stops right after an event that made its share of `stopWhen` true. It stops too at a message for
   * another shard or an actor error (the caller then redoes the run on one kernel).
   */
  runLocal(bound: EventKey | undefined, maxEvents: number, pause: boolean): LocalChunk;
  /**
   * Local mode: fires the observers' ticks up to `lastUs` (the run's last event), tells them the
   * run ended at `endUs`, and hands over the counters and recent records.
   */
  finishLocal(endUs: number, lastUs: number): LocalEnd;
  /** Local mode: buffers of trace lines this shard reported, written, given back to be filled again (HashLogWriter.recycle). */
  recycleLines(buffers: readonly ArrayBufferLike[]): void;
}

export interface Counters {
  events: number;
  messagesSent: number;
  messagesDelivered: number;
  dropped: Record<string, number>;
  duplicated: number;
  timersFired: number;
  faults: number;
  actorErrors: number;
  sentByType: Record<string, number>;
}

export interface RunResult {
  reachedUs: number;
  /** `stalled`: virtual time stopped advancing (a zero-delay loop); see {@link RunResult.stall}. */
  stoppedBecause: 'until' | 'idle' | 'complete' | 'stalled';
  /** Set when the run stalled: how many events ran at that one instant. */
  stall?: { atUs: number; events: number };
  counters: Counters;
  traceHash?: string;
  /** The last trace records (kept even without a trace file, for violation reports). */
  recent: TraceRecord[];
  /** Errors thrown inside actors (each also crashed that actor). */
  actorErrors: { t: number; actor: string; message: string }[];
}

/** Counters at the start of a run. */
export function emptyCounters(): Counters {
  return {
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
}

interface HostedActor {
  index: number;
  def: ActorDefinition;
  instance: MachineInstance | null;
  /** Generation: bumped by crash/restart so stale timers and env answers are ignored. */
  gen: number;
  /** How many times the actor was restarted. */
  incarnation: number;
  /** What `def.durable` kept at the last crash. */
  durable: unknown;
  alive: boolean;
  halted: boolean;
  paused: boolean;
  pending: Array<{ kind: EventKind; payload: unknown }>;
  /** Timer id → sequence of its live schedule. */
  timers: Map<string, number>;
  seq: number;
  skewUs: number;
  rng: RandomStream;
}

/** What a shard holds for an actor another shard hosts: reading or writing any of it is a bug. */
const NOT_HOSTED = new Proxy({} as HostedActor, {
  get(_, key) {
    throw new Error(`an actor hosted on another shard was read (${String(key)})`);
  },
  set(_, key) {
    throw new Error(`an actor hosted on another shard was written (${String(key)})`);
  },
});

interface MessagePayload {
  /** The sender's index, or -1 for a message injected by the scenario. */
  from: number;
  /** The index whose links, partitions and holds the message goes through (an injected message
   * travels as if its named sender had sent it; -1 when that name is no actor). */
  via: number;
  fromName: string;
  to: number;
  msg: Envelope;
  sentUs: number;
  /** Between an actor and its host: in process, so no partition or hold applies on delivery either. */
  local?: boolean;
}

interface TimerPayload {
  gen: number;
  id: string;
  seq: number;
  event: EventObject;
}

interface EnvPayload {
  gen: number;
  event: EventObject;
}

const RECENT = 40;

export interface Simulation {
  run(): RunResult;
  /** Actor names in index order. */
  readonly names: readonly string[];
  /** The last trace records (for violation reports). */
  recent(): TraceRecord[];
  /** Snapshot access for tests and summaries. */
  actorState(name: string): { state: unknown; context: unknown; alive: boolean } | undefined;
}

export function createSimulation(opts: SimulationOptions): Simulation {
  return buildKernel(opts, undefined).simulation;
}

/** A kernel that runs one shard of a parallel run (see {@link ShardOptions}). */
export function createShardKernel(opts: SimulationOptions, shard: ShardOptions): ShardKernel {
  return buildKernel(opts, shard).shard;
}

function buildKernel(opts: SimulationOptions, shard: ShardOptions | undefined): { simulation: Simulation; shard: ShardKernel } {
  const backend = backendByName(opts.backend ?? 'flat');
  const names = opts.actors.map((a) => a.name);
  const indexByName = opts.indexByName ?? indexNames(names);
  /** Each actor's host (the actor it lives inside), or -1. */
  const hostOf = Int32Array.from(opts.actors, (a) => (a.host === undefined ? -1 : (indexByName.get(a.host) ?? -1)));
  const network = new Network(opts.network, opts.seed, names);
  const queue = new EventQueue();
  // In a shard, observer calls become entries of the current event's group.
  let group: ShardGroup | undefined;
  let sub = 0;
  const recorder: SimObserver = {};
  if (shard) {
    for (const call of shard.hooks) {
      (recorder as Record<string, unknown>)[call] = (...args: unknown[]) => group!.entries.push({ sub, call, args });
    }
  }
  const local = shard?.local;
  const observers = local ? local.observers : shard ? [recorder] : (opts.observers ?? []);
  const obsDeliver = observers.filter((o) => o.onDeliver);
  const obsSend = observers.filter((o) => o.onSend);
  const obsObserve = observers.filter((o) => o.onObserve);
  const obsStepEnd = observers.filter((o) => o.onStepEnd);
  const obsFault = observers.filter((o) => o.onFault);
  const tickTo = tickerOf(observers);
  const hasher = !shard && (opts.traceSink || opts.hash) ? new TraceHash() : undefined;
  const sink = opts.traceSink;
  const tracing = hasher !== undefined;
  const counters = emptyCounters();
  const actorErrors: RunResult['actorErrors'] = [];
  // Sequence numbers of the kernel's own events (origin -1). Each kind of kernel event has its own
  // numbering, fixed by the scenario rather than by the order in which events happen to run, so a
  // shard of a parallel run numbers them exactly as a whole run does: fault i is i + 1; the injected
  // message of the fault ranked k-th in run order (time, then list order) is F + 1 + 2k, its
  // duplicate F + 2 + 2k; world steps count on their own.
  const faultList = opts.faults ?? [];
  const injectSeq = new Map<ScheduledFault, number>();
  faultList
    .map((f, i) => ({ f, i }))
    .sort((x, y) => x.f.atUs - y.f.atUs || x.i - y.i)
    .forEach(({ f }, k) => injectSeq.set(f, faultList.length + 1 + 2 * k));
  let worldSeq = 0;
  let now = 0;

  // Recent trace records: a ring of compact fields, materialised only when asked.
  const ringT = new Float64Array(RECENT);
  const ringKind: TraceRecord['kind'][] = new Array(RECENT);
  const ringFrom: (string | undefined)[] = new Array(RECENT);
  const ringTo: (string | undefined)[] = new Array(RECENT);
  const ringType: string[] = new Array(RECENT);
  let ringN = 0;
  // Local mode: each record's event and sub (to merge the shards' last records), and the hash log.
  const ringKey: EventKey[] = new Array(RECENT);
  const ringSub = new Int32Array(RECENT);
  let currentKey: EventKey = START_KEY;
  const log = new HashLogWriter(local !== undefined && shard!.lines);
  /** The line the last {@link hashRecord} made (when asked for one). */
  let madeLine = '';
  /**
   * A record's hash lanes (read them at once). With `withLine` its trace line is made, left in
   * {@link madeLine}, and hashed; without, the record is hashed without making one
   * (traceHash.ts: recordHash) — the same lanes.
   */
  const hashRecord = (
    withLine: boolean,
    kind: TraceRecord['kind'],
    from: string | undefined,
    to: string | undefined,
    type: string,
    body: unknown,
  ): readonly [number, number] => {
    if (!withLine) return recordHash(now, kind, from, to, type, body);
    madeLine = traceLine(now, kind, from, to, type, body);
    return lineHash(madeLine);
  };

  const record = (kind: TraceRecord['kind'], from: string | undefined, to: string | undefined, type: string, body?: unknown): void => {
    if (shard && !local) {
      const e: ShardEntry & { kind: string } = { sub, kind, type };
      if (from !== undefined) e.from = from;
      if (to !== undefined) e.to = to;
      if (kind === 'drop') e.reason = (body as { reason: string }).reason;
      else if (kind === 'error') e.message = (body as { message: string }).message;
      if (shard.hashes) {
        const h = hashRecord(shard.lines, kind, from, to, type, body);
        e.h1 = h[0];
        e.h2 = h[1];
        if (shard.lines) e.line = madeLine;
      }
      group!.entries.push(e);
      return;
    }
    const i = ringN++ % RECENT;
    ringT[i] = now;
    ringKind[i] = kind;
    ringFrom[i] = from;
    ringTo[i] = to;
    ringType[i] = type;
    if (local) {
      ringKey[i] = currentKey;
      ringSub[i] = sub;
      if (shard!.lines) log.pushLine(sub, traceLine(now, kind, from, to, type, body));
      else if (shard!.hashes) {
        const h = recordHash(now, kind, from, to, type, body);
        log.push(sub, h[0], h[1]);
      }
      return;
    }
    if (tracing) {
      const h = hashRecord(sink !== undefined, kind, from, to, type, body);
      hasher!.fold(h[0], h[1]);
      sink?.(madeLine);
    }
  };

  const recent = (): TraceRecord[] => {
    const out: TraceRecord[] = [];
    const n = Math.min(ringN, RECENT);
    for (let k = ringN - n; k < ringN; k++) {
      const i = k % RECENT;
      const rec: TraceRecord = { t: ringT[i], kind: ringKind[i], type: ringType[i] };
      if (ringFrom[i] !== undefined) rec.from = ringFrom[i];
      if (ringTo[i] !== undefined) rec.to = ringTo[i];
      out.push(rec);
    }
    return out;
  };

  const drop = (reason: string, fromName: string, toName: string | undefined, msg: Envelope): void => {
    counters.dropped[reason] = (counters.dropped[reason] ?? 0) + 1;
    record('drop', fromName, toName, msg.type, { reason });
  };

  /** Does this kernel host actor `i` (always, unless it is a shard)? */
  const owns = (i: number): boolean => shard === undefined || shard.owned[i] === 1;

  // A shard keeps records only of the actors it hosts (a million actors: half a million records
  // fewer on each of two shards); every other index holds a stand-in that throws when touched.
  const actors: HostedActor[] = opts.actors.map((def, index) =>
    owns(index)
      ? {
          index,
          def,
          instance: null,
          gen: 0,
          incarnation: 0,
          durable: undefined,
          alive: false,
          halted: false,
          paused: false,
          pending: [],
          timers: new Map(),
          seq: 0,
          skewUs: 0,
          rng: new RandomStream(opts.seed, `actor:${def.name}`),
        }
      : NOT_HOSTED,
  );

  const effects: KernelEffect[] = [];
  const outbox: QueuedEvent[] = [];
  /** Queues a message: here, or in the outbox when its target lives on another shard. */
  const enqueue = (ev: QueuedEvent): void => {
    if (owns(ev.target)) queue.push(ev);
    else outbox.push(ev);
  };

  /** Puts one message on the network from actor index `from` (or -1 for an injected one, which
   * travels through the links of `via`). */
  const transmit = (from: number, via: number, fromName: string, toName: string, msg: Envelope, originSeq: number): void => {
    counters.messagesSent++;
    counters.sentByType[msg.type] = (counters.sentByType[msg.type] ?? 0) + 1;
    const to = indexByName.get(toName);
    if (to === undefined) {
      record('send', fromName, toName, msg.type, msg);
      drop('unknown-address', fromName, toName, msg);
      return;
    }
    record('send', fromName, toName, msg.type, msg);
    if (via >= 0 && (hostOf[via] === to || hostOf[to] === via)) {
      // Between an actor and its host: in process, not over the network — no latency, loss,
      // duplication, partition or hold.
      enqueue({
        time: now,
        kind: EventKind.Message,
        target: to,
        origin: from,
        originSeq,
        payload: { from, via, fromName, to, msg, sentUs: now, local: true },
      });
      return;
    }
    if (via >= 0 && network.partitioned(via, to)) {
      drop('partition', fromName, toName, msg);
      return;
    }
    const link = network.link(via < 0 ? to : via, to);
    const p = link.params;
    if (link.rng.chance(p.loss)) {
      drop('loss', fromName, toName, msg);
      return;
    }
    const payload: MessagePayload = { from, via, fromName, to, msg, sentUs: now };
    const hold = via >= 0 ? network.held(via, to) : undefined;
    if (hold) {
      heldMessages.push({ cutId: hold.id, payload, originSeq });
      return;
    }
    let at = now + sampleLatencyUs(p.latency, link.rng);
    if (p.ordering === 'ordered') {
      if (at < link.lastDeliveryUs) at = link.lastDeliveryUs;
      link.lastDeliveryUs = at;
    }
    enqueue({ time: at, kind: EventKind.Message, target: to, origin: from, originSeq, payload });
    if (p.ordering === 'unordered-duplicating' && link.rng.chance(p.duplicate)) {
      counters.duplicated++;
      if (group) group.duplicated++;
      const again = now + sampleLatencyUs(p.latency, link.rng);
      const seq = from >= 0 ? ++actors[from].seq : originSeq + 1;
      enqueue({ time: again, kind: EventKind.Message, target: to, origin: from, originSeq: seq, payload });
    }
  };

  const heldMessages: Array<{ cutId: number; payload: MessagePayload; originSeq: number }> = [];

  /** Interprets the effects the actor produced in this step. */
  const applyEffects = (a: HostedActor): void => {
    for (let i = 0; i < effects.length; i++) {
      const e = effects[i];
      switch (e.type) {
        case 'host.send': {
          const seq = ++a.seq;
          for (const o of obsSend) o.onSend!(now, a.def.name, e.to, e.msg);
          transmit(a.index, a.index, a.def.name, e.to, e.msg, seq);
          break;
        }
        case 'timer.set': {
          const seq = ++a.seq;
          a.timers.set(e.id, seq);
          const payload: TimerPayload = { gen: a.gen, id: e.id, seq, event: e.event };
          queue.push({
            time: now + Math.round(e.delayMs * 1000),
            kind: EventKind.Timer,
            target: a.index,
            origin: a.index,
            originSeq: seq,
            payload,
          });
          break;
        }
        case 'timer.cancel':
          a.timers.delete(e.id);
          break;
        case 'host.observe':
          record('obs', a.def.name, undefined, e.obs.kind, e.obs);
          for (const o of obsObserve) o.onObserve!(now, a.def.name, e.obs);
          break;
        case 'host.exec': {
          const seq = ++a.seq;
          const answer = a.def.env?.exec(e, a.rng, now);
          if (answer) {
            const payload: EnvPayload = { gen: a.gen, event: answer.event };
            queue.push({ time: now + answer.delayUs, kind: EventKind.Env, target: a.index, origin: a.index, originSeq: seq, payload });
          }
          break;
        }
        case 'host.halt':
          a.halted = true;
          break;
      }
    }
    effects.length = 0;
  };

  const start = (a: HostedActor, input: unknown): void => {
    a.alive = true;
    a.halted = false;
    try {
      a.instance = backend.start(a.def.machine, input, effects);
      applyEffects(a);
    } catch (err) {
      actorFailed(a, err);
    }
  };

  /** Discards a paused actor's backlog; the messages in it are recorded as dropped. */
  const discardBacklog = (a: HostedActor, reason: string): void => {
    for (const ev of a.pending) {
      if (ev.kind === EventKind.Message) {
        const p = ev.payload as MessagePayload;
        drop(reason, p.fromName, a.def.name, p.msg);
      }
    }
    a.pending.length = 0;
  };

  const crash = (a: HostedActor): void => {
    if (a.def.durable && a.instance) a.durable = a.def.durable(a.instance.context);
    a.alive = false;
    a.instance = null;
    a.gen++;
    a.timers.clear();
    discardBacklog(a, 'down');
    a.paused = false;
  };

  const actorFailed = (a: HostedActor, err: unknown): void => {
    effects.length = 0;
    const message = err instanceof Error ? err.message : String(err);
    counters.actorErrors++;
    actorErrors.push({ t: now, actor: a.def.name, message });
    record('error', undefined, a.def.name, 'actor-error', { message });
    // The actor is crashed: observers learn it as they learn of a crash fault.
    for (const o of obsFault) o.onFault!(now, { kind: 'crash', actors: [a.index] }, [a.def.name]);
    crash(a);
  };

  /** Runs one event through an actor and interprets its effects. */
  const step = (a: HostedActor, event: EventObject): void => {
    try {
      a.instance!.deliver(event, effects);
      applyEffects(a);
      if (a.instance!.done) a.halted = true;
    } catch (err) {
      actorFailed(a, err);
    }
    for (const o of obsStepEnd) o.onStepEnd!(now, a.def.name);
  };

  const deliverMessage = (a: HostedActor, p: MessagePayload): void => {
    counters.messagesDelivered++;
    record('recv', p.fromName, a.def.name, p.msg.type);
    for (const o of obsDeliver) o.onDeliver!(now, a.def.name, p.fromName, p.msg);
    step(a, { type: p.msg.type, from: p.fromName, msg: p.msg, now: now + a.skewUs } as EventObject);
  };

  const deliverTimer = (a: HostedActor, p: TimerPayload): void => {
    if (p.gen !== a.gen || a.timers.get(p.id) !== p.seq) return;
    a.timers.delete(p.id);
    counters.timersFired++;
    record('timer', undefined, a.def.name, p.id);
    step(a, { ...p.event, now: now + a.skewUs } as EventObject);
  };

  const deliverEnv = (a: HostedActor, p: EnvPayload): void => {
    if (p.gen !== a.gen) return;
    record('env', undefined, a.def.name, p.event.type, p.event);
    step(a, { ...p.event, now: now + a.skewUs } as EventObject);
  };

  const shutdown = (a: HostedActor): void => {
    if (a.alive && !a.halted) {
      // Observers learn of a shutdown when it happens (a paused actor's waits for its resume).
      for (const o of obsFault) o.onFault!(now, { kind: 'shutdown', actors: [a.index] }, [a.def.name]);
      step(a, { type: 'host.shutdown', now: now + a.skewUs } as EventObject);
    }
    a.halted = true;
    discardBacklog(a, 'halted');
  };

  const dispatch = (a: HostedActor, kind: EventKind, payload: unknown): void => {
    if (kind === EventKind.Message) deliverMessage(a, payload as MessagePayload);
    else if (kind === EventKind.Timer) deliverTimer(a, payload as TimerPayload);
    else if (kind === EventKind.Fault) shutdown(a);
    else deliverEnv(a, payload as EnvPayload);
  };

  /**
   * Runs `f` on each actor of a per-actor fault that this kernel hosts, in list order; on a shard,
   * `sub` is the actor's position in the list (a repeated actor is at each of its positions).
   */
  const eachOwned = (list: number[], f: (a: HostedActor) => void): void => {
    list.forEach((i, position) => {
      if (!owns(i)) return;
      if (shard) sub = position;
      f(actors[i]);
    });
  };

  const applyFault = (f: ScheduledFault): void => {
    counters.faults++;
    const action = f.action;
    // On shards, shard 0 writes what the whole run writes once; each shard acts on its own actors.
    sub = -1;
    const header = shard === undefined || shard.index === 0;
    if (header) record('fault', undefined, undefined, action.kind, { label: f.label });
    const touched =
      'actors' in action
        ? action.actors.map((i) => names[i])
        : action.kind === 'hold'
          ? [...new Set([...action.from, ...action.to])].sort((x, y) => x - y).map((i) => names[i])
          : [];
    // Shard-local observers each need every fault (they act on their own actors' part of it).
    if ((header || local) && action.kind !== 'shutdown') for (const o of obsFault) o.onFault!(now, action, touched);
    switch (action.kind) {
      case 'crash':
        eachOwned(action.actors, crash);
        break;
      case 'restart':
        eachOwned(action.actors, (a) => {
          if (a.alive) crash(a);
          a.incarnation++;
          start(a, a.def.restartInput ? a.def.restartInput(a.incarnation, a.durable) : a.def.input);
        });
        break;
      case 'pause':
        eachOwned(action.actors, (a) => {
          a.paused = a.alive;
        });
        break;
      case 'resume':
        eachOwned(action.actors, (a) => {
          if (!a.paused) return;
          a.paused = false;
          while (a.pending.length > 0 && a.alive && !a.halted && !a.paused) {
            const ev = a.pending.shift()!;
            dispatch(a, ev.kind, ev.payload);
          }
        });
        break;
      case 'shutdown':
        eachOwned(action.actors, (a) => {
          // A paused actor shuts down when it resumes, after what it was already sent.
          if (a.paused) a.pending.push({ kind: EventKind.Fault, payload: null });
          else shutdown(a);
        });
        break;
      case 'skew':
        eachOwned(action.actors, (a) => {
          a.skewUs += action.byUs;
        });
        break;
      case 'partition': {
        const groups = action.groups;
        network.partition({ id: action.id, blocks: (from, to) => groupIndex(groups, from) !== groupIndex(groups, to) }, now);
        break;
      }
      case 'partition-one-way':
        network.partition({ id: action.id, blocks: (a, b) => action.from.has(a) && action.to.has(b) }, now);
        break;
      case 'heal':
        network.heal(action.id, now);
        break;
      case 'hold':
        network.holds.push({ id: action.id, blocks: (a, b) => action.from.has(a) && action.to.has(b) } satisfies Cut);
        break;
      case 'release': {
        Network.remove(network.holds, action.id);
        for (let i = 0; i < heldMessages.length;) {
          const h = heldMessages[i];
          if (h.cutId !== action.id) {
            i++;
            continue;
          }
          heldMessages.splice(i, 1);
          let at = now;
          if (h.payload.via >= 0) {
            // An ordered link stays FIFO: a released message never overtakes one still in flight.
            const link = network.link(h.payload.via, h.payload.to);
            if (link.params.ordering === 'ordered') {
              if (at < link.lastDeliveryUs) at = link.lastDeliveryUs;
              link.lastDeliveryUs = at;
            }
          }
          enqueue({
            time: at,
            kind: EventKind.Message,
            target: h.payload.to,
            origin: h.payload.from,
            originSeq: h.originSeq,
            payload: h.payload,
          });
        }
        break;
      }
      case 'inject': {
        // The message travels through its named sender's links: that sender's shard sends it.
        const via = indexByName.get(action.from) ?? -1;
        if (!owns(via >= 0 ? via : action.to)) break;
        sub = 0;
        transmit(-1, via, action.from, names[action.to], action.msg, injectSeq.get(f)!);
        break;
      }
    }
  };

  let worldSteps = 0;
  /** One world step: its events go straight to their actors (a paused one queues them). */
  const stepWorld = (world: SimWorld): void => {
    const out = world.step(now);
    if (opts.onProgress && ++worldSteps % 8 === 0) {
      opts.onProgress({ nowUs: now, untilUs: opts.untilUs, events: counters.events, messages: counters.messagesSent });
    }
    for (const { to, event } of out) {
      const i = indexByName.get(to);
      if (i === undefined) continue;
      const a = actors[i];
      if (!a.alive || a.halted) continue;
      const payload: EnvPayload = { gen: a.gen, event };
      if (a.paused) a.pending.push({ kind: EventKind.Env, payload });
      else deliverEnv(a, payload);
    }
    queue.push({ time: now + world.stepUs, kind: EventKind.World, target: -1, origin: -1, originSeq: ++worldSeq, payload: null });
  };

  /** Queues the faults and the first world step, and starts the actors (those this kernel hosts). */
  const begin = (): void => {
    faultList.forEach((f, i) => {
      queue.push({ time: f.atUs, kind: EventKind.Fault, target: -1, origin: -1, originSeq: i + 1, payload: f });
    });
    actors.forEach((a, i) => {
      if (!owns(i)) return;
      sub = i;
      start(a, a.def.input);
    });
    const world = opts.world;
    if (world) {
      if (!(world.stepUs > 0)) throw new Error(`world step must be above 0 µs, got ${world.stepUs}`);
      queue.push({ time: world.stepUs, kind: EventKind.World, target: -1, origin: -1, originSeq: ++worldSeq, payload: null });
    }
  };

  /** Runs one popped event (virtual time is already at its time). */
  const process = (ev: QueuedEvent): void => {
    if (ev.kind === EventKind.Fault) {
      applyFault(ev.payload as ScheduledFault);
      return;
    }
    if (ev.kind === EventKind.World) {
      stepWorld(opts.world!);
      return;
    }
    const a = actors[ev.target];
    if (ev.kind === EventKind.Message) {
      const p = ev.payload as MessagePayload;
      if (!a.alive || a.halted) {
        drop(a.alive ? 'halted' : 'down', p.fromName, a.def.name, p.msg);
        if (!a.alive && a.def.refuses && p.from >= 0 && p.msg.rid !== undefined)
          transmit(a.index, a.index, a.def.name, p.fromName, { type: 'host.refused', re: p.msg.rid }, ++a.seq);
        return;
      }
      // A message that was in flight while a partition cut its link is lost, healed or not.
      if (!p.local && p.via >= 0 && network.cutDuring(p.via, p.to, p.sentUs, now)) {
        drop('partition', p.fromName, a.def.name, p.msg);
        return;
      }
      const hold = !p.local && p.via >= 0 ? network.held(p.via, p.to) : undefined;
      if (hold) {
        heldMessages.push({ cutId: hold.id, payload: p, originSeq: ev.originSeq });
        return;
      }
    } else if (!a.alive || a.halted) {
      return;
    }
    if (a.paused) {
      a.pending.push({ kind: ev.kind, payload: ev.payload });
      return;
    }
    dispatch(a, ev.kind, ev.payload);
  };

  const stallLimit = stallLimitOf(opts);

  const run = (): RunResult => {
    begin();
    const untilUs = opts.untilUs;
    const progressEvery = opts.progressEvery ?? 16384;
    let stoppedBecause: RunResult['stoppedBecause'] = 'idle';
    let sameInstant = 0;
    let stall: RunResult['stall'];
    const stopWhen = opts.stopWhen;
    if (stopWhen?.()) stoppedBecause = 'complete';
    else
      for (;;) {
        const ev = queue.peek();
        if (ev === undefined) break;
        if (ev.time > untilUs) {
          stoppedBecause = 'until';
          break;
        }
        queue.pop();
        if (ev.time === now) {
          if (++sameInstant > stallLimit) {
            stoppedBecause = 'stalled';
            stall = { atUs: now, events: sameInstant };
            break;
          }
        } else sameInstant = 0;
        now = ev.time;
        counters.events++;
        if (opts.onProgress && counters.events % progressEvery === 0) {
          opts.onProgress({ nowUs: now, untilUs, events: counters.events, messages: counters.messagesSent });
        }
        tickTo(now);
        process(ev);
        if (stopWhen?.()) {
          stoppedBecause = 'complete';
          break;
        }
      }
    if (stoppedBecause === 'until') now = untilUs;
    for (const o of observers) o.onEnd?.(now);
    return {
      reachedUs: now,
      stoppedBecause,
      stall,
      counters,
      traceHash: hasher?.digest(),
      recent: recent(),
      actorErrors,
    };
  };

  const actorState = (name: string): { state: unknown; context: unknown; alive: boolean } | undefined => {
    const i = indexByName.get(name);
    if (i === undefined || !owns(i)) return undefined;
    const a = actors[i];
    return { state: a.instance?.state, context: a.instance?.context, alive: a.alive && !a.halted };
  };

  // The shard face: the coordinator (parallel.ts) calls start once, then advance window by window.
  const windowOut = (groups: ShardGroup[], stalled: boolean): ShardWindow => {
    const out = { groups, outbox: outbox.splice(0), stalled };
    group = undefined;
    return out;
  };
  let shardSameInstant = 0;
  // Local mode.
  const hashLocal = local !== undefined && shard!.hashes;
  let localComplete = false;
  let flipKey: EventKey | undefined;
  let lastKey: EventKey = START_KEY;
  let maxInstant = 0;
  let sharedEvents = 0;
  /** The hash log since the last report, with its lines when they are kept (a trace file). */
  const taken = (): Pick<LocalChunk, 'hashes' | 'lines'> => (hashLocal ? log.take() : {});
  const localChunk = (stop: LocalStop): LocalChunk => {
    const out: LocalChunk = {
      stop,
      complete: localComplete,
      flipKey: flipKey && keyOf(flipKey),
      lastKey: keyOf(lastKey),
      nowUs: now,
      next: queue.peek()?.time ?? Infinity,
      events: counters.events,
      messages: counters.messagesSent,
      maxInstant,
      sharedEvents,
      ...taken(),
    };
    const ev = outbox[0];
    if (ev) {
      const p = ev.payload as MessagePayload;
      out.crossed = { from: p.fromName, to: names[ev.target], atUs: now };
    }
    return out;
  };
  const shardFace: ShardKernel = {
    start() {
      group = { time: -1, kind: EventKind.Fault, target: -1, origin: -1, originSeq: 0, shared: true, entries: [], duplicated: 0 };
      const g = group;
      begin();
      return windowOut([g], false);
    },
    nextTimeUs: () => queue.peek()?.time ?? Infinity,
    accept(events) {
      for (const ev of events) queue.push(ev);
    },
    advance(endUs, maxEvents) {
      const groups: ShardGroup[] = [];
      let stalled = false;
      while (groups.length < maxEvents) {
        const ev = queue.peek();
        if (ev === undefined || ev.time >= endUs) break;
        // More events at one instant here than the limit means more in the whole run too.
        if (ev.time === now) {
          if (++shardSameInstant > stallLimit) {
            stalled = true;
            break;
          }
        } else shardSameInstant = 0;
        queue.pop();
        now = ev.time;
        counters.events++;
        sub = 0;
        if (shard!.progress) {
          shard!.progress[0] = ev.time;
          shard!.progress[1] = ev.target;
          shard!.progress[2]++;
        }
        group = {
          time: ev.time,
          kind: ev.kind,
          target: ev.target,
          origin: ev.origin,
          originSeq: ev.originSeq,
          shared: ev.kind === EventKind.Fault,
          entries: [],
          duplicated: 0,
        };
        groups.push(group);
        process(ev);
      }
      return windowOut(groups, stalled);
    },
    startLocal() {
      currentKey = START_KEY;
      if (hashLocal) log.begin(START_KEY);
      begin();
      if (hashLocal) log.end();
      localComplete = local?.complete?.() ?? false;
      if (localComplete) flipKey = START_KEY;
      // An actor that threw while starting: only the windows report it as one kernel does.
      return localChunk(counters.actorErrors > 0 ? 'error' : 'chunk');
    },
    runLocal(bound, maxEvents, pause) {
      const complete = local!.complete;
      let ran = 0;
      let stop: LocalStop = 'chunk';
      for (;;) {
        if (ran >= maxEvents) break;
        const ev = queue.peek();
        if (ev === undefined) {
          stop = 'idle';
          break;
        }
        if (bound !== undefined && less(bound, ev)) {
          stop = 'bound';
          break;
        }
        if (ev.time > opts.untilUs) {
          stop = 'until';
          break;
        }
        if (ev.time === now) {
          if (++shardSameInstant > stallLimit) {
            stop = 'stalled';
            break;
          }
          if (shardSameInstant > maxInstant) maxInstant = shardSameInstant;
        } else shardSameInstant = 0;
        queue.pop();
        now = ev.time;
        counters.events++;
        if (ev.kind === EventKind.Fault) sharedEvents++;
        ran++;
        sub = 0;
        currentKey = ev;
        if (shard!.progress) {
          shard!.progress[0] = ev.time;
          shard!.progress[1] = ev.target;
          shard!.progress[2]++;
        }
        if (hashLocal) log.begin(ev);
        tickTo(now);
        process(ev);
        if (hashLocal) log.end();
        lastKey = ev;
        if (outbox.length > 0) {
          stop = 'crossed';
          break;
        }
        if (counters.actorErrors > 0) {
          stop = 'error';
          break;
        }
        if (complete && complete() !== localComplete) {
          localComplete = !localComplete;
          if (localComplete) {
            flipKey = ev;
            if (pause) {
              stop = 'complete';
              break;
            }
          }
        }
      }
      return localChunk(stop);
    },
    recycleLines(buffers) {
      log.recycle(buffers);
    },
    finishLocal(endUs, lastUs) {
      // The ticks the whole run reached (up to its last event), after this shard's own last event.
      tickTo(lastUs);
      for (const o of observers) o.onEnd?.(endUs);
      const out: LocalEnd['recent'] = [];
      const records = recent();
      const n = records.length;
      records.forEach((rec, k) => {
        const i = (ringN - n + k) % RECENT;
        out.push({ key: keyOf(ringKey[i]), sub: ringSub[i], rec });
      });
      return { counters, recent: out, ...taken() };
    },
  };

  return { simulation: { run, names, recent, actorState }, shard: shardFace };
}

/** Each name's index. */
export function indexNames(names: readonly string[]): Map<string, number> {
  const index = new Map<string, number>();
  names.forEach((n, i) => {
    index.set(n, i);
  });
  return index;
}

/** The key of an event, without its payload. */
function keyOf(k: EventKey): EventKey {
  return { time: k.time, kind: k.kind, target: k.target, origin: k.origin, originSeq: k.originSeq };
}

function groupIndex(groups: ActorSet[], actor: number): number {
  for (let g = 0; g < groups.length; g++) if (groups[g].has(actor)) return g;
  return groups.length;
}

/** One trace line. Field order is part of the trace format (and of its hash): t, kind, from, to, type, body. */
export function traceLine(
  t: number,
  kind: TraceRecord['kind'],
  from: string | undefined,
  to: string | undefined,
  type: string,
  body?: unknown,
): string {
  const rec = { t, kind } as TraceRecord;
  if (from !== undefined) rec.from = from;
  if (to !== undefined) rec.to = to;
  rec.type = type;
  if (body !== undefined) rec.body = body;
  return JSON.stringify(rec);
}
