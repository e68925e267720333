#!/usr/bin/env node
// The protosim command. The TypeScript sources are built to dist/ by `npm install` (prepare).
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('protosim: dist/ is missing; run `npm install` (or `npm run build`) first\n');
  process.exit(3);
}
const argv = process.argv.slice(2);
const onDeno = globalThis.Deno !== undefined;
if (!onDeno) (await import('../dist/threads/serialGc.js')).followParent();
/**
 * `run … --workers N`: start the shards' threads now, so they load their modules while this thread
 * loads its own (dist/threads/nodeThread.js). The CLI checks the option itself; a count it refuses
 * starts nothing here. No more threads than cores: the plan may make fewer shards. Without
 * --windows this thread runs a shard itself (local mode): one thread fewer.
 * Returns the exit code when the command ran again in a child process instead (below).
 */
async function startThreads() {
  if (argv[0] !== 'run') return undefined;
  const at = argv.findIndex((a) => a === '--workers' || a.startsWith('--workers='));
  const value = at < 0 ? undefined : argv[at].startsWith('--workers=') ? argv[at].slice('--workers='.length) : argv[at + 1];
  if (value === undefined) return undefined;
  const cores = availableParallelism();
  const { mayUseThreads, workersCount } = await import('../dist/cli/threadHint.js');
  const asked = workersCount(value, cores) ?? 0;
  if (asked < 2) return undefined;
  // Threads that fill every core run faster with V8's collector on one thread, a flag only a new
  // process can take (dist/threads/serialGc.js): run again as a child with it, before any thread.
  // Neither for a run that stays on one thread whatever --workers says (its protocol's files say so:
  // dist/cli/threadHint.js).
  const read = (file) => readFileSync(file, 'utf8');
  // The first file's answer settles both when it is yes (the usual single file): read once.
  const first = mayUseThreads(argv.slice(1), read, 0);
  const gc = onDeno ? undefined : await import('../dist/threads/serialGc.js');
  if (gc?.wantsSerialGc(asked, cores, process.execArgv, process.env) && (first || mayUseThreads(argv.slice(1), read))) {
    const code = await gc.rerunWithSerialGc(fileURLToPath(import.meta.url), argv, Math.min(asked, cores));
    if (code !== undefined) return code;
  }
  const count = Math.min(asked, cores);
  // The first file's run takes the early threads (the CLI stops them when its plan needs none).
  if (count > 1 && first) {
    const { firstThreadShard, prestartThreads } = await import('../dist/threads/nodeThread.js');
    prestartThreads(count - firstThreadShard(argv.includes('--windows')));
  }
  return undefined;
}

const rerun = await startThreads();
if (rerun !== undefined) process.exitCode = rerun;
else {
  const { main } = await import(entry.href);
  process.exitCode = await main(argv);
}
