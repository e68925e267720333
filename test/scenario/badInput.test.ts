/**
 * Bad scenario files through the real CLI: every file in test/fixtures/bad must be refused by both
 * `protosim validate` and `protosim run` with exit code 2 and one located message
 * (`file:line:col path: …`), no stack trace, no output on stdout and no run folder.
 *
 * Each fixture says where its problem is in a leading comment:
 *
 *   # expect: 7:5 actors[1].count        (line:col, then the field path when one makes sense)
 *   # expect-message: missing field      (optional: text the message must contain)
 *
 * New fixtures are picked up automatically. The CLI runs from dist/: build first (`npx tsc -p tsconfig.json`).
 */
import { spawnSync } from 'node:child_process';
import type { SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BAD_DIR = 'test/fixtures/bad';
const GOOD_FILE = 'test/fixtures/good/minimal.yaml';
const CLI = 'bin/protosim.js';
/** Generous for a small scenario; a run that hangs is a failure, not a stuck suite. */
const SPAWN_TIMEOUT_MS = 20_000;

const badFiles = readdirSync(join(ROOT, BAD_DIR))
  .filter((f) => /\.ya?ml$/.test(f))
  .sort();

interface Expectation {
  line: number;
  col: number;
  path?: string;
  message?: string;
}

/** Reads the `# expect:` (and optional `# expect-message:`) comments at the top of a fixture. */
function expectationOf(text: string): Expectation | undefined {
  let found: Expectation | undefined;
  let message: string | undefined;
  for (const line of text.split(/\r?\n/)) {
    if (!line.startsWith('#')) break;
    const m = /^#\s*expect:\s*(\d+):(\d+)(?:\s+(\S.*?))?\s*$/.exec(line);
    if (m) found = { line: Number(m[1]), col: Number(m[2]), path: m[3] };
    const mm = /^#\s*expect-message:\s*(\S.*?)\s*$/.exec(line);
    if (mm) message = mm[1];
  }
  return found && { ...found, message };
}

function cli(args: string[]): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8', timeout: SPAWN_TIMEOUT_MS });
}

/** Everything about a finished CLI call, for assertion messages. */
function show(r: SpawnSyncReturns<string>): string {
  return `exit ${r.status}${r.signal ? ` (killed by ${r.signal}${r.error ? `: ${r.error.message}` : ''})` : ''}\n--- stderr ---\n${r.stderr}--- stdout ---\n${r.stdout}`;
}

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'protosim-bad-input-'));
  tempDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

/** Every way a refused file must look on stderr. */
function assertLocatedError(r: SpawnSyncReturns<string>, rel: string, want: Expectation): void {
  const where = `${rel}:${want.line}:${want.col}`;
  expect.soft(r.status, `exit code\n${show(r)}`).toBe(2);
  expect.soft(r.stderr, `no stack trace\n${show(r)}`).not.toMatch(/^\s+at /m);
  expect.soft(r.stderr, `no internal error\n${show(r)}`).not.toMatch(/internal error/i);
  // The located line: `[protosim: ]file:line:col[ path:] message`.
  const located = r.stderr.split('\n').find((l) => l.replace(/^protosim: /, '').startsWith(`${where} `));
  expect.soft(located, `stderr names ${where}\n${show(r)}`).toBeDefined();
  if (located !== undefined && want.path !== undefined) {
    expect.soft(located, `the message at ${where} names ${want.path}\n${show(r)}`).toContain(want.path);
  }
  if (located !== undefined && want.message !== undefined) {
    expect.soft(located, `the message at ${where} says "${want.message}"\n${show(r)}`).toContain(want.message);
  }
}

describe('bad scenario files', () => {
  it('dist/ is built (npx tsc -p tsconfig.json)', () => {
    expect(existsSync(join(ROOT, 'dist/cli/main.js'))).toBe(true);
  });

  it('the corpus has at least 15 files, each with an # expect: comment', () => {
    expect(badFiles.length).toBeGreaterThanOrEqual(15);
    const without = badFiles.filter((f) => expectationOf(readFileSync(join(ROOT, BAD_DIR, f), 'utf8')) === undefined);
    expect(without, 'fixtures without a "# expect: L:C [path]" comment').toEqual([]);
  });

  describe.each(badFiles)('%s', (name) => {
    const rel = `${BAD_DIR}/${name}`;
    const want = expectationOf(readFileSync(join(ROOT, rel), 'utf8'));

    it('validate: exit 2 with a located message', () => {
      expect(want, `${rel} needs a "# expect: L:C [path]" comment`).toBeDefined();
      const r = cli(['validate', rel]);
      assertLocatedError(r, rel, want!);
    });

    it('run: exit 2 with a located message, nothing on stdout, no run folder', () => {
      expect(want, `${rel} needs a "# expect: L:C [path]" comment`).toBeDefined();
      const out = tempDir();
      const r = cli(['run', rel, '--out', out]);
      assertLocatedError(r, rel, want!);
      expect.soft(r.stdout, `stdout of run\n${show(r)}`).toBe('');
      const created = readdirSync(out, { recursive: true }).map(String).sort();
      expect.soft(created, `nothing created in --out ${out}\n${show(r)}`).toEqual([]);
    });
  });
});

describe('the control file', () => {
  it('validate exits 0', () => {
    const r = cli(['validate', GOOD_FILE]);
    expect(r.status, show(r)).toBe(0);
    expect(r.stdout).toContain(`${GOOD_FILE}: ok`);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });

  it('run exits 0 and writes one run folder', () => {
    const out = tempDir();
    const r = cli(['run', GOOD_FILE, '--out', out]);
    expect(r.status, show(r)).toBe(0);
    expect(r.stderr).not.toMatch(/^\s+at |internal error/m);
    expect(readdirSync(out)).toEqual(['good-minimal-seed1']);
    expect(existsSync(join(out, 'good-minimal-seed1', 'summary.json'))).toBe(true);
  });
});
