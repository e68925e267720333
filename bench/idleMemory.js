// Bytes per idle actor: N manager/worker workers with nobody to talk to, hosted by the kernel
// (machine context, kernel record, random stream, their pending retry timer). Run with --expose-gc.
import { parseScenario } from '../dist/scenario/loadScenario.js';
import { planScenario } from '../dist/scenario/runScenario.js';

export function idleBytesPerActor(n) {
  if (typeof globalThis.gc !== 'function') throw new Error('run node with --expose-gc');
  const yaml = `
name: idle
protocol: manager-worker
duration: 1s
invariants: []
actors:
  - { role: mw.manager, name: manager, tasks: { count: 0 } }
  - { role: mw.worker, count: ${n}, managers: [manager], authorizedManagers: [nobody] }
`;
  const loaded = parseScenario(yaml, 'idle.yaml');
  globalThis.gc();
  const before = process.memoryUsage().heapUsed;
  // Run to 1 ms: every worker has started, asked the manager its type, and is waiting on its retry timer.
  const plan = planScenario(loaded, { untilUs: 1000 });
  const result = plan.sim.run();
  globalThis.gc();
  const after = process.memoryUsage().heapUsed;
  if (result.counters.events < n) throw new Error('actors did not start');
  return { actors: n, bytesPerActor: Math.round((after - before) / n), keep: plan };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const n = Number(process.argv[2] ?? 100000);
  const r = idleBytesPerActor(n);
  console.log(JSON.stringify({ actors: r.actors, bytesPerActor: r.bytesPerActor }));
}
