// A manager/worker worker in its own Node process, built from the compiled package (dist/).
// Usage: node wsWorkerChild.mjs <managerUrl> <managerName> <workerName> <deadlineMs>
// It joins the manager, runs tasks, and exits by itself: with code 0 once its manager let it go
// (ManagerBye or timeout), with code 3 when the deadline passes first. It prints one JSON summary line.
import { workerMachine } from '../../dist/actors/manager-worker/worker.machine.js';
import { createLiveNode, createMwWorkerEnv } from '../../dist/transports/ws/index.js';

const [managerUrl, managerName, workerName, deadlineText] = process.argv.slice(2);
const deadlineMs = Number(deadlineText ?? 15000);
if (!managerUrl || !managerName || !workerName || !Number.isFinite(deadlineMs)) {
  process.stderr.write('usage: wsWorkerChild.mjs <managerUrl> <managerName> <workerName> <deadlineMs>\n');
  process.exit(2);
}

let hadManager = false;
let finishing = false;
let node;

async function finish(code) {
  if (finishing) return;
  finishing = true;
  clearTimeout(deadline);
  await node?.close();
  const summary = {
    name: workerName,
    code,
    stats: node?.stats,
    observations: node?.observations.map((o) => o.obs),
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  process.exitCode = code;
  setTimeout(() => process.exit(4), 3000).unref(); // if a handle were left open: still exit
}

const deadline = setTimeout(() => void finish(3), deadlineMs);

node = await createLiveNode({
  name: workerName,
  machine: workerMachine,
  input: {
    name: workerName,
    mode: 'strict',
    specs: { workerPrice: 1, networkPrice: 1, cpuCount: 2, memory: 4096, networkSpeed: 100, supportedProgramKinds: ['WASM0m1n0'] },
    peers: [managerName],
    authorizedManagers: [],
    checkIntervalMs: 200,
    timeoutMs: 1000,
    retryMs: 200,
  },
  env: createMwWorkerEnv({ runMs: 20 }),
  peers: { [managerName]: managerUrl },
  onObserve(obs) {
    if (obs.kind !== 'mw.manager') return;
    if (obs.manager !== null) hadManager = true;
    else if (hadManager) setImmediate(() => void finish(0)); // after the current step (it sends the Ack)
  },
});
process.stderr.write(`worker ${workerName} listening on ${node.url}\n`);
