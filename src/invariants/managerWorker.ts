/**
 * The ten invariants of the manager/worker protocol (`shared/protocols/manager-worker.md`,
 * "Invariants"), checked from outside the actors: from the messages they send and receive and the
 * observations they emit. A faulty machine cannot hide a violation by not reporting it.
 */
import type { FaultAction, TraceRecord } from '../engine/createSimulation.js';
import type { Envelope } from '../protocol/host.js';
import type { MwMessage, MwObservation, MwRequestType, TaskStatus } from '../protocol/managerWorker.js';
import { COUNTED_FAILURES, MW_ANSWERS, RELATIONSHIP_SCOPED, isMwRequest, isTerminal, statusRank } from '../protocol/managerWorker.js';
import type { InvariantChecker, InvariantInfo } from './types.js';
import { InvariantLedger } from './types.js';

export const MW_INVARIANTS: readonly InvariantInfo[] = [
  { id: 'mw.one-manager', number: 1, title: 'a worker has at most one manager; once settled W.manager = M iff W ∈ M.workers' },
  { id: 'mw.one-answer', number: 2, title: 'every request gets exactly one answer (of a kind it allows); no answer is answered' },
  { id: 'mw.not-mine', number: 3, title: 'relationship-scoped requests from a non-partner get NotMine and change no task state' },
  {
    id: 'mw.silence-after-bye',
    number: 4,
    title: 'after ManagerBye or NotMine, neither side sends new relationship-scoped requests to the other',
  },
  { id: 'mw.liveness', number: 5, title: 'an unresponsive partner is dropped within timeout + checkInterval; a responsive one never is' },
  {
    id: 'mw.task-monotone',
    number: 6,
    title: "each task's reports are monotone Pending → Started → Completed | Error; TasksPong answers exactly the asked ids",
  },
  { id: 'mw.slots', number: 7, title: 'tasks assigned to a worker ≤ its cpuCount; every assigned task of a lost worker is aborted once' },
  {
    id: 'mw.failure-accounting',
    number: 8,
    title: 'failures counted as specified; a task is definitely failed at most once and never after completion',
  },
  { id: 'mw.authorised-only', number: 9, title: 'a worker never keeps a manager outside a non-empty authorizedManagers' },
  { id: 'mw.shutdown-bye-only', number: 10, title: 'a shutting-down node sends only ManagerBye' },
];

/** What the checker must know about each actor. */
export interface MwActorInfo {
  /** The actor's name (not read when the checker is given {@link MwCheckerOptions.infoOf}). */
  name: string;
  role: 'mw.manager' | 'mw.worker';
  checkIntervalMs: number;
  timeoutMs: number;
  /** Workers only. */
  authorizedManagers?: string[];
  /** Managers only. */
  maxFailures?: number;
}

export interface MwCheckerOptions {
  /** Every actor; with {@link MwCheckerOptions.infoOf}, at least every distinct setting (the deadlines' maxima). */
  actors: MwActorInfo[];
  /**
   * Looks an actor up by name (default: in `actors`). A scenario builder that indexes its names
   * already gives this, and one info per role entry in `actors`: no second index of a million names.
   */
  infoOf?: (name: string) => MwActorInfo | undefined;
  enabled: ReadonlySet<string>;
  /** A latency most messages stay under; widens the settling windows. */
  latencyBoundUs: number;
  recentTrace: () => TraceRecord[];
}

interface StepRequest {
  from: string;
  rid: number;
  type: MwRequestType;
  answers: number;
  /** Relationship-scoped request from a non-partner (invariant 3). */
  nonPartner: boolean;
  askedIds?: string[];
}

interface Relationship {
  owner: string;
  partner: string;
  /** The owner's latest request id when the relationship started: NotMine about older requests is stale. */
  startRid: number;
  // Times below are on the owner's own clock (virtual time + its skew): a node keeps the liveness
  // rule by the clock it reads, so a clock fault moves its deadlines with it.
  sinceUs: number;
  lastPongUs: number;
  /** When the owner last pinged the partner (owner's clock). */
  lastPingUs: number;
  /** Virtual time of the first ping the owner sent after the last pong (undefined: none pending). */
  pendingPingUs: number | undefined;
  /** Virtual time until which a deadline is not judged (a resume gives the node two checks). */
  graceUntilUs: number;
  reported: boolean;
}

interface TaskAccount {
  failures: number;
  completed: boolean;
  failed: boolean;
}

/** A map keyed by an ordered pair of names, without building a key string per lookup. */
class PairMap<V> {
  private readonly rows = new Map<string, Map<string, V>>();
  get(a: string, b: string): V | undefined {
    return this.rows.get(a)?.get(b);
  }
  has(a: string, b: string): boolean {
    return this.rows.get(a)?.has(b) ?? false;
  }
  set(a: string, b: string, v: V): void {
    let row = this.rows.get(a);
    if (!row) this.rows.set(a, (row = new Map()));
    row.set(b, v);
  }
  delete(a: string, b: string): void {
    this.rows.get(a)?.delete(b);
  }
  deleteRow(a: string): void {
    this.rows.delete(a);
  }
  forEach(f: (v: V) => void): void {
    for (const row of this.rows.values()) for (const v of row.values()) f(v);
  }
}

/** Deadlines (settling, liveness) are checked this often in virtual time; reports may lag by as much. */
const SWEEP_US = 1_000_000;

export function createMwChecker(opts: MwCheckerOptions): InvariantChecker {
  const L = new InvariantLedger(MW_INVARIANTS, opts.enabled, opts.recentTrace);
  const byName = opts.infoOf ? undefined : new Map(opts.actors.map((a) => [a.name, a]));
  const info = { get: opts.infoOf ?? ((n: string) => byName!.get(n)) };
  const isWorkerName = (n: string): boolean => info.get(n)?.role === 'mw.worker';
  const isManagerName = (n: string): boolean => info.get(n)?.role === 'mw.manager';
  const maxOf = (f: (a: MwActorInfo) => number): number => opts.actors.reduce((m, a) => Math.max(m, f(a)), 0);
  /**
   * The longest a correct node may keep a silent partner: after the last pong at P, a ping goes out
   * at the first check after P + I, and the drop comes at the first check after both that ping and
   * P + T, so by P + max(T, 2I) + I.
   */
  const dropAllowanceUs = (a: MwActorInfo): number => (Math.max(a.timeoutMs, 2 * a.checkIntervalMs) + a.checkIntervalMs) * 1000 + 1000;
  /** One timeout plus one exchange to settle (invariant 1), with room for slow messages. */
  const settleUs = maxOf(dropAllowanceUs) + maxOf((a) => a.checkIntervalMs) * 1000 + 4 * opts.latencyBoundUs;

  // Views built from observations.
  const workerManager = new Map<string, string | null>();
  const managerWorkers = new Map<string, Set<string>>();
  /** One-sided pairs: since when, and a virtual time until which they may stay so (after a fault that delays settling). */
  const asym = new PairMap<{ w: string; m: string; since: number; graceUntil: number }>();
  // Invariant 4: "a>b" present = a must not send relationship-scoped requests to b.
  const closed = new PairMap<true>();
  // Invariant 5: relationships by owner>partner.
  const rels = new PairMap<Relationship>();
  // Invariant 6: worker|task → rank of the last report.
  const ranks = new PairMap<number>();
  // TasksExecute requests seen, by sender and request id (a duplicate delivery has the same).
  const executes = new PairMap<true>();
  // Invariant 7: manager|worker → outstanding task ids; declared slots.
  const outstanding = new PairMap<Set<string>>();
  const slots = new PairMap<number>();
  // Invariant 8: manager|task → accounting.
  const accounts = new PairMap<TaskAccount>();
  // Invariant 10.
  const shutDown = new Set<string>();
  // Each actor's latest request id (rids grow per actor).
  const ridSent = new Map<string, number>();
  // Clock skew per actor (invariant 5 is judged on each node's own clock).
  const skews = new Map<string, number>();
  /** Gives the one-sided pairs of `actors` time to settle until `untilUs` (never less than they had). */
  const graceForPairs = (actors: ReadonlySet<string>, untilUs: number): void => {
    asym.forEach((p) => {
      if (p.since !== Infinity && (actors.has(p.w) || actors.has(p.m))) p.graceUntil = Math.max(p.graceUntil, untilUs);
    });
  };
  // Hold faults by id, with the actors on their links (a release brings old news to them).
  const holds = new Map<number, ReadonlySet<string>>();
  const local = (actor: string, t: number): number => t + (skews.get(actor) ?? 0);
  const skewChangedAt = new Map<string, number>();
  const clockDelay = new Map<string, { amountUs: number; untilUs: number }>();
  const delayOf = (actor: string, sinceUs: number): number => {
    const d = clockDelay.get(actor);
    return d && sinceUs <= d.untilUs ? d.amountUs : 0;
  };
  // A paused node cannot be held to its deadlines (invariant 5).
  const paused = new Set<string>();

  // Per-step state.
  let stepReq: StepRequest | undefined;
  let stepActor: string | undefined;
  let expectedAborts: { manager: string; worker: string; tasks: Set<string> }[] = [];
  let mustFail: { manager: string; taskId: string }[] = [];

  const outstandingOf = (m: string, w: string): Set<string> => {
    let set = outstanding.get(m, w);
    if (!set) outstanding.set(m, w, (set = new Set()));
    return set;
  };
  const accountOf = (m: string, taskId: string): TaskAccount => {
    let a = accounts.get(m, taskId);
    if (!a) accounts.set(m, taskId, (a = { failures: 0, completed: false, failed: false }));
    return a;
  };

  const updatePair = (w: string, m: string, t: number): void => {
    const symmetric = (workerManager.get(w) === m) === (managerWorkers.get(m)?.has(w) ?? false);
    if (symmetric) asym.delete(w, m);
    else if (!asym.has(w, m)) asym.set(w, m, { w, m, since: t, graceUntil: 0 });
  };

  const isPartner = (receiver: string, sender: string): boolean =>
    isWorkerName(receiver) ? workerManager.get(receiver) === sender : (managerWorkers.get(receiver)?.has(sender) ?? false);

  const startRel = (owner: string, partner: string, t: number): void => {
    rels.set(owner, partner, {
      owner,
      partner,
      startRid: ridSent.get(owner) ?? 0,
      sinceUs: local(owner, t),
      lastPongUs: -Infinity,
      lastPingUs: -Infinity,
      pendingPingUs: undefined,
      graceUntilUs: 0,
      reported: false,
    });
    closed.delete(owner, partner);
  };

  const sweep = (t: number): void => {
    L.on('mw.one-manager') &&
      asym.forEach((a) => {
        // A paused node cannot settle anything; its pairs are judged from its resume on.
        if (paused.has(a.w) || paused.has(a.m)) return;
        const allowUs = settleUs + delayOf(a.w, a.since) + delayOf(a.m, a.since);
        if (t - a.since > allowUs && t > a.graceUntil) {
          L.violate(
            'mw.one-manager',
            t,
            [a.w, a.m],
            `${a.w}.manager = ${workerManager.get(a.w) ?? 'none'} but ${a.m}.workers ${managerWorkers.get(a.m)?.has(a.w) ? 'contains' : 'lacks'} ${a.w} for ${((t - a.since) / 1e6).toFixed(3)}s (settling allows ${(allowUs / 1e6).toFixed(3)}s)`,
          );
          a.since = Infinity;
        }
      });
    if (L.on('mw.liveness')) {
      rels.forEach((r) => {
        if (r.reported) return;
        const { owner, partner } = r;
        const a = info.get(owner);
        if (!a || paused.has(owner)) return;
        L.check('mw.liveness');
        const quietSince = r.lastPongUs === -Infinity ? r.sinceUs : r.lastPongUs; // owner's clock, as the machine keeps it
        const intervalUs = a.checkIntervalMs * 1000;
        const skew = skews.get(owner) ?? 0;
        // The checks run on timers (virtual time) and the rule reads the owner's clock: a time on the
        // owner's clock is at (that time − its skew) in virtual time. A clock that ever moved puts the
        // checks out of step with the rule by up to one check.
        const stepSlackUs = skews.has(owner) ? intervalUs : 0;
        // A deadline never falls before the last clock jump: the node's next check comes after it.
        const jumpedAt = skewChangedAt.get(owner) ?? -Infinity;
        let deadlineUs: number;
        let why: string;
        if (r.pendingPingUs !== undefined) {
          // A ping is unanswered: the drop comes at the check after both it and quietSince + T.
          deadlineUs = Math.max(r.pendingPingUs, quietSince + a.timeoutMs * 1000 - skew, jumpedAt) + intervalUs + 1000 + stepSlackUs;
          why = `a ping unanswered since ${(r.pendingPingUs / 1e6).toFixed(3)}s`;
        } else {
          // No ping pending: one is due once both the last ping and the last pong are I old.
          deadlineUs = Math.max(Math.max(r.lastPingUs, quietSince) + intervalUs - skew, jumpedAt) + intervalUs + 1000 + stepSlackUs;
          why = 'no ping sent since it was due';
        }
        deadlineUs = Math.max(deadlineUs, r.graceUntilUs);
        if (t > deadlineUs) {
          r.reported = true;
          L.violate(
            'mw.liveness',
            t,
            [owner, partner],
            `${owner} kept unresponsive partner ${partner}: no pong for ${((local(owner, t) - quietSince) / 1e6).toFixed(3)}s (${why}), past the deadline by ${((t - deadlineUs) / 1e6).toFixed(3)}s`,
          );
        }
      });
    }
  };

  /** Reports what the last step left owed: aborts of a lost worker's tasks, definite failures. */
  const flushPending = (t: number): void => {
    // Called after every step; most leave nothing owed (no new arrays then).
    if (expectedAborts.length === 0 && mustFail.length === 0) return;
    for (const e of expectedAborts) {
      for (const taskId of e.tasks)
        L.violate('mw.slots', t, [e.manager, e.worker], `${e.manager} lost ${e.worker} without aborting its task ${taskId}`);
    }
    expectedAborts = [];
    for (const f of mustFail) {
      L.violate('mw.failure-accounting', t, [f.manager], `${f.taskId} reached maxFailures at ${f.manager} but was not definitely failed`);
    }
    mustFail = [];
  };

  const onObservation = (t: number, actor: string, obs: MwObservation): void => {
    switch (obs.kind) {
      case 'mw.manager': {
        const before = workerManager.get(actor) ?? null;
        if (obs.manager !== null) {
          L.check('mw.one-manager');
          if (before !== null && before !== obs.manager) {
            L.violate(
              'mw.one-manager',
              t,
              [actor, before, obs.manager],
              `${actor} took manager ${obs.manager} while still managed by ${before}`,
            );
          }
          L.check('mw.authorised-only');
          const allowed = info.get(actor)?.authorizedManagers ?? [];
          if (allowed.length > 0 && !allowed.includes(obs.manager)) {
            L.violate(
              'mw.authorised-only',
              t,
              [actor, obs.manager],
              `${actor} took manager ${obs.manager}, not in authorizedManagers [${allowed.join(', ')}]`,
            );
          }
          startRel(actor, obs.manager, t);
        } else if (before !== null) {
          rels.delete(actor, before);
        }
        workerManager.set(actor, obs.manager);
        if (before !== null) updatePair(actor, before, t);
        if (obs.manager !== null) updatePair(actor, obs.manager, t);
        break;
      }
      case 'mw.worker.add': {
        let set = managerWorkers.get(actor);
        if (!set) managerWorkers.set(actor, (set = new Set()));
        set.add(obs.worker);
        startRel(actor, obs.worker, t);
        updatePair(obs.worker, actor, t);
        break;
      }
      case 'mw.worker.drop': {
        managerWorkers.get(actor)?.delete(obs.worker);
        rels.delete(actor, obs.worker);
        updatePair(obs.worker, actor, t);
        const tasks = outstanding.get(actor, obs.worker);
        expectedAborts.push({ manager: actor, worker: obs.worker, tasks: new Set(tasks ?? []) });
        outstanding.delete(actor, obs.worker);
        break;
      }
      case 'mw.timeout': {
        L.check('mw.liveness');
        const r = rels.get(actor, obs.peer);
        const a = info.get(actor);
        // As the machine keeps it: the last pong, or the start of the relationship before any pong
        // (a clock jump can put a pong "before" the start; the node's own clock is what counts).
        const lastHeard = r ? (r.lastPongUs === -Infinity ? r.sinceUs : r.lastPongUs) : 0;
        if (r && a && local(actor, t) - lastHeard <= a.timeoutMs * 1000) {
          L.violate(
            'mw.liveness',
            t,
            [actor, obs.peer],
            `${actor} dropped responsive partner ${obs.peer}: ${r.lastPongUs === -Infinity ? 'no pong since the relationship began' : 'last pong'} ${((local(actor, t) - lastHeard) / 1e6).toFixed(3)}s ago, timeout ${a.timeoutMs / 1000}s`,
          );
        }
        break;
      }
      case 'mw.task.aborted': {
        L.check('mw.slots');
        const e = expectedAborts.find((x) => x.manager === actor && x.worker === obs.worker);
        if (!e?.tasks.delete(obs.taskId)) {
          L.violate(
            'mw.slots',
            t,
            [actor, obs.worker],
            `${actor} aborted ${obs.taskId} of ${obs.worker} again, or a task that was not assigned to it`,
          );
        }
        break;
      }
      case 'mw.task.failure': {
        L.check('mw.failure-accounting');
        const acc = accountOf(actor, obs.taskId);
        if (obs.failures !== acc.failures) {
          L.violate(
            'mw.failure-accounting',
            t,
            [actor],
            `${actor} counts ${obs.failures} failures for ${obs.taskId}; the statuses it received count ${acc.failures}`,
          );
        }
        break;
      }
      case 'mw.task.failed': {
        L.check('mw.failure-accounting');
        const acc = accountOf(actor, obs.taskId);
        const max = info.get(actor)?.maxFailures ?? 1;
        if (acc.failed) L.violate('mw.failure-accounting', t, [actor], `${obs.taskId} definitely failed twice`);
        else if (acc.completed) L.violate('mw.failure-accounting', t, [actor], `${obs.taskId} definitely failed after it completed`);
        else if (acc.failures < max)
          L.violate(
            'mw.failure-accounting',
            t,
            [actor],
            `${obs.taskId} definitely failed after ${acc.failures} counted failures (maxFailures ${max})`,
          );
        acc.failed = true;
        mustFail = mustFail.filter((x) => !(x.manager === actor && x.taskId === obs.taskId));
        break;
      }
      case 'mw.task.completed': {
        const acc = accountOf(actor, obs.taskId);
        if (acc.failed) L.violate('mw.failure-accounting', t, [actor], `${obs.taskId} completed after it definitely failed`);
        acc.completed = true;
        break;
      }
      case 'mw.shutdown':
        shutDown.add(actor);
        if (isManagerName(actor)) {
          // A manager that shuts down manages nobody any more; its workers learn it from the Bye.
          const ws = [...(managerWorkers.get(actor) ?? [])];
          managerWorkers.set(actor, new Set());
          rels.deleteRow(actor);
          outstanding.deleteRow(actor);
          for (const w of ws) updatePair(w, actor, t);
        }
        break;
      default:
        break;
    }
  };

  /** A terminal (or Unknown) status for `taskId` reached manager `m` from worker `w`. */
  const managerLearns = (t: number, m: string, w: string, taskId: string, status: TaskStatus): void => {
    const out = outstanding.get(m, w);
    if (!out?.has(taskId)) return;
    out.delete(taskId);
    if (status.kind === 'Error' && COUNTED_FAILURES.has(status.error)) {
      const acc = accountOf(m, taskId);
      acc.failures += 1;
      const max = info.get(m)?.maxFailures ?? 1;
      if (acc.failures >= max && !acc.failed && !acc.completed) mustFail.push({ manager: m, taskId });
    }
    void t;
  };

  const forget = (actor: string, t: number): void => {
    paused.delete(actor);
    shutDown.delete(actor);
    // An actor that crashes (or throws) while handling a request owes no answer.
    if (stepActor === actor) stepReq = undefined;
    if (isWorkerName(actor)) {
      const m = workerManager.get(actor) ?? null;
      workerManager.set(actor, null);
      if (m !== null) {
        rels.delete(actor, m);
        updatePair(actor, m, t);
      }
    } else if (isManagerName(actor)) {
      const ws = managerWorkers.get(actor);
      managerWorkers.set(actor, new Set());
      for (const w of ws ?? []) updatePair(w, actor, t);
      rels.deleteRow(actor);
      outstanding.deleteRow(actor);
      accounts.deleteRow(actor);
    }
  };

  return {
    onDeliver(t, to, from, msg) {
      const m = msg as MwMessage;
      if (isMwRequest(m)) {
        const scoped = RELATIONSHIP_SCOPED.has(m.type);
        const nonPartner = scoped && !isPartner(to, from);
        stepReq = { from, rid: m.rid, type: m.type, answers: 0, nonPartner };
        stepActor = to;
        if (m.type === 'TasksPing') stepReq.askedIds = m.taskIds;
        L.check('mw.one-answer');
        if (scoped) L.check('mw.not-mine');
        if (m.type === 'ManagerRequest' && isManagerName(to)) slots.set(to, from, m.cpuCount);
        // A new assignment starts a task's reports afresh; a duplicated delivery of the same
        // TasksExecute (the same sender and request id, as the worker itself tells them apart)
        // does not. Not object identity: a message that crossed threads is a copy.
        if (m.type === 'TasksExecute' && !nonPartner && !executes.has(from, String(m.rid))) {
          executes.set(from, String(m.rid), true);
          for (const task of m.tasks) ranks.set(to, task.taskId, -1);
        }
        if (m.type === 'TaskStatus' && !nonPartner && isManagerName(to) && isTerminal(m.status)) {
          L.check('mw.failure-accounting');
          managerLearns(t, to, from, m.taskId, m.status);
        }
      } else {
        if (m.type === 'ManagerPong') {
          const r = rels.get(to, from);
          if (r) {
            r.lastPongUs = local(to, t);
            r.pendingPingUs = undefined;
          }
        }
        if (m.type === 'TasksPong' && isManagerName(to) && managerWorkers.get(to)?.has(from)) {
          for (const s of m.statuses)
            if (isTerminal(s.status) || s.status.kind === 'Unknown') managerLearns(t, to, from, s.taskId, s.status);
        }
      }
      // A NotMine about a request older than the current relationship is a late or duplicated one
      // from an earlier relationship: it ends nothing (the machines ignore it too).
      const rel = m.type === 'NotMine' ? rels.get(to, from) : undefined;
      const stale = rel !== undefined && (m as { re: number }).re <= rel.startRid;
      if (m.type === 'ManagerBye' || (m.type === 'NotMine' && !stale)) closed.set(to, from, true);
    },

    onSend(t, from, to, msg) {
      const m = msg as MwMessage;
      if (shutDown.has(from)) {
        L.check('mw.shutdown-bye-only');
        if (m.type !== 'ManagerBye')
          L.violate('mw.shutdown-bye-only', t, [from, to], `${from} sent ${m.type} to ${to} after it began shutting down`);
      }
      if (!isMwRequest(m)) {
        // An answer: it must answer the request being processed, once.
        const re = (msg as Envelope).re;
        if (!stepReq || stepReq.from !== to || stepReq.rid !== re) {
          L.violate(
            'mw.one-answer',
            t,
            [from, to],
            `${from} sent ${m.type} (re ${re}) to ${to}, which answers no request it is processing (an answer to an answer, or a late answer)`,
          );
          return;
        }
        stepReq.answers += 1;
        const allowed = MW_ANSWERS[stepReq.type];
        if (!allowed.includes(m.type)) {
          L.violate(
            'mw.one-answer',
            t,
            [from, to],
            `${from} answered ${stepReq.type} from ${to} with ${m.type}; the protocol allows ${allowed.join(' or ')}`,
          );
        }
        if (stepReq.nonPartner && m.type !== 'NotMine') {
          L.violate(
            'mw.not-mine',
            t,
            [from, to],
            `${from} answered ${stepReq.type} from non-partner ${to} with ${m.type} instead of NotMine`,
          );
        }
        if (m.type === 'TasksPong' && stepReq.askedIds) {
          L.check('mw.task-monotone');
          const asked = [...stepReq.askedIds].sort().join('\n');
          const got = m.statuses
            .map((s) => s.taskId)
            .sort()
            .join('\n');
          if (asked !== got)
            L.violate(
              'mw.task-monotone',
              t,
              [from, to],
              `${from}'s TasksPong answers [${got.split('\n').join(', ')}] but ${to} asked [${asked.split('\n').join(', ')}]`,
            );
        }
        if (m.type === 'NotMine') closed.set(from, to, true);
        return;
      }
      // A request.
      ridSent.set(from, m.rid);
      if (RELATIONSHIP_SCOPED.has(m.type)) {
        L.check('mw.silence-after-bye');
        if (closed.has(from, to)) {
          L.violate(
            'mw.silence-after-bye',
            t,
            [from, to],
            `${from} sent ${m.type} to ${to} after ManagerBye/NotMine ended their relationship`,
          );
        }
      }
      if (stepReq?.nonPartner && (m.type === 'TaskStatus' || m.type === 'TasksExecute')) {
        L.violate(
          'mw.not-mine',
          t,
          [from, stepReq.from],
          `${from} changed task state (sent ${m.type}) while handling ${stepReq.type} from non-partner ${stepReq.from}`,
        );
      }
      if (m.type === 'ManagerBye') closed.set(from, to, true);
      if (m.type === 'ManagerPing') {
        const r = rels.get(from, to);
        if (r) {
          r.lastPingUs = local(from, t);
          // As the machine sees it, a ping is unanswered only once it is later than the last pong
          // (or the start): a ping at that same instant does not count yet.
          const lastHeard = r.lastPongUs === -Infinity ? r.sinceUs : r.lastPongUs;
          if (r.pendingPingUs === undefined && r.lastPingUs > lastHeard) r.pendingPingUs = t;
        }
      }
      if (m.type === 'TaskStatus') {
        L.check('mw.task-monotone');
        const last = ranks.get(from, m.taskId);
        const rank = statusRank(m.status);
        if (last === undefined) {
          L.violate('mw.task-monotone', t, [from, to], `${from} reported ${m.status.kind} for ${m.taskId}, a task it was never given`);
        } else if (rank <= last) {
          const names = ['assigned', 'Pending', 'Started', 'a terminal status'];
          L.violate('mw.task-monotone', t, [from, to], `${from} reported ${m.status.kind} for ${m.taskId} after ${names[last + 1]}`);
        }
        ranks.set(from, m.taskId, Math.max(rank, last ?? -1));
      }
      if (m.type === 'TasksExecute' && isManagerName(from)) {
        L.check('mw.slots');
        const out = outstandingOf(from, to);
        for (const task of m.tasks) {
          out.add(task.taskId);
          if (accounts.get(from, task.taskId)?.failed) {
            L.violate('mw.failure-accounting', t, [from, to], `${from} handed out ${task.taskId} again after it definitely failed`);
          }
        }
        const cpu = slots.get(from, to);
        if (cpu !== undefined && out.size > cpu) {
          L.violate('mw.slots', t, [from, to], `${from} has ${out.size} tasks assigned to ${to}, which declared ${cpu} cpus`);
        }
      }
    },

    onObserve(t, actor, obs) {
      onObservation(t, actor, obs as MwObservation);
    },

    onStepEnd(t, actor) {
      if (stepReq) {
        if (stepReq.answers !== 1) {
          L.violate(
            'mw.one-answer',
            t,
            [actor, stepReq.from],
            stepReq.answers === 0
              ? `${actor} left ${stepReq.type} (rid ${stepReq.rid}) from ${stepReq.from} unanswered`
              : `${actor} answered ${stepReq.type} (rid ${stepReq.rid}) from ${stepReq.from} ${stepReq.answers} times`,
          );
        }
        stepReq = undefined;
      }
      flushPending(t);
    },

    // The sweeps run at fixed virtual times (every SWEEP_US), seeing the events before each: the
    // same sweeps whichever actors' events came in between (a parallel run's shards each sweep
    // their own actors' pairs at the same instants).
    tickUs: SWEEP_US,
    onTick(t) {
      sweep(t);
    },

    onFault(t, action: FaultAction, actors) {
      if (action.kind === 'crash' || action.kind === 'restart') for (const a of actors) forget(a, t);
      if (action.kind === 'pause') for (const a of actors) paused.add(a);
      if (action.kind === 'hold') holds.set(action.id, new Set(actors));
      // Released messages carry old news (a pong from a node that has crashed since, say): the pairs
      // on the held links get a fresh settling window.
      if (action.kind === 'release') graceForPairs(holds.get(action.id) ?? new Set(), t + settleUs);
      if (action.kind === 'skew') {
        for (const a of actors) {
          skews.set(a, (skews.get(a) ?? 0) + action.byUs);
          skewChangedAt.set(a, t);
          // A clock set back delays that node's timeouts by as much, for pairs that go one-sided
          // while the jump still matters.
          const prev = clockDelay.get(a);
          const amount = Math.max(Math.abs(action.byUs), prev && prev.untilUs >= t ? prev.amountUs : 0);
          clockDelay.set(a, { amountUs: amount, untilUs: t + settleUs + amount });
        }
        graceForPairs(new Set(actors), t + settleUs + Math.abs(action.byUs));
      }
      // Mark before the shutdown step runs: a machine that forgets to say so is still held to it.
      if (action.kind === 'shutdown') for (const a of actors) shutDown.add(a);
      if (action.kind === 'resume') {
        // A resumed node works through its backlog at once: its liveness deadlines get two checks
        // to catch up, never a fresh quiet period. Its backlog is old news, though (a pong that
        // waited out the pause makes a partner look alive): its one-sided pairs settle afresh.
        for (const a of actors) {
          paused.delete(a);
          const info2 = info.get(a);
          const twoChecksUs = 2 * (info2?.checkIntervalMs ?? 0) * 1000 + 4 * opts.latencyBoundUs;
          graceForPairs(new Set([a]), t + settleUs);
          rels.forEach((r) => {
            if (r.owner === a) r.graceUntilUs = Math.max(r.graceUntilUs, t + twoChecksUs);
          });
        }
      }
    },

    onEnd(t) {
      // What a step left to check (an actor started by a restart has no step end of its own).
      flushPending(t);
      sweep(t);
    },

    results: () => L.results(),
  };
}
