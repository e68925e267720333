/**
 * Turns a loaded scenario into a simulation, runs it, checks the expectations and summarises.
 *
 * @example
 * const loaded = loadScenario('scenarios/manager-worker/basic.yaml');
 * const summary = runScenario(loaded, { seed: 7 });
 * console.log(summary.invariants.map((i) => `${i.id}: ${i.status}`));
 */
import type { ActorDefinition, FaultAction, ScheduledFault, SimObserver, SimulationOptions } from '../engine/createSimulation.js';
import { createSimulation, hooksOf } from '../engine/createSimulation.js';
import type { ObserverHook, RunResult, Simulation } from '../engine/createSimulation.js';
import type { LocalChunk, LocalEnd } from '../engine/createSimulation.js';
import { createShardKernel, indexNames } from '../engine/createSimulation.js';
import type { EventKey } from '../engine/eventQueue.js';
import type { ParallelStats, ShardedSimulation } from '../engine/parallel.js';
import { createShardedSimulation, eventLoopTurn, LocalModeAbandoned, ownedBy, shardKernelOptions, statsOf } from '../engine/parallel.js';
import type { ShardHandle } from '../engine/parallel.js';
import type { ShardPlan } from '../engine/partition.js';
import { planShards } from '../engine/partition.js';
import type { BackendName } from '../engine/machineBackend.js';
import type { LatencyDist, LinkParams, LinkRule, NetworkSpec } from '../engine/network.js';
import { latencyBoundUs } from '../engine/network.js';
import { formatDurationUs, parseDurationUs } from '../engine/time.js';
import type { InvariantResult } from '../invariants/types.js';
import { mergeResults } from '../invariants/types.js';
import { FAMILIES, familyOf } from './families/index.js';
import type { DeclaredActor, FamilyBuildContext } from './families/types.js';
import type { LoadedScenario } from './loadScenario.js';
import type { Path, ScenarioProblem } from './problems.js';
import { ScenarioError } from './problems.js';
import type { DurationDistInput } from './schemaParts.js';
import type { CoreKind } from '../buffers/bufferCore.js';
import type { Scenario } from './schema.js';

export interface RunOverrides {
  seed?: number;
  /** Virtual time limit that replaces the scenario's duration. */
  untilUs?: number;
  backend?: BackendName;
  /** The buffer/rate core: WebAssembly (default) or the TypeScript reference. */
  core?: CoreKind;
  /** Receives every trace line. */
  traceSink?: (line: string) => void;
  /** With `traceSink`: receives lines as UTF-8 bytes where a run has them so (SimulationOptions.traceBytes). */
  traceBytes?: SimulationOptions['traceBytes'];
  /**
   * Tells the sink that the lines it has received are void and the trace starts again from its
   * first line (a run on shards that gave up local mode is redone on one kernel). With it, a run
   * with a sink can take local mode; without it, such a run needs windows (and so runs on one kernel
   * unless they are forced).
   */
  traceRestart?: () => void;
  /** Compute the trace hash without a sink. */
  hash?: boolean;
  /** Wall clock for timing figures (the engine never reads one). */
  wallClockMs?: () => number;
  onProgress?: (p: { nowUs: number; untilUs: number; events: number; messages: number }) => void;
  /** Extra observers (tests use them to look inside a run). */
  observers?: SimObserver[];
  /**
   * Split the run over this many threads (placement may use fewer: src/engine/partition.ts): in
   * local mode shard 0 runs in this thread and the others on worker threads; in windows every shard
   * runs on a worker thread. Run it with {@link runPlannedAsync} or {@link runScenarioAsync}.
   */
  workers?: number;
  /** Starts the shards of a run on `workers` (src/threads/shardThreads.ts: spawnThreadShards). */
  threads?: ShardHost;
  /** Split the run over this many shards hosted in this thread (the parallel kernel without threads). */
  shards?: number;
  /**
   * Shards observe their own actors when the family allows it (local mode, see
   * src/engine/parallel.ts: runLocalMode); a run local mode cannot take, or a try it gives up, runs
   * on one kernel (windows are slower). false: the shards run in windows, always. Default true.
   */
  local?: boolean;
  /** Local mode: events a shard runs per call (SimulationOptions.localChunk). */
  localChunk?: number;
  /** Replace machines by role (tests use deliberately faulty ones). */
  machines?: Record<string, import('xstate').AnyStateMachine>;
}

/** What a shard's thread needs to build its part of the run (besides its number and actors). */
export interface ShardSpec {
  text: string;
  file: string;
  overrides: Pick<RunOverrides, 'seed' | 'untilUs' | 'backend' | 'core'>;
  /** Hash the trace lines. */
  hashes: boolean;
  /** Hand the trace lines over (a trace file is written). */
  lines: boolean;
  /** The observer calls the coordinator's observers take. */
  hooks: ObserverHook[];
  /** Local mode: the shard runs its own observers (see {@link createLocalShard}). */
  local: boolean;
}

/** What a shard in local mode read off its own observers at the end. */
export interface LocalObserved {
  invariants: InvariantResult[];
  metrics: Record<string, unknown>;
}

/** A local shard's calls, answered at once (its host makes them asynchronous). */
export interface LocalShardFace {
  start(): LocalChunk;
  run(bound: EventKey | undefined, maxEvents: number, pause: boolean): LocalChunk;
  finish(endUs: number, lastUs: number): LocalEnd & { observed: LocalObserved; violated: boolean };
  recycle(buffers: readonly ArrayBufferLike[]): void;
}

/**
 * A shard in local mode, built from its own preparation of the scenario (its own checker, metrics
 * and completion, seeing only its actors' events). Used in this thread and on worker threads.
 */
export function createLocalShard(
  prepared: PreparedScenario,
  shard: { index: number; owned: Uint8Array; hashes: boolean; lines?: boolean; progress?: Float64Array },
): LocalShardFace {
  const { built, simOptions } = prepared;
  const shardComplete = built.shardComplete;
  if (!shardComplete) throw new Error(`${prepared.scenario.protocol} has no shard-local observing`);
  const index = simOptions.indexByName ?? indexNames(simOptions.actors.map((a) => a.name));
  const owns = (name: string): boolean => shard.owned[index.get(name) ?? -1] === 1;
  const kernel = createShardKernel(shardKernelOptions(simOptions, shard.index), {
    index: shard.index,
    owned: shard.owned,
    hashes: shard.hashes,
    lines: shard.lines === true,
    hooks: [],
    progress: shard.progress,
    local: {
      observers: simOptions.observers ?? [],
      complete: simOptions.stopWhen ? () => shardComplete(owns) : undefined,
    },
  });
  const violated = (): boolean => built.checker.results().some((r) => r.violationCount > 0);
  const mark = (c: LocalChunk): LocalChunk => (violated() ? { ...c, violated: true } : c);
  return {
    start: () => mark(kernel.startLocal()),
    run: (bound, maxEvents, pause) => mark(kernel.runLocal(bound, maxEvents, pause)),
    recycle: (buffers) => kernel.recycleLines(buffers),
    finish: (endUs, lastUs) => {
      const end = kernel.finishLocal(endUs, lastUs);
      return { ...end, observed: { invariants: built.checker.results(), metrics: built.metrics() }, violated: violated() };
    },
  };
}

/** Numbers added up, objects merged key by key (the metrics of a family with shard-local observing are sums). */
export function sumMetrics(parts: readonly Record<string, unknown>[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const part of parts) {
    for (const [k, v] of Object.entries(part)) {
      const have = out[k];
      if (typeof v === 'number') out[k] = (typeof have === 'number' ? have : 0) + v;
      else if (v !== null && typeof v === 'object' && !Array.isArray(v))
        out[k] = sumMetrics([(have as Record<string, unknown>) ?? {}, v as Record<string, unknown>]);
      else if (have === undefined) out[k] = v;
      else if (JSON.stringify(have) !== JSON.stringify(v)) throw new Error(`metric ${k} differs between shards and is no sum`);
    }
  }
  return out;
}

/**
 * Starts the shards of `plan` from `first` on somewhere (worker threads; the ones before `first` run
 * in this thread) and hands back their handles.
 */
export type ShardHost = (spec: ShardSpec, plan: ShardPlan, names: readonly string[], first: number) => Promise<ShardHandle[]>;

export interface InvariantReport extends InvariantResult {
  /** The command that replays the run up to the first violation. */
  replay?: string;
}

export interface RunSummary {
  scenario: string;
  file: string;
  protocol: string;
  mode: string;
  seed: number;
  backend: BackendName;
  virtualTimeUs: number;
  virtualTime: string;
  stoppedBecause: 'until' | 'idle' | 'complete' | 'stalled';
  events: number;
  messages: { sent: number; delivered: number; dropped: Record<string, number>; duplicated: number; byType: Record<string, number> };
  timersFired: number;
  faults: number;
  invariants: InvariantReport[];
  expectations: { met: boolean; failures: string[] };
  metrics: Record<string, unknown>;
  actorErrors: { t: number; actor: string; message: string }[];
  traceHash?: string;
  wallMs?: number;
  eventsPerSecond?: number;
  messagesPerSecond?: number;
  /** Figures of a run on shards. */
  parallel?: ParallelStats;
}

function toDist(d: DurationDistInput, us: (t: string) => number): LatencyDist {
  if (typeof d === 'string') return { dist: 'constant', valueUs: us(d) };
  switch (d.dist) {
    case 'constant':
      return { dist: 'constant', valueUs: us(d.value) };
    case 'uniform':
      return { dist: 'uniform', minUs: us(d.min), maxUs: us(d.max) };
    case 'exponential':
      return { dist: 'exponential', meanUs: us(d.mean), minUs: d.min === undefined ? 0 : us(d.min) };
    case 'lognormal':
      return { dist: 'lognormal', medianUs: us(d.median), p99Us: us(d.p99) };
  }
}

const globToRegExp = (glob: string): RegExp =>
  new RegExp(
    '^' +
      glob
        .split('*')
        .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
        .join('.*') +
      '$',
  );

/** Builds the simulation for a scenario (also used by tests that need the parts). */
/**
 * Checks a scenario against the protocol family and builds everything a run needs, up to the
 * kernel's options and the shard placement — but no kernel (a shard's worker thread builds its own).
 */
export function prepareScenario(loaded: LoadedScenario, overrides: RunOverrides = {}) {
  const s: Scenario = loaded.scenario;
  const problems: ScenarioProblem[] = [];
  const fail = (path: Path, message: string): void => void problems.push(loaded.locate(path, message));
  const us = (text: string): number => parseDurationUs(text) as number; // validated by the schema
  const family = familyOf(s.protocol)!;
  const mode = s.mode ?? family.defaultMode;

  // Names.
  const declared: DeclaredActor[] = [];
  s.actors.forEach((a, i) => {
    const entry = a as { role: string; count: number; name?: string };
    const base = entry.name ?? entry.role.split('.').pop()!;
    const path = ['actors', i]; // shared by the entry's actors (read only)
    for (let k = 0; k < entry.count; k++) {
      const name = entry.count === 1 && entry.name !== undefined ? base : `${base}-${k}`;
      declared.push({ name, role: entry.role, params: a, path });
    }
  });
  const indexByName = new Map<string, number>();
  declared.forEach((d, i) => {
    if (indexByName.has(d.name)) fail([...d.path, 'name'], `duplicate actor name ${JSON.stringify(d.name)}`);
    indexByName.set(d.name, i);
  });

  const selectIndices = (sel: string | string[], path: Path): number[] => {
    const list = Array.isArray(sel) ? sel : [sel];
    const out = new Set<number>();
    list.forEach((item, k) => {
      const itemPath = Array.isArray(sel) ? [...path, k] : path;
      const before = out.size;
      if (indexByName.has(item)) out.add(indexByName.get(item)!);
      else if (item.includes('*')) {
        const re = globToRegExp(item);
        declared.forEach((d, i) => {
          if (re.test(d.name)) out.add(i);
        });
      } else
        declared.forEach((d, i) => {
          if (d.role === item) out.add(i);
        });
      if (out.size === before && !list.slice(0, k).includes(item))
        fail(itemPath, `no actor matches ${JSON.stringify(item)} (actors: ${summariseNames(declared.map((d) => d.name))})`);
    });
    return [...out].sort((a, b) => a - b);
  };

  const checkDist = (d: LatencyDist, path: Path): LatencyDist => {
    if (d.dist === 'uniform' && d.minUs > d.maxUs) fail(path, 'expected min ≤ max');
    if (d.dist === 'lognormal' && d.p99Us < d.medianUs) fail(path, 'expected median ≤ p99');
    if (d.dist === 'lognormal' && d.medianUs === 0) fail(path, 'expected a median above 0');
    return d;
  };

  // Network.
  const linkOf = (
    base: LinkParams,
    o: { latency?: DurationDistInput; loss?: number; duplicate?: number; ordering?: LinkParams['ordering'] },
    path: Path,
  ): LinkParams => {
    const p: LinkParams = {
      latency: o.latency === undefined ? base.latency : toDist(o.latency, us),
      loss: o.loss ?? base.loss,
      duplicate: o.duplicate ?? base.duplicate,
      ordering: o.ordering ?? base.ordering,
    };
    if (p.duplicate > 0 && p.ordering !== 'unordered-duplicating')
      fail([...path, 'duplicate'], `duplicate needs ordering: unordered-duplicating, got ordering ${p.ordering}`);
    if (o.latency !== undefined) checkDist(p.latency, [...path, 'latency']);
    return p;
  };
  const defaults = linkOf({ latency: { dist: 'constant', valueUs: 1000 }, loss: 0, duplicate: 0, ordering: 'ordered' }, s.network, [
    'network',
  ]);
  const links: LinkRule[] = s.network.links.map((l, i) => ({
    from: new Set(selectIndices(l.from, ['network', 'links', i, 'from'])),
    to: new Set(selectIndices(l.to, ['network', 'links', i, 'to'])),
    params: linkOf(defaults, l, ['network', 'links', i]),
  }));
  const network: NetworkSpec = { defaults, links };
  const bound = Math.max(latencyBoundUs(defaults.latency), ...links.map((l) => latencyBoundUs(l.params.latency)));

  // Faults.
  const faults: ScheduledFault[] = [];
  let cutId = 0;
  s.faults.forEach((f, i) => {
    const path: Path = ['faults', i];
    const at = us(f.at);
    const push = (atUs: number, action: FaultAction, label: string): void => void faults.push({ atUs, action, label });
    const after = (key: string, t: string | undefined): number | undefined => {
      if (t === undefined) return undefined;
      const v = us(t);
      if (v < at) fail([...path, key], `expected a time after at (${f.at}), got ${JSON.stringify(t)}`);
      return v;
    };
    const names = (idx: number[]): string => summariseNames(idx.map((k) => declared[k].name));
    if (f.crash !== undefined) {
      const actors = selectIndices(f.crash, [...path, 'crash']);
      push(at, { kind: 'crash', actors }, `crash ${names(actors)}`);
      const r = after('restart', f.restart);
      if (r !== undefined) push(r, { kind: 'restart', actors }, `restart ${names(actors)}`);
    } else if (f.pause !== undefined) {
      const actors = selectIndices(f.pause, [...path, 'pause']);
      push(at, { kind: 'pause', actors }, `pause ${names(actors)}`);
      const r = after('resume', f.resume);
      if (r !== undefined) push(r, { kind: 'resume', actors }, `resume ${names(actors)}`);
    } else if (f.shutdown !== undefined) {
      const actors = selectIndices(f.shutdown, [...path, 'shutdown']);
      push(at, { kind: 'shutdown', actors }, `shutdown ${names(actors)}`);
    } else if (f.skew !== undefined) {
      const actors = selectIndices(f.skew, [...path, 'skew']);
      const neg = f.by!.trim().startsWith('-');
      const byUs = (neg ? -1 : 1) * us(f.by!.replace('-', ''));
      push(at, { kind: 'skew', actors, byUs }, `skew ${names(actors)} by ${f.by}`);
    } else if (f.partition !== undefined) {
      const id = ++cutId;
      if (Array.isArray(f.partition)) {
        const groups = f.partition.map((g, k) => (g === 'rest' ? null : new Set(selectIndices(g, [...path, 'partition', k]))));
        const listed = new Set(groups.flatMap((g) => (g ? [...g] : [])));
        const rest = new Set(declared.map((_, k) => k).filter((k) => !listed.has(k)));
        const resolved = groups.map((g) => g ?? rest);
        push(at, { kind: 'partition', id, groups: resolved }, `partition ${resolved.map((g) => `[${names([...g])}]`).join(' | ')}`);
      } else {
        const from = new Set(selectIndices(f.partition.from, [...path, 'partition', 'from']));
        const to = new Set(selectIndices(f.partition.to, [...path, 'partition', 'to']));
        push(at, { kind: 'partition-one-way', id, from, to }, `partition ${names([...from])} -/-> ${names([...to])}`);
      }
      const h = after('heal', f.heal);
      if (h !== undefined) push(h, { kind: 'heal', id }, `heal partition ${id}`);
    } else if (f.hold !== undefined) {
      const id = ++cutId;
      const from = new Set(selectIndices(f.hold.from, [...path, 'hold', 'from']));
      const to = new Set(selectIndices(f.hold.to, [...path, 'hold', 'to']));
      push(at, { kind: 'hold', id, from, to }, `hold ${names([...from])} -> ${names([...to])}`);
      const r = after('release', f.release);
      if (r !== undefined) push(r, { kind: 'release', id }, `release hold ${id}`);
    } else if (f.inject !== undefined) {
      const parsed = family.parseMessage(f.inject.msg);
      if (!parsed.ok) fail([...path, 'inject', 'msg'], `not a valid ${family.protocol} message: ${parsed.error}`);
      const to = selectIndices(f.inject.to, [...path, 'inject', 'to']);
      for (const k of to)
        push(
          at,
          { kind: 'inject', from: f.inject.from, to: k, msg: f.inject.msg as { type: string } },
          `inject ${f.inject.msg.type} ${f.inject.from} -> ${declared[k].name}`,
        );
    }
  });

  const enabled = new Set(s.invariants === 'all' ? family.invariants.map((i) => i.id) : s.invariants);
  for (const list of ['violated', 'held'] as const) {
    s.expect[list].forEach((id, i) => {
      if (!enabled.has(id)) fail(['expect', list, i], `expects ${id}, which the invariants list does not enable`);
    });
  }

  // The simulation is made below; until then there is no trace to show.
  let recentTrace: () => import('../engine/createSimulation.js').TraceRecord[] = () => [];
  const seed = overrides.seed ?? s.seed;
  const ctx: FamilyBuildContext = {
    mode,
    seed,
    core: overrides.core ?? 'wasm',
    fail,
    actors: declared,
    enabledInvariants: enabled,
    latencyBoundUs: bound,
    durationUs: us,
    dist: (d, path) => checkDist(toDist(d, us), path),
    indexOf: (name) => indexByName.get(name),
    select: (sel, path) => selectIndices(sel, path).map((k) => declared[k].name),
    recentTrace: () => recentTrace(),
  };
  const built = family.build(ctx);
  if (problems.length > 0) throw new ScenarioError(problems);
  if ((built.shardComplete !== undefined) !== (family.shardLocal === true))
    throw new Error(`${family.protocol}: shardLocal must be set exactly when its builds give shardComplete`);
  withHostedActors(built.actors, faults);
  if (overrides.machines) {
    for (const a of built.actors) {
      const m = overrides.machines[a.role];
      if (m) a.machine = m;
    }
  }

  const untilUs = overrides.untilUs ?? us(s.duration);
  const simOptions: SimulationOptions = {
    seed,
    actors: built.actors,
    network,
    faults,
    untilUs,
    backend: overrides.backend,
    traceSink: overrides.traceSink,
    traceBytes: overrides.traceBytes,
    hash: overrides.hash,
    localChunk: overrides.localChunk,
    observers: [...built.observers, ...(overrides.observers ?? [])],
    stopWhen: s.stopWhen === 'complete' ? built.isComplete : undefined,
    onProgress: overrides.onProgress,
    world: built.world,
    // The family's actors are the declared ones, in order (all do so today): the kernel takes this index.
    indexByName: sameNames(built.actors, declared) ? indexByName : undefined,
  };
  const workers = overrides.workers ?? overrides.shards;
  const shardPlan =
    workers === undefined
      ? undefined
      : planShards({
          actors: built.actors.map(() => ({})),
          network,
          workers,
          together: togetherOf(built, faults),
          affinity: built.affinity,
        });
  const setRecent = (f: typeof recentTrace): void => {
    recentTrace = f;
  };
  return { scenario: s, family, mode, seed, untilUs, built, enabled, simOptions, shardPlan, setRecent };
}

/** Do `a` and `b` name the same actors in the same order? */
function sameNames(a: readonly { name: string }[], b: readonly { name: string }[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i].name !== b[i].name) return false;
  return true;
}

/** The overrides a shard's worker builds the scenario with (the same as the main thread's build). */
export function shardOverrides(o: ShardSpec['overrides']): ShardSpec['overrides'] {
  return { seed: o.seed, untilUs: o.untilUs, backend: o.backend, core: o.core };
}

/**
 * Why a run split over shards must see every event in this thread, in the one kernel's order (so
 * only windows could run it), or undefined when its shards can observe their own actors (local mode).
 */
function needsWindows(prepared: Pick<PreparedScenario, 'built' | 'scenario' | 'simOptions'>, overrides: RunOverrides): string | undefined {
  if (prepared.built.shardComplete === undefined) {
    const local = FAMILIES.filter((f) => f.shardLocal).map((f) => `${f.protocol}'s`);
    return `${prepared.scenario.protocol}'s invariants are checked over all actors at once (only ${local.join(' and ')} are checked shard by shard)`;
  }
  if (prepared.simOptions.traceSink !== undefined && overrides.traceRestart === undefined)
    return 'a trace sink that cannot start over is written in the one merged order';
  if ((overrides.observers ?? []).length > 0) return 'observers of the caller see every event in order';
  return undefined;
}

/** Prepares a run (see {@link prepareScenario}) and makes its simulation: one kernel, or shards. */
export function planScenario(loaded: LoadedScenario, overrides: RunOverrides = {}) {
  const { setRecent, ...prepared } = prepareScenario(loaded, overrides);
  const { simOptions } = prepared;
  let { shardPlan } = prepared;
  // Windows are slower than one thread (README, "Parallel runs": the coordinator merges and observes
  // every event): a run that would need them runs on one kernel, unless they are asked for.
  const forceWindows = overrides.local === false;
  const windowsOnly = shardPlan && shardPlan.shards > 1 ? needsWindows(prepared, overrides) : undefined;
  if (shardPlan && windowsOnly !== undefined && !forceWindows)
    shardPlan = oneShard(shardPlan, `${windowsOnly}, which needs windows, and windows are slower than one thread (--windows forces them)`);
  let sim: Simulation | ShardedSimulation;
  // One shard is the one kernel itself (and a bulk world, whose checker reads it as it steps, needs it).
  if (shardPlan === undefined || shardPlan.shards === 1) sim = createSimulation(simOptions);
  else {
    const plan = shardPlan;
    const hashes = simOptions.traceSink !== undefined || simOptions.hash === true;
    const lines = simOptions.traceSink !== undefined;
    const clock = overrides.wallClockMs;
    let threads: ((local: boolean, first: number) => Promise<ShardHandle[]>) | undefined;
    if (overrides.workers !== undefined) {
      const host = overrides.threads;
      if (!host) throw new Error('workers needs a thread host (overrides.threads: spawnThreadShards)');
      if (overrides.machines) throw new Error('machines replaced by role cannot cross to worker threads: use shards');
      threads = (local, first) =>
        host(
          {
            text: loaded.text,
            file: loaded.file,
            overrides: shardOverrides(overrides),
            hashes,
            lines,
            hooks: hooksOf(simOptions.observers ?? []),
            local,
          },
          plan,
          simOptions.actors.map((a) => a.name),
          first,
        );
    }
    if (forceWindows) sim = createShardedSimulation(simOptions, plan, threads && (() => threads(false, 0)), clock);
    else if (threads) {
      // Local mode on threads: shard 0 runs here, on this thread's own build (the plan's: no third
      // build of the scenario, no idle thread), the others on worker threads. Its observers are then
      // spent: a try given up is redone on a fresh build.
      const here = hereShard(() => createLocalShard({ ...prepared, setRecent }, { index: 0, owned: ownedBy(plan, 0), hashes, lines }));
      // Shard 0 is made and started while the threads finish building theirs: the others' calls wait for them.
      const shards = (): Promise<ShardHandle[]> => Promise.resolve([here, ...startingShards(threads(true, 1), plan.shards - 1)]);
      sim = withFallback(
        createShardedSimulation(simOptions, plan, shards, clock, 'local'),
        () => rebuiltKernel(loaded, overrides, plan),
        overrides.traceRestart,
      );
    } else {
      // Local mode in this thread (tests): every shard on a build of its own; this thread's
      // observers stay untouched, and a try given up is redone on them, on one kernel.
      const shards = (): Promise<ShardHandle[]> =>
        Promise.resolve(
          Array.from({ length: plan.shards }, (_, index) =>
            hereShard(() => createLocalShard(prepareScenario(loaded, overrides), { index, owned: ownedBy(plan, index), hashes, lines })),
          ),
        );
      sim = withFallback(
        createShardedSimulation(simOptions, plan, shards, clock, 'local'),
        () => oneKernel(simOptions, plan, clock),
        overrides.traceRestart,
      );
    }
  }
  setRecent(() => sim.recent());
  return { ...prepared, shardPlan, sim };
}

/** `plan`'s actors on one shard, and why (the only reason that matters now). */
function oneShard(plan: ShardPlan, why: string): ShardPlan {
  return {
    shards: 1,
    shardOf: new Int32Array(plan.shardOf.length),
    sizes: [plan.shardOf.length],
    lookaheadUs: Infinity,
    notes: [why],
  };
}

/** Handles of shards being started elsewhere (`started` gives them, in order): each call waits for them first. */
function startingShards(started: Promise<ShardHandle[]>, count: number): ShardHandle[] {
  const all = started.then((hs) => {
    if (hs.length !== count) throw new Error(`the thread host started ${hs.length} shards, ${count} were asked for`);
    return hs;
  });
  all.catch(() => undefined);
  const at = (i: number): Promise<ShardHandle> => all.then((hs) => hs[i]);
  return Array.from({ length: count }, (_, i) => ({
    start: async () => (await at(i)).start(),
    advance: async (incoming, endUs, maxEvents) => (await at(i)).advance(incoming, endUs, maxEvents),
    // Shards that never started have nothing to close (spawnThreadShards closed the ones that did).
    close: () =>
      at(i).then(
        (h) => h.close(),
        () => undefined,
      ),
    local: {
      start: async () => (await at(i)).local!.start(),
      run: async (bound, maxEvents, pause) => (await at(i)).local!.run(bound, maxEvents, pause),
      finish: async (endUs, lastUs) => (await at(i)).local!.finish(endUs, lastUs),
      recycle: (buffers) =>
        void at(i).then(
          (h) => h.local!.recycle?.(buffers),
          () => undefined,
        ),
    },
  }));
}

/** Events a shard in this thread runs per call before the event loop turns (and answers the worker threads). */
const HERE_SLICE = 2000;

/**
 * A shard in local mode hosted in this thread, its face made at its start. Every call waits for the
 * event loop to turn first, and a run call runs at most {@link HERE_SLICE} events: the worker
 * threads' answers are taken, and their next calls made, between slices, so they never wait long.
 */
function hereShard(build: () => LocalShardFace): ShardHandle {
  let face: LocalShardFace | undefined;
  let closed = false;
  /** The face, once the loop has turned; a call still queued when the run ended (closed) runs nothing. */
  const ready = async (): Promise<LocalShardFace> => {
    await eventLoopTurn();
    if (closed) throw new Error('shard 0 closed');
    return (face ??= build());
  };
  const unused = (): Promise<never> => Promise.reject(new Error('a shard in this thread runs in local mode only'));
  return {
    here: true,
    start: unused,
    advance: unused,
    close() {
      closed = true;
      face = undefined;
      return Promise.resolve();
    },
    local: {
      start: async () => (await ready()).start(),
      run: async (bound, maxEvents, pause) => (await ready()).run(bound, Math.min(maxEvents, HERE_SLICE), pause),
      finish: async (endUs, lastUs) => (await ready()).finish(endUs, lastUs),
      recycle: (buffers) => face?.recycle(buffers),
    },
  };
}

/**
 * The one kernel on a fresh build of the scenario (a local try given up, whose shard in this thread
 * has spent this thread's observers), with that build's observers' results as what was observed.
 */
function rebuiltKernel(loaded: LoadedScenario, overrides: RunOverrides, plan: ShardPlan): ShardedSimulation {
  const again = prepareScenario(loaded, overrides);
  const kernel = oneKernel(again.simOptions, plan, overrides.wallClockMs);
  again.setRecent(() => kernel.recent());
  return {
    ...kernel,
    async run() {
      const result = await kernel.run();
      const observed: LocalObserved[] = [{ invariants: again.built.checker.results(), metrics: again.built.metrics() }];
      return { ...result, observed };
    },
  };
}

/** The one kernel with the face of a run on shards (a local try given up is redone on it). */
function oneKernel(opts: SimulationOptions, plan: ShardPlan, clock: (() => number) | undefined): ShardedSimulation {
  const kernel = createSimulation(opts);
  return {
    names: kernel.names,
    recent: () => kernel.recent(),
    run() {
      const t0 = clock?.() ?? 0;
      const result = kernel.run();
      const wallMs = (clock?.() ?? 0) - t0;
      return Promise.resolve({ ...result, parallel: { ...statsOf(plan, 1, 'one-kernel'), wallMs, busyMs: [wallMs] } });
    },
  };
}

/**
 * Runs `first` (local mode); if it is abandoned, redoes the run with `then()` (one kernel) and says
 * why in the figures, after `restart` tells the trace sink that its lines so far are void. The same
 * run either way: only the time differs.
 */
function withFallback(first: ShardedSimulation, then: () => ShardedSimulation, restart?: () => void): ShardedSimulation {
  let current = first;
  return {
    names: first.names,
    recent: () => current.recent(),
    async run() {
      try {
        return await first.run();
      } catch (err) {
        if (!(err instanceof LocalModeAbandoned)) throw err;
        restart?.();
        current = then();
        const result = await current.run();
        result.parallel.abandoned = err.reason;
        return result;
      }
    },
  };
}

export type PreparedScenario = ReturnType<typeof prepareScenario>;

/**
 * Actors that must share a shard whatever the links: all of them with a bulk world (it delivers to
 * its actors at once), and the two sides of a hold (a held message is released through its link's
 * state, which lives with the sender).
 */
function togetherOf(
  built: { actors: readonly unknown[]; world?: unknown },
  faults: ScheduledFault[],
): { members: number[]; why: string }[] {
  if (built.world) return [{ members: built.actors.map((_, i) => i), why: 'a bulk world delivers to all its actors at once' }];
  const out: { members: number[]; why: string }[] = [];
  // An actor and the actors living inside it talk in process (0 µs).
  for (const [h, g] of guestsOf(built.actors as readonly ActorDefinition[]))
    out.push({ members: [h, ...g], why: 'an actor and the actors living inside it' });
  for (const f of faults) {
    if (f.action.kind === 'hold') out.push({ members: [...f.action.from, ...f.action.to], why: `both sides of ${f.label}` });
  }
  return out;
}

/** The actors living inside each actor (`ActorDefinition.host`), by index. */
function guestsOf(actors: readonly ActorDefinition[]): Map<number, number[]> {
  // Most families have none: no index of a million names for nothing.
  if (!actors.some((a) => a.host !== undefined)) return new Map();
  const index = indexNames(actors.map((a) => a.name));
  const guests = new Map<number, number[]>();
  actors.forEach((a, i) => {
    const h = a.host === undefined ? undefined : index.get(a.host);
    if (h === undefined) return;
    const list = guests.get(h);
    if (list) list.push(i);
    else guests.set(h, [i]);
  });
  return guests;
}

/**
 * Faults follow the actors they name into the actors living inside them (`ActorDefinition.host`):
 * crashing a container crashes its agents; a partition puts them on their host's side.
 */
function withHostedActors(actors: readonly ActorDefinition[], faults: ScheduledFault[]): void {
  const guests = guestsOf(actors);
  if (guests.size === 0) return;
  const widen = (set: Set<number>): void => {
    for (const m of [...set]) for (const g of guests.get(m) ?? []) set.add(g);
  };
  const widenList = (list: number[]): number[] => list.flatMap((m) => [m, ...(guests.get(m) ?? [])]);
  for (const f of faults) {
    const a = f.action;
    switch (a.kind) {
      case 'crash':
      case 'restart':
      case 'pause':
      case 'resume':
      case 'shutdown':
      case 'skew':
        a.actors = widenList(a.actors);
        break;
      case 'partition':
        for (const g of a.groups) widen(g as Set<number>);
        break;
      case 'partition-one-way':
      case 'hold':
        widen(a.from as Set<number>);
        widen(a.to as Set<number>);
        break;
      default:
    }
  }
}

export type ScenarioPlan = ReturnType<typeof planScenario>;

/** Runs a loaded scenario on one kernel (shards and threads: {@link runScenarioAsync}). */
export function runScenario(loaded: LoadedScenario, overrides: RunOverrides = {}): RunSummary {
  return runPlanned(loaded, planScenario(loaded, overrides), overrides);
}

/** Runs a loaded scenario, on shards or worker threads when the overrides ask for them. */
export function runScenarioAsync(loaded: LoadedScenario, overrides: RunOverrides = {}): Promise<RunSummary> {
  return runPlannedAsync(loaded, planScenario(loaded, overrides), overrides);
}

type SummaryOverrides = Pick<RunOverrides, 'backend' | 'core' | 'wallClockMs'>;

/** Runs a scenario planned by {@link planScenario} on one kernel (once: a plan holds the simulation's state). */
export function runPlanned(loaded: LoadedScenario, plan: ScenarioPlan, overrides: SummaryOverrides = {}): RunSummary {
  const sim = plan.sim;
  if (!('actorState' in sim)) throw new Error('a run on shards is asynchronous: use runPlannedAsync');
  const t0 = overrides.wallClockMs?.();
  const result = sim.run();
  return summarise(loaded, plan, result, t0 === undefined ? undefined : overrides.wallClockMs!() - t0, overrides);
}

/** Runs a scenario planned by {@link planScenario}, on one kernel or on shards. */
export async function runPlannedAsync(loaded: LoadedScenario, plan: ScenarioPlan, overrides: SummaryOverrides = {}): Promise<RunSummary> {
  const t0 = overrides.wallClockMs?.();
  const result = await plan.sim.run();
  const observed = 'observed' in result ? (result.observed as LocalObserved[] | undefined) : undefined;
  const summary = summarise(loaded, plan, result, t0 === undefined ? undefined : overrides.wallClockMs!() - t0, overrides, observed);
  if ('parallel' in result) summary.parallel = result.parallel;
  return summary;
}

function summarise(
  loaded: LoadedScenario,
  plan: ScenarioPlan,
  result: RunResult,
  wallMs: number | undefined,
  overrides: SummaryOverrides,
  observed?: LocalObserved[],
): RunSummary {
  const { scenario: s, built, seed } = plan;
  const backend = overrides.backend ?? 'flat';
  // Local mode: the shards' own checkers and metrics, as one.
  const results = observed ? mergeResults(observed.map((o) => o.invariants)) : built.checker.results();
  const invariants: InvariantReport[] = results.map((r) => {
    const first = r.violations[0];
    if (!first) return r;
    const until = formatDurationUs(first.t + 1000);
    return {
      ...r,
      replay: `protosim run ${loaded.file} --seed ${seed}${backend !== 'flat' ? ` --backend ${backend}` : ''}${overrides.core === 'js' ? ' --core js' : ''} --until ${until} --trace`,
    };
  });

  const failures: string[] = [];
  for (const id of s.expect.violated) {
    if (invariants.find((i) => i.id === id)?.status !== 'violated')
      failures.push(`expected ${id} to be caught as violated, but it ${statusText(invariants.find((i) => i.id === id)?.status)}`);
  }
  for (const id of s.expect.held) {
    const st = invariants.find((i) => i.id === id)?.status;
    if (st !== 'held') failures.push(`expected ${id} to hold (and be exercised), but it ${statusText(st)}`);
  }
  for (const inv of invariants) {
    if (inv.status === 'violated' && !s.expect.violated.includes(inv.id))
      failures.push(`${inv.id} was violated (${inv.violationCount}×): ${inv.violations[0].message}`);
  }
  for (const e of result.actorErrors.slice(0, 5)) failures.push(`actor ${e.actor} threw at ${formatDurationUs(e.t)}: ${e.message}`);
  if (result.stall) {
    failures.push(
      `the run stalled: ${result.stall.events.toLocaleString('en-US')} events at ${formatDurationUs(result.stall.atUs)} without virtual time advancing (a zero-delay loop?)`,
    );
  }

  const c = result.counters;
  return {
    scenario: s.name,
    file: loaded.file,
    protocol: s.protocol,
    mode: plan.mode,
    seed,
    backend,
    virtualTimeUs: result.reachedUs,
    virtualTime: formatDurationUs(result.reachedUs),
    stoppedBecause: result.stoppedBecause,
    events: c.events,
    // Maps by key (not by first occurrence): the same on one kernel and on shards.
    messages: {
      sent: c.messagesSent,
      delivered: c.messagesDelivered,
      dropped: byKey(c.dropped),
      duplicated: c.duplicated,
      byType: byKey(c.sentByType),
    },
    timersFired: c.timersFired,
    faults: c.faults,
    invariants,
    expectations: { met: failures.length === 0, failures },
    metrics: Object.fromEntries(
      Object.entries(observed ? sumMetrics(observed.map((o) => o.metrics)) : built.metrics()).map(([k, v]) => [
        k,
        v !== null && typeof v === 'object' && !Array.isArray(v) ? byKey(v as Record<string, unknown>) : v,
      ]),
    ),
    actorErrors: result.actorErrors,
    traceHash: result.traceHash,
    wallMs,
    eventsPerSecond: wallMs ? Math.round((c.events / wallMs) * 1000) : undefined,
    messagesPerSecond: wallMs ? Math.round((c.messagesSent / wallMs) * 1000) : undefined,
  };
}

/** A copy of `o` with its keys, and those of the plain objects in it, in sorted order. */
function byKey<T extends Record<string, unknown>>(o: T): T {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o).sort()) {
    const v = o[k];
    out[k] = v !== null && typeof v === 'object' && !Array.isArray(v) ? byKey(v as Record<string, unknown>) : v;
  }
  return out as T;
}

function statusText(st: string | undefined): string {
  return st === 'held' ? 'held' : st === 'violated' ? 'was violated' : 'was not exercised';
}

function summariseNames(names: string[]): string {
  return names.length <= 6 ? names.join(', ') : `${names.slice(0, 5).join(', ')}, … (${names.length})`;
}
