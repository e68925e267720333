/**
 * The Virdi family in scenario files: one server, producers and consumers; the buffer/rate core as
 * the simulation's bulk world (stepped every `step`, its edges delivered to the actors, the server's
 * buffer operations applied to it), the invariant checker, and summary metrics.
 */
import { z } from 'zod';
import { BufferCore } from '../../buffers/bufferCore.js';
import { Edge, StepFlag } from '../../buffers/layout.js';
import { RandomStream } from '../../engine/rng.js';
import type { ActorDefinition, SimEnvironment, SimObserver, SimWorld } from '../../engine/createSimulation.js';
import { consumerMachine, producerMachine } from '../../actors/virdi/clients.machine.js';
import type { ConsumerInput, ProducerInput } from '../../actors/virdi/clients.machine.js';
import { MAX_BUFFER_LIMIT, MAX_RATE_PER_MINUTE, serverMachine } from '../../actors/virdi/server.machine.js';
import { createVirdiChecker, VIRDI_INVARIANTS } from '../../invariants/virdi.js';
import type { CoreProbe } from '../../invariants/virdi.js';
import type { CallEnd, VirdiMessage, VirdiMode, VirdiObservation } from '../../protocol/virdi.js';
import { parseVirdiMessage, VIRDI_MODES } from '../../protocol/virdi.js';
import { duration, nonNegativeInt, positiveDuration, positiveInt } from '../schemaParts.js';
import type { FamilyBuildContext, ProtocolFamily } from './types.js';

const name = z.string().min(1).optional().meta({ description: 'Name (count 1) or name prefix (names become prefix-0, prefix-1, …).' });
const count = positiveInt.default(1).meta({ description: 'How many actors of this role.' });
const units = (what: string, max: number) =>
  z
    .number({ error: `expected ${what}: a whole number ≥ 0` })
    .int({ error: `expected ${what}: a whole number ≥ 0` })
    .min(0, { error: `expected ${what}: a whole number ≥ 0` })
    .max(max, { error: `expected ${what} at most ${max}` });
const clientId = z
  .union([z.string().min(1, { error: 'expected a non-empty client id, or null for a missing client-id' }), z.null()], {
    error: 'expected a client id (text), or null for a missing client-id',
  })
  .optional()
  .meta({ description: 'The gRPC client-id metadata (default: the actor name); null sends none.' });

const resourceSelector = z
  .union([z.string().min(1), z.array(z.string().min(1)).min(1)], { error: 'expected a resource name, a glob like r-*, or a list' })
  .meta({ description: "The server's resource; a glob or a list spreads the actors of this entry over them in turn." });

export const virdiServerRole = z.strictObject({
  role: z.literal('virdi.server'),
  name,
  count: z.literal(1, { error: 'expected count 1: a scenario has one Virdi server' }).default(1),
  resources: z
    .union(
      [
        z
          .array(
            z.strictObject({
              name: z.string().min(1, { error: 'expected a resource name' }),
              limit: z
                .number({ error: 'expected a global buffer limit: a whole number ≥ 1' })
                .int({ error: 'expected a global buffer limit: a whole number ≥ 1' })
                .min(1, { error: 'expected a global buffer limit: a whole number ≥ 1' })
                .max(MAX_BUFFER_LIMIT, { error: `expected a global buffer limit at most ${MAX_BUFFER_LIMIT}` }),
            }),
          )
          .min(1, { error: 'expected at least one resource' }),
        z.strictObject({ prefix: z.string().min(1), count: positiveInt.max(65_536), limit: positiveInt.max(MAX_BUFFER_LIMIT) }),
      ],
      { error: 'expected a list of resources ({ name, limit }), or { prefix, count, limit } for prefix-0 … prefix-(count−1)' },
    )
    .meta({ description: 'The resources the server knows with their global buffer limits, listed or generated.' }),
  step: positiveDuration.default('1s').meta({ description: 'How often the buffer/rate core advances (the resolution of rates).' }),
});

export const virdiProducerRole = z.strictObject({
  role: z.literal('virdi.producer'),
  name,
  count,
  resource: resourceSelector,
  chunk: units('a chunk of units', MAX_BUFFER_LIMIT).default(10).meta({ description: 'Units per message.' }),
  interval: positiveDuration.default('1s').meta({ description: 'Time between chunks while producing.' }),
  clientId,
  offerAt: duration.default('0s').meta({ description: 'When it offers production.' }),
  leaveAt: duration.optional().meta({ description: 'When it closes its stream and stops.' }),
  retry: positiveDuration.default('1s').meta({ description: 'How long it waits to offer again after the server went away.' }),
});

export const virdiConsumerRole = z.strictObject({
  role: z.literal('virdi.consumer'),
  name,
  count,
  resource: resourceSelector,
  maxRate: units('max_rate (units per minute)', MAX_RATE_PER_MINUTE).default(60).meta({ description: 'max_rate: units per minute.' }),
  bufferLimit: units('buffer_limit', MAX_BUFFER_LIMIT).default(0).meta({ description: 'buffer_limit; 0 means max_rate.' }),
  current: units('current_buffer_amount', MAX_BUFFER_LIMIT).default(0).meta({ description: 'current_buffer_amount.' }),
  drainRate: units('the real drain rate (units per minute)', MAX_RATE_PER_MINUTE)
    .optional()
    .meta({ description: 'Units per minute the client really drains (default max_rate).' }),
  consumerId: z.string().optional().meta({ description: 'consumer_id (default: the actor name).' }),
  clientId,
  arriveAt: duration.default('0s').meta({ description: 'When it asks.' }),
  arriveOver: duration.default('0s').meta({ description: 'Spread the arrivals of this entry evenly over this long after arriveAt.' }),
  stay: positiveDuration.optional().meta({ description: 'How long each stream lasts before it cancels.' }),
  cancelWhenFull: z.boolean().default(false).meta({ description: 'Cancel with RESOURCE_EXHAUSTED when its own buffer is full.' }),
  reconnect: z
    .strictObject({ after: duration, times: positiveInt.default(1) })
    .optional()
    .meta({ description: 'Come back with the same consumer_id this long after leaving, this many times.' }),
});

type ServerRole = z.infer<typeof virdiServerRole>;
type ProducerRole = z.infer<typeof virdiProducerRole>;
type ConsumerRole = z.infer<typeof virdiConsumerRole>;

/**
 * The buffer/rate core as the simulation's world: steps it, turns its edges into events for the
 * actors they concern, and applies the server's buffer operations (`host.exec`).
 */
class VirdiWorld implements SimWorld, SimEnvironment, CoreProbe {
  readonly stepUs: number;
  private readonly dtMs: number;
  private readonly resourceIndex = new Map<string, number>();
  private readonly producerIndex = new Map<string, number>();
  private readonly consumerIndex = new Map<string, number>();
  readonly edgeCounts = { globalFull: 0, globalNotFull: 0, produceAborted: 0, starved: 0, clientFull: 0 };
  checker?: ReturnType<typeof createVirdiChecker>;
  /** Broken-stream notices waiting for the next step. */
  private readonly notices: { to: string; event: { type: string; [k: string]: unknown } }[] = [];
  /** Called after every step (tests look inside the core through it). */
  afterStep?: (world: VirdiWorld, t: number) => void;

  constructor(
    readonly core: BufferCore,
    readonly server: string,
    readonly resources: string[],
    readonly producers: string[],
    readonly consumers: string[],
    private readonly consumerParams: { drainRate: number | undefined }[],
    stepUs: number,
    private readonly keepUnits: boolean,
  ) {
    this.stepUs = stepUs;
    this.dtMs = stepUs / 1000;
    resources.forEach((r, i) => this.resourceIndex.set(r, i));
    producers.forEach((p, i) => this.producerIndex.set(p, i));
    consumers.forEach((c, i) => this.consumerIndex.set(c, i));
  }

  get views() {
    return this.core.views;
  }
  get sizes() {
    return this.core.sizes;
  }
  resourceName = (r: number): string => this.resources[r];
  producerName = (p: number): string => this.producers[p];
  consumerName = (c: number): string => this.consumers[c];
  producerResource = (name: string): number => {
    const p = this.producerIndex.get(name);
    return p === undefined ? -1 : this.core.config.producers[p].resource;
  };
  known = (resource: string): boolean => this.resourceIndex.has(resource);

  /** Resources whose global buffer is full, as the server should know them. */
  fullResources(): string[] {
    const v = this.core.views;
    return this.resources.filter((_, r) => v.gFull[r] !== 0 || v.gAmount[r] >= v.gLimit[r]);
  }

  /**
   * An actor crashed or went away: its streams break. The other side learns it with the next step.
   * When the server goes, every stream it held ends in the core (strict mode returns the consumers'
   * units to the global buffers; the original loses them).
   */
  broken(actor: string, nowUs: number): void {
    if (actor !== this.server) {
      this.notices.push({ to: this.server, event: { type: 'host.streamBroken', peer: actor } });
      return;
    }
    this.notices.length = 0;
    const v = this.core.views;
    for (let c = 0; c < this.core.sizes.consumers; c++) {
      if (v.cActive[c] === 0) continue;
      const units = this.core.closeConsumer(c, this.keepUnits);
      if (!this.keepUnits) this.checker?.lost(nowUs, this.consumers[c], units);
    }
    for (let p = 0; p < this.core.sizes.producers; p++) this.core.closeProducer(p);
    this.checker?.serverLost();
    for (const client of [...this.producers, ...this.consumers]) {
      this.notices.push({ to: client, event: { type: 'host.streamBroken', peer: this.server } });
    }
  }

  step(nowUs: number): { to: string; event: { type: string; [k: string]: unknown } }[] {
    this.checker?.beforeStep(nowUs);
    const n = this.core.step(this.dtMs);
    this.checker?.afterStep(nowUs, this.dtMs, n);
    this.afterStep?.(this, nowUs);
    const out = this.notices.splice(0);
    const ev = this.core.views.events;
    for (let i = 0; i < n; i++) {
      const kind = ev[2 * i];
      const index = ev[2 * i + 1];
      switch (kind) {
        case Edge.GlobalFull:
          this.edgeCounts.globalFull++;
          out.push({ to: this.server, event: { type: 'core.globalFull', resource: this.resources[index] } });
          break;
        case Edge.GlobalNotFull:
          this.edgeCounts.globalNotFull++;
          out.push({ to: this.server, event: { type: 'core.globalNotFull', resource: this.resources[index] } });
          break;
        case Edge.ProduceAborted:
          this.edgeCounts.produceAborted++;
          out.push({ to: this.server, event: { type: 'core.produceAborted', producer: this.producers[index] } });
          break;
        case Edge.Starved:
          // Counted, not delivered: no client reacts to the server's estimate (it cannot see it).
          this.edgeCounts.starved++;
          break;
        case Edge.ClientFull:
          this.edgeCounts.clientFull++;
          out.push({ to: this.consumers[index], event: { type: 'core.clientFull' } });
          break;
      }
    }
    return out;
  }

  exec(e: { op: string; ref: string; data?: unknown }, _rng: RandomStream, nowUs: number): undefined {
    switch (e.op) {
      case 'core.openProducer': {
        const p = this.producerIndex.get(e.ref);
        const resource = (e.data as { resource: string }).resource;
        // A producer's slot belongs to the resource of its role; a stream for another one carries nothing.
        if (p !== undefined && this.core.config.producers[p].resource === this.resourceIndex.get(resource)) this.core.openProducer(p);
        break;
      }
      case 'core.closeProducer': {
        const p = this.producerIndex.get(e.ref);
        if (p !== undefined) this.core.closeProducer(p);
        break;
      }
      case 'core.openConsumer': {
        const c = this.consumerIndex.get(e.ref);
        const d = e.data as { resource: string; maxRate: number; limit: number; current: number };
        if (c === undefined || this.core.config.consumers[c].resource !== this.resourceIndex.get(d.resource)) break;
        this.core.openConsumer(c, { ...d, drainRate: this.consumerParams[c].drainRate ?? d.maxRate });
        this.checker?.consumerOpened(c);
        break;
      }
      case 'core.closeConsumer': {
        const c = this.consumerIndex.get(e.ref);
        if (c === undefined || this.core.views.cActive[c] === 0) break;
        const units = this.core.closeConsumer(c, this.keepUnits);
        if (!this.keepUnits) this.checker?.lost(nowUs, e.ref, units);
        break;
      }
    }
    return undefined;
  }
}

export const virdiFamily: ProtocolFamily = {
  protocol: 'virdi',
  title: 'Virdi (streaming resource production and consumption)',
  oneShard: 'a bulk world delivers to all its actors at once',
  modes: VIRDI_MODES,
  defaultMode: 'strict',
  roles: [virdiServerRole, virdiProducerRole, virdiConsumerRole],
  invariants: VIRDI_INVARIANTS,
  parseMessage: parseVirdiMessage,

  build(ctx: FamilyBuildContext) {
    const mode = ctx.mode as VirdiMode;
    const servers = ctx.actors.filter((a) => a.role === 'virdi.server');
    if (servers.length !== 1) {
      ctx.fail(servers[1]?.path ?? ['actors'], `expected exactly one virdi.server, got ${servers.length}`);
    }
    const serverDecl = servers[0];
    const serverRole = serverDecl?.params as ServerRole | undefined;
    const declaredResources = serverRole?.resources ?? [];
    const resourceList = Array.isArray(declaredResources)
      ? declaredResources
      : Array.from({ length: declaredResources.count }, (_, i) => ({
          name: `${declaredResources.prefix}-${i}`,
          limit: declaredResources.limit,
        }));
    const resources = resourceList.map((r) => r.name);
    const resourceIdx = new Map(resources.map((r, i) => [r, i]));
    const knownList = resources.length > 6 ? `${resources.slice(0, 5).join(', ')}, … (${resources.length})` : resources.join(', ');
    resourceList.forEach((r, i) => {
      if (resources.indexOf(r.name) !== i)
        ctx.fail([...serverDecl.path, 'resources', i, 'name'], `duplicate resource ${JSON.stringify(r.name)}`);
    });
    // Each role entry's resource selector, resolved once; its actors take the matches in turn.
    const matches = new Map<unknown, number[]>();
    const nthInEntry = new Map<unknown, number>();
    const resourceOf = (a: (typeof ctx.actors)[number]): number => {
      const sel = (a.params as { resource: string | string[] }).resource;
      let list = matches.get(a.params);
      if (!list) {
        const items = Array.isArray(sel) ? sel : [sel];
        list = [];
        items.forEach((item, k) => {
          const path = Array.isArray(sel) ? [...a.path, 'resource', k] : [...a.path, 'resource'];
          const found = item.includes('*') ? resources.filter((r) => globMatch(item, r)) : resources.filter((r) => r === item);
          if (found.length === 0) ctx.fail(path, `unknown resource ${JSON.stringify(item)} (the server knows: ${knownList})`);
          for (const r of found) list!.push(resourceIdx.get(r)!);
        });
        if (list.length === 0) list.push(0);
        matches.set(a.params, list);
      }
      const n = nthInEntry.get(a.params) ?? 0;
      nthInEntry.set(a.params, n + 1);
      return list[n % list.length];
    };
    const serverName = serverDecl?.name ?? 'server';
    const ms = (d: string): number => ctx.durationUs(d) / 1000;

    const actors: ActorDefinition[] = [];
    const producerDecls = ctx.actors.filter((a) => a.role === 'virdi.producer');
    const producerResource = producerDecls.map((a) => resourceOf(a));
    // Consumer slots are grouped by resource: each resource's buffers sit together in memory.
    const consumerDecls = ctx.actors
      .filter((a) => a.role === 'virdi.consumer')
      .map((a, i) => ({ a, i, r: resourceOf(a) }))
      .sort((x, y) => x.r - y.r || x.i - y.i);
    const producerSlots = producerDecls.map((a, i) => ({
      resource: producerResource[i],
      chunk: (a.params as ProducerRole).chunk,
      intervalMs: ms((a.params as ProducerRole).interval),
    }));
    const stepUs = ctx.durationUs(serverRole?.step ?? '1s');
    const strict = mode === 'strict';
    const core = new BufferCore({
      kind: ctx.core,
      flags: strict ? StepFlag.Fair | StepFlag.RefuseWhenFull : 0,
      stream: (resource) => new RandomStream(ctx.seed, `virdi.distribute:${resource}`),
      resources: resourceList,
      producers: producerSlots,
      consumers: consumerDecls.map((d) => ({ resource: d.r })),
    });
    const world = new VirdiWorld(
      core,
      serverName,
      resources,
      producerDecls.map((a) => a.name),
      consumerDecls.map((d) => d.a.name),
      consumerDecls.map((d) => ({ drainRate: (d.a.params as ConsumerRole).drainRate })),
      stepUs,
      strict,
    );

    const resourceByActor = new Map<string, string>();
    producerDecls.forEach((a, i) => resourceByActor.set(a.name, resources[producerResource[i]]));
    for (const d of consumerDecls) resourceByActor.set(d.a.name, resources[d.r]);
    const arrivalIndex = new Map<unknown, number>();
    const entrySize = new Map<unknown, number>();
    for (const d of consumerDecls) entrySize.set(d.a.params, (entrySize.get(d.a.params) ?? 0) + 1);
    for (const a of ctx.actors) {
      if (a.role === 'virdi.server') {
        const input = { name: a.name, mode, resources };
        actors.push({
          name: a.name,
          role: a.role,
          machine: serverMachine,
          input,
          env: world,
          restartInput: () => ({ ...input, full: world.fullResources() }),
        });
      } else if (a.role === 'virdi.producer') {
        const r = a.params as ProducerRole;
        const input: ProducerInput = {
          name: a.name,
          server: serverName,
          resource: resourceByActor.get(a.name) ?? '',
          clientId: r.clientId === null ? undefined : (r.clientId ?? a.name),
          offerAfterMs: ms(r.offerAt),
          leaveAfterMs: r.leaveAt === undefined ? undefined : ms(r.leaveAt),
          retryMs: ms(r.retry),
        };
        actors.push({ name: a.name, role: a.role, machine: producerMachine, input });
      } else {
        const r = a.params as ConsumerRole;
        const k = arrivalIndex.get(a.params) ?? 0;
        arrivalIndex.set(a.params, k + 1);
        const spreadMs = Math.floor((ms(r.arriveOver) * k) / (entrySize.get(a.params) ?? 1));
        const input: ConsumerInput = {
          name: a.name,
          server: serverName,
          consumerId: r.consumerId ?? a.name,
          clientId: r.clientId === null ? undefined : (r.clientId ?? a.name),
          resource: resourceByActor.get(a.name) ?? '',
          maxRate: r.maxRate,
          bufferLimit: r.bufferLimit,
          current: r.current,
          arriveAfterMs: ms(r.arriveAt) + spreadMs,
          stayMs: r.stay === undefined ? undefined : ms(r.stay),
          cancelWhenFull: r.cancelWhenFull,
          reconnectAfterMs: r.reconnect === undefined ? 0 : ms(r.reconnect.after),
          reconnects: r.reconnect?.times ?? 0,
        };
        actors.push({ name: a.name, role: a.role, machine: consumerMachine, input });
      }
    }

    const checker = createVirdiChecker({
      mode,
      server: serverName,
      probe: world,
      enabled: ctx.enabledInvariants,
      recentTrace: ctx.recentTrace,
    });
    world.checker = checker;

    const refusals: Record<string, number> = {};
    let productionRequests = 0;
    let reconnectsRejected = 0;
    let streamsOpened = 0;
    const metricsObserver: SimObserver = {
      onFault(t, action, touched) {
        if (action.kind === 'crash' || action.kind === 'restart' || action.kind === 'shutdown')
          for (const name of touched) world.broken(name, t);
      },
      onSend(_t, from, _to, msg) {
        const m = msg as VirdiMessage;
        if (from !== serverName) return;
        if (m.type === 'ProductionRequest') productionRequests++;
        else if (m.type === 'CallEnd' && m.code !== 'OK' && !(m.call === 'Produce' && m.code === 'RESOURCE_EXHAUSTED')) {
          const key = `${(m as CallEnd).call}:${m.code}`;
          refusals[key] = (refusals[key] ?? 0) + 1;
        }
      },
      onObserve(_t, _actor, o) {
        const ob = o as VirdiObservation;
        if (ob.kind === 'virdi.reconnect.rejected') reconnectsRejected++;
        else if (ob.kind === 'virdi.consume.open') streamsOpened++;
      },
    };

    return {
      actors,
      observers: [checker, metricsObserver],
      checker,
      world,
      isComplete: () => false,
      metrics: () => {
        const t = core.totals();
        const per = Array.from(checker.deliveredPerConsumer()).sort((x, y) => x - y);
        const pick = (q: number): number => (per.length === 0 ? 0 : per[Math.min(per.length - 1, Math.floor(q * per.length))]);
        let held = 0;
        for (const g of core.views.gAmount) held += g;
        let buffered = 0;
        for (const s of core.views.cServer) buffered += s;
        return {
          core: core.kind,
          unitsProduced: t.produced,
          unitsDelivered: t.delivered,
          unitsInGlobalBuffers: held,
          unitsInConsumerBuffers: buffered,
          unitsLost: t.lost,
          chunksRefused: t.refusedChunks,
          productionRequests,
          streamsAborted: world.edgeCounts.produceAborted,
          consumeStreamsOpened: streamsOpened,
          refusals,
          reconnectsRejected,
          edges: { ...world.edgeCounts },
          deliveredPerConsumer: { min: pick(0), median: pick(0.5), max: per.length ? per[per.length - 1] : 0 },
          // Small runs list every consumer (slot order is grouped by resource).
          ...(world.consumers.length <= 50
            ? { deliveredByConsumer: Object.fromEntries(world.consumers.map((c, i) => [c, checker.deliveredPerConsumer()[i]])) }
            : {}),
        };
      },
    };
  },
};

/** Does `name` match the glob `pattern` (`*`: any run of characters)? */
function globMatch(pattern: string, name: string): boolean {
  const re = new RegExp(
    `^${pattern
      .split('*')
      .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  );
  return re.test(name);
}
