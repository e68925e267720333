/**
 * The entry of a shard's worker thread (shardThreads.ts starts it): builds the run from the
 * scenario exactly as the main thread does (ahead of time in a warm thread: nodeThread.ts, from the
 * main thread's parse; else from the file's text), keeps the shard's own actors, and answers the
 * coordinator's calls. Runs on Node (worker_threads) and on Deno (a module Web Worker).
 *
 * PROTOSIM_TEST_KILL_SHARD=<shard>:<events>[:hang|:throw] makes that shard's thread exit (spin forever, throw)
 * once it has run that many events — how the tests kill a worker mid-run. PROTOSIM_TEST_NO_PARSE=1
 * makes a parse of the text here fail — how the tests show that a warm thread builds from the
 * main thread's parse.
 */
import * as Comlink from 'comlink';
import type { Endpoint } from 'comlink';
import type { LoadedScenario } from '../scenario/loadScenario.js';
import type { LocalShardFace } from '../scenario/runScenario.js';
import { createLocalShard, prepareScenario } from '../scenario/runScenario.js';
import type { LocalChunk } from '../engine/createSimulation.js';
import type { LogLines } from '../engine/hashLog.js';
import type { ShardKernel, ShardWindow } from '../engine/createSimulation.js';
import { createShardKernel } from '../engine/createSimulation.js';
import type { ShardStep } from '../engine/parallel.js';
import { ownedBy, shardKernelOptions } from '../engine/parallel.js';
import type { AheadSpec, PrepareSpec, ShardInit, ShardWorkerApi, WindowPort, WindowReply, WindowRequest, Wired } from './shardThreads.js';
import { envVar, onDeno, packEvents, prepareKey, unpackEvents } from './shardThreads.js';
import { nodePortEndpoint } from './threadPort.js';
import { SlabSender } from './slabs.js';

/** The scenario built ahead of init (a warm thread), and for which spec; maybe its local shard too. */
let warm:
  | {
      key: string;
      prepared: ReturnType<typeof prepareScenario>;
      shard?: { index: number; hashes: boolean; lines: boolean; owned: Uint8Array; face: LocalShardFace; started: LocalChunk };
    }
  | undefined;
let kernel: ShardKernel | undefined;
let local: LocalShardFace | undefined;
/** The local shard's start, when it was made and started ahead of init. */
let startedAhead: LocalChunk | undefined;
/** The last prepare call, until it is done. */
let preparing: Promise<void> | undefined;
let ran = 0;
let killAfter = Infinity;
let killBy: 'exit' | 'hang' | 'throw' = 'exit';

function killThread(): never {
  if (killBy === 'hang') for (;;);
  // Deno tells the main thread only of an uncaught error, not of a worker that closes itself.
  if (onDeno || killBy === 'throw') throw new Error('killed by PROTOSIM_TEST_KILL_SHARD');
  return (globalThis as unknown as { process: { exit(code: number): never } }).process.exit(70);
}

const step = (w: ShardWindow, t0: number): ShardStep => {
  ran += w.groups.length;
  return { ...w, next: kernel!.nextTimeUs(), busyMs: performance.now() - t0 };
};

/**
 * Builds the scenario as the main thread does (the same file text and overrides give the same run);
 * `workers` adds its plan for that many workers, and changes nothing else in the build.
 */
function build(loaded: LoadedScenario, spec: PrepareSpec, workers?: number): ReturnType<typeof prepareScenario> {
  return prepareScenario(loaded, { ...spec.overrides, workers });
}

/**
 * The spec's file text parsed here, the parser (YAML and the schema) loaded the first time: only
 * when no parse came with the spec, or init has no build made ahead to take.
 */
async function loadedOf(spec: PrepareSpec): Promise<LoadedScenario> {
  if (envVar('PROTOSIM_TEST_NO_PARSE') === '1') throw new Error('PROTOSIM_TEST_NO_PARSE: this thread was to build from a parse');
  const { parseScenario } = await import('../scenario/loadScenario.js');
  return parseScenario(spec.text, spec.file);
}

/**
 * The main thread's parse as a LoadedScenario. Its build found no problem in it (the main thread
 * builds it too); should the build here find one, it cannot say where, so it throws and init
 * builds again from the text, where the problem is located and reported.
 */
function parsedOf(spec: PrepareSpec, scenario: NonNullable<PrepareSpec['scenario']>): LoadedScenario {
  return {
    file: spec.file,
    text: spec.text,
    scenario,
    locate(_path, message) {
      throw new Error(`${spec.file}: ${message} (built from the main thread's parse: init builds from the text)`);
    },
  };
}

/** Prepare calls so far: a call overtaken by a later one (while it loaded the parser) leaves no build. */
let prepares = 0;

/** Builds the scenario ahead of init, and with `ahead` makes and starts that local shard (see ShardWorkerApi.prepare). */
async function prepareAhead(spec: PrepareSpec, ahead?: AheadSpec): Promise<void> {
  const call = ++prepares;
  warm = undefined;
  // A scenario that does not build fails again in init, where the error is reported.
  try {
    const loaded = spec.scenario ? parsedOf(spec, spec.scenario) : await loadedOf(spec);
    if (call !== prepares) return;
    const prepared = build(loaded, spec, ahead?.workers);
    warm = { key: prepareKey(spec), prepared };
    const plan = prepared.shardPlan;
    if (ahead && plan && ahead.index < plan.shards && prepared.built.shardComplete) {
      const owned = ownedBy(plan, ahead.index);
      const face = createLocalShard(prepared, {
        index: ahead.index,
        owned,
        hashes: ahead.hashes,
        lines: ahead.lines,
        progress: new Float64Array(ahead.progress),
      });
      // Started too: starting the actors needs nothing from the other shards.
      warm.shard = { index: ahead.index, hashes: ahead.hashes, lines: ahead.lines, owned, face, started: face.start() };
    }
  } catch {
    if (call === prepares) warm = undefined;
  }
}

const api: ShardWorkerApi = {
  prepare(spec: PrepareSpec, ahead?: AheadSpec) {
    preparing = prepareAhead(spec, ahead);
    return preparing;
  },
  async init(spec: ShardInit) {
    // A prepare still loading the parser finishes first: init takes what it made. An earlier one
    // overtaken meanwhile makes nothing (prepareAhead), so nothing comes after init.
    await preparing;
    prepares++;
    const same = warm?.key === prepareKey(spec);
    const ahead = same ? warm!.shard : undefined;
    // The shard made ahead, if it is this one (and its kernel writes to this progress buffer).
    const taken =
      spec.local &&
      ahead !== undefined &&
      ahead.index === spec.index &&
      ahead.hashes === spec.hashes &&
      ahead.lines === spec.lines &&
      sameBytes(ahead.owned, spec.owned);
    // A build whose observers started another shard's actors is spent: only that shard may use it.
    const prepared = same && (ahead === undefined || taken) ? warm!.prepared : build(await loadedOf(spec), spec);
    warm = undefined;
    if (spec.local) {
      startedAhead = taken ? ahead!.started : undefined;
      local = taken
        ? ahead!.face
        : createLocalShard(prepared, {
            index: spec.index,
            owned: spec.owned,
            hashes: spec.hashes,
            lines: spec.lines,
            progress: new Float64Array(spec.progress),
          });
    } else
      kernel = createShardKernel(shardKernelOptions(prepared.simOptions, spec.index), {
        index: spec.index,
        owned: spec.owned,
        hashes: spec.hashes,
        lines: spec.lines,
        hooks: spec.hooks,
        progress: new Float64Array(spec.progress),
      });
    const kill = envVar('PROTOSIM_TEST_KILL_SHARD')?.split(':');
    if (kill && Number(kill[0]) === spec.index) {
      killAfter = Number(kill[1]);
      if (kill[2] === 'hang' || kill[2] === 'throw') killBy = kill[2];
    }
  },
  connect(port: WindowPort) {
    port.onmessage = (e) => {
      const { endUs, maxEvents, incoming } = e.data as WindowRequest;
      if (ran >= killAfter) killThread();
      const t0 = performance.now();
      kernel!.accept(unpackEvents(incoming));
      const w = step(kernel!.advance(endUs, maxEvents), t0);
      const reply: WindowReply = { ...w, outbox: packEvents(w.outbox) };
      port.postMessage(reply, [reply.outbox]);
    };
  },
  start() {
    return step(kernel!.start(), performance.now());
  },
  localStart() {
    const c = startedAhead ?? local!.start();
    startedAhead = undefined;
    return moved(c);
  },
  localRun(bound, maxEvents, pause) {
    if (ran >= killAfter) killThread();
    const c = local!.run(bound, Math.min(maxEvents, killAfter - ran), pause);
    ran = c.events;
    if (ran >= killAfter) killThread();
    return moved(c);
  },
  localRecycle(numbers) {
    local?.recycle(slabs.slabsOf(numbers));
  },
  localFinish(endUs, lastUs) {
    return moved(local!.finish(endUs, lastUs));
  },
};

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The slabs this shard's trace lines cross in (slabs.ts). */
const slabs = new SlabSender();

/** A local chunk or end with its hash log moved, not copied, and its trace lines in a shared slab. */
function moved<T extends { hashes?: Float64Array; lines?: LogLines }>(c: T): Wired<T> {
  const out = (c.lines === undefined ? c : { ...c, lines: slabs.send(c.lines) }) as Wired<T>;
  return Comlink.transfer(out, c.hashes ? [c.hashes.buffer as ArrayBuffer] : []);
}

async function endpoint(): Promise<Endpoint> {
  if (onDeno) return globalThis as unknown as Endpoint;
  const { parentPort } = await import('node:worker_threads');
  return nodePortEndpoint(parentPort!);
}

Comlink.expose(api, await endpoint());
