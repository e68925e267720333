/**
 * `protosim/transports/ws`: the live WebSocket host. Runs protosim's actor machines (the same ones
 * the simulator runs) on the wall clock, one actor per node, over real WebSockets.
 *
 * @example
 * import { managerMachine, workerMachine } from 'protosim';
 * import { createLiveNode, createMwWorkerEnv } from 'protosim/transports/ws';
 * const manager = await createLiveNode({ name: 'manager', machine: managerMachine, input: managerInput });
 * const worker = await createLiveNode({ name: 'w0', machine: workerMachine, input: workerInput,
 *   env: createMwWorkerEnv({ runMs: 20 }), peers: { manager: manager.url } });
 */
export { createLiveNode } from './liveHost.js';
export type { DropReason, LiveEnvironment, LiveLogEntry, LiveNode, LiveNodeOptions, LiveNodeStats, MessageValidator } from './liveHost.js';
export { createMwWorkerEnv } from './managerWorkerEnv.js';
export type { DelayMs, MwWorkerEnv, MwWorkerEnvOptions } from './managerWorkerEnv.js';
