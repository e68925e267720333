/**
 * Invariants are first-class: every protocol ships the invariants of its `protocols/*.md` as code,
 * and a run reports each one as held, violated (with time, actors, a trace excerpt, the seed and the
 * command that replays it) or not exercised.
 */
import type { SimObserver, TraceRecord } from '../engine/createSimulation.js';

export interface InvariantInfo {
  /** Stable id used in scenario files (`mw.one-answer`). */
  id: string;
  /** Number in the protocol document's list. */
  number: number;
  title: string;
}

export interface Violation {
  /** Virtual time in microseconds. */
  t: number;
  actors: string[];
  message: string;
  /** The last trace records before the violation. */
  trace: TraceRecord[];
}

export type InvariantStatus = 'held' | 'violated' | 'not-exercised';

export interface InvariantResult extends InvariantInfo {
  status: InvariantStatus;
  /** How many times the invariant was actually checked. */
  checks: number;
  violationCount: number;
  /** The first violations (at most {@link MAX_KEPT_VIOLATIONS}). */
  violations: Violation[];
}

export const MAX_KEPT_VIOLATIONS = 5;

/** A checker is a simulation observer that can report its invariants. */
export interface InvariantChecker extends SimObserver {
  results(): InvariantResult[];
}

/** Bookkeeping shared by checkers: counts, kept violations, the trace excerpt. */
export class InvariantLedger {
  private readonly checks: Record<string, number> = {};
  private readonly violations = new Map<string, Violation[]>();
  private readonly counts = new Map<string, number>();

  constructor(
    readonly infos: readonly InvariantInfo[],
    readonly enabled: ReadonlySet<string>,
    private readonly recentTrace: () => TraceRecord[],
  ) {}

  on(id: string): boolean {
    return this.enabled.has(id);
  }

  /** Counts `n` checks of `id` (default one). */
  check(id: string, n = 1): void {
    this.checks[id] = (this.checks[id] ?? 0) + n;
  }

  violate(id: string, t: number, actors: string[], message: string): void {
    if (!this.enabled.has(id)) return;
    const n = (this.counts.get(id) ?? 0) + 1;
    this.counts.set(id, n);
    if (n <= MAX_KEPT_VIOLATIONS) {
      const list = this.violations.get(id) ?? [];
      list.push({ t, actors, message, trace: this.recentTrace() });
      this.violations.set(id, list);
    }
  }

  results(): InvariantResult[] {
    return this.infos
      .filter((info) => this.enabled.has(info.id))
      .map((info) => {
        const violationCount = this.counts.get(info.id) ?? 0;
        const checks = this.checks[info.id] ?? 0;
        return {
          ...info,
          status: violationCount > 0 ? 'violated' : checks > 0 ? 'held' : 'not-exercised',
          checks,
          violationCount,
          violations: this.violations.get(info.id) ?? [],
        };
      });
  }
}

/** The results of one checker run per shard (local mode) as one: counts added, first violations by time. */
export function mergeResults(parts: readonly InvariantResult[][]): InvariantResult[] {
  return parts[0].map((first, i) => {
    const all = parts.map((p) => p[i]);
    const checks = all.reduce((n, r) => n + r.checks, 0);
    const violationCount = all.reduce((n, r) => n + r.violationCount, 0);
    const violations = all
      .flatMap((r) => r.violations)
      .sort((a, b) => a.t - b.t)
      .slice(0, MAX_KEPT_VIOLATIONS);
    return {
      ...first,
      status: violationCount > 0 ? 'violated' : checks > 0 ? 'held' : 'not-exercised',
      checks,
      violationCount,
      violations,
    };
  });
}
