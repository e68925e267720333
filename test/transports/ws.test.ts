/**
 * The live WebSocket host over loopback: the simulator's manager and worker machines, on the wall
 * clock, each actor in its own live node with its own WebSocket server on 127.0.0.1 (ephemeral
 * port); one worker in a separate Node process; invalid frames from a raw `ws` client.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { managerMachine } from '../../src/actors/manager-worker/manager.machine.js';
import type { ManagerInput } from '../../src/actors/manager-worker/manager.machine.js';
import { workerMachine } from '../../src/actors/manager-worker/worker.machine.js';
import type { WorkerInput } from '../../src/actors/manager-worker/worker.machine.js';
import { xstateBackend } from '../../src/engine/machineBackend.js';
import { createLiveNode, createMwWorkerEnv } from '../../src/transports/ws/index.js';
import type { LiveNode } from '../../src/transports/ws/index.js';

const root = join(import.meta.dirname, '..', '..');
const childScript = join(import.meta.dirname, 'wsWorkerChild.mjs');

const managerInput = (tasks: number): ManagerInput => ({
  name: 'manager',
  mode: 'strict',
  checkIntervalMs: 200,
  timeoutMs: 1000,
  maxWorkers: 0,
  maxFailures: 3,
  statusPollMs: 0,
  tasks: { count: tasks, timeoutS: 5, programKind: 'WASM0m1n0', maxNetworkUsage: 0 },
});

const workerInput = (name: string, cpuCount: number): WorkerInput => ({
  name,
  mode: 'strict',
  specs: { workerPrice: 1, networkPrice: 1, cpuCount, memory: 4096, networkSpeed: 100, supportedProgramKinds: ['WASM0m1n0'] },
  peers: ['manager'],
  authorizedManagers: [],
  checkIntervalMs: 200,
  timeoutMs: 1000,
  retryMs: 200,
});

/** Polls `cond` every 20 ms for at most `ms`; throws with `what` (and details) if it never holds. */
async function waitFor(what: string, cond: () => boolean, ms = 10_000, details: () => unknown = () => ''): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what} ${JSON.stringify(details())}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const observed = (node: LiveNode, kind: string) =>
  node.observations.filter((o) => o.obs.kind === kind).map((o) => o.obs as Record<string, unknown>);

/** Everything a test opened, closed after it whatever happened. */
let cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  const todo = cleanups.reverse();
  cleanups = [];
  for (const c of todo) await c();
});

async function node(opts: Parameters<typeof createLiveNode>[0]): Promise<LiveNode> {
  const n = await createLiveNode(opts);
  cleanups.push(() => n.close());
  return n;
}

/** A raw `ws` client (closed after the test); resolves once open. */
async function rawClient(url: string): Promise<{ ws: WebSocket; received: string[] }> {
  const ws = new WebSocket(url);
  const received: string[] = [];
  ws.on('message', (d) => received.push(String(d)));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        if (ws.readyState === WebSocket.CLOSED) return resolve();
        ws.once('close', () => resolve());
        ws.terminate();
      }),
  );
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, received };
}

describe('live WebSocket host (manager/worker over loopback)', () => {
  it.each(['flat', 'xstate'] as const)(
    'one manager and three workers complete 12 tasks over real sockets (%s backend)',
    async (backendName) => {
      const backend = backendName === 'xstate' ? xstateBackend : undefined;
      const manager = await node({ name: 'manager', machine: managerMachine, input: managerInput(12), backend });
      expect(manager.url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
      expect(manager.port).toBeGreaterThan(0);
      const workers: LiveNode[] = [];
      for (const [i, cpuCount] of [1, 2, 1].entries()) {
        const name = `w${i}`;
        workers.push(
          await node({
            name,
            machine: workerMachine,
            input: workerInput(name, cpuCount),
            backend,
            env: createMwWorkerEnv({ fetchMs: 2, runMs: 20 }),
            peers: { manager: manager.url },
          }),
        );
      }
      // Each node has its own server; the manager reaches the workers at their own addresses.
      expect(new Set([manager.port, ...workers.map((w) => w.port)]).size).toBe(4);
      for (const w of workers) manager.setPeer(w.name, w.url);

      await waitFor(
        'mw.done at the manager',
        () => observed(manager, 'mw.done').length > 0,
        10_000,
        () => ({
          manager: manager.observations.slice(-5),
          log: manager.log.slice(-5),
        }),
      );
      expect(observed(manager, 'mw.done')).toEqual([{ kind: 'mw.done', completed: 12, failed: 0 }]);
      expect(observed(manager, 'mw.task.completed')).toHaveLength(12);
      expect(new Set(observed(manager, 'mw.worker.add').map((o) => o.worker))).toEqual(new Set(['w0', 'w1', 'w2']));

      for (const w of workers) {
        expect(observed(w, 'mw.manager')[0]).toEqual({ kind: 'mw.manager', manager: 'manager' });
        expect(w.stats.framesReceived).toBeGreaterThan(0);
        expect(w.stats.framesSent).toBeGreaterThan(0);
        expect(w.stats.invalidFrames).toBe(0);
        expect(w.log.filter((e) => e.kind === 'actor-error')).toEqual([]);
      }
      expect(manager.stats.framesReceived).toBeGreaterThan(0);
      expect(manager.stats.framesSent).toBeGreaterThan(0);
      expect(manager.stats.invalidFrames).toBe(0);
      expect(manager.halted).toBe(false);

      // A graceful shutdown: the manager says ManagerBye to each worker, which lets it go.
      manager.shutdown();
      expect(manager.halted).toBe(true);
      await waitFor('every worker released by ManagerBye', () =>
        workers.every((w) => observed(w, 'mw.manager').some((o) => o.manager === null && o.reason === 'bye')),
      );
      await Promise.all([manager, ...workers].map((n) => n.close()));
    },
  );

  it('rejects and counts invalid frames from a raw client, and keeps working', async () => {
    const manager = await node({ name: 'manager', machine: managerMachine, input: managerInput(0) });
    const { ws, received } = await rawClient(manager.url);
    const bad = [
      'not json',
      '{"from":"x","to":"manager","msg":{"type":"Nope"}}',
      '[1,2,3]',
      '{"from":42,"to":"manager","msg":{"type":"Ack","re":1}}',
      '{"from":"x","to":"someone-else","msg":{"type":"Ack","re":1}}',
      '{"from":"x","to":"manager","msg":{"type":"NodeTypeRequest","rid":-1,"nodeType":"WORKER"}}',
    ];
    for (const frame of bad) ws.send(frame);
    ws.send(Buffer.from([0xff, 0x00]), { binary: true });
    await waitFor(
      '7 invalid frames counted',
      () => manager.stats.invalidFrames === bad.length + 1,
      5000,
      () => manager.stats,
    );
    const reasons = manager.log.filter((e) => e.kind === 'invalid-frame').map((e) => (e.kind === 'invalid-frame' ? e.reason : ''));
    expect(reasons[0]).toBe('not JSON');
    expect(reasons[1]).toMatch(/^invalid message: /);
    expect(reasons[4]).toMatch(/addressed to "someone-else"/);
    expect(reasons[6]).toMatch(/binary/);
    expect(manager.stats.messagesDelivered).toBe(0);
    expect(manager.halted).toBe(false);

    // Still alive: a valid request from a peer without a URL is answered on its own connection.
    ws.send(JSON.stringify({ from: 'probe', to: 'manager', msg: { type: 'NodeTypeRequest', rid: 7, nodeType: 'WORKER' } }));
    await waitFor('the answer to the probe', () => received.length > 0, 5000);
    expect(JSON.parse(received[0])).toEqual({ from: 'manager', to: 'probe', msg: { type: 'NodeTypeAnswer', re: 7, nodeType: 'MANAGER' } });
    expect(manager.stats.invalidFrames).toBe(bad.length + 1);
    expect(manager.stats.messagesDelivered).toBe(1);
  });

  it('drops messages to unknown or unreachable peers and reports them', async () => {
    // Peers: a name with no URL at all, and a URL where nobody listens (a closed node's port).
    const gone = await createLiveNode({ name: 'gone', machine: managerMachine, input: managerInput(0) });
    await gone.close();
    const input = { ...workerInput('w-lonely', 1), peers: ['nobody', 'manager'] };
    const w = await node({ name: 'w-lonely', machine: workerMachine, input, env: createMwWorkerEnv(), peers: { manager: gone.url } });
    await waitFor(
      'both drops',
      () => (w.stats.dropped['unknown-peer'] ?? 0) > 0 && (w.stats.dropped.unreachable ?? 0) > 0,
      5000,
      () => w.log,
    );
    expect(w.log.some((e) => e.kind === 'drop' && e.to === 'nobody' && e.type === 'NodeTypeRequest')).toBe(true);
    expect(w.log.some((e) => e.kind === 'socket-error' && e.peer === 'manager')).toBe(true);
    expect(w.halted).toBe(false);
  });

  it('runs a worker in a separate Node process (the built package) that exits by itself', async () => {
    const built = join(root, 'dist', 'transports', 'ws', 'index.js');
    expect(existsSync(built), `${built} is missing: run \`npx tsc -p tsconfig.json\` first`).toBe(true);
    const manager = await node({ name: 'manager', machine: managerMachine, input: managerInput(6) });

    const child = spawn(process.execPath, [childScript, manager.url, 'manager', 'child-w', '15000'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += String(d)));
    child.stderr.on('data', (d) => (stderr += String(d)));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    cleanups.push(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });

    // The manager never learns the child's URL: it answers on the child's own connection.
    await waitFor(
      'mw.done with the child worker',
      () => observed(manager, 'mw.done').length > 0,
      10_000,
      () => ({ stderr, log: manager.log.slice(-5) }),
    );
    expect(observed(manager, 'mw.done')).toEqual([{ kind: 'mw.done', completed: 6, failed: 0 }]);
    expect(observed(manager, 'mw.worker.add').map((o) => o.worker)).toEqual(['child-w']);
    expect(manager.stats.framesReceived).toBeGreaterThan(0);

    // ManagerBye lets the worker go; it then closes its node and exits on its own.
    manager.shutdown();
    const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 10_000))]);
    expect(code, `child did not exit in time; stderr: ${stderr}`).toBe(0);
    const summary = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as {
      code: number;
      stats: { framesReceived: number; framesSent: number; invalidFrames: number };
      observations: { kind: string; manager?: string | null; reason?: string }[];
    };
    expect(summary.code).toBe(0);
    expect(summary.stats.framesReceived).toBeGreaterThan(0);
    expect(summary.stats.framesSent).toBeGreaterThan(0);
    expect(summary.stats.invalidFrames).toBe(0);
    expect(summary.observations).toContainEqual({ kind: 'mw.manager', manager: 'manager' });
    expect(summary.observations).toContainEqual({ kind: 'mw.manager', manager: null, reason: 'bye' });
  });
});
