/**
 * Whether `protosim run` may use worker threads, guessed before the CLI loads (bin/protosim.js):
 * it starts the shards' threads early, and runs the command again with V8's collector on one thread
 * when they fill the cores (src/threads/serialGc.ts). A run that stays on one thread wants neither:
 * the collector's helper threads make one thread about 6 % faster, and the early threads cost it
 * about 0.4 s. Light on purpose: it reads each file's `protocol:` line with a pattern, not with the
 * YAML parser, and imports no family (they load zod and XState).
 */
import type { ParseArgsConfig } from 'node:util';
import { parseArgs } from 'node:util';

/** The options of `protosim run` (src/cli/main.ts parses with them too). */
export const RUN_OPTIONS = {
  seed: { type: 'string' },
  until: { type: 'string' },
  out: { type: 'string' },
  trace: { type: 'boolean', default: false },
  hash: { type: 'boolean', default: false },
  json: { type: 'boolean', default: false },
  backend: { type: 'string' },
  core: { type: 'string' },
  workers: { type: 'string' },
  windows: { type: 'boolean', default: false },
} as const satisfies ParseArgsConfig['options'];

/** The most threads `--workers` may ask for. */
export const MAX_WORKERS = 256;

/**
 * The thread count `--workers` asks for: `auto` is the number of cores; undefined when the value is
 * neither `auto` nor a whole number from 1 to {@link MAX_WORKERS} (the CLI refuses it).
 */
export function workersCount(value: string, cores: number): number | undefined {
  if (value === 'auto') return cores;
  return /^[1-9]\d*$/.test(value) && Number(value) <= MAX_WORKERS ? Number(value) : undefined;
}

/**
 * How each protocol's runs use threads, as its family says (`ProtocolFamily.oneShard` and
 * `shardLocal`; test/cli/threadHint.test.ts checks that the two agree): `never` (one shard always),
 * `local` (shards check themselves: threads without `--windows`), `windows` (threads only with it).
 */
export const PROTOCOL_THREADS: Readonly<Record<string, 'never' | 'local' | 'windows'>> = {
  'manager-worker': 'local',
  virdi: 'never',
  rear: 'windows',
  opaca: 'windows',
};

/** The `protocol:` of a scenario file's text, when a top-level line gives it plainly. */
export function protocolLine(text: string): string | undefined {
  return /^protocol:[ \t]*(["']?)([\w.-]+)\1[ \t]*(?:#.*)?$/m.exec(text)?.[2];
}

/**
 * For `run`'s arguments (after `run`): may the file at `index` among the scenario files run on
 * threads? True unless its protocol line names a protocol that would keep it on one thread; a file
 * that cannot be read, or arguments the CLI will refuse, say true (the CLI reports them, and the
 * threads are stopped then).
 */
export function mayUseThreads(args: readonly string[], readText: (file: string) => string, index?: number): boolean {
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options: RUN_OPTIONS, allowPositionals: true, strict: true });
  } catch {
    return true;
  }
  const { values, positionals } = parsed;
  const files = index === undefined ? positionals : positionals.slice(index, index + 1);
  return files.some((file) => {
    let protocol: string | undefined;
    try {
      protocol = protocolLine(readText(file));
    } catch {
      return true;
    }
    const threads = protocol === undefined ? undefined : PROTOCOL_THREADS[protocol];
    return threads === undefined || threads === 'local' || (threads === 'windows' && values.windows);
  });
}
