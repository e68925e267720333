// Parallel runs (--workers): wall time, messages per second, the speed-up over one thread, and how
// the shards spent their time — running events, or waiting (at the window barriers, or for the
// coordinator's merge). Each case runs the CLI once in its own process. Two wall times: the run
// (wallMs: from the end of the plan to the end of the run, with what is left of the worker
// threads' start and their build of the scenario: bin/protosim.js starts them before the plan),
// and the whole process (processMs: from spawn to exit, Node's own start-up included).
//
// A 2-worker run is in local mode when the shards can run on their own (no message crosses them),
// else in windows; `--windows` cases force the windows, to show what they cost.
//
//   npm run bench:parallel            # the large manager/worker scenario (all invariants; with the
//                                     # trace hash; no invariants; windows forced), and the large
//                                     # Virdi scenario, at 1 and 2 workers
//   npm run bench:parallel -- --quick # a smaller manager/worker load only
//   npm run bench:parallel -- --repeat 5
//                                     # runs per case and worker count (default 3; 1 with --million
//                                     # and for --windows cases), 1 and 2 workers taking turns; the
//                                     # table shows medians (this machine is shared and noisy)
//   npm run bench:parallel -- --million
//                                     # 1 000 004 actors: 4 sites of 250 000 workers (about 8 min,
//                                     # 16 GB at 2 workers)
//
// Results: a table, and bench/results/parallel.json.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

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

/** The large manager/worker scenario, optionally without invariants, with fewer tasks or more workers per site. */
function mwLarge({ invariants = true, tasks = 25_000, workersPerSite = 2500 } = {}) {
  let text = readFileSync(join(root, 'scenarios/manager-worker/large.yaml'), 'utf8')
    .replaceAll('count: 25000', `count: ${tasks}`)
    .replaceAll('count: 2500,', `count: ${workersPerSite},`);
  if (!invariants) text = text.replace(/^expect:[\s\S]*$/m, 'invariants: []\n');
  const file = join(scratch, `mw-large-${invariants ? 'checked' : 'unchecked'}-${tasks}-${workersPerSite}.yaml`);
  writeFileSync(file, text);
  return file;
}

const cases = million
  ? [
      {
        name: 'manager/worker, 4 sites of 250 000 workers (1 000 004 actors), 100 000 tasks, all invariants',
        file: mwLarge({ workersPerSite: 250_000 }),
      },
    ]
  : quick
    ? [{ name: 'manager/worker, 4 sites, 10 004 actors, 20 000 tasks, all invariants', file: mwLarge({ tasks: 5000 }) }]
    : [
        { name: 'manager/worker large (4 sites, 10 004 actors, 100 000 tasks), all invariants', file: mwLarge() },
        { name: 'manager/worker large, all invariants, --hash', file: mwLarge(), args: ['--hash'] },
        { name: 'manager/worker large, no invariants', file: mwLarge({ invariants: false }) },
        { name: 'manager/worker large, all invariants, --windows', file: mwLarge(), args: ['--windows'] },
        { name: 'Virdi large (100 000 consumers, 1 000 producers, 1 h)', file: join(root, 'scenarios/virdi/large.yaml') },
      ];

const results = [];
for (const c of cases) {
  const row = { name: c.name, runs: {} };
  const times = c.args?.includes('--windows') ? 1 : repeat;
  const walls = { 1: [], 2: [] };
  const processes = { 1: [], 2: [] };
  for (let round = 0; round < times; round++) {
    for (const workers of [1, 2]) {
      const out = join(scratch, `out-${results.length}-${workers}-${round}`);
      // A million actors need a bigger heap than V8's default.
      const heap = million ? ['--max-old-space-size=16000'] : [];
      const started = performance.now();
      const r = spawnSync(
        process.execPath,
        [...heap, 'bin/protosim.js', 'run', c.file, '--json', ...(c.args ?? []), '--out', out, '--workers', String(workers)],
        {
          cwd: root,
          encoding: 'utf8',
          maxBuffer: 1 << 28,
        },
      );
      const processMs = performance.now() - started;
      if (r.status !== 0) throw new Error(`${c.name} at ${workers} workers: exit ${r.status}\n${r.stderr}`);
      const s = JSON.parse(r.stdout);
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
        note: r.stderr.trim() || undefined,
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
      console.log(
        `${c.name}, ${workers} worker${workers > 1 ? 's' : ''}: ${(s.wallMs / 1000).toFixed(1)} s, ${s.messagesPerSecond.toLocaleString('en-US')} messages/s` +
          (p
            ? `, ${p.shards} shards, ${p.mode}${p.abandoned ? ` (local gave up: ${p.abandoned})` : ''}, ${p.windows} ${p.mode === 'local' ? 'calls' : 'windows'}, shards busy ${p.busyMs.map((b) => `${Math.round((100 * b) / p.wallMs)} %`).join(' / ')}`
            : '') +
          (r.stderr.trim() ? ` (${r.stderr.trim()})` : ''),
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
  }
  row.speedup = row.runs[1].wallMs / row.runs[2].wallMs;
  row.processSpeedup = row.runs[1].processMs / row.runs[2].processMs;
  results.push(row);
}
rmSync(scratch, { recursive: true, force: true });

const cpu = cpus()[0]?.model ?? 'unknown';
console.log(
  `\n${cpu}, ${cpus().length} cores, Node ${process.version}${quick ? ', --quick' : ''}; medians of ${repeat} runs (--windows: 1)\n`,
);
console.log(
  '| load | workers | shards | mode | wall (run) | messages/s | speed-up | wall (process) | speed-up | windows or calls | shards running events (rest: waiting) |',
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
mkdirSync(join(root, 'bench', 'results'), { recursive: true });
const file = join(root, 'bench', 'results', million ? 'parallel-million.json' : 'parallel.json');
writeFileSync(
  file,
  `${JSON.stringify({ cpu, cores: cpus().length, node: process.version, date: new Date().toISOString(), quick, repeat, results }, null, 2)}\n`,
);
console.log(`\nsaved ${file}`);
