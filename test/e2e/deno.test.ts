/**
 * The same scenario, the same seed, the same trace on Deno as on Node — with the WebAssembly core
 * loaded from bytes under Deno's default sandbox (read the project, write the run folder, read the
 * environment; no permission for the core itself), and with shards on worker threads (Web Workers
 * on Deno, worker_threads on Node).
 *
 * Deno is not a devDependency (its npm package names a binary package per platform, and a lock file
 * with it fails `npm ci` where only Linux's is published). `npm install --no-save deno` adds it; CI
 * does, and sets PROTOSIM_REQUIRE_DENO=1 so a missing Deno fails instead of skipping.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const deno = join(root, 'node_modules', '.bin', 'deno');
const haveDeno = existsSync(deno);
if (!haveDeno && process.env.PROTOSIM_REQUIRE_DENO === '1') {
  throw new Error(`Deno is required (PROTOSIM_REQUIRE_DENO=1) but ${deno} is missing: npm install --no-save deno`);
}
const out = mkdtempSync(join(tmpdir(), 'protosim-deno-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

/** `protosim run` on a runtime (Deno: its default sandbox, writing only under `out`); stderr must stay empty. */
function run(runtime: 'node' | 'deno', args: string[]) {
  const command = ['bin/protosim.js', 'run', ...args];
  const r =
    runtime === 'node'
      ? spawnSync(process.execPath, command, { cwd: root, encoding: 'utf8', timeout: 120_000 })
      : spawnSync(deno, ['run', '--allow-read=.', `--allow-write=${out}`, '--allow-env', ...command], {
          cwd: root,
          encoding: 'utf8',
          timeout: 120_000,
        });
  expect(r.stderr, `${runtime} ${args.join(' ')}`).toBe('');
  return r;
}

function hashOf(runtime: 'node' | 'deno', file: string, ...extra: string[]): { hash: string; met: boolean } {
  const r = run(runtime, [file, '--hash', '--json', '--out', out, ...extra]);
  const s = JSON.parse(r.stdout) as { traceHash: string; expectations: { met: boolean } };
  return { hash: s.traceHash, met: s.expectations.met };
}

describe.skipIf(!haveDeno)('Node and Deno (skipped without Deno: npm install --no-save deno)', () => {
  it.each([
    ['scenarios/virdi/rates.yaml'],
    ['scenarios/virdi/leaving-virdi.yaml', '--core', 'js'],
    ['scenarios/manager-worker/partition.yaml'],
    ['scenarios/opaca/ping-pong-3.yaml'],
    ['scenarios/opaca/auth-roles.yaml'],
  ])('%s gives the same trace hash on both runtimes', (file, ...extra) => {
    const node = hashOf('node', file, ...extra);
    const deno = hashOf('deno', file, ...extra);
    expect(deno).toEqual(node);
    expect(node.met).toBe(true);
  });

  // sites.yaml runs in local mode (each shard checks its own actors); the others in windows.
  it.each([
    ['scenarios/manager-worker/worker-crash.yaml', '--windows'],
    ['scenarios/manager-worker/two-managers.yaml', '--windows'],
    ['scenarios/manager-worker/sites.yaml'],
  ])('%s on 2 worker threads (Web Workers on Deno) gives the one-thread hash on both runtimes', (file, ...extra) => {
    const one = hashOf('node', file);
    expect(hashOf('node', file, '--workers', '2', ...extra)).toEqual(one);
    expect(hashOf('deno', file, '--workers', '2', ...extra)).toEqual(one);
  });

  it('a trace file written in local mode on 2 Web Workers is the one-thread file of Node', () => {
    const file = 'scenarios/manager-worker/sites.yaml';
    const traceOf = (runtime: 'node' | 'deno', workers: string): string => {
      const dir = mkdtempSync(join(out, `trace-${runtime}-`));
      const r = run(runtime, [file, '--trace', '--json', '--out', dir, '--workers', workers]);
      expect((JSON.parse(r.stdout) as { parallel?: { mode: string } }).parallel?.mode).toBe(workers === '2' ? 'local' : undefined);
      const [runDir] = readdirSync(dir);
      return readFileSync(join(dir, runDir, 'trace.jsonl'), 'utf8');
    };
    const one = traceOf('node', '1');
    expect(one.split('\n').length).toBeGreaterThan(2000);
    expect(traceOf('deno', '2')).toBe(one);
  });

  // A Web Worker cannot exit by itself: the test hook throws there, in a call (local mode) or in a window.
  it.each([
    ['scenarios/manager-worker/sites.yaml', '1:100'],
    ['scenarios/manager-worker/basic.yaml', '1:3000', '--windows'],
  ])('a Web Worker that fails mid-run (%s): exit 3, shard, actor and virtual time named, no hang', (file, kill, ...extra) => {
    const dir = mkdtempSync(join(out, 'kill-'));
    const r = spawnSync(
      deno,
      [
        'run',
        '--allow-read=.',
        `--allow-write=${out}`,
        '--allow-env',
        'bin/protosim.js',
        'run',
        file,
        '--out',
        dir,
        '--workers',
        '2',
        ...extra,
      ],
      { cwd: root, encoding: 'utf8', timeout: 120_000, env: { ...process.env, PROTOSIM_TEST_KILL_SHARD: kill } },
    );
    expect(r.signal).toBeNull();
    expect(r.status).toBe(3);
    // In windows the throw is the thread's uncaught error, which Deno also reports on stderr itself.
    expect(r.stderr).toMatch(
      /^protosim: shard 1 failed at virtual time [\dhms.]+, in or after an event of [\w-]+: (Uncaught Error: )?killed by PROTOSIM_TEST_KILL_SHARD$/m,
    );
  });
});
