/**
 * The same scenario, the same seed, the same trace on Deno as on Node — with the WebAssembly core
 * loaded from bytes under Deno's default sandbox (read the project, write the run folder, read the
 * environment; no permission for the core itself). Deno comes from npm (`deno` devDependency).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const out = mkdtempSync(join(tmpdir(), 'protosim-deno-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

function hashOf(runtime: 'node' | 'deno', file: string, ...extra: string[]): { hash: string; met: boolean } {
  const args = ['bin/protosim.js', 'run', file, '--hash', '--json', '--out', out, ...extra];
  const r =
    runtime === 'node'
      ? spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', timeout: 120_000 })
      : spawnSync(join(root, 'node_modules', '.bin', 'deno'), ['run', '--allow-read=.', `--allow-write=${out}`, '--allow-env', ...args], {
          cwd: root,
          encoding: 'utf8',
          timeout: 120_000,
        });
  expect(r.stderr, `${runtime} ${file}`).toBe('');
  const s = JSON.parse(r.stdout) as { traceHash: string; expectations: { met: boolean } };
  return { hash: s.traceHash, met: s.expectations.met };
}

describe('Node and Deno', () => {
  it.each([
    ['scenarios/virdi/rates.yaml'],
    ['scenarios/virdi/leaving-virdi.yaml', '--core', 'js'],
    ['scenarios/manager-worker/partition.yaml'],
  ])('%s gives the same trace hash on both runtimes', (file, ...extra) => {
    const node = hashOf('node', file, ...extra);
    const deno = hashOf('deno', file, ...extra);
    expect(deno).toEqual(node);
    expect(node.met).toBe(true);
  });
});
