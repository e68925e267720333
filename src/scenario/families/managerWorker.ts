/**
 * The manager/worker family in scenario files: role parameters, how a role becomes an actor (machine
 * + input + simulated environment), the invariant checker, completion and summary metrics.
 */
import { z } from 'zod';
import type { ActorDefinition, SimEnvironment, SimObserver } from '../../engine/createSimulation.js';
import type { LatencyDist } from '../../engine/network.js';
import { sampleLatencyUs } from '../../engine/network.js';
import { managerMachine } from '../../actors/manager-worker/manager.machine.js';
import type { ManagerInput } from '../../actors/manager-worker/manager.machine.js';
import { workerMachine } from '../../actors/manager-worker/worker.machine.js';
import type { WorkerInput } from '../../actors/manager-worker/worker.machine.js';
import { createMwChecker, MW_INVARIANTS } from '../../invariants/managerWorker.js';
import type { MwActorInfo } from '../../invariants/managerWorker.js';
import type { MwMode, MwObservation } from '../../protocol/managerWorker.js';
import { MW_MODES, parseMwMessage } from '../../protocol/managerWorker.js';
import { duration, durationDist, nonNegativeInt, positiveDuration, positiveInt, probability, selectors } from '../schemaParts.js';
import type { FamilyBuildContext, ProtocolFamily } from './types.js';

const common = {
  count: positiveInt.default(1).meta({ description: 'How many actors of this role.' }),
  name: z.string().min(1).optional().meta({ description: 'Name (count 1) or name prefix (names become prefix-0, prefix-1, …).' }),
  checkInterval: positiveDuration.default('15s').meta({ description: 'Liveness check period.' }),
  timeout: positiveDuration.default('60s').meta({ description: 'A partner silent this long after a ping is dropped.' }),
};

export const mwManagerRole = z.strictObject({
  role: z.literal('mw.manager'),
  ...common,
  tasks: z
    .strictObject({
      count: nonNegativeInt.meta({ description: 'Tasks this manager distributes.' }),
      timeout: duration.default('30s').meta({ description: 'Per-task timeout (enforced by the worker).' }),
      programKind: z.string().default('WASM0m1n0'),
      maxNetworkUsage: nonNegativeInt.default(0),
    })
    .default({ count: 0, timeout: '30s', programKind: 'WASM0m1n0', maxNetworkUsage: 0 }),
  maxWorkers: nonNegativeInt.default(0).meta({ description: '0: no limit (as the original).' }),
  maxFailures: positiveInt.default(3).meta({ description: 'Counted failures after which a task is definitely failed.' }),
  statusPoll: duration.default('60s').meta({ description: 'Ask about running tasks without news for this long (TasksPing).' }),
});

export const mwWorkerRole = z.strictObject({
  role: z.literal('mw.worker'),
  ...common,
  cpuCount: positiveInt.default(1).meta({ description: 'Task slots.' }),
  memory: nonNegativeInt.default(4096).meta({ description: 'MiB, declared in ManagerRequest.' }),
  workerPrice: z.number().min(0).default(1),
  networkPrice: z.number().min(0).default(1),
  networkSpeed: z.number().min(0).default(100),
  programKinds: z.array(z.string()).default(['WASM0m1n0']),
  managers: selectors.optional().meta({ description: 'Peers to contact at start (default: every manager).' }),
  authorizedManagers: z.array(z.string()).default([]).meta({ description: 'Managers this worker may join; empty: any.' }),
  retry: positiveDuration.default('5s').meta({ description: 'How long a search waits before contacting peers again.' }),
  fetch: durationDist.default('0ms').meta({ description: 'Time to fetch a program.' }),
  run: durationDist.default('1s').meta({ description: 'Time a task runs.' }),
  failures: z
    .strictObject({
      download: probability.default(0),
      runtime: probability.default(0),
      hang: probability.default(0).meta({ description: 'The task never finishes (its timeout fires).' }),
    })
    .default({ download: 0, runtime: 0, hang: 0 }),
});

type ManagerRole = z.infer<typeof mwManagerRole>;
type WorkerRole = z.infer<typeof mwWorkerRole>;

/** The simulated environment of a worker: program fetch and task run times, failures, hangs. */
function workerEnvironment(role: WorkerRole, ctx: FamilyBuildContext, path: (string | number)[]): SimEnvironment {
  const fetch: LatencyDist = ctx.dist(role.fetch, [...path, 'fetch']);
  const run: LatencyDist = ctx.dist(role.run, [...path, 'run']);
  return {
    exec(effect, rng) {
      if (effect.op === 'fetch') {
        const ok = !rng.chance(role.failures.download);
        return { delayUs: Math.max(0, sampleLatencyUs(fetch, rng)), event: { type: 'env.fetch', ref: effect.ref, ok } };
      }
      if (effect.op === 'run') {
        if (rng.chance(role.failures.hang)) return undefined;
        const ok = !rng.chance(role.failures.runtime);
        return {
          delayUs: Math.max(0, sampleLatencyUs(run, rng)),
          event: { type: 'env.run', ref: effect.ref, ok, result: ok ? `ok:${effect.ref}` : '' },
        };
      }
      return undefined;
    },
  };
}

/**
 * Request ids of a restarted node start at incarnation × this, so a new incarnation's requests are
 * never taken for an old one's (nothing survives a crash, not even the counter).
 */
const RID_RANGE = 1_000_000_000;

export const managerWorkerFamily: ProtocolFamily = {
  protocol: 'manager-worker',
  title: 'Manager/worker (Balthazar)',
  shardLocal: true,
  modes: MW_MODES,
  defaultMode: 'strict',
  roles: [mwManagerRole, mwWorkerRole],
  invariants: MW_INVARIANTS,
  parseMessage: parseMwMessage,

  build(ctx) {
    const mode = ctx.mode as MwMode;
    const managers = ctx.actors.filter((a) => a.role === 'mw.manager').map((a) => a.name);
    const actors: ActorDefinition[] = [];
    // What the checker knows of an actor: each actor's by index, one per worker entry (a million
    // workers: no map of a million names in the checker), and every distinct one (its maxima).
    const infoAt: MwActorInfo[] = [];
    const infos: MwActorInfo[] = [];
    // Actors of one role entry share their (read-only) peer lists, specs and checker info: 10⁵
    // workers, one copy.
    const shared = new Map<unknown, { peers: string[]; specs: WorkerInput['specs']; env: SimEnvironment; info: MwActorInfo }>();
    for (const a of ctx.actors) {
      const ms = (d: string): number => ctx.durationUs(d) / 1000;
      if (a.role === 'mw.manager') {
        const r = a.params as ManagerRole;
        const input: ManagerInput = {
          name: a.name,
          mode,
          checkIntervalMs: ms(r.checkInterval),
          timeoutMs: ms(r.timeout),
          maxWorkers: r.maxWorkers,
          maxFailures: r.maxFailures,
          statusPollMs: ms(r.statusPoll),
          tasks: {
            count: r.tasks.count,
            timeoutS: ms(r.tasks.timeout) / 1000,
            programKind: r.tasks.programKind,
            maxNetworkUsage: r.tasks.maxNetworkUsage,
          },
        };
        actors.push({
          name: a.name,
          role: a.role,
          machine: managerMachine,
          input,
          restartInput: (k) => ({ ...input, ridBase: k * RID_RANGE }),
        });
        const info: MwActorInfo = {
          name: a.name,
          role: 'mw.manager',
          checkIntervalMs: input.checkIntervalMs,
          timeoutMs: input.timeoutMs,
          maxFailures: r.maxFailures,
        };
        infoAt.push(info);
        infos.push(info);
      } else {
        const r = a.params as WorkerRole;
        let common = shared.get(r);
        if (!common) {
          common = {
            peers: r.managers === undefined ? managers : ctx.select(r.managers, [...a.path, 'managers']),
            specs: {
              workerPrice: r.workerPrice,
              networkPrice: r.networkPrice,
              cpuCount: r.cpuCount,
              memory: r.memory,
              networkSpeed: r.networkSpeed,
              supportedProgramKinds: r.programKinds,
            },
            env: workerEnvironment(r, ctx, a.path),
            // The first actor's name stands for the entry (the checker looks actors up by index).
            info: {
              name: a.name,
              role: 'mw.worker',
              checkIntervalMs: ms(r.checkInterval),
              timeoutMs: ms(r.timeout),
              authorizedManagers: r.authorizedManagers,
            },
          };
          shared.set(r, common);
          infos.push(common.info);
        }
        const input: WorkerInput = {
          name: a.name,
          mode,
          specs: common.specs,
          peers: common.peers,
          authorizedManagers: r.authorizedManagers,
          checkIntervalMs: ms(r.checkInterval),
          timeoutMs: ms(r.timeout),
          retryMs: ms(r.retry),
        };
        actors.push({
          name: a.name,
          role: a.role,
          machine: workerMachine,
          input,
          env: common.env,
          restartInput: (k) => ({ ...input, ridBase: k * RID_RANGE }),
        });
        infoAt.push(common.info);
      }
    }

    if (infoAt.length !== ctx.actors.length) throw new Error('manager-worker: one checker info per declared actor');
    const checker = createMwChecker({
      actors: infos,
      infoOf: (name) => {
        const i = ctx.indexOf(name);
        return i === undefined ? undefined : infoAt[i];
      },
      enabled: ctx.enabledInvariants,
      latencyBoundUs: ctx.latencyBoundUs,
      recentTrace: ctx.recentTrace,
    });

    // Completion and metrics from observations.
    const done = new Set<string>();
    let mine: { owns: (name: string) => boolean; managers: string[]; doneSize: number; value: boolean } | undefined;
    const metrics = {
      tasksCompleted: 0,
      tasksFailedDefinitely: 0,
      taskErrorsByKind: {} as Record<string, number>,
      workersJoined: 0,
      workersDropped: {} as Record<string, number>,
      timeouts: 0,
      unexpectedStatuses: 0,
      tasksPingUnanswered: 0,
    };
    const pingsInFlight = new Map<string, number>();
    const metricsObserver: SimObserver = {
      onObserve(_t, actor, o) {
        const obs = o as MwObservation;
        switch (obs.kind) {
          case 'mw.done':
            done.add(actor);
            break;
          case 'mw.task.completed':
            metrics.tasksCompleted++;
            break;
          case 'mw.task.failed':
            metrics.tasksFailedDefinitely++;
            break;
          case 'mw.worker.add':
            metrics.workersJoined++;
            break;
          case 'mw.worker.drop':
            metrics.workersDropped[obs.reason] = (metrics.workersDropped[obs.reason] ?? 0) + 1;
            break;
          case 'mw.timeout':
            metrics.timeouts++;
            break;
          case 'mw.task.unexpected':
            metrics.unexpectedStatuses++;
            break;
          default:
        }
      },
      onSend(_t, from, to, msg) {
        const m = msg as { type: string; status?: { kind: string; error?: string }; re?: number; rid?: number };
        if (m.type === 'TaskStatus' && m.status?.kind === 'Error') {
          const k = m.status.error ?? 'UNKNOWN';
          metrics.taskErrorsByKind[k] = (metrics.taskErrorsByKind[k] ?? 0) + 1;
        }
        if (m.type === 'TasksPing') pingsInFlight.set(`${from}>${to}#${m.rid}`, 1);
      },
      onDeliver(_t, to, from, msg) {
        const m = msg as { type: string; re?: number };
        if (
          pingsInFlight.size > 0 &&
          m.re !== undefined &&
          pingsInFlight.delete(`${to}>${from}#${m.re}`) &&
          m.type !== 'TasksPong' &&
          m.type !== 'NotMine'
        ) {
          metrics.tasksPingUnanswered++;
        }
      },
    };

    // A worker that knows one manager talks to it alone: the two belong on one shard.
    // By index: a million names need no name index.
    const flock = new Map<string, number[]>();
    actors.forEach((a, i) => void (a.role === 'mw.manager' && flock.set(a.name, [i])));
    actors.forEach((a, i) => {
      const peers = (a.input as Partial<WorkerInput>).peers;
      if (a.role === 'mw.worker' && peers?.length === 1) flock.get(peers[0])?.push(i);
    });
    return {
      actors,
      observers: [checker, metricsObserver],
      checker,
      affinity: [...flock.values()].filter((g) => g.length > 1),
      isComplete: () => managers.length > 0 && done.size === managers.length,
      // Every manager on the shard is done (and the run has managers at all). Asked after every
      // event: the shard's managers are found once per `owns`, and the answer changes only when
      // `done` grows (nothing leaves it).
      shardComplete: (owns) => {
        if (mine?.owns !== owns) mine = { owns, managers: managers.filter(owns), doneSize: -1, value: false };
        if (mine.doneSize !== done.size) {
          mine.doneSize = done.size;
          mine.value = managers.length > 0 && mine.managers.every((m) => done.has(m));
        }
        return mine.value;
      },
      metrics: () => ({ ...metrics }),
    };
  },
};
