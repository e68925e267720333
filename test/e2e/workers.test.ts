/**
 * Runs on worker threads: every scenario gives the trace it gives on one thread with 2 and 4
 * workers; the CLI takes --workers; a worker that dies mid-run ends the run with exit 3, a message
 * naming the shard, the actor and the virtual time, and the trace written so far — and no hang.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadScenario, parseScenario } from '../../src/scenario/loadScenario.js';
import type { RunSummary, ShardHost } from '../../src/scenario/runScenario.js';
import { runScenario, runScenarioAsync } from '../../src/scenario/runScenario.js';
import { spawnThreadShards } from '../../src/threads/shardThreads.js';
import { TraceHash } from '../../src/engine/traceHash.js';

const root = join(import.meta.dirname, '..', '..');
/** Every run folder of this file, removed at the end. */
const tmp = mkdtempSync(join(tmpdir(), 'protosim-workers-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const scenarioFiles = readdirSync(join(root, 'scenarios'), { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => join('scenarios', f))
  .sort();
const files = scenarioFiles.filter((f) => !f.endsWith('large.yaml'));

function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['bin/protosim.js', ...args], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, ...env },
  });
  return { code: r.status, out: r.stdout, err: r.stderr, signal: r.signal };
}

/** The trace hash a run's summary printed. */
const printedHash = (out: string): string | undefined => /^trace hash +([0-9a-f]{16})$/m.exec(out)?.[1];

/** The trace hash of a trace file's text, folded from its lines as a run folds them. */
function hashOfLines(text: string): string {
  const h = new TraceHash();
  for (const line of text.split('\n')) if (line !== '') h.update(line);
  return h.digest();
}

describe('worker threads: the same trace as one thread', () => {
  it.each(files)('%s', { timeout: 180_000 }, async (file) => {
    const one = runScenario(loadScenario(join(root, file)), { hash: true });
    for (const workers of [2, 4]) {
      const s = await runScenarioAsync(loadScenario(join(root, file)), { hash: true, workers, threads: spawnThreadShards, local: false });
      expect({ hash: s.traceHash, events: s.events, met: s.expectations.met }, `${workers} workers`).toEqual({
        hash: one.traceHash,
        events: one.events,
        met: one.expectations.met,
      });
    }
  });
});

/** The large files cut short (their full runs are the benchmarks' loads): virtual time per file. */
const largeCuts: Record<string, number> = {
  'scenarios/manager-worker/large.yaml': 300_000,
  'scenarios/opaca/large.yaml': 10_000_000,
  'scenarios/rear/large.yaml': 60_000_000,
  'scenarios/virdi/large.yaml': 5_000_000,
};

describe('worker threads: the large files, cut short, give the trace of one thread', () => {
  it('covers every large file', () => {
    expect(scenarioFiles.filter((f) => f.endsWith('large.yaml'))).toEqual(Object.keys(largeCuts).sort());
  });

  it.each(Object.entries(largeCuts))('%s to %i µs', { timeout: 300_000 }, async (file, untilUs) => {
    const one = runScenario(loadScenario(join(root, file)), { hash: true, untilUs });
    expect(one.events).toBeGreaterThan(1000);
    for (const [workers, local] of [
      [2, false],
      [4, false],
      [2, true],
    ] as const) {
      const s = await runScenarioAsync(loadScenario(join(root, file)), { hash: true, untilUs, workers, threads: spawnThreadShards, local });
      // Windows split every file but Virdi's (a bulk world keeps its actors on one shard).
      if (!local) expect(s.parallel?.shards ?? 1, `${workers} workers in windows`).toBe(file.includes('virdi') ? 1 : workers);
      expect({ hash: s.traceHash, events: s.events }, `${workers} workers${local ? '' : ' in windows'}`).toEqual({
        hash: one.traceHash,
        events: one.events,
      });
    }
  });
});

describe('local mode on threads: this thread runs shard 0, worker threads the others', () => {
  /** spawnThreadShards, noting which shards it was asked for. */
  const spied = () => {
    const asked: number[] = [];
    const host: ShardHost = async (spec, plan, names, first = 0) => {
      const handles = await spawnThreadShards(spec, plan, names, first);
      asked.push(...handles.map((_, i) => first + i));
      return handles;
    };
    return { asked, host };
  };
  const same = (s: RunSummary) => ({
    hash: s.traceHash,
    events: s.events,
    messages: s.messages,
    virtualTime: s.virtualTime,
    stoppedBecause: s.stoppedBecause,
    invariants: s.invariants,
    metrics: s.metrics,
    met: s.expectations.met,
  });

  it(
    'sites.yaml (3 sites) on 2 and 3 workers: one worker thread fewer than shards, and the summary of one thread',
    { timeout: 120_000 },
    async () => {
      const file = join(root, 'scenarios/manager-worker/sites.yaml');
      const one = runScenario(loadScenario(file), { hash: true });
      for (const workers of [2, 3]) {
        const { asked, host } = spied();
        const s = await runScenarioAsync(loadScenario(file), { hash: true, workers, threads: host });
        expect(s.parallel?.mode, `${workers} workers`).toBe('local');
        expect(asked, `${workers} workers`).toEqual(Array.from({ length: s.parallel!.shards - 1 }, (_, i) => i + 1));
        expect(same(s), `${workers} workers`).toEqual(same(one));
      }
    },
  );

  it(
    'a try given up after this thread ran shard 0 is redone on a fresh build: the summary of one thread',
    { timeout: 120_000 },
    async () => {
      const file = join(root, 'scenarios/manager-worker/basic.yaml');
      const one = runScenario(loadScenario(file), { hash: true, untilUs: 30_000_000 });
      const { asked, host } = spied();
      const s = await runScenarioAsync(loadScenario(file), { hash: true, untilUs: 30_000_000, workers: 2, threads: host });
      expect(s.parallel?.mode).toBe('one-kernel');
      expect(s.parallel?.abandoned).toMatch(/sent to manager on another shard/);
      expect(asked).toEqual([1]);
      expect(same(s)).toEqual(same(one));
      expect(one.invariants.some((i) => i.status === 'held')).toBe(true);
    },
  );
});

it('a duplicating network across threads: the checkers judge copies of a message as one kernel does', { timeout: 120_000 }, async () => {
  // lossy-network.yaml with a bounded latency (so it splits) and many duplicates: a duplicate that
  // crossed threads is a copy of the message, not the same object.
  const text = readFileSync(join(root, 'scenarios/manager-worker/lossy-network.yaml'), 'utf8')
    .replace(/latency: \{ dist: lognormal[^}]*\}/, 'latency: { dist: uniform, min: 2ms, max: 300ms }')
    .replace(/duplicate: [\d.]+/, 'duplicate: 0.3');
  expect(text).toMatch(/duplicate: 0.3/);
  const judged = (s: Awaited<ReturnType<typeof runScenarioAsync>>) => ({
    hash: s.traceHash,
    duplicated: s.messages.duplicated,
    invariants: s.invariants.map((i) => [i.id, i.status, i.checks, i.violationCount]),
  });
  const one = judged(runScenario(parseScenario(text, 'dup.yaml'), { hash: true }));
  expect(one.duplicated).toBeGreaterThan(100);
  const two = await runScenarioAsync(parseScenario(text, 'dup.yaml'), { hash: true, workers: 2, threads: spawnThreadShards, local: false });
  expect(two.parallel?.shards).toBe(2);
  expect(judged(two)).toEqual(one);
});

it(
  "local mode over many calls with a trace: the slabs of lines go back to their shard and are refilled, and the lines are the one thread's",
  { timeout: 120_000 },
  async () => {
    // Calls of 5 events (not 100 000), so each worker shard reports dozens of pieces of lines in a
    // few shared slabs, each written to the sink, given back, and filled again (slabs.ts).
    const file = 'scenarios/manager-worker/sites.yaml';
    const one: string[] = [];
    runScenario(loadScenario(file), { traceSink: (line) => void one.push(line) });
    const decoder = new TextDecoder();
    const lines: string[] = [];
    let byteCalls = 0;
    const s = await runScenarioAsync(loadScenario(file), {
      traceSink: () => {
        throw new Error('local mode gives its lines as bytes');
      },
      traceBytes: (bytes, start, end) => {
        byteCalls++;
        lines.push(...decoder.decode(bytes.slice(start, end - 1)).split('\n'));
      },
      traceRestart: () => {
        throw new Error('local mode gave up');
      },
      workers: 2,
      threads: spawnThreadShards,
      localChunk: 5,
    });
    expect(s.parallel?.mode).toBe('local');
    // In local mode `windows` counts the calls.
    expect(s.parallel?.windows).toBeGreaterThan(50);
    expect(one.length).toBeGreaterThan(2000);
    expect(byteCalls).toBeGreaterThan(20);
    expect(lines).toEqual(one);
  },
);

describe('protosim run --workers', () => {
  it('prints the same hash with --workers 1, 2 and auto, and says when it uses fewer shards', () => {
    const out = mkdtempSync(join(tmp, 'workers-'));
    const hashes = ['1', '2', 'auto'].map((w) => {
      const r = cli(['run', 'scenarios/manager-worker/worker-crash.yaml', '--hash', '--json', '--out', out, '--workers', w]);
      expect(r.code, r.err).toBe(0);
      return (JSON.parse(r.out) as { traceHash: string }).traceHash;
    });
    expect(new Set(hashes).size).toBe(1);
    const lognormal = cli(['run', 'scenarios/manager-worker/lossy-network.yaml', '--hash', '--out', out, '--workers', '2']);
    expect(lognormal.code).toBe(0);
    expect(lognormal.err).toMatch(/1 shard for --workers 2: the default link has a lognormal latency/);
    // A 0 ms link (the manager to two of its workers) keeps its ends on one shard: the lookahead is the
    // smallest latency that crosses shards, never 0, and the run gives the one-thread hash.
    const zeroLink = join(out, 'zero-link.yaml');
    writeFileSync(
      zeroLink,
      readFileSync(join(root, 'scenarios/manager-worker/basic.yaml'), 'utf8').replace(
        /^  latency: .*$/m,
        '$&\n  links:\n    - { from: [manager], to: [worker-0, worker-1], latency: 0ms }',
      ),
    );
    const zeroHashes = ['1', '2'].map((w) => {
      const r = cli(['run', zeroLink, '--hash', '--windows', '--until', '10s', '--out', out, '--workers', w]);
      expect(r.code, r.err).toBe(0);
      return r.out;
    });
    expect(zeroHashes[1]).toMatch(/^parallel +2 shards, lookahead 40us, /m);
    expect(printedHash(zeroHashes[1])).toBe(printedHash(zeroHashes[0]));
    for (const bad of ['0', 'many', '1.5', '300']) {
      const r = cli(['run', 'scenarios/manager-worker/basic.yaml', '--workers', bad]);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(/--workers: expected a whole number from 1 to 256, or auto/);
    }
  });

  it('threads started warm: the first of two files runs on them, the second on threads of its own, with the hashes of one thread', () => {
    // bin/protosim.js starts the threads before the CLI plans; they build the first file's scenario
    // ahead of the run. The other file cannot use that build; a file planned on one kernel stops them.
    const out = mkdtempSync(join(tmp, 'warm-'));
    const files = ['scenarios/manager-worker/worker-crash.yaml', 'scenarios/manager-worker/sites.yaml'];
    const hashesOf = (r: ReturnType<typeof cli>) => (JSON.parse(r.out) as { traceHash: string }[]).map((s) => s.traceHash);
    const one = cli(['run', ...files, '--hash', '--json', '--out', out]);
    const two = cli(['run', ...files, '--hash', '--json', '--out', out, '--workers', '2']);
    expect(two.code, two.err).toBe(0);
    expect(hashesOf(two)).toEqual(hashesOf(one));
    const reversed = cli([
      'run',
      ...[...files].reverse(),
      'scenarios/manager-worker/lossy-network.yaml',
      '--hash',
      '--json',
      '--out',
      out,
      '--workers',
      '2',
    ]);
    expect(reversed.code, reversed.err).toBe(0);
    expect(hashesOf(reversed).slice(0, 2)).toEqual(hashesOf(one).reverse());
    const oneKernel = cli(['run', 'scenarios/manager-worker/lossy-network.yaml', '--hash', '--out', out, '--workers', '2']);
    expect(oneKernel.signal).toBeNull();
    expect(oneKernel.code).toBe(0);
    // A first file whose family has no shard-local checking stops the warm threads as soon as it is
    // read; the next file starts threads of its own.
    const mixed = ['scenarios/rear/race-strict.yaml', 'scenarios/manager-worker/sites.yaml'];
    const mixedOne = cli(['run', ...mixed, '--hash', '--json', '--out', out]);
    const mixedTwo = cli(['run', ...mixed, '--hash', '--json', '--out', out, '--workers', '2']);
    expect(mixedTwo.code, mixedTwo.err).toBe(0);
    expect(hashesOf(mixedTwo)).toEqual(hashesOf(mixedOne));
    expect((JSON.parse(mixedTwo.out) as { parallel?: { mode: string } }[]).map((s) => s.parallel?.mode)).toEqual([undefined, 'local']);
  });

  it('--trace writes the same file on 2 workers as on one, and the summary tells how the shards went', () => {
    const out = mkdtempSync(join(tmp, 'trace-'));
    const traces = ['1', '2'].map((w) => {
      const dir = join(out, w);
      const r = cli(['run', 'scenarios/manager-worker/worker-crash.yaml', '--trace', '--out', dir, '--workers', w, '--windows']);
      expect(r.code, r.err).toBe(0);
      if (w === '2') expect(r.out).toMatch(/^parallel +2 shards, lookahead 2ms, [\d,]+ windows, [\d,]+ messages across shards/m);
      const [runDir] = readdirSync(dir);
      return readFileSync(join(dir, runDir, 'trace.jsonl'), 'utf8');
    });
    expect(traces[0].length).toBeGreaterThan(100_000);
    expect(traces[1]).toBe(traces[0]);
    // Without --windows the shards try local mode: here a worker's first message crosses, so local
    // mode gives up and the run is redone on one thread, on an emptied trace file.
    const plain = cli(['run', 'scenarios/manager-worker/worker-crash.yaml', '--trace', '--out', join(out, 'plain'), '--workers', '2']);
    expect(plain.code, plain.err).toBe(0);
    expect(plain.out).toMatch(
      /^parallel +local mode gave up \(worker-\d+ sent to manager on another shard at [^)]+\): redone on one thread/m,
    );
    const [runDir] = readdirSync(join(out, 'plain'));
    expect(readFileSync(join(out, 'plain', runDir, 'trace.jsonl'), 'utf8')).toBe(traces[0]);
    // --hash hashes each record without writing its line (traceHash.ts: recordHash); in windows the
    // shards do it: the same hash as the file's.
    const hashed = cli([
      'run',
      'scenarios/manager-worker/worker-crash.yaml',
      '--hash',
      '--out',
      join(out, 'hash'),
      '--workers',
      '2',
      '--windows',
    ]);
    expect(hashed.code, hashed.err).toBe(0);
    expect(printedHash(hashed.out)).toBe(printedHash(plain.out));
    expect(printedHash(plain.out)).toBe(hashOfLines(traces[0]));
  });

  it("--trace in local mode: the shards run on their threads and the file is the one thread's", () => {
    const out = mkdtempSync(join(tmp, 'trace-local-'));
    const traces = ['1', '2'].map((w) => {
      const dir = join(out, w);
      const r = cli(['run', 'scenarios/manager-worker/sites.yaml', '--trace', '--out', dir, '--workers', w]);
      expect(r.code, r.err).toBe(0);
      if (w === '2') expect(r.out).toMatch(/^parallel +2 shards, local: each ran and checked its own actors/m);
      const [runDir] = readdirSync(dir);
      return readFileSync(join(dir, runDir, 'trace.jsonl'), 'utf8');
    });
    expect(traces[0].split('\n').length).toBeGreaterThan(2000);
    expect(traces[1]).toBe(traces[0]);
    // With --hash and no file, local shards hash records without making lines: the same hash.
    const hashes = ['1', '2'].map((w) => {
      const r = cli(['run', 'scenarios/manager-worker/sites.yaml', '--hash', '--out', join(out, `hash-${w}`), '--workers', w]);
      expect(r.code, r.err).toBe(0);
      return printedHash(r.out);
    });
    expect(hashes).toEqual([hashOfLines(traces[0]), hashOfLines(traces[0])]);
  });

  it('a worker killed mid-run: exit 3, shard, actor and virtual time named, the trace so far kept, no hang', () => {
    const out = mkdtempSync(join(tmp, 'kill-'));
    const r = cli(['run', 'scenarios/manager-worker/basic.yaml', '--trace', '--out', out, '--workers', '2', '--windows'], {
      PROTOSIM_TEST_KILL_SHARD: '1:3000',
    });
    expect(r.signal).toBeNull();
    expect(r.code).toBe(3);
    expect(r.err).toMatch(
      /protosim: shard 1 failed at virtual time [\d.]+(ms|s), in or after an event of worker-\d+: its thread exited with code 70/,
    );
    const [runDir] = readdirSync(out);
    const trace = readFileSync(join(out, runDir, 'trace.jsonl'), 'utf8')
      .trim()
      .split('\n');
    expect(trace.length).toBeGreaterThan(1000);
    const summary = JSON.parse(readFileSync(join(out, runDir, 'summary.json'), 'utf8')) as { stoppedBecause: string; error: string };
    expect(summary.stoppedBecause).toBe('internal-error');
    expect(summary.error).toMatch(/shard 1 failed/);
  });

  it('local mode on threads: the sites of sites.yaml run and check themselves, with the one-thread hash', () => {
    const out = mkdtempSync(join(tmp, 'local-'));
    const one = cli(['run', 'scenarios/manager-worker/sites.yaml', '--hash', '--json', '--out', out]);
    const two = cli(['run', 'scenarios/manager-worker/sites.yaml', '--hash', '--out', out, '--workers', '2']);
    expect(two.code, two.err).toBe(0);
    expect(two.out).toMatch(/^parallel +2 shards, local: each ran and checked its own actors \(no message crossed shards\), [\d,]+ calls/m);
    expect(two.out).toContain(`trace hash ${(JSON.parse(one.out) as { traceHash: string }).traceHash}`);
    // More workers than sites: a shard per site, still in local mode (spread, the sites' messages would cross shards).
    const four = cli(['run', 'scenarios/manager-worker/sites.yaml', '--hash', '--out', out, '--workers', '4']);
    expect(four.code, four.err).toBe(0);
    expect(four.err).toMatch(/3 shards for --workers 4: the actors that talk most form 3 groups, each kept on one shard/);
    // More shards than cores: said, since they gain nothing.
    if (availableParallelism() < 3) expect(four.err).toMatch(/3 shards on \d cores?: the threads take turns on them/);
    else expect(four.err).not.toMatch(/take turns/);
    expect(four.out).toMatch(/^parallel +3 shards, local: each ran and checked its own actors/m);
    expect(four.out).toContain(`trace hash ${(JSON.parse(one.out) as { traceHash: string }).traceHash}`);
    // A run whose messages cross shards says that local mode gave up, and why.
    const basic = cli(['run', 'scenarios/manager-worker/basic.yaml', '--out', out, '--workers', '2', '--until', '30s']);
    expect(basic.code, basic.err).toBe(0);
    expect(basic.out).toMatch(
      /^parallel +local mode gave up \(worker-\d+ sent to manager on another shard at [^)]+\): redone on one thread \(windows are slower\), same result/m,
    );
    // A family whose invariants need every event in one place runs on one thread, and says why.
    const rear = cli(['run', 'scenarios/rear/race-strict.yaml', '--hash', '--out', out, '--workers', '2']);
    expect(rear.code, rear.err).toBe(0);
    expect(rear.err).toMatch(/1 shard for --workers 2: rear's invariants are checked over all actors at once/);
  });

  it.each([
    // The thread exits…
    ['killed', '1:100', 'its thread exited with code 70'],
    // …or throws: comlink hands the error back as a plain one, which must name the shard all the same.
    ['that throws', '1:100:throw', 'killed by PROTOSIM_TEST_KILL_SHARD'],
  ])('a worker %s in local mode: exit 3, shard, actor and virtual time named, the trace so far kept, no hang', (_, kill, cause) => {
    const out = mkdtempSync(join(tmp, 'kill-local-'));
    const r = cli(['run', 'scenarios/manager-worker/sites.yaml', '--trace', '--out', out, '--workers', '2'], {
      PROTOSIM_TEST_KILL_SHARD: kill,
    });
    expect(r.signal).toBeNull();
    expect(r.code).toBe(3);
    expect(r.err).toMatch(
      new RegExp(`^protosim: shard 1 failed at virtual time [\\dhms.]+, in or after an event of (site-[abc]|[abc]-\\d): ${cause}\n$`),
    );
    const [runDir] = readdirSync(out);
    const summary = JSON.parse(readFileSync(join(out, runDir, 'summary.json'), 'utf8')) as { error: string; virtualTimeUs: number };
    expect(summary.error).toMatch(/shard 1 failed/);
    // Where the run was when the shard died (local mode has no merged trace to read it from).
    expect(summary.virtualTimeUs).toBeGreaterThan(0);
    // The trace holds whole lines: the start of the one-thread trace, as far as both shards had run.
    const kept = readFileSync(join(out, runDir, 'trace.jsonl'), 'utf8');
    const whole = join(out, 'whole');
    expect(cli(['run', 'scenarios/manager-worker/sites.yaml', '--trace', '--out', whole]).code).toBe(0);
    const [wholeDir] = readdirSync(whole);
    const one = readFileSync(join(whole, wholeDir, 'trace.jsonl'), 'utf8');
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.length).toBeLessThan(one.length);
    expect(kept.endsWith('\n')).toBe(true);
    expect(one.startsWith(kept)).toBe(true);
  });

  it('a worker stuck in a loop (or gone without a word): the watchdog ends the run with exit 3', () => {
    const out = mkdtempSync(join(tmp, 'hang-'));
    const r = cli(['run', 'scenarios/manager-worker/basic.yaml', '--out', out, '--workers', '2', '--windows'], {
      PROTOSIM_TEST_KILL_SHARD: '1:3000:hang',
      PROTOSIM_SHARD_WATCHDOG_MS: '1500',
    });
    expect(r.signal).toBeNull();
    expect(r.code).toBe(3);
    expect(r.err).toMatch(
      /protosim: shard 1 failed at virtual time [\d.]+(ms|s), in or after an event of worker-\d+: no event finished in 1.5 s/,
    );
  });
});
