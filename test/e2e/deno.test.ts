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
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
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

function hashOf(runtime: 'node' | 'deno', file: string, ...extra: string[]): { hash: string; met: boolean } {
  const args = ['bin/protosim.js', 'run', file, '--hash', '--json', '--out', out, ...extra];
  const r =
    runtime === 'node'
      ? spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', timeout: 120_000 })
      : spawnSync(deno, ['run', '--allow-read=.', `--allow-write=${out}`, '--allow-env', ...args], {
          cwd: root,
          encoding: 'utf8',
          timeout: 120_000,
        });
  expect(r.stderr, `${runtime} ${file}`).toBe('');
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
});
