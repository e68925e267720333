// The manager/worker benchmark shape, the same as ../shared/anchors/simgrid-mw: one manager, W
// single-slot workers, T tasks of a fixed 1 ms compute time, 50 µs links.
import { parseScenario } from '../dist/scenario/loadScenario.js';
import { planScenario } from '../dist/scenario/runScenario.js';

export function shapeYaml(workers, tasks, { invariants = 'all' } = {}) {
  return `
name: bench-mw-${workers}
protocol: manager-worker
seed: 1
duration: 24h
stopWhen: complete
network: { latency: 50us }
invariants: ${invariants === 'all' ? 'all' : '[]'}
actors:
  - { role: mw.manager, name: manager, tasks: { count: ${tasks}, timeout: 60s } }
  - { role: mw.worker, count: ${workers}, cpuCount: 1, fetch: 0ms, run: 1ms }
`;
}

/** Builds the simulation (not timed) and returns a function that runs it (timed). */
export function prepare(workers, tasks, opts = {}) {
  const plan = planScenario(parseScenario(shapeYaml(workers, tasks, opts), 'bench.yaml'), { backend: opts.backend });
  return () => plan.sim.run();
}
