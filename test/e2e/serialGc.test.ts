/**
 * A run whose threads fill every core runs again as a child process with V8's collector on one
 * thread (src/threads/serialGc.ts): the child must get the flag, and must never outlive the command
 * the user started, whether that ends by a signal it passes on or by SIGKILL.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SERIAL_GC_FLAG, wantsSerialGc } from '../../src/threads/serialGc.js';

const root = join(import.meta.dirname, '..', '..');

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

const alive = (pid: number): boolean => existsSync(`/proc/${pid}`) && !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Starts the large manager/worker run on every core and waits (bounded) for its child. */
async function startRun(): Promise<{ parent: ReturnType<typeof spawn>; child: { pid: number; cmdline: string[] } }> {
  const parent = spawn(
    process.execPath,
    ['bin/protosim.js', 'run', 'scenarios/manager-worker/large.yaml', '--workers', 'auto', '--out', 'runs/test-serial-gc'],
    {
      cwd: root,
      stdio: 'ignore',
      env: { ...process.env, PROTOSIM_GC: undefined, PROTOSIM_GC_PARENT: undefined },
    },
  );
  for (let i = 0; i < 200; i++) {
    const [child] = childrenOf(parent.pid!);
    if (child && child.cmdline.includes('run')) return { parent, child };
    await sleep(50);
  }
  parent.kill('SIGKILL');
  throw new Error('no child process within 10 s');
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
    const { parent, child } = await startRun();
    expect(child.cmdline).toContain(SERIAL_GC_FLAG);
    expect(child.cmdline.slice(child.cmdline.indexOf('run'))).toEqual([
      'run',
      'scenarios/manager-worker/large.yaml',
      '--workers',
      'auto',
      '--out',
      'runs/test-serial-gc',
      '',
    ]);
    parent.kill('SIGKILL');
    expect(await gone(child.pid)).toBe(true);
  });

  it('passes SIGTERM on, and ends by it itself', { timeout: 60_000 }, async () => {
    const { parent, child } = await startRun();
    const ended = new Promise<NodeJS.Signals | null>((resolve) => parent.on('exit', (_code, signal) => resolve(signal)));
    parent.kill('SIGTERM');
    expect(await ended).toBe('SIGTERM');
    expect(await gone(child.pid)).toBe(true);
  });
});
