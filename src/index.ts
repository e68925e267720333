/**
 * protosim's public API. Heavy optional parts (the WebSocket live host) live on sub-path exports
 * (`protosim/transports/ws`) so that importing the core never loads them.
 *
 * @example
 * import { loadScenario, runScenario } from 'protosim';
 * const summary = runScenario(loadScenario('scenarios/manager-worker/basic.yaml'), { seed: 7 });
 * for (const inv of summary.invariants) console.log(inv.id, inv.status);
 */
export { createSimulation } from './engine/createSimulation.js';
export type {
  ActorDefinition,
  Counters,
  FaultAction,
  RunResult,
  ScheduledFault,
  SimEnvironment,
  SimObserver,
  Simulation,
  SimulationOptions,
  SimWorld,
  TraceRecord,
} from './engine/createSimulation.js';
export { BACKEND_NAMES, backendByName, flatBackend, xstateBackend } from './engine/machineBackend.js';
export type { BackendName, KernelEffect, MachineBackend, MachineInstance } from './engine/machineBackend.js';
export { compileFlatMachine, FlatCompileError } from './engine/flatBackend.js';
export type { LatencyDist, LinkParams, NetworkSpec, Ordering } from './engine/network.js';
export { RandomStream } from './engine/rng.js';
export { formatDurationUs, parseDurationUs } from './engine/time.js';
export { isProtosimError, ProtosimError } from './engine/errors.js';
export type { ErrorCode } from './engine/errors.js';

export { effect } from './protocol/host.js';
export type { Envelope, HostEffect, MessageEvent } from './protocol/host.js';
export * as managerWorker from './protocol/managerWorker.js';
export * as virdi from './protocol/virdi.js';

export { managerMachine } from './actors/manager-worker/manager.machine.js';
export type { ManagerInput } from './actors/manager-worker/manager.machine.js';
export { workerMachine } from './actors/manager-worker/worker.machine.js';
export type { WorkerInput } from './actors/manager-worker/worker.machine.js';
export { serverMachine as virdiServerMachine } from './actors/virdi/server.machine.js';
export type { ServerInput as VirdiServerInput } from './actors/virdi/server.machine.js';
export { consumerMachine as virdiConsumerMachine, producerMachine as virdiProducerMachine } from './actors/virdi/clients.machine.js';
export type { ConsumerInput as VirdiConsumerInput, ProducerInput as VirdiProducerInput } from './actors/virdi/clients.machine.js';

export { BufferCore, CORE_KINDS } from './buffers/bufferCore.js';
export type { ConsumerParams, CoreConfig, CoreKind, RandomSource } from './buffers/bufferCore.js';
export { Edge, StepFlag } from './buffers/layout.js';
export type { CoreViews } from './buffers/layout.js';

export { createMwChecker, MW_INVARIANTS } from './invariants/managerWorker.js';
export { createVirdiChecker, VIRDI_INVARIANTS } from './invariants/virdi.js';
export type { InvariantInfo, InvariantResult, Violation } from './invariants/types.js';

export { formatProblem, loadScenario, parseScenario, ScenarioError } from './scenario/loadScenario.js';
export type { LoadedScenario, ScenarioProblem } from './scenario/loadScenario.js';
export { planScenario, runScenario } from './scenario/runScenario.js';
export type { RunOverrides, RunSummary } from './scenario/runScenario.js';
export { scenarioJsonSchema, scenarioSchema } from './scenario/schema.js';
export type { Scenario } from './scenario/schema.js';
