// Parallel runs (--workers): wall time, messages per second, the speed-up over one thread, and how
// the shards spent their time — running events, or waiting at the window barriers (the rest of the
// wall time, including the coordinator's merge and checks). Each case runs the CLI once in its own
// process, so the figures include everything a user waits for (start-up excluded: wallMs is the run).
//
//   npm run bench:parallel            # the large manager/worker scenario (all invariants, and none),
//                                     # and the large Virdi scenario, at 1 and 2 workers
//   npm run bench:parallel -- --quick # a smaller manager/worker load only
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
        { name: 'manager/worker large, no invariants', file: mwLarge({ invariants: false }) },
        { name: 'Virdi large (100 000 consumers, 1 000 producers, 1 h)', file: join(root, 'scenarios/virdi/large.yaml') },
      ];

const results = [];
for (const c of cases) {
  const row = { name: c.name, runs: {} };
  for (const workers of [1, 2]) {
    const out = join(scratch, `out-${results.length}-${workers}`);
    // A million actors need a bigger heap than V8's default.
    const heap = million ? ['--max-old-space-size=16000'] : [];
    const r = spawnSync(
      process.execPath,
      [...heap, 'bin/protosim.js', 'run', c.file, '--json', '--hash', '--out', out, '--workers', String(workers)],
      {
        cwd: root,
        encoding: 'utf8',
        maxBuffer: 1 << 28,
      },
    );
    if (r.status !== 0) throw new Error(`${c.name} at ${workers} workers: exit ${r.status}\n${r.stderr}`);
    const s = JSON.parse(r.stdout);
    const p = s.parallel;
    row.runs[workers] = {
      wallMs: s.wallMs,
      events: s.events,
      messages: s.messages.sent,
      messagesPerSecond: s.messagesPerSecond,
      traceHash: s.traceHash,
      shards: p?.shards ?? 1,
      note: r.stderr.trim() || undefined,
      windows: p?.windows,
      lookaheadUs: p?.lookaheadUs,
      crossMessages: p?.crossMessages,
      busyShare: p ? p.busyMs.map((b) => b / p.wallMs) : undefined,
    };
    console.log(
      `${c.name}, ${workers} worker${workers > 1 ? 's' : ''}: ${(s.wallMs / 1000).toFixed(1)} s, ${s.messagesPerSecond.toLocaleString('en-US')} messages/s` +
        (p
          ? `, ${p.shards} shards, ${p.windows} windows, shards busy ${p.busyMs.map((b) => `${Math.round((100 * b) / p.wallMs)} %`).join(' / ')}`
          : '') +
        (r.stderr.trim() ? ` (${r.stderr.trim()})` : ''),
    );
  }
  const [one, two] = [row.runs[1], row.runs[2]];
  if (one.traceHash !== two.traceHash) throw new Error(`${c.name}: trace hashes differ (${one.traceHash} vs ${two.traceHash})`);
  row.speedup = one.wallMs / two.wallMs;
  results.push(row);
}
rmSync(scratch, { recursive: true, force: true });

const cpu = cpus()[0]?.model ?? 'unknown';
console.log(`\n${cpu}, ${cpus().length} cores, Node ${process.version}${quick ? ', --quick' : ''}\n`);
console.log('| load | workers | shards | wall | messages/s | speed-up | windows | shards running events (rest: barriers, merge) |');
console.log('|---|---:|---:|---:|---:|---:|---:|---|');
for (const r of results) {
  for (const w of [1, 2]) {
    const x = r.runs[w];
    console.log(
      `| ${w === 1 ? r.name : ''} | ${w} | ${x.shards} | ${(x.wallMs / 1000).toFixed(1)} s | ${x.messagesPerSecond.toLocaleString('en-US')} | ${w === 2 ? `${r.speedup.toFixed(2)}×` : ''} | ${x.windows?.toLocaleString('en-US') ?? ''} | ${x.busyShare ? x.busyShare.map((b) => `${Math.round(100 * b)} %`).join(' / ') : ''} |`,
    );
  }
}
mkdirSync(join(root, 'bench', 'results'), { recursive: true });
const file = join(root, 'bench', 'results', million ? 'parallel-million.json' : 'parallel.json');
writeFileSync(
  file,
  `${JSON.stringify({ cpu, cores: cpus().length, node: process.version, date: new Date().toISOString(), quick, results }, null, 2)}\n`,
);
console.log(`\nsaved ${file}`);
