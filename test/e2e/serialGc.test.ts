/**
 * A run whose threads fill every core runs again as a child process with V8's collector on one
 * thread (src/threads/serialGc.ts): the child must get the flag, and must never outlive the command
 * the user started, whether that ends by a signal it passes on or by SIGKILL. A run that stays on
 * one thread whatever --workers says must not run again.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  childFlags,
  INLINING_FLAG,
  OLD_GENERATION_FLAG,
  oldGenerationFlag,
  SERIAL_GC_FLAG,
  SYNC_COMPILE_FLAG,
  wantsSerialGc,
  YOUNG_GENERATION_FLAG,
} from '../../src/threads/serialGc.js';

const root = join(import.meta.dirname, '..', '..');

describe('childFlags', () => {
  it("adds the collector on one thread, a larger young generation, compiling in the shard's thread, a smaller inlining budget and a larger first old generation to the parent's own options", () => {
    expect(childFlags([])).toEqual([SERIAL_GC_FLAG, YOUNG_GENERATION_FLAG, SYNC_COMPILE_FLAG, INLINING_FLAG, OLD_GENERATION_FLAG]);
    // The old generation's largest size is another flag.
    expect(childFlags(['--max-old-space-size=16000'])).toEqual([
      '--max-old-space-size=16000',
      SERIAL_GC_FLAG,
      YOUNG_GENERATION_FLAG,
      SYNC_COMPILE_FLAG,
      INLINING_FLAG,
      OLD_GENERATION_FLAG,
    ]);
  });

  it('keeps a young generation size the user gave, in any of its spellings', () => {
    for (const own of [['--max-semi-space-size=8'], ['--max_semi_space_size=64'], ['--max-semi-space-size', '4']])
      expect(childFlags(own)).toEqual([...own, SERIAL_GC_FLAG, SYNC_COMPILE_FLAG, INLINING_FLAG, OLD_GENERATION_FLAG]);
    // Another flag that only starts alike is not one.
    expect(childFlags(['--max-semi-space-sizes=1'])).toContain(YOUNG_GENERATION_FLAG);
  });

  it('keeps the compiler setting the user gave, either way and in either spelling', () => {
    for (const own of ['--concurrent-recompilation', '--no-concurrent-recompilation', '--no_concurrent_recompilation'])
      expect(childFlags([own])).toEqual([own, SERIAL_GC_FLAG, YOUNG_GENERATION_FLAG, INLINING_FLAG, OLD_GENERATION_FLAG]);
    expect(childFlags(['--concurrent-recompilation-queue-length=4'])).toContain(SYNC_COMPILE_FLAG);
  });

  it('keeps an inlining budget the user gave, in either spelling', () => {
    for (const own of [
      ['--max-inlined-bytecode-size-cumulative=920'],
      ['--max_inlined_bytecode_size_cumulative=100'],
      ['--max-inlined-bytecode-size-cumulative', '50'],
    ])
      expect(childFlags(own)).toEqual([...own, SERIAL_GC_FLAG, YOUNG_GENERATION_FLAG, SYNC_COMPILE_FLAG, OLD_GENERATION_FLAG]);
    // The per-function limit is another flag.
    expect(childFlags(['--max-inlined-bytecode-size=460'])).toContain(INLINING_FLAG);
  });

  it('keeps a first old generation (or heap) size the user gave, in either spelling', () => {
    // Node takes this flag only with "=" (a separate value is refused).
    for (const own of [['--initial-old-space-size=64'], ['--initial_old_space_size=1024'], ['--initial-heap-size=512']])
      expect(childFlags(own)).toEqual([...own, SERIAL_GC_FLAG, YOUNG_GENERATION_FLAG, SYNC_COMPILE_FLAG, INLINING_FLAG]);
    // The young generation's first size is another flag.
    expect(childFlags(['--initial-old-space-sizes=1', '--min-semi-space-size=4'])).toContain(OLD_GENERATION_FLAG);
  });

  it("sizes the old generation's first limit to the threads and the memory: a quarter of it for all heaps, none below 64 MB", () => {
    const GB = 2 ** 30;
    expect(oldGenerationFlag(2, 24 * GB)).toBe(OLD_GENERATION_FLAG);
    expect(oldGenerationFlag(65, 128 * GB)).toBe('--initial-old-space-size=256');
    expect(oldGenerationFlag(65, 32 * GB)).toBe('--initial-old-space-size=126');
    expect(oldGenerationFlag(3, 1 * GB)).toBe('--initial-old-space-size=85');
    expect(oldGenerationFlag(5, 1 * GB)).toBeUndefined();
    expect(childFlags([], 1, 24 * GB)).toContain(OLD_GENERATION_FLAG);
    expect(childFlags([], 16, 2 * GB)).toEqual([SERIAL_GC_FLAG, YOUNG_GENERATION_FLAG, SYNC_COMPILE_FLAG, INLINING_FLAG]);
  });
});

describe('wantsSerialGc', () => {
  it('only when two or more threads fill every core, and neither the flag nor PROTOSIM_GC is set', () => {
    expect(wantsSerialGc(2, 2, [], {})).toBe(true);
    expect(wantsSerialGc(4, 2, ['--max-old-space-size=16000'], {})).toBe(true);
    expect(wantsSerialGc(1, 1, [], {})).toBe(false);
    expect(wantsSerialGc(1, 2, [], {})).toBe(false);
    expect(wantsSerialGc(2, 4, [], {})).toBe(false);
    expect(wantsSerialGc(2, 2, [SERIAL_GC_FLAG], {})).toBe(false);
    expect(wantsSerialGc(2, 2, [], { PROTOSIM_GC: 'parallel' })).toBe(false);
    // The child itself (it has the flag too).
    expect(wantsSerialGc(2, 2, [], { PROTOSIM_GC_PARENT: '1' })).toBe(false);
  });
});

/** Linux: the processes whose parent is `pid`, with their command lines. */
function childrenOf(pid: number): { pid: number; cmdline: string[] }[] {
  const out: { pid: number; cmdline: string[] }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid …: comm may hold spaces, so read after its closing parenthesis.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push({ pid: Number(entry), cmdline: readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0') });
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false; // reaped
  }
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `protosim run <file> --workers auto --out <out>` as the user would start it (V8's default collector asked for by nobody). */
function command(file: string, out: string): ReturnType<typeof spawn> {
  return spawn(process.execPath, ['bin/protosim.js', 'run', file, '--workers', 'auto', '--out', out], {
    cwd: root,
    stdio: 'ignore',
    env: { ...process.env, PROTOSIM_GC: undefined, PROTOSIM_GC_PARENT: undefined },
  });
}

/** Starts the large manager/worker run on every core (run folders under `out`) and waits (bounded) for its child. */
async function startRun(out: string): Promise<{ parent: ReturnType<typeof spawn>; child: { pid: number; cmdline: string[] } }> {
  const parent = command('scenarios/manager-worker/large.yaml', out);
  for (let i = 0; i < 200; i++) {
    // The child as it runs: just forked, before its exec, it still shows the command's own line.
    const [child] = childrenOf(parent.pid!);
    if (child && child.cmdline.includes(SERIAL_GC_FLAG)) return { parent, child };
    await sleep(50);
  }
  parent.kill('SIGKILL');
  throw new Error(`no child process with ${SERIAL_GC_FLAG} within 10 s`);
}

/** Ends within 4 s (the run itself takes longer: a child that went on with it fails this). */
async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 80; i++) {
    if (!alive(pid)) return true;
    await sleep(50);
  }
  return false;
}

const linux = process.platform === 'linux' && availableParallelism() >= 2;

describe.skipIf(!linux)('the command on every core', () => {
  it('runs again as a child with the flag; SIGKILL of the command ends the child too', { timeout: 60_000 }, async () => {
    const out = mkdtempSync(join(tmpdir(), 'protosim-serial-gc-'));
    const { parent, child } = await startRun(out);
    expect(child.cmdline).toContain(SERIAL_GC_FLAG);
    expect(child.cmdline).toContain(YOUNG_GENERATION_FLAG);
    expect(child.cmdline).toContain(SYNC_COMPILE_FLAG);
    expect(child.cmdline).toContain(INLINING_FLAG);
    expect(child.cmdline).toContain(OLD_GENERATION_FLAG);
    expect(child.cmdline.slice(child.cmdline.indexOf('run'))).toEqual([
      'run',
      'scenarios/manager-worker/large.yaml',
      '--workers',
      'auto',
      '--out',
      out,
      '',
    ]);
    // Well into its run (past its own start, where it checks that the command is still there).
    await sleep(1500);
    parent.kill('SIGKILL');
    expect(await gone(child.pid)).toBe(true);
    // Ended, not done: a child that ran on to the end (on a fast machine) wrote its summary.
    const summaries = readdirSync(out).filter((d) => existsSync(join(out, d, 'summary.json')));
    expect(summaries).toEqual([]);
    rmSync(out, { recursive: true, force: true });
  });

  it(
    'a run that stays on one thread (Virdi: one shard always) runs in the command itself, with the default collector',
    { timeout: 60_000 },
    async () => {
      const out = mkdtempSync(join(tmpdir(), 'protosim-serial-gc-'));
      const parent = command('scenarios/virdi/large.yaml', out);
      // The rerun would come within its first few hundred milliseconds; the run itself takes seconds.
      const children: string[][] = [];
      for (let i = 0; i < 40; i++) {
        children.push(...childrenOf(parent.pid!).map((c) => c.cmdline));
        await sleep(50);
      }
      const stillRunning = alive(parent.pid!);
      parent.kill('SIGKILL');
      expect(children).toEqual([]);
      expect(stillRunning).toBe(true);
      rmSync(out, { recursive: true, force: true });
    },
  );

  it('passes on a SIGTERM that comes the moment the child exists (while the command spawns it)', { timeout: 60_000 }, async () => {
    const out = mkdtempSync(join(tmpdir(), 'protosim-serial-gc-'));
    const left: number[] = [];
    for (let trial = 0; trial < 5; trial++) {
      const parent = command('scenarios/manager-worker/large.yaml', out);
      const ended = new Promise((resolve) => parent.on('exit', resolve));
      // No sleep between looks: the signal must come as close to the fork as this can get.
      let child: number | undefined;
      for (const t0 = performance.now(); child === undefined && performance.now() - t0 < 10_000;) child = childrenOf(parent.pid!)[0]?.pid;
      parent.kill('SIGTERM');
      await ended;
      if (child !== undefined && alive(child)) {
        left.push(child);
        process.kill(child, 'SIGKILL');
      }
      expect(child).toBeDefined();
    }
    expect(left).toEqual([]);
    rmSync(out, { recursive: true, force: true });
  });

  it('passes SIGTERM on, and ends by it itself', { timeout: 60_000 }, async () => {
    const out = mkdtempSync(join(tmpdir(), 'protosim-serial-gc-'));
    const { parent, child } = await startRun(out);
    const ended = new Promise<NodeJS.Signals | null>((resolve) => parent.on('exit', (_code, signal) => resolve(signal)));
    parent.kill('SIGTERM');
    expect(await ended).toBe('SIGTERM');
    // Passed on: the command waited for its child's end before ending by the same signal (a
    // child left to notice the command's death would still be there now).
    expect(alive(child.pid)).toBe(false);
    rmSync(out, { recursive: true, force: true });
  });
});
