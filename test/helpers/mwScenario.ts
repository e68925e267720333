/**
 * Random small manager/worker scenarios — sizes, networks, modes and fault schedules — as scenario
 * files, for property tests.
 */
import { fc } from '@fast-check/vitest';

const ms = (n: number) => `${n}ms`;
const s = (n: number) => `${n}s`;

const fault = (workers: number, managers: number) => {
  const worker = fc.nat(workers - 1).map((i) => `worker-${i}`);
  const manager = fc.nat(managers - 1).map((i) => (managers === 1 ? 'manager' : `manager-${i}`));
  const node = fc.oneof(worker, manager);
  return fc.oneof(
    fc.record({ at: fc.integer({ min: 1, max: 200 }), crash: node, restartAfter: fc.option(fc.integer({ min: 1, max: 120 })) }),
    fc.record({ at: fc.integer({ min: 1, max: 200 }), pause: node, resumeAfter: fc.integer({ min: 1, max: 150 }) }),
    fc.record({ at: fc.integer({ min: 1, max: 200 }), shutdown: node }),
    fc.record({ at: fc.integer({ min: 1, max: 200 }), partitionOf: node, healAfter: fc.integer({ min: 1, max: 200 }) }),
    fc.record({ at: fc.integer({ min: 1, max: 200 }), oneWayFrom: node, oneWayTo: node, healAfter: fc.integer({ min: 1, max: 200 }) }),
    fc.record({ at: fc.integer({ min: 1, max: 200 }), holdFrom: node, holdTo: node, releaseAfter: fc.integer({ min: 1, max: 100 }) }),
    fc.record({ at: fc.integer({ min: 1, max: 200 }), skew: node, by: fc.integer({ min: -120, max: 120 }) }),
  );
};

type Fault = Record<string, string | number | null>;

function faultYaml(f: Fault): string {
  const at = s(f.at as number);
  if ('crash' in f)
    return `{ at: ${at}, crash: ${f.crash}${f.restartAfter ? `, restart: ${s((f.at as number) + (f.restartAfter as number))}` : ''} }`;
  if ('pause' in f) return `{ at: ${at}, pause: ${f.pause}, resume: ${s((f.at as number) + (f.resumeAfter as number))} }`;
  if ('shutdown' in f) return `{ at: ${at}, shutdown: ${f.shutdown} }`;
  if ('skew' in f) return `{ at: ${at}, skew: ${f.skew}, by: ${(f.by as number) < 0 ? '-' : ''}${s(Math.abs(f.by as number))} }`;
  if ('partitionOf' in f)
    return `{ at: ${at}, partition: [[${f.partitionOf}], rest], heal: ${s((f.at as number) + (f.healAfter as number))} }`;
  if ('oneWayFrom' in f)
    return `{ at: ${at}, partition: { from: [${f.oneWayFrom}], to: [${f.oneWayTo}] }, heal: ${s((f.at as number) + (f.healAfter as number))} }`;
  return `{ at: ${at}, hold: { from: [${f.holdFrom}], to: [${f.holdTo}] }, release: ${s((f.at as number) + (f.releaseAfter as number))} }`;
}

export const mwScenario = fc
  .record({ workers: fc.integer({ min: 1, max: 6 }), managers: fc.integer({ min: 1, max: 2 }) })
  .chain(({ workers, managers }) =>
    fc.record({
      workers: fc.constant(workers),
      managers: fc.constant(managers),
      mode: fc.constantFrom('strict', 'balthazar'),
      seed: fc.nat(1_000_000),
      // Mostly LAN-like, sometimes slower than a worker's 5 s retry.
      latencyMs: fc.oneof(
        { arbitrary: fc.integer({ min: 0, max: 300 }), weight: 4 },
        { arbitrary: fc.integer({ min: 1000, max: 9000 }), weight: 1 },
      ),
      loss: fc.constantFrom(0, 0, 0.01, 0.05),
      ordering: fc.constantFrom('ordered', 'unordered', 'unordered-duplicating'),
      duplicate: fc.constantFrom(0.01, 0.1),
      cpu: fc.integer({ min: 1, max: 3 }),
      tasks: fc.integer({ min: 0, max: 40 }),
      runS: fc.integer({ min: 1, max: 30 }),
      hang: fc.constantFrom(0, 0.05),
      runtime: fc.constantFrom(0, 0.1),
      maxWorkers: fc.nat(4),
      checkS: fc.integer({ min: 2, max: 20 }),
      timeoutS: fc.integer({ min: 5, max: 70 }),
      faults: fc.array(fault(workers, managers), { maxLength: 4 }),
    }),
  );

export type MwParams = typeof mwScenario extends fc.Arbitrary<infer T> ? T : never;

/** The scenario file for `p`; `minLatencyMs` lifts the links' lowest latency (0 by default). */
export function mwYaml(p: MwParams, minLatencyMs = 0): string {
  const managerName = p.managers === 1 ? 'name: manager, ' : `count: ${p.managers}, `;
  return `
name: property
protocol: manager-worker
mode: ${p.mode}
seed: ${p.seed}
duration: 15m
network: { latency: { dist: uniform, min: ${ms(minLatencyMs)}, max: ${ms(Math.max(minLatencyMs, p.latencyMs))} }, loss: ${p.loss}, ordering: ${p.ordering}${
    p.ordering === 'unordered-duplicating' ? `, duplicate: ${p.duplicate}` : ''
  } }
actors:
  - { role: mw.manager, ${managerName}maxWorkers: ${p.maxWorkers}, checkInterval: ${s(p.checkS)}, timeout: ${s(p.timeoutS)}, statusPoll: 40s, tasks: { count: ${p.tasks}, timeout: 20s } }
  - { role: mw.worker, count: ${p.workers}, cpuCount: ${p.cpu}, checkInterval: ${s(p.checkS)}, timeout: ${s(p.timeoutS)}, run: { dist: uniform, min: 1s, max: ${s(p.runS)} }, failures: { hang: ${p.hang}, runtime: ${p.runtime} } }
faults: [${p.faults.map((f) => faultYaml(f as Fault)).join(', ')}]
${p.mode === 'balthazar' ? 'invariants: [mw.one-manager, mw.not-mine, mw.silence-after-bye, mw.liveness, mw.task-monotone, mw.slots, mw.failure-accounting, mw.authorised-only, mw.shutdown-bye-only]' : ''}
`;
}

/**
 * Random "sites": managers each with workers that know only it, so placement can keep every site on
 * one shard and no message crosses shards (local mode, src/engine/parallel.ts: runLocalMode), with
 * faults on any node and, half the time, `stopWhen: complete`.
 */
export const mwSites = fc
  .record({ sites: fc.integer({ min: 2, max: 4 }), workers: fc.integer({ min: 1, max: 4 }) })
  .chain(({ sites, workers }) => {
    const node = fc.oneof(
      fc
        .record({ site: fc.nat(sites - 1), worker: fc.nat(workers - 1) })
        .map(({ site, worker }) => (workers === 1 ? `w${site}` : `w${site}-${worker}`)),
      fc.nat(sites - 1).map((site) => `site-${site}`),
    );
    const at = fc.integer({ min: 1, max: 120 });
    return fc.record({
      sites: fc.constant(sites),
      workers: fc.constant(workers),
      mode: fc.constantFrom('strict', 'balthazar'),
      seed: fc.nat(1_000_000),
      latencyMs: fc.integer({ min: 1, max: 300 }),
      loss: fc.constantFrom(0, 0, 0.02),
      ordering: fc.constantFrom('ordered', 'unordered', 'unordered-duplicating'),
      tasks: fc.integer({ min: 0, max: 30 }),
      runS: fc.integer({ min: 1, max: 20 }),
      complete: fc.boolean(),
      faults: fc.array(
        fc.oneof(
          fc.record({ at, crash: node, restartAfter: fc.option(fc.integer({ min: 1, max: 60 })) }),
          fc.record({ at, pause: node, resumeAfter: fc.integer({ min: 1, max: 60 }) }),
          fc.record({ at, shutdown: node }),
          fc.record({ at, partitionOf: node, healAfter: fc.integer({ min: 1, max: 100 }) }),
          fc.record({ at, skew: node, by: fc.integer({ min: -60, max: 60 }) }),
        ),
        { maxLength: 4 },
      ),
    });
  });

export type MwSitesParams = typeof mwSites extends fc.Arbitrary<infer T> ? T : never;

export function mwSitesYaml(p: MwSitesParams): string {
  const sites = Array.from({ length: p.sites }, (_, i) => i);
  return `
name: sites
protocol: manager-worker
mode: ${p.mode}
seed: ${p.seed}
duration: 10m
${p.complete ? 'stopWhen: complete' : ''}
network: { latency: { dist: uniform, min: 1ms, max: ${ms(p.latencyMs)} }, loss: ${p.loss}, ordering: ${p.ordering}${
    p.ordering === 'unordered-duplicating' ? ', duplicate: 0.05' : ''
  } }
actors:
${sites.map((i) => `  - { role: mw.manager, name: site-${i}, checkInterval: 5s, timeout: 20s, tasks: { count: ${p.tasks}, timeout: 20s } }`).join('\n')}
${sites
  .map(
    (i) =>
      `  - { role: mw.worker, name: w${i}, count: ${p.workers}, managers: [site-${i}], checkInterval: 5s, timeout: 20s, run: { dist: uniform, min: 1s, max: ${s(p.runS)} } }`,
  )
  .join('\n')}
faults: [${p.faults.map((f) => faultYaml(f as Fault)).join(', ')}]
${p.mode === 'balthazar' ? 'invariants: [mw.one-manager, mw.not-mine, mw.silence-after-bye, mw.liveness, mw.task-monotone, mw.slots, mw.failure-accounting, mw.authorised-only, mw.shutdown-bye-only]' : ''}
`;
}
