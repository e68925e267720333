/**
 * The `protosim` command line.
 *
 *   protosim run <scenario…> [--seed N] [--until DURATION] [--out DIR] [--json] [--trace] [--hash] [--backend flat|xstate] [--core wasm|js] [--workers N|auto] [--windows]
 *   protosim validate <scenario…>
 *
 * Exit codes: 0 every expectation met · 1 an invariant or expectation failed · 2 bad usage or invalid
 * input · 3 internal error.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CORE_KINDS } from '../buffers/bufferCore.js';
import type { CoreKind } from '../buffers/bufferCore.js';
import { ERROR_EXIT_CODES, isProtosimError, ProtosimError } from '../engine/errors.js';
import { BACKEND_NAMES } from '../engine/machineBackend.js';
import type { BackendName } from '../engine/machineBackend.js';
import { formatDurationUs, parseDurationUs } from '../engine/time.js';
import { loadScenario } from '../scenario/loadScenario.js';
import { planScenario, runPlannedAsync, shardOverrides } from '../scenario/runScenario.js';
import type { RunSummary } from '../scenario/runScenario.js';
import { familyOf } from '../scenario/families/index.js';
import { firstThreadShard, releaseWarmThreads, warmThreadCount } from '../threads/nodeThread.js';
import { prepareWarmThreads, spawnThreadShards } from '../threads/shardThreads.js';
import { createProgressBar } from './progressBar.js';
import type { ProgressBar } from './progressBar.js';
import { summaryText } from './summaryText.js';
import { MAX_WORKERS, RUN_OPTIONS, workersCount } from './threadHint.js';
import { openTraceFile } from './traceFile.js';
import type { TraceFile } from './traceFile.js';

export const EXIT = { OK: 0, FAILED: 1, USAGE: 2, INTERNAL: 3 } as const;

const HELP = `protosim — deterministic simulation of distributed protocols with XState actors

Usage:
  protosim run <scenario.yaml>… [options]   run scenarios, check invariants and expectations
  protosim validate <scenario.yaml>…        check scenario files without running them
  protosim --help | --version

Options for run:
  --seed N             seed (default: the scenario's seed)
  --until DURATION     stop at this virtual time (default: the scenario's duration), e.g. 90s, 2h
  --out DIR            parent folder of run folders (default: runs); never overwrites
  --trace              write trace.jsonl to the run folder (and print the trace hash)
  --hash               compute the trace hash without writing the trace
  --json               print the summary as JSON on stdout (one object per scenario; a list for several)
  --backend NAME       machine backend: flat (default, compiled) or xstate (XState's interpreter)
  --core NAME          buffer/rate core (Virdi): wasm (default, WebAssembly) or js (the TypeScript reference)
  --workers N|auto     worker threads to run on (default 1; auto: one per core); the trace stays the same
  --windows            with --workers: run the shards in conservative windows, never in local mode and
                       never on one thread instead (see README, "Parallel runs"); for comparing them

Exit codes: 0 expectations met · 1 an invariant or expectation failed · 2 bad usage or invalid input · 3 internal error`;

interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
  stderr: NodeJS.WriteStream;
  wallMs: () => number;
}

function usage(message: string): never {
  throw new ProtosimError('E_USAGE', `${message}\nRun protosim --help for usage.`);
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/**
 * Makes a run folder that did not exist: nothing a user wrote is ever overwritten. The folder itself
 * is created without `recursive`, so two runs at once can never get the same one.
 */
function freshRunDir(parent: string, base: string): string {
  try {
    mkdirSync(parent, { recursive: true });
  } catch (err) {
    const code = (err as { code?: string }).code;
    const why = code === 'EEXIST' || code === 'ENOTDIR' ? 'it (or a folder above it) is a file, not a folder' : (code ?? String(err));
    throw new ProtosimError('E_USAGE', `--out ${parent}: cannot use it as the runs folder: ${why}`);
  }
  for (let k = 1; ; k++) {
    const dir = join(parent, k === 1 ? base : `${base}-${k}`);
    try {
      mkdirSync(dir);
      return dir;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'EEXIST') continue;
      throw new ProtosimError('E_USAGE', `--out ${parent}: cannot create a run folder in it (${code ?? String(err)})`);
    }
  }
}

async function runCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: RUN_OPTIONS,
  });
  if (positionals.length === 0) usage('run needs at least one scenario file');
  let seed: number | undefined;
  if (values.seed !== undefined) {
    if (!/^\d+$/.test(values.seed) || !Number.isSafeInteger(Number(values.seed)))
      usage(`--seed: expected a whole number ≥ 0, got ${JSON.stringify(values.seed)}`);
    seed = Number(values.seed);
  }
  let untilUs: number | undefined;
  if (values.until !== undefined) {
    untilUs = parseDurationUs(values.until);
    if (untilUs === undefined) usage(`--until: expected a duration like 90s or 2h, got ${JSON.stringify(values.until)}`);
  }
  const backend = (values.backend ?? 'flat') as BackendName;
  if (!BACKEND_NAMES.includes(backend))
    usage(`--backend: expected one of ${BACKEND_NAMES.join(', ')}, got ${JSON.stringify(values.backend)}`);

  const core = (values.core ?? 'wasm') as CoreKind;
  if (!CORE_KINDS.includes(core)) usage(`--core: expected one of ${CORE_KINDS.join(', ')}, got ${JSON.stringify(values.core)}`);

  const cores = availableParallelism();
  let workers: number | undefined;
  if (values.workers !== undefined) {
    workers = workersCount(values.workers, cores);
    if (workers === undefined)
      usage(`--workers: expected a whole number from 1 to ${MAX_WORKERS}, or auto, got ${JSON.stringify(values.workers)}`);
  }

  // Load and plan every file first: a mistake in the third file must not cost the first two runs,
  // and no run folder is made for a scenario that cannot run.
  const prepared = positionals.map((file, i) => {
    const loaded = loadScenario(file);
    // Threads started warm (bin/protosim.js) build the first run's scenario while this one plans
    // it — unless its family always runs on one shard, or on one thread unless windows are asked
    // for (no shard-local checking): they stop at once.
    if (i === 0 && warmThreadCount() > 0) {
      const family = familyOf(loaded.scenario.protocol);
      if (family?.oneShard || (!family?.shardLocal && !values.windows)) void releaseWarmThreads(0);
      else
        prepareWarmThreads(
          // With this thread's parse: the threads need not load the YAML parser and the schema.
          { text: loaded.text, file: loaded.file, scenario: loaded.scenario, overrides: shardOverrides({ seed, untilUs, backend, core }) },
          // Local mode: this thread runs shard 0, the warm threads shards 1, 2, … (made ahead).
          values.windows || workers === undefined
            ? undefined
            : { workers, first: firstThreadShard(false), hashes: values.hash || values.trace, lines: values.trace },
        );
    }
    const io2: { trace?: TraceFile; bar?: ProgressBar } = {};
    const plan = planScenario(loaded, {
      seed,
      untilUs,
      backend,
      core,
      traceSink: values.trace ? (line) => io2.trace!.write(line) : undefined,
      traceBytes: values.trace ? (bytes, start, end) => io2.trace!.writeBytes(bytes, start, end) : undefined,
      traceRestart: values.trace ? () => io2.trace!.restart() : undefined,
      hash: values.hash,
      onProgress: (p) => io2.bar?.update(p),
      workers: workers !== undefined && workers > 1 ? workers : undefined,
      threads: spawnThreadShards,
      local: !values.windows,
      wallClockMs: io.wallMs,
    });
    const sp = plan.shardPlan;
    if (sp && workers !== undefined && sp.shards < workers) {
      io.err(`protosim: ${file}: ${sp.shards} shard${sp.shards === 1 ? '' : 's'} for --workers ${workers}: ${sp.notes.join('; ')}\n`);
    }
    if (sp && sp.shards > cores)
      io.err(
        `protosim: ${file}: ${sp.shards} shards on ${cores} core${cores === 1 ? '' : 's'}: the threads take turns on them (more threads than cores gain no speed)\n`,
      );
    return { loaded, plan, io: io2 };
  });
  // The first run takes the warm threads it has shards for (none on one kernel; in local mode this
  // thread runs shard 0 itself); the rest stop.
  const first = prepared[0]?.plan.shardPlan;
  const split = first !== undefined && first.shards > 1 && workers !== undefined && workers > 1;
  await releaseWarmThreads(split ? first.shards - firstThreadShard(values.windows === true) : 0);
  const summaries: RunSummary[] = [];
  let code: number = EXIT.OK;
  for (const { loaded: l, plan, io: run } of prepared) {
    const s = l.scenario;
    const runDir = freshRunDir(values.out ?? 'runs', `${s.name}-seed${plan.seed}`);
    run.trace = values.trace ? openTraceFile(join(runDir, 'trace.jsonl')) : undefined;
    run.bar = createProgressBar(s.name, io.stderr, io.wallMs);
    let summary: RunSummary;
    try {
      summary = await runPlannedAsync(l, plan, { backend, core, wallClockMs: io.wallMs });
    } catch (err) {
      // A crash mid-run keeps the trace written so far and says where the run stopped. A trace
      // file that cannot be written either (a full disk) must not hide why the run stopped.
      run.bar.done();
      try {
        run.trace?.close();
      } catch {
        // The run's own error follows.
      }
      // A failed shard says when it failed (local mode keeps no merged records to read it from).
      const failedAt = isProtosimError(err) ? (err.details as { atUs?: number } | undefined)?.atUs : undefined;
      const at = failedAt ?? plan.sim.recent().at(-1)?.t ?? 0;
      writeFileSync(
        join(runDir, 'summary.json'),
        `${JSON.stringify(
          {
            scenario: s.name,
            file: l.file,
            seed: plan.seed,
            stoppedBecause: 'internal-error',
            virtualTimeUs: at,
            virtualTime: formatDurationUs(at),
            error: String((err as Error)?.message ?? err),
          },
          null,
          2,
        )}\n`,
      );
      throw err;
    }
    run.bar.done();
    run.trace?.close();
    writeFileSync(join(runDir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
    summaries.push(summary);
    if (!values.json) {
      io.out(`${summaryText(summary, { runDir, untilText: formatDurationUs(untilUs ?? parseDurationUs(s.duration)!) })}\n`);
      if (prepared.length > 1) io.out('\n');
    }
    const c = summary.actorErrors.length > 0 ? EXIT.INTERNAL : summary.expectations.met ? EXIT.OK : EXIT.FAILED;
    code = Math.max(code, c);
  }
  if (values.json) io.out(`${JSON.stringify(summaries.length === 1 ? summaries[0] : summaries, null, 2)}\n`);
  return code;
}

function validateCommand(args: string[], io: Io): number {
  const { positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: {} });
  if (positionals.length === 0) usage('validate needs at least one scenario file');
  let code: number = EXIT.OK;
  for (const file of positionals) {
    try {
      const l = loadScenario(file);
      planScenario(l); // the checks that need the whole file: selectors, names, times, distributions
      io.out(`${file}: ok (${l.scenario.name}, ${l.scenario.protocol}, ${l.scenario.actors.length} actor entries)\n`);
    } catch (err) {
      if (!isProtosimError(err)) throw err;
      io.err(`${err.message}\n`);
      code = EXIT.USAGE;
    }
  }
  return code;
}

/** Runs the CLI; returns the exit code. Never throws for user errors. */
export async function main(argv: string[], io?: Partial<Io>): Promise<number> {
  const full: Io = {
    out: io?.out ?? ((t) => void process.stdout.write(t)),
    err: io?.err ?? ((t) => void process.stderr.write(t)),
    stderr: io?.stderr ?? process.stderr,
    wallMs: io?.wallMs ?? (() => performance.now()),
  };
  try {
    const [command, ...rest] = argv;
    if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
      full.out(`${HELP}\n`);
      return command === undefined ? EXIT.USAGE : EXIT.OK;
    }
    if (command === '--version' || command === '-v') {
      full.out(`${version()}\n`);
      return EXIT.OK;
    }
    if (command === 'run') return await runCommand(rest, full);
    if (command === 'validate') return validateCommand(rest, full);
    usage(`unknown command ${JSON.stringify(command)}`);
  } catch (err) {
    if (isProtosimError(err)) {
      full.err(`protosim: ${err.message}\n`);
      return ERROR_EXIT_CODES[err.code];
    }
    const code = (err as { code?: string }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
      full.err(`protosim: ${(err as Error).message}\nRun protosim --help for usage.\n`);
      return EXIT.USAGE;
    }
    full.err(`protosim: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    return EXIT.INTERNAL;
  }
}
