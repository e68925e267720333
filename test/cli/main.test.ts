/**
 * The CLI in-process: help, version, usage errors, exit codes, the progress line (only on a
 * terminal), --json purity, --trace, and run folders that never overwrite.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';

const dir = mkdtempSync(join(tmpdir(), 'protosim-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const small = join(dir, 'small.yaml');
writeFileSync(
  small,
  `name: small
protocol: manager-worker
duration: 10m
stopWhen: complete
actors:
  - { role: mw.manager, name: manager, tasks: { count: 30 } }
  - { role: mw.worker, count: 3, run: 1s }
`,
);

async function cli(args: string[], tty = false) {
  let out = '';
  let err = '';
  let progress = '';
  const stderr = {
    isTTY: tty,
    columns: 100,
    write: (t: string) => {
      progress += t;
      return true;
    },
  } as unknown as NodeJS.WriteStream;
  let clock = 0;
  const code = await main(args, { out: (t) => void (out += t), err: (t) => void (err += t), stderr, wallMs: () => (clock += 150) });
  return { code, out, err, progress };
}

describe('protosim CLI', () => {
  it('--help and --version', async () => {
    expect(await cli(['--help'])).toMatchObject({ code: 0 });
    expect((await cli(['--help'])).out).toMatch(/Exit codes: 0 expectations met · 1 .* · 2 .* · 3 internal error/);
    const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
    expect((await cli(['--version'])).out.trim()).toBe(pkg.version);
  });

  it('usage errors exit 2 with a message and no stack', async () => {
    const aFile = join(dir, 'a-file');
    writeFileSync(aFile, 'not a folder');
    for (const args of [
      ['run', small, '--out', aFile],
      ['frobnicate'],
      ['run'],
      ['run', small, '--seed', 'abc'],
      ['run', small, '--until', 'soon'],
      ['run', small, '--backend', 'fast'],
      ['run', small, '--bogus'],
      ['run', join(dir, 'missing.yaml')],
    ]) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toMatch(/^protosim: /);
      expect(r.err).not.toMatch(/^\s+at /m);
    }
  });

  it('run: summary on stdout, a run folder per run that never overwrites, and a trace', async () => {
    const out = join(dir, 'runs');
    const a = await cli(['run', small, '--out', out, '--trace']);
    const b = await cli(['run', small, '--out', out]);
    expect(a.code).toBe(0);
    expect(b.code).toBe(0);
    expect(readdirSync(out).sort()).toEqual(['small-seed1', 'small-seed1-2']);
    const trace = readFileSync(join(out, 'small-seed1', 'trace.jsonl'), 'utf8')
      .trim()
      .split('\n');
    expect(trace.length).toBeGreaterThan(100);
    expect(JSON.parse(trace[0])).toMatchObject({ t: 0, kind: 'send' });
    const summary = JSON.parse(readFileSync(join(out, 'small-seed1', 'summary.json'), 'utf8')) as { traceHash: string };
    expect(a.out).toContain(`trace hash ${summary.traceHash}`);
    expect(readdirSync(join(out, 'small-seed1-2'))).toEqual(['summary.json']);
  });

  it('--json prints only JSON on stdout, the same object as summary.json', async () => {
    const out = join(dir, 'json-runs');
    const r = await cli(['run', small, '--out', out, '--json', '--seed', '5']);
    const parsed = JSON.parse(r.out) as { seed: number; scenario: string; expectations: { met: boolean } };
    expect(parsed).toMatchObject({ seed: 5, scenario: 'small', expectations: { met: true } });
    const saved = JSON.parse(readFileSync(join(out, 'small-seed5', 'summary.json'), 'utf8')) as unknown;
    expect(saved).toEqual(parsed);
  });

  it('the progress line shows on a terminal only', async () => {
    const big = join(dir, 'big.yaml');
    writeFileSync(big, readFileSync(small, 'utf8').replace('count: 30', 'count: 3000').replace('name: small', 'name: big'));
    const onTty = await cli(['run', big, '--out', join(dir, 'p1')], true);
    const offTty = await cli(['run', big, '--out', join(dir, 'p2')], false);
    expect(onTty.progress).toMatch(/\rbig \[#*\.*\] +\d+% {2}t=\S+ {2}events [\d,]+/);
    expect(onTty.progress.endsWith('\r\x1b[K')).toBe(true);
    expect(offTty.progress).toBe('');
  });

  it('exit 1 when an expectation fails, with the reason', async () => {
    const f = join(dir, 'unmet.yaml');
    writeFileSync(f, `${readFileSync(small, 'utf8').replace('name: small', 'name: unmet')}expect: { violated: [mw.slots] }\n`);
    const r = await cli(['run', f, '--out', join(dir, 'unmet-runs')]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/expect {5}NOT MET\n {2}- expected mw\.slots to be caught as violated, but it held/);
  });
});
