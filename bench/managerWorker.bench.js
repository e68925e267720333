// Manager/worker engine benchmark (benny): messages simulated per wall-clock second on the SimGrid
// anchor's shape (../shared/anchors/simgrid-mw), bytes per idle actor, and — with --simgrid — the
// anchor itself, run in the same session so the ratios compare like with like.
//
//   npm run bench                 # protosim only
//   npm run bench -- --simgrid    # also builds and runs the SimGrid anchor (installs libsimgrid-dev)
//   npm run bench -- --quick      # smaller sizes, for a smoke run
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import b from 'benny';
import { idleBytesPerActor } from './idleMemory.js';
import { prepare } from './shape.js';

const here = dirname(fileURLToPath(import.meta.url));
const args = new Set(process.argv.slice(2));
const quick = args.has('--quick');
// The anchor's default sizes (run.sh): workers × tasks.
const sizes = quick
  ? [
      [100, 10_000],
      [1000, 20_000],
      [10_000, 40_000],
    ]
  : [
      [100, 100_000],
      [1000, 100_000],
      [10_000, 200_000],
    ];
const caseOptions = { minSamples: quick ? 1 : 3, maxTime: 0.5, initCount: 1 };

/** Messages per run, measured once outside the timed runs. */
const messagesPerRun = new Map();
function runOnce(workers, tasks, opts) {
  const result = prepare(workers, tasks, opts)();
  if (result.stoppedBecause !== 'complete') throw new Error(`bench run ${workers}/${tasks} did not complete`);
  return result.counters.messagesSent;
}

const cases = [];
for (const [w, t] of sizes) {
  cases.push({ name: `flat, all invariants, ${w} workers, ${t} tasks`, w, t, opts: {} });
}
cases.push({ name: `flat, no invariants, 100 workers, ${sizes[0][1]} tasks`, w: 100, t: sizes[0][1], opts: { invariants: 'none' } });
cases.push({
  name: `xstate interpreter, all invariants, 100 workers, ${sizes[0][1] / 10} tasks`,
  w: 100,
  t: sizes[0][1] / 10,
  opts: { backend: 'xstate' },
});

const results = [];
await b.suite(
  'manager/worker engine',
  ...cases.map((c) =>
    b.add(
      c.name,
      () => {
        if (!messagesPerRun.has(c.name)) messagesPerRun.set(c.name, runOnce(c.w, c.t, c.opts));
        return () => prepare(c.w, c.t, c.opts)();
      },
      caseOptions,
    ),
  ),
  b.cycle((r) => {
    const c = cases.find((x) => x.name === r.name);
    const medianS = r.details.median;
    const msgs = messagesPerRun.get(r.name);
    results.push({
      name: r.name,
      workers: c.w,
      tasks: c.t,
      messages: msgs,
      medianWallS: medianS,
      samples: r.samples,
      messagesPerSecond: Math.round(msgs / medianS),
      tasksPerSecond: Math.round(c.t / medianS),
    });
    return `${r.name}: median ${medianS.toFixed(3)} s over ${r.samples} runs → ${Math.round(msgs / medianS).toLocaleString('en-US')} messages/s`;
  }),
);

const idle = idleBytesPerActor(quick ? 20_000 : 100_000);
console.log(`idle actors: ${idle.bytesPerActor} bytes per actor (${idle.actors.toLocaleString('en-US')} actors)`);

let simgrid;
if (args.has('--simgrid')) {
  const script = join(here, '..', '..', 'shared', 'anchors', 'simgrid-mw', 'run.sh');
  if (!existsSync(script)) throw new Error(`SimGrid anchor not found at ${script}`);
  const out = execFileSync('bash', [script, ...sizes.map(([w, t]) => `${w} ${t}`)], { encoding: 'utf8' });
  simgrid = out
    .split('\n')
    .filter((l) => l.startsWith('workers='))
    .map((l) =>
      Object.fromEntries(
        l
          .split(' ')
          .map((kv) => kv.split('='))
          .map(([k, v]) => [k, Number(v)]),
      ),
    );
  console.log(`\nSimGrid anchor (same session):\n${out.trim()}`);
}

console.log(
  '\n| workers | tasks | protosim messages/s | protosim tasks/s' +
    (simgrid ? ' | SimGrid messages/s | SimGrid tasks/s | ratio (messages/s) |' : ' |'),
);
console.log(`|---:|---:|---:|---:|${simgrid ? '---:|---:|---:|' : ''}`);
for (const [w, t] of sizes) {
  const r = results.find((x) => x.workers === w && x.tasks === t && x.name.startsWith('flat, all'));
  const s = simgrid?.find((x) => x.workers === w);
  const row = `| ${w.toLocaleString('en-US')} | ${t.toLocaleString('en-US')} | ${r.messagesPerSecond.toLocaleString('en-US')} | ${r.tasksPerSecond.toLocaleString('en-US')} |`;
  console.log(
    s
      ? `${row} ${s.msgs_per_s.toLocaleString('en-US')} | ${Math.round(s.tasks / s.wall_s).toLocaleString('en-US')} | ${(r.messagesPerSecond / s.msgs_per_s).toFixed(2)}× |`
      : row,
  );
}

mkdirSync(join(here, 'results'), { recursive: true });
const file = join(here, 'results', 'manager-worker.json');
writeFileSync(
  file,
  `${JSON.stringify(
    { node: process.version, quick, results, idle: { actors: idle.actors, bytesPerActor: idle.bytesPerActor }, simgrid },
    null,
    2,
  )}\n`,
);
console.log(`\nsaved ${file}`);
