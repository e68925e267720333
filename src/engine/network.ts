/**
 * The network model: per-link latency distributions, loss, duplication, ordering semantics,
 * partitions (including one-way) and hold/release. Every link draws from its own random stream.
 */
import { RandomStream } from './rng.js';

export type LatencyDist =
  | { dist: 'constant'; valueUs: number }
  | { dist: 'uniform'; minUs: number; maxUs: number }
  | { dist: 'exponential'; meanUs: number; minUs: number }
  | { dist: 'lognormal'; medianUs: number; p99Us: number };

export const ORDERINGS = ['ordered', 'unordered', 'unordered-duplicating'] as const;
export type Ordering = (typeof ORDERINGS)[number];

export interface LinkParams {
  latency: LatencyDist;
  loss: number;
  duplicate: number;
  ordering: Ordering;
}

/** Which actors a rule or fault applies to (resolved to actor indices). */
export type ActorSet = ReadonlySet<number>;

export interface LinkRule {
  from: ActorSet | 'all';
  to: ActorSet | 'all';
  params: LinkParams;
}

export interface NetworkSpec {
  defaults: LinkParams;
  /** Later rules win over earlier ones. */
  links: LinkRule[];
}

const Z99 = 2.3263478740408408;

/** Draws one latency in integer microseconds. */
export function sampleLatencyUs(d: LatencyDist, rng: RandomStream): number {
  switch (d.dist) {
    case 'constant':
      return d.valueUs;
    case 'uniform':
      return Math.round(d.minUs + rng.next() * (d.maxUs - d.minUs));
    case 'exponential':
      return Math.round(d.minUs - Math.log(1 - rng.next()) * d.meanUs);
    case 'lognormal': {
      const sigma = Math.log(d.p99Us / d.medianUs) / Z99;
      return Math.round(d.medianUs * Math.exp(sigma * rng.normal()));
    }
  }
}

/** A latency most deliveries stay under (the maximum, or the 99.9th percentile for unbounded ones). */
export function latencyBoundUs(d: LatencyDist): number {
  switch (d.dist) {
    case 'constant':
      return d.valueUs;
    case 'uniform':
      return d.maxUs;
    case 'exponential':
      return Math.round(d.minUs + d.meanUs * Math.log(1000));
    case 'lognormal': {
      const sigma = Math.log(d.p99Us / d.medianUs) / Z99;
      return Math.round(d.medianUs * Math.exp(sigma * 3.0902323061678132));
    }
  }
}

/** Live state of one directed link. */
export interface LinkState {
  params: LinkParams;
  rng: RandomStream;
  /** Latest delivery time scheduled on this link (for `ordered`). */
  lastDeliveryUs: number;
}

/** A partition or a hold, active between two times. */
export interface Cut {
  id: number;
  /** True if the cut blocks `from → to`. */
  blocks(from: number, to: number): boolean;
}

/** Builds a two-way cut between groups: messages between different groups are blocked. */
export function groupCut(id: number, groupOf: (actor: number) => number): Cut {
  return { id, blocks: (from, to) => groupOf(from) !== groupOf(to) };
}

/** Builds a one-way cut: messages from `from` to `to` are blocked, the other way passes. */
export function oneWayCut(id: number, from: ActorSet, to: ActorSet): Cut {
  return { id, blocks: (a, b) => from.has(a) && to.has(b) };
}

/** A partition as it was in time: active from `startUs` until `endUs` (Infinity while it lasts). */
interface PartitionSpan {
  cut: Cut;
  startUs: number;
  endUs: number;
}

/** Resolves links lazily, each with its own random stream derived from the stable actor names. */
export class Network {
  /**
   * Links by sender: most senders talk to one peer (a worker to its manager), so a sender's first
   * link sits in an array, and only a sender with more peers gets a map of its own. One map keyed by
   * from × n + to would pass 2³¹ beyond 46 341 actors, where every lookup hashes a heap number.
   */
  private readonly sole: (LinkState | undefined)[];
  private readonly soleTo: Int32Array;
  private readonly more: (Map<number, LinkState> | undefined)[];
  readonly partitions: Cut[] = [];
  readonly holds: Cut[] = [];
  /** Every partition that was ever active: a message in flight across a cut is lost, even if it healed since. */
  private readonly spans: PartitionSpan[] = [];

  constructor(
    private readonly spec: NetworkSpec,
    private readonly seed: number,
    private readonly names: readonly string[],
  ) {
    // Filled, not holey: a large holey array falls back to dictionary elements.
    this.sole = new Array<LinkState | undefined>(names.length).fill(undefined);
    this.more = new Array<Map<number, LinkState> | undefined>(names.length).fill(undefined);
    this.soleTo = new Int32Array(names.length);
  }

  link(from: number, to: number): LinkState {
    const sole = this.sole[from];
    if (sole !== undefined && this.soleTo[from] === to) return sole;
    const more = this.more[from];
    const found = more?.get(to);
    if (found !== undefined) return found;
    let params = this.spec.defaults;
    for (const rule of this.spec.links) {
      if ((rule.from === 'all' || rule.from.has(from)) && (rule.to === 'all' || rule.to.has(to))) params = rule.params;
    }
    const link: LinkState = { params, rng: new RandomStream(this.seed, `link:${this.names[from]}>${this.names[to]}`), lastDeliveryUs: 0 };
    if (sole === undefined) {
      this.sole[from] = link;
      this.soleTo[from] = to;
    } else if (more === undefined) this.more[from] = new Map([[to, link]]);
    else more.set(to, link);
    return link;
  }

  partitioned(from: number, to: number): boolean {
    const p = this.partitions;
    for (let i = 0; i < p.length; i++) if (p[i].blocks(from, to)) return true;
    return false;
  }

  /** True if a partition blocked `from → to` at any moment of `[sentUs, nowUs]`. */
  cutDuring(from: number, to: number, sentUs: number, nowUs: number): boolean {
    const spans = this.spans;
    for (let i = 0; i < spans.length; i++) {
      const s = spans[i];
      // A message sent at the very instant of a heal left after it (faults run first at an instant).
      if (s.startUs <= nowUs && s.endUs > sentUs && s.cut.blocks(from, to)) return true;
    }
    return false;
  }

  partition(cut: Cut, nowUs: number): void {
    this.partitions.push(cut);
    this.spans.push({ cut, startUs: nowUs, endUs: Infinity });
  }

  heal(id: number, nowUs: number): void {
    Network.remove(this.partitions, id);
    for (const s of this.spans) if (s.cut.id === id && s.endUs === Infinity) s.endUs = nowUs;
  }

  held(from: number, to: number): Cut | undefined {
    const h = this.holds;
    for (let i = 0; i < h.length; i++) if (h[i].blocks(from, to)) return h[i];
    return undefined;
  }

  /** Removes the cut with `id` from `list`. */
  static remove(list: Cut[], id: number): void {
    const i = list.findIndex((c) => c.id === id);
    if (i >= 0) list.splice(i, 1);
  }
}
