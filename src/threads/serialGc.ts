/**
 * V8's garbage collector on one thread for runs that fill every core (Node only).
 *
 * V8 collects a heap with helper threads: parallel scavenges of the young generation, concurrent
 * marking and sweeping of the old. On a one-thread run they use a core that would idle. When a
 * parallel run keeps every core busy with shards, a helper can only take its time from another
 * shard, and the collector's coordination costs come on top. Measured on this project's 2-core
 * machine (README, "Parallel runs"): 2 workers ran 8–15 % faster with `--single-threaded-gc` at
 * 400 000 and 1 000 000 actors, while a one-thread run was about 6 % slower with it.
 *
 * With the collector on one thread every scavenge of the young generation falls on the shard's
 * own thread, so the child also gets a young generation twice V8's default size
 * ({@link YOUNG_GENERATION_FLAG}): fewer scavenges, and fewer short-lived objects (messages in
 * flight, mostly) copied before they die. Measured on 2 workers (README, "Parallel runs"): 7 %
 * faster at 10 004 actors (eight rounds), 7 % at 1 000 004 (two; 7–23 % in three more), about
 * even at 400 004; a one-thread run gains 4–6 % from it but is not run again for it.
 *
 * For the same reason TurboFan compiles on the thread that asks for it ({@link SYNC_COMPILE_FLAG}):
 * on a helper thread it takes its time from another shard while the asking shard goes on in slower
 * code. Measured on 2 workers at 10 004 actors (README, "Parallel runs"): about 4 % faster with all
 * invariants (16 alternating rounds, faster in 13), 5 % with a trace file, 1.5 % with --hash; even
 * at 400 004. A one-thread run keeps V8's default: there the helper has a core of its own. Since
 * each shard now waits for its own compiles, a quarter of TurboFan's inlining budget
 * ({@link INLINING_FLAG}) makes them shorter (345 → 260 ms of compiling in a one-thread run of the
 * same load) for code a little less inlined: 1–3 % faster at 10 004 actors (faster in 25 of 38
 * alternating rounds over three sets, slower in 9), even at 400 004 (3 rounds) and 1 000 004 (2).
 *
 * With the collector on one thread a full collection's marking falls on the shard too (in steps,
 * 60–80 ms per collection at 10 004 actors), and V8 starts a heap with a small old generation
 * that it collects as soon as it fills (twice per shard in a 2-second run). So the child starts
 * the old generation's limit at 256 MB ({@link OLD_GENERATION_FLAG}; less when the heaps of all the
 * threads would pass a quarter of the machine's memory: {@link oldGenerationFlag}): a short run
 * collects it never or once, and a long one from that size on as V8 always does. Measured on 2 workers
 * (README, "Parallel runs"): 1.725 s → 1.62 s at 10 004 actors (8 alternating rounds; no full
 * collection left), 7.81 s → 7.33 s at 400 004 (3); 10 % more memory at its peak at 10 004. A
 * one-thread run gains about 4 % from it, with its marking already on the idle core.
 *
 * The flags must be given when the process starts (V8 aborts when the first is set on a running
 * heap, and sizes its young generation once), so bin/protosim.js runs the command again in a child
 * process with them, before it starts any thread. `PROTOSIM_GC=parallel` keeps V8's default; a
 * `--max-semi-space-size` of the user's own is kept. On Deno,
 * `--v8-flags=--single-threaded-gc,--max-semi-space-size=32,--no-concurrent-recompilation,--max-inlined-bytecode-size-cumulative=230,--initial-old-space-size=256`.
 *
 * This module is loaded before everything else: it imports nothing heavy.
 */

/** The flag. */
export const SERIAL_GC_FLAG = '--single-threaded-gc';
/** The young generation's size for the child: semi-spaces of 32 MB (V8's default at most 16 MB). */
export const YOUNG_GENERATION_FLAG = '--max-semi-space-size=32';
/** The optimizing compiler on the thread that asks for it, not on a helper thread. */
export const SYNC_COMPILE_FLAG = '--no-concurrent-recompilation';
/** A quarter of TurboFan's inlining budget per function (V8's default: 920 bytes of bytecode): shorter compiles. */
export const INLINING_FLAG = '--max-inlined-bytecode-size-cumulative=230';
/** The old generation's first limit: 256 MB (V8 starts it far lower and grows it after each full collection). */
export const OLD_GENERATION_FLAG = '--initial-old-space-size=256';

/**
 * The old generation's first limit for `isolates` heaps (the main thread's and the workers') on a
 * machine with `totalMemory` bytes: 256 MB each ({@link OLD_GENERATION_FLAG}) while all of them
 * together stay within a quarter of the memory, else less, and none (V8's default) below 64 MB:
 * each heap may fill its limit with garbage before its first full collection.
 */
export function oldGenerationFlag(isolates: number, totalMemory: number): string | undefined {
  const mb = Math.min(256, Math.floor(totalMemory / 4 / Math.max(1, isolates) / 2 ** 20));
  return mb >= 64 ? `--initial-old-space-size=${mb}` : undefined;
}

/**
 * The child's Node options: this process's own, the collector on one thread, a larger young
 * generation, the optimizing compiler on the shard's own thread, a smaller inlining budget and a
 * larger first limit of the old generation (for `threads` threads besides the main one, on a
 * machine with `totalMemory` bytes: {@link oldGenerationFlag}), each unless the user set it.
 */
export function childFlags(execArgv: readonly string[], threads = 1, totalMemory = Infinity): string[] {
  const has = (flag: RegExp): boolean => execArgv.some((a) => flag.test(a));
  const old = oldGenerationFlag(threads + 1, totalMemory);
  return [
    ...execArgv,
    SERIAL_GC_FLAG,
    ...(has(/^--max[-_]semi[-_]space[-_]size(=|$)/) ? [] : [YOUNG_GENERATION_FLAG]),
    ...(has(/^--(no[-_])?concurrent[-_]recompilation$/) ? [] : [SYNC_COMPILE_FLAG]),
    ...(has(/^--max[-_]inlined[-_]bytecode[-_]size[-_]cumulative(=|$)/) ? [] : [INLINING_FLAG]),
    ...(old === undefined || has(/^--initial[-_](old[-_]space|heap)[-_]size(=|$)/) ? [] : [old]),
  ];
}
/** Marks the child of {@link rerunWithSerialGc} (the parent's pid). */
const CHILD = 'PROTOSIM_GC_PARENT';

/**
 * Should a run on `threads` threads (what `--workers` asked for) on `cores` cores restart with the
 * collector on one thread? When the threads fill every core, and unless it already has the flag,
 * the user asked for V8's default (`PROTOSIM_GC=parallel`), or a debugger or profiler is attached
 * to this process (it would get an idle parent, and a clashing port).
 */
export function wantsSerialGc(
  threads: number,
  cores: number,
  execArgv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): boolean {
  if (threads < 2 || threads < cores) return false;
  if (execArgv.includes(SERIAL_GC_FLAG) || env.PROTOSIM_GC === 'parallel' || env[CHILD] !== undefined) return false;
  return !execArgv.some((a) => /^--(inspect|debug|cpu-prof|heap-prof|prof)/.test(a));
}

/** Signals passed on to the child, and the ones its end is raised again with (others: exit 128 + n). */
const PASSED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
const RAISED = new Set<string>([...PASSED, 'SIGKILL']);

/**
 * Runs `script` with `argv` again in a child Node process with {@link childFlags} (for `threads`
 * worker threads), on the same
 * standard streams. Resolves to its exit code; a child
 * ended by SIGINT, SIGTERM, SIGHUP or SIGKILL ends this process by the same signal (another signal,
 * such as V8's abort: exit 128 + its number). Signals this process receives are passed on; see
 * {@link followParent} for SIGKILL. Resolves to undefined when the child cannot be started: the
 * caller runs the command itself.
 */
export async function rerunWithSerialGc(script: string, argv: readonly string[], threads: number): Promise<number | undefined> {
  const { spawn } = await import('node:child_process');
  const { constants, totalmem } = await import('node:os');
  // Listened for before the child exists: a signal that comes while spawn() waits for the child's
  // exec would otherwise end this process by its default action and leave the child behind. Taken
  // now, it waits for the event loop, which turns only once spawn() has returned.
  const pass = (signal: NodeJS.Signals): void => void child.kill(signal);
  for (const s of PASSED) process.on(s, pass);
  const child = spawn(process.execPath, [...childFlags(process.execArgv, threads, totalmem()), script, ...argv], {
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, [CHILD]: String(process.pid) },
  });
  const stop = (): void => {
    for (const s of PASSED) process.off(s, pass);
  };
  return new Promise((resolve) => {
    child.once('error', (err) => {
      if (child.pid !== undefined) return; // it started: its exit still comes
      stop();
      process.stderr.write(`protosim: could not start a process with ${SERIAL_GC_FLAG} (${err.message}); running with V8's default\n`);
      resolve(undefined);
    });
    child.on('exit', (code, signal) => {
      stop();
      if (signal && RAISED.has(signal)) process.kill(process.pid, signal);
      resolve(code ?? (signal ? 128 + (constants.signals[signal] ?? 0) : 1));
    });
  });
}

/**
 * In the child of {@link rerunWithSerialGc}: end when the parent is gone (its IPC channel closes),
 * without the channel keeping this process alive. The end comes at the next turn of the event
 * loop: a run in local mode turns it between slices of events, but a run on one kernel (and the
 * build of a million actors) is synchronous and goes on to its end first.
 */
export function followParent(): void {
  const parent = process.env[CHILD];
  if (parent === undefined) return;
  // Not a variable for anything this process starts.
  delete process.env[CHILD];
  // Set by hand, without the channel: nothing to follow.
  if (process.send === undefined) return;
  process.on('disconnect', () => process.exit(1));
  // Gone already, before this process got here?
  if (!process.connected || String(process.ppid) !== parent) process.exit(1);
  process.channel?.unref();
}
