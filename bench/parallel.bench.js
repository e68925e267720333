// Parallel runs (--workers): wall time, messages per second, the speed-up over one thread, and how
// the shards spent their time — running events, or waiting (at the window barriers, or for the
// coordinator's merge). Each case runs the CLI once in its own process. Two wall times: the run
// (wallMs: from the end of the plan to the end of the run, with what is left of the worker
// threads' start and their build of the scenario: bin/protosim.js starts them before the plan),
// and the whole process (processMs: from spawn to exit, Node's own start-up included).
//
// A 2-worker run is in local mode when the shards can run on their own (no message crosses them),
// else on one thread (windows are slower); `--windows` cases force the windows, to show what they cost.
//
//   npm run bench:parallel            # the large manager/worker scenario (all invariants; with the
//                                     # trace hash; no invariants; with a trace file; windows
//                                     # forced), the large Virdi
//                                     # scenario, and the first 2 h of the large REAR scenario (also
//                                     # with windows forced), at 1 and 2 workers; for the manager/
//                                     # worker loads also the machine's ceiling: the two shards' halves
//                                     # as two processes at once
//   npm run bench:parallel -- --quick # a smaller manager/worker load only
//   npm run bench:parallel -- --repeat 5
//                                     # runs per case and worker count (default 3; 1 with --million
//                                     # and for --windows cases), 1 and 2 workers taking turns; the
//                                     # table shows medians (this machine is shared and noisy)
//   npm run bench:parallel -- --only '(4 sites'
//                                     # only the cases whose name contains the text
//   npm run bench:parallel -- --million
//                                     # 1 000 004 actors: 4 sites of 250 000 workers, and its halves
//                                     # (about 4 min here; 8 GB at 2 workers)
//
// For the manager/worker loads each round also runs the one-thread case on one core (`taskset -c 0`,
// where the machine has taskset): a one-thread run lends V8's helper threads (the collector's, the
// optimizing compiler's) the idle core, a 2-worker run has none to lend. So 2 workers with no
// overhead at all would run in half the one-core time, and over one thread they can gain at most
// 2 × one thread / one core (unless the shards did less work than one thread). And the one-thread
// run once more with the two memory flags the 2-worker child gets (dist/threads/serialGc.js: a
// larger young generation, a larger first limit of the old generation), which `protosim run` does
// not give one thread: the speed-up against that run is the one that owes nothing to those flags.
//
// Results: a table, and bench/results/parallel.json.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OLD_GENERATION_FLAG, YOUNG_GENERATION_FLAG } from '../dist/threads/serialGc.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const quick = process.argv.includes('--quick');
const million = process.argv.includes('--million');
const repeatAt = process.argv.indexOf('--repeat');
const repeat = repeatAt >= 0 ? Number(process.argv[repeatAt + 1]) : million ? 1 : 3;
if (!(Number.isInteger(repeat) && repeat >= 1)) throw new Error(`--repeat: expected a whole number ≥ 1, got ${process.argv[repeatAt + 1]}`);
const median = (xs) => {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};
const scratch = mkdtempSync(join(tmpdir(), 'protosim-bench-parallel-'));
/** `taskset` (util-linux) pins a process to one core; without it there is no one-core figure. */
/** The 2-worker child's memory flags (its old generation's limit as on a machine with memory to spare), for one thread. */
const MEMORY_FLAGS = [YOUNG_GENERATION_FLAG, OLD_GENERATION_FLAG];
const taskset = process.platform === 'linux' && spawnSync('taskset', ['-c', '0', 'true']).status === 0;

/**
 * The large manager/worker scenario, optionally without invariants, with fewer tasks or more
 * workers per site, or with only some of its four sites (`sites`: 'ac' keeps site-a and site-c).
 */
function mwLarge({ invariants = true, tasks = 25_000, workersPerSite = 2500, sites = 'abcd' } = {}) {
  let text = readFileSync(join(root, 'scenarios/manager-worker/large.yaml'), 'utf8')
    .replaceAll('count: 25000', `count: ${tasks}`)
    .replaceAll('count: 2500,', `count: ${workersPerSite},`);
  if (!invariants) text = text.replace(/^expect:[\s\S]*$/m, 'invariants: []\n');
  // A site is its manager and its workers: one line each.
  text = text
    .split('\n')
    .filter((line) => !/name: (site-)?[abcd][,}]/.test(line) || sites.includes(/name: (?:site-)?([abcd])/.exec(line)[1]))
    .join('\n');
  const file = join(scratch, `mw-large-${invariants ? 'checked' : 'unchecked'}-${tasks}-${workersPerSite}-${sites}.yaml`);
  writeFileSync(file, text);
  return file;
}

/**
 * The machine's own ceiling for a load of sites: the two halves the 2-worker plan makes (sites a+c
 * and b+d: largest group first onto the lightest shard), each run alone in a process of its own, both
 * at the same time. Their events are each shard's (no message crosses sites; each run has its own
 * start), so the ratio of the one-thread run to the slower half is what two separate processes get
 * out of this machine for the same split of the work.
 */
const halvesOf = (options) => [mwLarge({ ...options, sites: 'ac' }), mwLarge({ ...options, sites: 'bd' })];

const cases = million
  ? [
      {
        name: 'manager/worker, 4 sites of 250 000 workers (1 000 004 actors), 100 000 tasks, all invariants',
        file: mwLarge({ workersPerSite: 250_000 }),
        halves: halvesOf({ workersPerSite: 250_000 }),
      },
    ]
  : quick
    ? [
        {
          name: 'manager/worker, 4 sites, 10 004 actors, 20 000 tasks, all invariants',
          file: mwLarge({ tasks: 5000 }),
          halves: halvesOf({ tasks: 5000 }),
        },
      ]
    : [
        { name: 'manager/worker large (4 sites, 10 004 actors, 100 000 tasks), all invariants', file: mwLarge(), halves: halvesOf() },
        { name: 'manager/worker large, all invariants, --hash', file: mwLarge(), args: ['--hash'], halves: halvesOf() },
        { name: 'manager/worker large, no invariants', file: mwLarge({ invariants: false }), halves: halvesOf({ invariants: false }) },
        // A trace file (about 240 MB): in local mode the shards build and hash the lines, the main thread writes them.
        { name: 'manager/worker large, all invariants, --trace', file: mwLarge(), args: ['--trace'], halves: halvesOf() },
        { name: 'manager/worker large, all invariants, --windows', file: mwLarge(), args: ['--windows'] },
        { name: 'Virdi large (100 000 consumers, 1 000 producers, 1 h)', file: join(root, 'scenarios/virdi/large.yaml') },
        // No shard-local checking: 2 workers run on one thread (windows would be slower), unless forced.
        { name: 'REAR large, first 2 h', file: join(root, 'scenarios/rear/large.yaml'), args: ['--until', '2h'] },
        { name: 'REAR large, first 2 h, --windows', file: join(root, 'scenarios/rear/large.yaml'), args: ['--until', '2h', '--windows'] },
      ];

/** Runs the CLI on `file` in a process of its own, without waiting: its summary and the process's wall time. */
function runAsync(file, args) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const heap = million ? ['--max-old-space-size=16000'] : [];
    const child = spawn(process.execPath, [...heap, 'bin/protosim.js', 'run', file, '--json', ...args, '--out', join(scratch, 'halves')], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`${file}: exit ${code}\n${err}`));
      else resolve({ summary: JSON.parse(out), processMs: performance.now() - started });
    });
  });
}

// --only TEXT: the cases whose name contains TEXT.
const onlyAt = process.argv.indexOf('--only');
const only = onlyAt >= 0 ? process.argv[onlyAt + 1] : undefined;
const chosen = only === undefined ? cases : cases.filter((c) => c.name.includes(only));
if (chosen.length === 0) throw new Error(`--only: no case's name contains ${JSON.stringify(only)}: ${cases.map((c) => c.name).join('; ')}`);

const results = [];
for (const c of chosen) {
  const row = { name: c.name, runs: {} };
  const times = c.args?.includes('--windows') ? 1 : repeat;
  const walls = { 1: [], 2: [] };
  const processes = { 1: [], 2: [] };
  /** Each round's share of the wall time each shard ran events (the table gives each shard's median). */
  const shares = { 1: [], 2: [] };
  const ceiling = { walls: [], processes: [] };
  const oneCore = { walls: [], processes: [] };
  const tuned = { walls: [], processes: [] };
  /**
   * Runs the case in a process of its own (`pin`: on core 0 only; `flags`: Node's, before the
   * script): its summary, stderr and the process's wall time.
   */
  const runCase = (workers, out, { pin = false, flags = [] } = {}) => {
    // A million actors need a bigger heap than V8's default.
    const heap = million ? ['--max-old-space-size=16000'] : [];
    const command = [
      ...heap,
      ...flags,
      'bin/protosim.js',
      'run',
      c.file,
      '--json',
      ...(c.args ?? []),
      '--out',
      out,
      '--workers',
      String(workers),
    ];
    const started = performance.now();
    const r = pin
      ? spawnSync('taskset', ['-c', '0', process.execPath, ...command], { cwd: root, encoding: 'utf8', maxBuffer: 1 << 28 })
      : spawnSync(process.execPath, command, { cwd: root, encoding: 'utf8', maxBuffer: 1 << 28 });
    const processMs = performance.now() - started;
    rmSync(out, { recursive: true, force: true }); // trace files are large
    if (r.status !== 0) throw new Error(`${c.name} at ${workers} workers${pin ? ' on one core' : ''}: exit ${r.status}\n${r.stderr}`);
    return { s: JSON.parse(r.stdout), stderr: r.stderr, processMs };
  };
  for (let round = 0; round < times; round++) {
    for (const workers of [1, 2]) {
      const { s, stderr, processMs } = runCase(workers, join(scratch, `out-${results.length}-${workers}-${round}`));
      const p = s.parallel;
      walls[workers].push(s.wallMs);
      processes[workers].push(processMs);
      const run = {
        wallMs: s.wallMs,
        events: s.events,
        messages: s.messages.sent,
        messagesPerSecond: s.messagesPerSecond,
        traceHash: s.traceHash,
        shards: p?.shards ?? 1,
        note: stderr.trim() || undefined,
        mode: p?.mode,
        abandoned: p?.abandoned,
        windows: p?.windows,
        lookaheadUs: p?.lookaheadUs,
        crossMessages: p?.crossMessages,
        busyShare: p ? p.busyMs.map((b) => b / p.wallMs) : undefined,
      };
      const before = row.runs[workers];
      // The same run every time: the hash where one was asked for, else the counts.
      const same = (a, b) => a.traceHash === b.traceHash && a.events === b.events && a.messages === b.messages;
      if (before && !same(before, run)) throw new Error(`${c.name}: two runs at ${workers} workers differ`);
      if (workers === 2 && !same(row.runs[1], run))
        throw new Error(
          `${c.name}: 1 and 2 workers differ (${row.runs[1].traceHash}/${row.runs[1].events} vs ${run.traceHash}/${run.events})`,
        );
      row.runs[workers] = before ?? run;
      if (run.busyShare) shares[workers].push(run.busyShare);
      console.log(
        `${c.name}, ${workers} worker${workers > 1 ? 's' : ''}: ${(s.wallMs / 1000).toFixed(1)} s, ${s.messagesPerSecond.toLocaleString('en-US')} messages/s` +
          (p
            ? `, ${p.shards} shards, ${p.mode}${p.abandoned ? ` (local gave up: ${p.abandoned})` : ''}, ${p.windows} ${p.mode === 'local' ? 'calls' : 'windows'}, shards busy ${p.busyMs.map((b) => `${Math.round((100 * b) / p.wallMs)} %`).join(' / ')}`
            : '') +
          (stderr.trim() ? ` (${stderr.trim()})` : ''),
      );
    }
    if (c.halves && taskset) {
      // The one-thread run on one core: what its work costs without a second core to lend.
      const { s, processMs } = runCase(1, join(scratch, `out-${results.length}-core-${round}`), { pin: true });
      if (s.events !== row.runs[1].events || s.traceHash !== row.runs[1].traceHash)
        throw new Error(`${c.name}: the run on one core differs`);
      oneCore.walls.push(s.wallMs);
      oneCore.processes.push(processMs);
      console.log(`${c.name}, 1 worker on one core: ${(s.wallMs / 1000).toFixed(1)} s`);
    }
    if (c.halves) {
      // One thread with the 2-worker child's memory flags: what those flags alone give one thread.
      const { s, processMs } = runCase(1, join(scratch, `out-${results.length}-tuned-${round}`), { flags: MEMORY_FLAGS });
      if (s.events !== row.runs[1].events || s.traceHash !== row.runs[1].traceHash)
        throw new Error(`${c.name}: the run with ${MEMORY_FLAGS.join(' ')} differs`);
      tuned.walls.push(s.wallMs);
      tuned.processes.push(processMs);
      console.log(`${c.name}, 1 worker with ${MEMORY_FLAGS.join(' ')}: ${(s.wallMs / 1000).toFixed(1)} s`);
    }
    if (c.halves) {
      // Right after the 2-worker run: the same shards' work as two processes at the same time.
      const halves = await Promise.all(c.halves.map((f) => runAsync(f, c.args ?? [])));
      rmSync(join(scratch, 'halves'), { recursive: true, force: true });
      const events = halves.reduce((sum, h) => sum + h.summary.events, 0);
      // Each run counts its own start and stop events: a few more than the whole.
      if (Math.abs(events - row.runs[1].events) > 4)
        throw new Error(`${c.name}: the halves ran ${events} events, the whole ${row.runs[1].events}`);
      ceiling.walls.push(Math.max(...halves.map((h) => h.summary.wallMs)));
      ceiling.processes.push(Math.max(...halves.map((h) => h.processMs)));
      console.log(
        `${c.name}, its two halves as two processes at once: ${halves.map((h) => `${(h.summary.wallMs / 1000).toFixed(1)} s`).join(' and ')}`,
      );
    }
  }
  for (const w of [1, 2]) {
    const x = row.runs[w];
    x.wallsMs = walls[w];
    x.wallMs = median(walls[w]);
    x.processesMs = processes[w];
    x.processMs = median(processes[w]);
    x.messagesPerSecond = Math.round((x.messages / x.wallMs) * 1000);
    if (shares[w].length > 0) {
      x.busyShares = shares[w];
      x.busyShare = shares[w][0].map((_, shard) => median(shares[w].map((r) => r[shard])));
    }
  }
  row.speedup = row.runs[1].wallMs / row.runs[2].wallMs;
  row.processSpeedup = row.runs[1].processMs / row.runs[2].processMs;
  // Ratios within each round (a 1-worker run and the runs right after it): the noise of the
  // machine moves whole rounds, so these are steadier than ratios of medians.
  const perRound = (a, b) => a.map((x, i) => x / b[i]);
  row.roundSpeedups = perRound(walls[1], walls[2]);
  row.roundSpeedup = median(row.roundSpeedups);
  row.roundProcessSpeedup = median(perRound(processes[1], processes[2]));
  if (c.halves) {
    row.ceiling = {
      wallsMs: ceiling.walls,
      processesMs: ceiling.processes,
      speedup: median(perRound(walls[1], ceiling.walls)),
      processSpeedup: median(perRound(processes[1], ceiling.processes)),
    };
  }
  if (oneCore.walls.length > 0) {
    row.oneCore = {
      wallsMs: oneCore.walls,
      processesMs: oneCore.processes,
      wallMs: median(oneCore.walls),
      // 2 workers against the one-thread run's work on one core (1.00× = no gain from the second core).
      speedup: median(perRound(oneCore.walls, walls[2])),
      // 2 workers doing the one-core work in exactly half its time: the most they gain over one thread.
      bound: median(perRound(walls[1], oneCore.walls).map((x) => 2 * x)),
    };
  }
  if (tuned.walls.length > 0) {
    row.tunedOneThread = {
      flags: MEMORY_FLAGS,
      wallsMs: tuned.walls,
      processesMs: tuned.processes,
      wallMs: median(tuned.walls),
      // 2 workers against one thread given the same memory flags as the 2-worker child.
      speedup: median(perRound(tuned.walls, walls[2])),
      processSpeedup: median(perRound(tuned.processes, processes[2])),
    };
  }
  results.push(row);
}
rmSync(scratch, { recursive: true, force: true });

const cpu = cpus()[0]?.model ?? 'unknown';
console.log(
  `\n${cpu}, ${cpus().length} cores, Node ${process.version}${quick ? ', --quick' : ''}; medians of ${repeat} runs (--windows: 1)\n`,
);
console.log(
  '| load | workers | shards | mode | wall (run) | messages/s | speed-up | wall (process) | speed-up | windows or calls | shards running events (rest: waiting; medians) |',
);
console.log('|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|');
for (const r of results) {
  for (const w of [1, 2]) {
    const x = r.runs[w];
    console.log(
      `| ${w === 1 ? r.name : ''} | ${w} | ${x.shards} | ${x.mode ?? '—'} | ${(x.wallMs / 1000).toFixed(1)} s | ${x.messagesPerSecond.toLocaleString('en-US')} | ${w === 2 ? `${r.speedup.toFixed(2)}×` : ''} | ${(x.processMs / 1000).toFixed(1)} s | ${w === 2 ? `${r.processSpeedup.toFixed(2)}×` : ''} | ${x.windows?.toLocaleString('en-US') ?? ''} | ${x.busyShare ? x.busyShare.map((b) => `${Math.round(100 * b)} %`).join(' / ') : ''} |`,
    );
  }
}
console.log(
  "\nSpeed-ups as medians of the ratios within rounds (run / process); the ceiling: the two halves as two processes; one core: the one-thread run pinned to one core, and 2 × one thread / one core, the most 2 workers can gain over one thread; the child's memory flags: one thread given the larger young and old generations the 2-worker child gets",
);
for (const r of results) {
  console.log(
    `- ${r.name}: ${r.roundSpeedup.toFixed(2)}× / ${r.roundProcessSpeedup.toFixed(2)}× (rounds: ${r.roundSpeedups.map((x) => x.toFixed(2)).join(', ')})` +
      (r.ceiling ? `; ceiling ${r.ceiling.speedup.toFixed(2)}× / ${r.ceiling.processSpeedup.toFixed(2)}×` : '') +
      (r.oneCore
        ? `; one core ${(r.oneCore.wallMs / 1000).toFixed(1)} s: 2 workers ${r.oneCore.speedup.toFixed(2)}× faster than it, bound over one thread ${r.oneCore.bound.toFixed(2)}×`
        : '') +
      (r.tunedOneThread
        ? `; one thread with the child's memory flags ${(r.tunedOneThread.wallMs / 1000).toFixed(1)} s: 2 workers ${r.tunedOneThread.speedup.toFixed(2)}× / ${r.tunedOneThread.processSpeedup.toFixed(2)}× faster than it`
        : ''),
  );
}
mkdirSync(join(root, 'bench', 'results'), { recursive: true });
const file = join(root, 'bench', 'results', million ? 'parallel-million.json' : 'parallel.json');
writeFileSync(
  file,
  `${JSON.stringify({ cpu, cores: cpus().length, node: process.version, date: new Date().toISOString(), quick, repeat, results }, null, 2)}\n`,
);
console.log(`\nsaved ${file}`);
