/**
 * What a protocol family provides to scenario files: role schemas, modes, invariants, and a builder
 * that turns the validated roles into actors, observers and metrics.
 */
import type { z } from 'zod';
import type { CoreKind } from '../../buffers/bufferCore.js';
import type { ActorDefinition, SimObserver, SimWorld, TraceRecord } from '../../engine/createSimulation.js';
import type { LatencyDist } from '../../engine/network.js';
import type { InvariantChecker, InvariantInfo } from '../../invariants/types.js';
import type { DurationDistInput } from '../schemaParts.js';

/** One actor as declared in the scenario, after names were assigned. */
export interface DeclaredActor {
  name: string;
  role: string;
  /** The validated role entry (with defaults). */
  params: unknown;
  /** Path of the role entry in the file, for error messages. */
  path: (string | number)[];
}

export interface FamilyBuildContext {
  mode: string;
  /** The run's seed (for streams a family draws outside the actors, such as the core's shuffles). */
  seed: number;
  /** Which buffer/rate core to use (`--core`). */
  core: CoreKind;
  actors: DeclaredActor[];
  enabledInvariants: ReadonlySet<string>;
  latencyBoundUs: number;
  durationUs(text: string): number;
  /** Converts a distribution; an impossible one (min > max) is an error at `path`. */
  dist(d: DurationDistInput, path: (string | number)[]): LatencyDist;
  /** An actor's index in `actors` by its name (undefined: no such actor). */
  indexOf(name: string): number | undefined;
  /** Resolves selectors to actor names; an empty match is an error at `path`. */
  select(sel: string | string[], path: (string | number)[]): string[];
  recentTrace(): TraceRecord[];
  /** Reports a problem with the scenario at `path` (the run does not start). */
  fail(path: (string | number)[], message: string): void;
}

export interface FamilyBuild {
  actors: ActorDefinition[];
  observers: SimObserver[];
  checker: InvariantChecker;
  /** A world stepped in bulk beside the actors (Virdi's buffer/rate core). */
  world?: SimWorld;
  /**
   * Groups of actors (indices into `actors`) that talk to each other most (a manager and the workers
   * that only know it): a parallel run keeps each group on one shard when there are enough groups to
   * go round.
   */
  affinity?: number[][];
  /** True when the protocol's work is done (for `stopWhen: complete`). */
  isComplete(): boolean;
  /**
   * Shard-local observing (parallel runs in local mode): given by a family whose checker and metrics
   * can run per shard, each seeing only its own actors' events, when no message crosses shards — its
   * invariants relate only actors that talk to each other, and its metrics are sums. Says whether
   * the work of the actors `owns` accepts is done; `isComplete` must equal this over all shards.
   */
  shardComplete?(owns: (name: string) => boolean): boolean;
  metrics(): Record<string, unknown>;
}

export interface ProtocolFamily {
  protocol: string;
  title: string;
  modes: readonly string[];
  defaultMode: string;
  /** Zod schemas of the roles, each with a literal `role`. */
  roles: readonly z.ZodObject[];
  invariants: readonly InvariantInfo[];
  /** Validates a protocol message written in a scenario (`inject`). */
  parseMessage(input: unknown): { ok: true } | { ok: false; error: string };
  build(ctx: FamilyBuildContext): FamilyBuild;
  /** Set when every run of the family stays on one shard, whatever the file says (why: a bulk world). */
  oneShard?: string;
  /**
   * Set when its builds give {@link FamilyBuild.shardComplete} (local mode). Runs of the other
   * families stay on one thread unless windows are asked for, so the CLI stops its warm threads as
   * soon as it reads such a file.
   */
  shardLocal?: boolean;
}
