// A deliberately straightforward version of one step of the buffer/rate core, for bench/core.bench.js:
// the same rules as src/buffers/referenceStep.ts (read its header), written the way one would
// without thinking about memory layout — one plain JS object per consumer, per resource and per
// producer, member lists as arrays of object references, edges pushed into a JS array as objects.
//
// It does the same work as the typed-array and WebAssembly cores (production and distribution per
// resource with the same seeded shuffle, the consumer loop, the edges) and, given the same random
// streams, ends up with the same totals — the bench checks that after its warm-up — but it is not
// meant to be bit-identical in every array (it keeps no `order`/`given` scratch in shared memory).
//
//   const core = new NaiveCore({ flags: 3, stream, resources, producers, consumers });
//   core.openProducer(0);
//   core.openConsumer(0, { maxRate: 60, limit: 60, current: 0, drainRate: 60 });
//   const edges = core.step(1000); // [{ kind, index }, …]

/** Scaled units per unit (ms per minute), as src/buffers/layout.ts. */
const SCALE = 60_000;
const FAIR = 1;
const REFUSE_WHEN_FULL = 2;
const STARVED = 1;
const CLIENT_FULL = 2;
const Edge = { GlobalFull: 1, GlobalNotFull: 2, ProduceAborted: 3, Starved: 4, ClientFull: 5 };

export class NaiveCore {
  constructor({ flags, stream, resources, producers, consumers }) {
    this.flags = flags;
    this.totals = { produced: 0, delivered: 0, lost: 0, refusedChunks: 0, shuffles: 0 };
    this.resources = resources.map((r, index) => ({
      index,
      amount: 0,
      limit: r.limit,
      full: false,
      spread: 0,
      rng: stream(r.name),
      members: [],
      producers: [],
    }));
    this.producers = producers.map((p, index) => ({
      index,
      resource: p.resource,
      open: false,
      chunk: p.chunk,
      interval: p.intervalMs,
      countdown: 0,
    }));
    this.consumers = consumers.map((c, index) => ({
      index,
      resource: c.resource,
      maxRate: 0,
      limit: 0,
      server: 0,
      estimate: 0,
      client: 0,
      drain: 0,
      flags: 0,
      sent: 0,
      active: false,
    }));
    for (const p of this.producers) this.resources[p.resource].producers.push(p);
    for (const c of this.consumers) this.resources[c.resource].members.push(c);
  }

  openProducer(p) {
    const producer = this.producers[p];
    producer.open = true;
    producer.countdown = 0;
  }

  openConsumer(c, { maxRate, limit, current, drainRate }) {
    const consumer = this.consumers[c];
    const resource = this.resources[consumer.resource];
    const moved = Math.min(resource.amount, limit);
    resource.amount -= moved;
    Object.assign(consumer, {
      active: true,
      maxRate,
      limit,
      drain: drainRate,
      estimate: current * SCALE,
      client: current * SCALE,
      flags: 0,
      sent: 0,
      server: moved,
    });
  }

  /** Advances every buffer by `dtMs`; returns the edges of this step. */
  step(dtMs) {
    const fair = (this.flags & FAIR) !== 0;
    const refuse = (this.flags & REFUSE_WHEN_FULL) !== 0;
    const edges = [];

    // Production, distribution, full edges.
    for (const resource of this.resources) {
      resource.spread = 0;
      let accepted = 0;
      let free = -1;
      let fullReached = resource.amount >= resource.limit;
      for (const producer of resource.producers) {
        if (!producer.open) continue;
        let cd = producer.countdown - dtMs;
        while (cd < 0) {
          if (fullReached && refuse) {
            this.totals.refusedChunks += 1;
            producer.open = false;
            edges.push({ kind: Edge.ProduceAborted, index: producer.index });
            break;
          }
          if (free < 0) free = freeRoom(resource);
          accepted += producer.chunk;
          cd += producer.interval;
          const over = accepted - free;
          if (resource.amount + Math.max(0, over) >= resource.limit) {
            fullReached = true;
            producer.open = false;
            edges.push({ kind: Edge.ProduceAborted, index: producer.index });
            break;
          }
        }
        producer.countdown = cd;
      }
      if (accepted > 0) {
        this.totals.produced += accepted;
        let left;
        if (free === 0) left = accepted;
        else if (accepted >= free) {
          for (const c of resource.members) if (c.active && c.server < c.limit) c.server = c.limit;
          left = accepted - free;
        } else {
          this.totals.shuffles += 1;
          left = distribute(resource, accepted, fair);
        }
        resource.amount += left;
      }
      if (!resource.full && resource.amount >= resource.limit) {
        resource.full = true;
        edges.push({ kind: Edge.GlobalFull, index: resource.index });
      }
    }

    // Consumers.
    let delivered = 0;
    for (const c of this.consumers) {
      if (!c.active) continue;
      let est = Math.max(0, c.estimate - c.maxRate * dtMs);
      let client = Math.max(0, c.client - c.drain * dtMs);
      let sent = 0;
      if (est * 4 <= c.limit * SCALE) {
        const want = Math.floor((c.limit * 45_000 - est) / SCALE);
        if (want > 0) {
          const resource = this.resources[c.resource];
          const take = Math.min(want, resource.amount + c.server);
          if (take > 0) {
            const fromGlobal = Math.min(take, resource.amount);
            resource.amount -= fromGlobal;
            c.server -= take - fromGlobal;
            est += take * SCALE;
            client += take * SCALE;
            sent = take;
            delivered += take;
            c.flags &= ~STARVED;
          } else if ((c.flags & STARVED) === 0) {
            c.flags |= STARVED;
            edges.push({ kind: Edge.Starved, index: c.index });
          }
        }
      }
      if (client >= c.limit * SCALE) {
        if ((c.flags & CLIENT_FULL) === 0) {
          c.flags |= CLIENT_FULL;
          edges.push({ kind: Edge.ClientFull, index: c.index });
        }
      } else c.flags &= ~CLIENT_FULL;
      c.sent = sent;
      c.estimate = est;
      c.client = client;
    }
    this.totals.delivered += delivered;

    // Not-full edges.
    for (const resource of this.resources) {
      if (resource.full && resource.amount < resource.limit) {
        resource.full = false;
        edges.push({ kind: Edge.GlobalNotFull, index: resource.index });
      }
    }
    return edges;
  }
}

function freeRoom(resource) {
  let free = 0;
  for (const c of resource.members) if (c.active && c.server < c.limit) free += c.limit - c.server;
  return free;
}

/**
 * Seeded shuffle of the connected consumers (a forward Fisher–Yates drawn lazily, position by
 * position, as the rounds reach them — the same draws as the other cores), equal shares, remainder
 * one unit each, capped by room.
 */
function distribute(resource, amount, fair) {
  const order = resource.members.filter((c) => c.active);
  const given = new Map(order.map((c) => [c, 0]));
  let shuffled = 0;
  let left = amount;
  let cursor = 0;
  while (left > 0) {
    const withRoom = order.filter((c) => c.server < c.limit).length;
    if (withRoom === 0) break;
    const share = Math.floor(left / withRoom);
    let extra = left - share * withRoom;
    const first = fair ? cursor : 0;
    for (let step = 0; step < order.length; step++) {
      if (share === 0 && extra === 0) break;
      const k = (first + step) % order.length;
      if (k === shuffled) {
        const j = k + resource.rng.int(order.length - k);
        [order[k], order[j]] = [order[j], order[k]];
        shuffled++;
      }
      const c = order[k];
      if (c.server >= c.limit) continue;
      let give = share;
      if (extra > 0) {
        give++;
        extra--;
        cursor = k + 1;
      }
      give = Math.min(give, c.limit - c.server);
      c.server += give;
      given.set(c, given.get(c) + give);
      left -= give;
    }
  }
  const stillRoom = order.filter((c) => c.server < c.limit).map((c) => given.get(c));
  const spread = stillRoom.length > 0 ? Math.max(...stillRoom) - Math.min(...stillRoom) : 0;
  resource.spread = Math.max(resource.spread, spread);
  return left;
}
