/**
 * Runs every scenario in scenarios/ through the real CLI (a child process on the built dist/) and
 * checks that each meets its `expect`, plus what each fault scenario is about.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { RunSummary } from '../../src/scenario/runScenario.js';

const root = join(import.meta.dirname, '..', '..');
const out = mkdtempSync(join(tmpdir(), 'protosim-e2e-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['bin/protosim.js', ...args], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const summaries = new Map<string, RunSummary>();
function run(file: string): RunSummary {
  const cached = summaries.get(file);
  if (cached) return cached;
  const r = cli('run', `scenarios/manager-worker/${file}`, '--out', out, '--json');
  expect(r.stderr).toBe('');
  const s = JSON.parse(r.stdout) as RunSummary;
  expect({ file, code: r.code, failures: s.expectations.failures }).toEqual({ file, code: 0, failures: [] });
  summaries.set(file, s);
  return s;
}

const files = readdirSync(join(root, 'scenarios', 'manager-worker')).filter((f) => f.endsWith('.yaml'));

describe('manager/worker scenarios', () => {
  it('has the scenarios the foundation asks for', () => {
    for (const f of ['basic', 'partition', 'two-managers', 'worker-crash', 'unauthorised-manager', 'late-status-after-bye']) {
      expect(files).toContain(`${f}.yaml`);
    }
  });

  it.each(files)('%s meets its expectations (exit 0)', (file) => {
    const s = run(file);
    expect(s.actorErrors).toEqual([]);
  });

  it('basic: 1 manager, 100 workers, 10 000 tasks, all completed, every invariant held or unexercised', () => {
    const s = run('basic.yaml');
    expect(s.metrics.tasksCompleted).toBe(10_000);
    expect(s.stoppedBecause).toBe('complete');
    expect(s.invariants.filter((i) => i.status === 'violated')).toEqual([]);
  });

  it('partition: both sides time out, the cut-off workers join again after the heal', () => {
    const s = run('partition.yaml');
    expect(s.metrics.timeouts).toBeGreaterThanOrEqual(10); // 5 workers × both sides
    expect(s.metrics.workersJoined).toBeGreaterThanOrEqual(15);
    expect(s.metrics.tasksCompleted).toBe(400);
  });

  it('worker crash: the manager notices both crashed workers and the restarted one joins again', () => {
    const s = run('worker-crash.yaml');
    expect(s.metrics.workersDropped).toMatchObject({ timeout: 2 });
    expect(s.metrics.workersJoined).toBe(7);
    expect(s.metrics.tasksCompleted).toBe(200);
  });

  it('late status after bye: the stale TaskStatus gets NotMine', () => {
    const s = run('late-status-after-bye.yaml');
    expect(s.messages.byType.ManagerBye).toBeGreaterThanOrEqual(1);
    expect(s.messages.byType.NotMine).toBeGreaterThanOrEqual(1);
  });

  it('unauthorised manager: nobody joins the rogue', () => {
    const s = run('unauthorised-manager.yaml');
    expect(s.invariants.find((i) => i.id === 'mw.authorised-only')?.status).toBe('held');
    expect(s.metrics.tasksCompleted).toBe(60);
  });

  it('balthazar mode reproduces the original (RUNTIME, TasksPing without TasksPong); strict does not', () => {
    const b = run('balthazar-mode.yaml');
    const s = run('balthazar-strict.yaml');
    expect(b.metrics.taskErrorsByKind).toHaveProperty('RUNTIME');
    expect(b.metrics.taskErrorsByKind).not.toHaveProperty('TIMED_OUT');
    expect(s.metrics.taskErrorsByKind).toHaveProperty('TIMED_OUT');
    expect(s.metrics.taskErrorsByKind).not.toHaveProperty('RUNTIME');
    expect(b.metrics.tasksPingUnanswered).toBeGreaterThan(0);
    expect(s.metrics.tasksPingUnanswered).toBe(0);
    expect(b.messages.byType.TasksPong ?? 0).toBe(0);
    expect(s.messages.byType.TasksPong).toBeGreaterThan(0);
    expect(b.invariants.find((i) => i.id === 'mw.one-answer')?.violations[0].message).toMatch(/answered TasksPing from manager with Ack/);
  });

  it('the replay command of a violation reproduces it, up to that moment', () => {
    const b = run('balthazar-mode.yaml');
    const inv = b.invariants.find((i) => i.id === 'mw.one-answer')!;
    const args = inv.replay!.replace(/^protosim /, '').split(' ');
    const r = cli(...args, '--out', out, '--json');
    const replayed = JSON.parse(r.stdout) as RunSummary;
    const again = replayed.invariants.find((i) => i.id === 'mw.one-answer')!;
    expect(again.violations[0]).toEqual(inv.violations[0]);
    expect(replayed.virtualTimeUs).toBeLessThanOrEqual(inv.violations[0].t + 1000);
    expect(readdirSync(out).some((d) => d.startsWith('mw-balthazar-mode-seed17'))).toBe(true);
  });

  it('npm start runs the default scenario and prints its summary', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: { start: string } };
    const args = pkg.scripts.start.replace(/^node bin\/protosim\.js /, '').split(' ');
    const r = cli(...args, '--out', out);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^scenario {3}mw-basic/m);
    expect(r.stdout).toMatch(/✓ mw\.one-answer/);
    expect(r.stdout).toMatch(/expect {5}met/);
  });
});
