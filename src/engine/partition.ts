/**
 * Shard placement for parallel runs: which actor runs on which worker thread, and the lookahead the
 * shards may run ahead of each other.
 *
 * Shards advance in conservative windows (design.md, "Parallel execution"): a message sent across
 * shards at time t arrives no earlier than t + lookahead, so every shard can run up to the next
 * window's end without hearing from the others. The lookahead is the smallest latency any
 * cross-shard link can draw, and it must be above zero: actors linked by a link that can deliver in
 * 0 µs share a shard, as do actors the scenario binds together (a bulk world delivers to its actors
 * at once). The rest is balanced by weight, largest groups first.
 *
 * @example
 * const plan = planShards({ actors: [{ weight: 1 }, { weight: 1 }], network, workers: 2 });
 * plan.shards;      // 2
 * plan.lookaheadUs; // the smallest latency of a link between the two shards
 */
import type { ActorSet, LatencyDist, NetworkSpec } from './network.js';

export interface ShardPlan {
  /** Shards used: at most the workers asked for, fewer when actors must stay together. */
  shards: number;
  /** Actor index → shard. */
  shardOf: Int32Array;
  /** Actors per shard. */
  sizes: number[];
  /** The smallest latency of a link that crosses shards (µs); Infinity with one shard. */
  lookaheadUs: number;
  /** Why fewer shards than workers were used, for the user. */
  notes: string[];
}

export interface PlanInput {
  /** Per actor: its relative cost (default 1). */
  actors: readonly { weight?: number }[];
  network: NetworkSpec;
  /** Workers asked for (≥ 1). */
  workers: number;
  /** Sets of actor indices that must share a shard, each with the reason (told to the user). */
  together?: readonly { members: readonly number[]; why: string }[];
  /**
   * Sets of actor indices that talk to each other most: kept on one shard when that leaves at least
   * two groups, on fewer shards than workers if need be (spread over more, their messages would
   * cross shards: a shard could no longer run on its own). One group is spread like the rest.
   */
  affinity?: readonly (readonly number[])[];
}

/** The smallest latency a link with this distribution can draw, in whole µs (as the kernel rounds). */
export function minLatencyUs(d: LatencyDist): number {
  switch (d.dist) {
    case 'constant':
      return d.valueUs;
    case 'uniform':
      return Math.max(0, Math.round(d.minUs));
    case 'exponential':
      return Math.max(0, Math.round(d.minUs));
    case 'lognormal':
      // Unbounded below: a draw can round to 0 µs.
      return 0;
  }
}

/** Union–find over actor indices; the root of a set is its smallest index. */
class Groups {
  private readonly parent: Int32Array;
  constructor(n: number) {
    this.parent = new Int32Array(n).map((_, i) => i);
  }
  find(i: number): number {
    const p = this.parent;
    while (p[i] !== i) {
      p[i] = p[p[i]];
      i = p[i];
    }
    return i;
  }
  union(a: number, b: number): void {
    const ra = this.find(a);
    const rb = this.find(b);
    if (ra < rb) this.parent[rb] = ra;
    else if (rb < ra) this.parent[ra] = rb;
  }
  copy(): Groups {
    const g = new Groups(0);
    (g as unknown as { parent: Int32Array }).parent = this.parent.slice();
    return g;
  }
  /** The number of sets. */
  count(): number {
    let c = 0;
    for (let i = 0; i < this.parent.length; i++) if (this.find(i) === i) c++;
    return c;
  }
  /** Joins every member of `members` into one set. */
  unionAll(members: Iterable<number>): void {
    let first = -1;
    for (const m of members) {
      if (first < 0) first = m;
      else this.union(first, m);
    }
  }
}

function describe(d: LatencyDist): string {
  switch (d.dist) {
    case 'constant':
      return `a constant latency of ${d.valueUs} µs`;
    case 'uniform':
      return `a uniform latency from ${d.minUs} µs`;
    case 'exponential':
      return `an exponential latency from ${d.minUs} µs`;
    case 'lognormal':
      return 'a lognormal latency (unbounded below, a draw can be 0 µs)';
  }
}

const members = (set: ActorSet | 'all', n: number): Iterable<number> => (set === 'all' ? Array.from({ length: n }, (_, i) => i) : set);

/** Places actors on at most `workers` shards (see the module comment). Deterministic. */
export function planShards(input: PlanInput): ShardPlan {
  const n = input.actors.length;
  const workers = input.workers;
  if (!Number.isInteger(workers) || workers < 1) throw new RangeError(`workers must be a whole number ≥ 1, got ${workers}`);
  const notes: string[] = [];
  let groups = new Groups(n);
  for (const t of input.together ?? []) groups.unionAll(t.members);
  const net = input.network;
  let allTogether = false;
  if (minLatencyUs(net.defaults.latency) === 0) {
    allTogether = true;
    notes.push(`the default link has ${describe(net.defaults.latency)}: actors that can reach each other in 0 µs share a shard`);
  }
  for (const rule of net.links) {
    if (minLatencyUs(rule.params.latency) > 0) continue;
    if (rule.from === 'all' || rule.to === 'all') {
      allTogether = true;
      notes.push(`a link rule for all actors has ${describe(rule.params.latency)}: they share a shard`);
    } else {
      groups.unionAll([...rule.from, ...rule.to]);
    }
  }
  if (allTogether) groups.unionAll(Array.from({ length: n }, (_, i) => i));
  let talkers = false;
  if (!allTogether && input.affinity && input.affinity.length > 0 && workers > 1) {
    // Traffic affinity is a preference: applied on a copy, kept unless it leaves one group.
    const preferred = groups.copy();
    for (const a of input.affinity) preferred.unionAll(a);
    const count = preferred.count();
    if (count >= 2) {
      groups = preferred;
      talkers = count < workers;
    } else notes.push(`the actors that talk most form 1 group: spread over ${workers} shards instead`);
  }

  // Groups by root (smallest member), with their weights.
  const weightOf = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const r = groups.find(i);
    weightOf.set(r, (weightOf.get(r) ?? 0) + (input.actors[i].weight ?? 1));
  }
  const roots = [...weightOf.keys()].sort((a, b) => weightOf.get(b)! - weightOf.get(a)! || a - b);
  const shards = Math.max(1, Math.min(workers, roots.length));
  if (talkers)
    notes.push(
      `the actors that talk most form ${roots.length} groups, each kept on one shard (spread over more, their messages would cross shards)`,
    );
  else if (shards < workers && !allTogether) {
    const whys = [...new Set((input.together ?? []).map((t) => t.why))];
    notes.push(
      `${roots.length} group${roots.length === 1 ? '' : 's'} of actors that must stay together${whys.length > 0 ? ` (${whys.join('; ')})` : ''}: ${shards} shard${shards === 1 ? '' : 's'}`,
    );
  }
  // Largest group first onto the lightest shard (ties: the lowest shard).
  const load = new Array<number>(shards).fill(0);
  const shardOfRoot = new Map<number, number>();
  for (const r of roots) {
    let best = 0;
    for (let s = 1; s < shards; s++) if (load[s] < load[best]) best = s;
    shardOfRoot.set(r, best);
    load[best] += weightOf.get(r)!;
  }
  const shardOf = new Int32Array(n);
  const sizes = new Array<number>(shards).fill(0);
  for (let i = 0; i < n; i++) {
    shardOf[i] = shardOfRoot.get(groups.find(i))!;
    sizes[shardOf[i]]++;
  }

  // Lookahead: the smallest minimum latency among the links that can cross shards.
  let lookaheadUs = Infinity;
  if (shards > 1) {
    const spans = (set: ActorSet | 'all'): Set<number> => {
      const s = new Set<number>();
      for (const m of members(set, n)) s.add(shardOf[m]);
      return s;
    };
    // The defaults apply to every pair no rule covers: count them whenever there are two shards.
    lookaheadUs = minLatencyUs(net.defaults.latency);
    for (const rule of net.links) {
      const from = spans(rule.from);
      const to = spans(rule.to);
      const crosses = [...from].some((a) => [...to].some((b) => a !== b));
      if (crosses) lookaheadUs = Math.min(lookaheadUs, minLatencyUs(rule.params.latency));
    }
  }
  return { shards, shardOf, sizes, lookaheadUs, notes };
}
