/**
 * The REAR provider machine (`shared/protocols/rear.md`, "Provider behaviour" and "Known defects of
 * the implementation"), driven event by event on both machine backends, which must agree.
 */
import { describe, expect, it } from 'vitest';
import type { EventObject } from 'xstate';
import type { ProviderDurable, ProviderInput } from '../../src/actors/rear/provider.machine.js';
import { durableOf, providerMachine } from '../../src/actors/rear/provider.machine.js';
import type { BackendName, KernelEffect } from '../../src/engine/machineBackend.js';
import { backendByName } from '../../src/engine/machineBackend.js';
import type { Flavor, NodeIdentity, Partition, RearMode } from '../../src/protocol/rear.js';

const GI = 2 ** 30;
const owner: NodeIdentity = { domain: 'fluidos.eu', nodeId: 'p1', ip: '10.0.0.1' };
const buyer = (n: number): NodeIdentity => ({ domain: 'fluidos.eu', nodeId: `c${n}`, ip: `10.0.1.${n}` });

const whole: Flavor = {
  flavorId: 'gpu-box',
  providerId: 'p1',
  timestamp: 0,
  type: { name: 'k8slice', characteristics: { architecture: 'amd64', cpuMilli: 8000, memoryBytes: 32 * GI, pods: 110 } },
  price: { amount: 20, currency: 'EUR', period: 'hourly' },
  owner,
  availability: true,
};
const slice: Flavor = {
  ...whole,
  flavorId: 'slice',
  type: {
    name: 'k8slice',
    characteristics: { architecture: 'amd64', cpuMilli: 4000, memoryBytes: 8 * GI, pods: 10 },
    partitionability: { cpuMinMilli: 500, memoryMinBytes: GI, podsMin: 1, cpuStepMilli: 250, memoryStepBytes: GI / 2, podsStep: 1 },
  },
};

/** A provider on `backend`: send it messages at virtual times, read its answers and observations. */
function provider(mode: RearMode, backend: BackendName, over: Partial<ProviderInput> = {}) {
  const input: ProviderInput = {
    name: 'p1',
    mode,
    identity: owner,
    flavors: [whole, slice],
    ttpMs: 60_000,
    sweepMs: 20_000,
    contractDays: 365,
    refreshMs: 300_000,
    allocationMs: 0,
    ...over,
  };
  const out: KernelEffect[] = [];
  const instance = backendByName(backend).start(providerMachine, input, out);
  type TimerSet = Extract<KernelEffect, { type: 'timer.set' }>;
  const timers = new Map<string, TimerSet>();
  const keepTimers = (): void => {
    for (const e of out) if (e.type === 'timer.set') timers.set(e.id, e);
  };
  keepTimers();
  let rid = 0;
  const deliver = (event: EventObject): KernelEffect[] => {
    out.length = 0;
    instance.deliver(event, out);
    keepTimers();
    return [...out];
  };
  const sent = (effects: KernelEffect[]) =>
    effects.filter((e) => e.type === 'host.send') as unknown as { to: string; msg: Record<string, unknown> & { type: string } }[];
  const observed = (effects: KernelEffect[]) =>
    effects.filter((e) => e.type === 'host.observe').map((e) => (e as unknown as { obs: Record<string, unknown> & { kind: string } }).obs);
  const ask = (from: string, msg: Record<string, unknown>, nowUs: number) => {
    const effects = deliver({ type: msg.type as string, from, msg: { ...msg, rid: ++rid }, now: nowUs } as EventObject);
    const answer = effects.find((e) => e.type === 'host.send') as Extract<KernelEffect, { type: 'host.send' }> | undefined;
    return { answer: answer?.msg as unknown as Record<string, unknown> & { status: number }, to: answer?.to, effects };
  };
  return {
    list: (selector: unknown, nowUs = 0) => ask('c1', { type: 'ListFlavors', selector }, nowUs).answer,
    reserve: (n: number, flavorId: string, nowUs: number, partition?: Partition) =>
      ask(
        `c${n}`,
        {
          type: 'ReserveFlavor',
          reservation: { flavorId, buyer: buyer(n), ...(partition ? { configuration: { type: 'k8slice', data: partition } } : {}) },
          token: 't',
        },
        nowUs,
      ).answer,
    purchase: (n: number, transactionId: string, nowUs: number) =>
      ask(`c${n}`, { type: 'PurchaseFlavor', transactionId, token: 't' }, nowUs).answer,
    /** Fires the sweep timer at `nowUs`; returns the transactions it expired. */
    sweep: (nowUs: number) =>
      deliver({ ...timers.get('sweep')!.event, now: nowUs } as EventObject)
        .filter((e) => e.type === 'host.observe' && (e.obs as { kind: string }).kind === 'rear.expired')
        .map((e) => (e as unknown as { obs: { transactionId: string } }).obs.transactionId),
    sweepDelayMs: () => timers.get('sweep')!.delayMs,
    /** Fires the refresh timer (undefined: none is set); returns what was sent. */
    refresh: (nowUs: number) =>
      timers.has('refresh') ? sent(deliver({ ...timers.get('refresh')!.event, now: nowUs } as EventObject)) : undefined,
    subscribe: (from: string, flavorId: string, nowUs: number) => ask(from, { type: 'SubscribeFlavor', flavorId }, nowUs).answer,
    /** The operator withdraws a flavor: what was sent, and what was observed. */
    withdraw: (flavorId: string, nowUs: number) => {
      const effects = deliver({
        type: 'WithdrawFlavor',
        from: 'operator',
        msg: { type: 'WithdrawFlavor', flavorId, reason: 'maintenance' },
        now: nowUs,
      } as EventObject);
      return { sent: sent(effects), observed: observed(effects) };
    },
    /** What a reserve sent. */
    reserveAll: (n: number, flavorId: string, nowUs: number) =>
      sent(ask(`c${n}`, { type: 'ReserveFlavor', reservation: { flavorId, buyer: buyer(n) }, token: 't' }, nowUs).effects),
    /** The effects of the last purchase (notices to subscribers go with it). */
    purchaseAll: (n: number, transactionId: string, nowUs: number) => {
      const { effects } = ask(`c${n}`, { type: 'PurchaseFlavor', transactionId, token: 't' }, nowUs);
      return { sent: sent(effects), observed: observed(effects) };
    },
    context: () => instance.context,
  };
}

const txId = (a: Record<string, unknown>) => (a.transaction as { transactionId: string }).transactionId;

describe.each(['flat', 'xstate'] as const)('REAR provider on the %s backend', (backend) => {
  it('lists only available flavors that match, and answers 400 to a malformed selector', () => {
    const p = provider('strict', backend);
    expect((p.list(undefined).flavors as Flavor[]).map((f) => f.flavorId)).toEqual(['gpu-box', 'slice']);
    expect((p.list({ filters: { cpu: { range: { min: 6000 } } } }).flavors as Flavor[]).map((f) => f.flavorId)).toEqual(['gpu-box']);
    const bad = p.list({ filters: { cpu: { range: { min: 6000, max: 1000 } } } });
    expect(bad.status).toBe(400);
    expect(bad.flavors).toEqual([]);
  });

  it('strict: one buyer per whole flavor — the second gets 409; unknown flavor 404; the sale ends the listing', () => {
    const p = provider('strict', backend);
    const first = p.reserve(1, 'gpu-box', 0);
    expect(first.status).toBe(200);
    expect((first.transaction as { expirationTimeUs: number }).expirationTimeUs).toBe(60_000_000);
    expect(p.reserve(2, 'gpu-box', 1000)).toMatchObject({ status: 409, error: 'flavor gpu-box is already reserved' });
    expect(p.reserve(2, 'nope', 1000)).toMatchObject({ status: 404 });
    const sold = p.purchase(1, txId(first), 2000);
    expect(sold.status).toBe(200);
    expect(sold.contract).toMatchObject({ transactionId: txId(first), seller: owner, buyer: buyer(1) });
    expect((p.list(undefined).flavors as Flavor[]).map((f) => f.flavorId)).toEqual(['slice']);
    // A repeated purchase returns the same contract (idempotent).
    expect(p.purchase(1, txId(first), 3000).contract).toEqual(sold.contract);
    expect(p.purchase(1, 'tx-unknown', 3000).status).toBe(404);
  });

  it('a re-reserve by the same buyer extends its transaction, never shortens it', () => {
    const p = provider('strict', backend);
    const a = p.reserve(1, 'gpu-box', 0);
    const b = p.reserve(1, 'gpu-box', 30_000_000);
    expect(txId(b)).toBe(txId(a));
    expect((b.transaction as { expirationTimeUs: number }).expirationTimeUs).toBe(90_000_000);
  });

  it('past its TTP a transaction is refused with 408; the sweep returns held capacity (strict: all expired at once)', () => {
    const p = provider('strict', backend);
    expect(p.sweepDelayMs()).toBe(20_000);
    const a = p.reserve(1, 'gpu-box', 0);
    expect(p.purchase(1, txId(a), 60_000_001)).toMatchObject({ status: 408 });
    const b = p.reserve(2, 'gpu-box', 60_000_002);
    expect(b.status).toBe(200);
    const c = p.reserve(3, 'slice', 60_000_003, { cpuMilli: 500, memoryBytes: GI, pods: 1 });
    const d = p.reserve(4, 'slice', 60_000_004, { cpuMilli: 500, memoryBytes: GI, pods: 1 });
    expect(p.sweep(100_000_000)).toEqual([]);
    expect(p.sweep(200_000_000).sort()).toEqual([txId(b), txId(c), txId(d)].sort());
    expect(p.reserve(5, 'gpu-box', 200_000_001).status).toBe(200);
  });

  it('partitions: on the grid and within what is left (holds count); the remainder is a new flavor while ≥ the minimum', () => {
    const p = provider('strict', backend);
    expect(p.reserve(1, 'slice', 0, { cpuMilli: 600, memoryBytes: GI, pods: 1 })).toMatchObject({
      status: 409,
      error: 'cpu 600 is off the grid 500 + k·250',
    });
    const a = p.reserve(1, 'slice', 0, { cpuMilli: 3000, memoryBytes: 6 * GI, pods: 5 });
    expect(a.status).toBe(200);
    // 1000m, 2Gi left while a's hold lasts.
    expect(p.reserve(2, 'slice', 1, { cpuMilli: 1250, memoryBytes: GI, pods: 1 })).toMatchObject({
      status: 409,
      error: 'cpu 1250 exceeds the 1000 left',
    });
    expect(p.reserve(2, 'gpu-box', 1).status).toBe(200);
    expect(p.purchase(1, txId(a), 2).status).toBe(200);
    // The remainder is offered as a new flavor; the sold one's id is no longer on offer (rear.md:
    // "for a partition the remainder is offered as a new flavor").
    const listed = p.list({ type: 'k8slice' }).flavors as Flavor[];
    expect(listed.map((f) => f.flavorId)).toEqual(['gpu-box', 'slice-r1']);
    expect(listed[1].type).toMatchObject({ characteristics: { cpuMilli: 1000, memoryBytes: 2 * GI, pods: 5 } });
    expect(p.reserve(3, 'slice', 3, { cpuMilli: 500, memoryBytes: GI, pods: 1 })).toMatchObject({
      status: 409,
      error: 'flavor slice was partitioned: what is left is offered as slice-r1',
    });
    const b = p.reserve(3, 'slice-r1', 3, { cpuMilli: 750, memoryBytes: 1.5 * GI, pods: 4 });
    expect(p.purchase(3, txId(b), 4).status).toBe(200);
    // 250m, 0.5Gi, 1 pod left: below the minimum, no longer listed (gpu-box is only reserved: still listed).
    expect((p.list({ type: 'k8slice' }).flavors as Flavor[]).map((f) => f.flavorId)).toEqual(['gpu-box']);
  });

  it('strict: a reservation of a whole partitionable flavor holds all of it (found by the REAR property test)', () => {
    const p = provider('strict', backend);
    expect(p.reserve(1, 'slice', 0).status).toBe(200);
    expect(p.reserve(2, 'slice', 1)).toMatchObject({ status: 409, error: 'flavor slice is partly taken' });
    expect(p.reserve(3, 'slice', 2, { cpuMilli: 500, memoryBytes: GI, pods: 1 })).toMatchObject({
      status: 409,
      error: 'cpu 500 exceeds the 0 left',
    });
  });

  it('fluidos: reserve checks nothing — two buyers both buy one flavor (the double sell); 500s; one expiry per sweep', () => {
    const p = provider('fluidos', backend);
    const a = p.reserve(1, 'gpu-box', 0);
    const b = p.reserve(2, 'gpu-box', 1);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(p.purchase(1, txId(a), 2).status).toBe(200);
    expect(p.purchase(2, txId(b), 3).status).toBe(200);
    expect(p.reserve(3, 'nope', 4).status).toBe(500);
    expect(p.purchase(1, 'tx-unknown', 5).status).toBe(500);
    expect(p.purchase(1, txId(a), 6).status).toBe(500);
    // Off the grid and beyond the capacity: not checked.
    expect(p.reserve(4, 'slice', 7, { cpuMilli: 9000, memoryBytes: 3, pods: 1 }).status).toBe(200);
    p.reserve(5, 'slice', 8);
    p.reserve(6, 'slice', 9);
    expect(p.sweep(100_000_000)).toHaveLength(1);
    expect(p.sweep(120_000_000)).toHaveLength(1);
  });

  it('strict subscriptions: a sale pushes a modified Refresh, a sell-out a Withdraw; the refresh timer re-announces the rest', () => {
    const p = provider('strict', backend, { refreshMs: 60_000 });
    expect(p.subscribe('c1', 'slice', 0)).toMatchObject({ type: 'SubscribeAnswer', status: 200, flavorId: 'slice' });
    expect(p.subscribe('c2', 'gpu-box', 0).status).toBe(200);
    expect(p.subscribe('c2', 'nope', 0).status).toBe(404);
    const a = p.reserve(3, 'slice', 1, { cpuMilli: 1000, memoryBytes: 2 * GI, pods: 2 });
    const sale = p.purchaseAll(3, txId(a), 2);
    const refresh = sale.sent.find((m) => m.msg.type === 'Refresh')!;
    expect(refresh.to).toBe('c1');
    expect(refresh.msg).toMatchObject({
      modified: true,
      expiresAtUs: 60_000_002,
      flavor: { type: { characteristics: { cpuMilli: 3000 } } },
    });
    const b = p.reserve(4, 'gpu-box', 3);
    const sellOut = p.purchaseAll(4, txId(b), 4);
    expect(sellOut.sent.filter((m) => m.msg.type === 'Withdraw')).toEqual([
      { type: 'host.send', to: 'c2', msg: { type: 'Withdraw', flavorId: 'gpu-box', reason: 'sold out' } },
    ]);
    // The periodic refresh: only the slice is still on offer.
    const periodic = p.refresh(60_000_000)!;
    expect(periodic.map((m) => [m.to, m.msg.type, (m.msg.flavor as Flavor).flavorId, m.msg.modified])).toEqual([
      ['c1', 'Refresh', 'slice-r1', false],
    ]);
  });

  it('strict withdraw: subscribers told, open transactions cancelled (purchase → 409), later reserves and subscriptions → 409', () => {
    const p = provider('strict', backend);
    p.subscribe('c9', 'gpu-box', 0);
    const a = p.reserve(1, 'gpu-box', 1);
    const w = p.withdraw('gpu-box', 2);
    expect(w.sent).toEqual([{ type: 'host.send', to: 'c9', msg: { type: 'Withdraw', flavorId: 'gpu-box', reason: 'maintenance' } }]);
    expect(w.observed.map((o) => o.kind)).toEqual(['rear.cancelled', 'rear.withdrawn']);
    expect(p.purchase(1, txId(a), 3)).toMatchObject({
      status: 409,
      error: `transaction ${txId(a)} was cancelled: its flavor was withdrawn`,
    });
    expect(p.reserve(1, 'gpu-box', 4)).toMatchObject({ status: 409, error: 'flavor gpu-box was withdrawn' });
    expect(p.subscribe('c2', 'gpu-box', 5).status).toBe(409);
    expect((p.list(undefined).flavors as Flavor[]).map((f) => f.flavorId)).toEqual(['slice']);
  });

  it('a purchase of a transaction the sweep already dropped is refused with 408, not as unknown', () => {
    const p = provider('strict', backend);
    const a = p.reserve(1, 'gpu-box', 0);
    expect(p.sweep(80_000_000)).toEqual([txId(a)]);
    expect(p.purchase(1, txId(a), 90_000_000)).toMatchObject({ status: 408 });
  });

  it('fluidos: no subscriptions (500), withdraw ignored, refresh never; a sale leaves the listing only after the allocation', () => {
    const p = provider('fluidos', backend, { allocationMs: 2000 });
    expect(p.subscribe('c1', 'gpu-box', 0)).toMatchObject({ status: 500, error: 'subscriptions are not implemented' });
    expect(p.withdraw('slice', 0)).toEqual({ sent: [], observed: [{ kind: 'rear.unsupported', what: 'withdraw of slice' }] });
    expect(p.refresh(1)).toBeUndefined();
    const a = p.reserve(1, 'gpu-box', 0);
    expect(p.purchase(1, txId(a), 1_000_000).status).toBe(200);
    expect((p.list(undefined, 2_999_999).flavors as Flavor[]).map((f) => f.flavorId)).toEqual(['gpu-box', 'slice']);
    expect((p.list(undefined, 3_000_000).flavors as Flavor[]).map((f) => f.flavorId)).toEqual(['slice']);
  });

  it('a restart keeps what durableOf read at the crash (sales, withdrawals) and forgets open transactions; ids are never reused', () => {
    const before = provider('strict', backend);
    const a = before.reserve(1, 'slice', 0, { cpuMilli: 1000, memoryBytes: 2 * GI, pods: 2 });
    const sold = before.purchase(1, txId(a), 1).contract;
    const open = before.reserve(2, 'slice-r1', 2, { cpuMilli: 500, memoryBytes: GI, pods: 1 }); // lost in the crash
    before.withdraw('gpu-box', 3);
    const restore: ProviderDurable = durableOf(before.context());
    expect(restore).toEqual({
      sales: [{ contract: sold, flavorId: 'slice', atUs: 1 }],
      withdrawn: [{ flavorId: 'gpu-box', reason: 'maintenance' }],
    });
    const after = provider('strict', backend, { restore, incarnation: 1 });
    // The contract is still there (a repeated purchase returns it); the open transaction is unknown.
    expect(after.purchase(1, txId(a), 10).contract).toEqual(sold);
    expect(after.purchase(2, txId(open), 10).status).toBe(404);
    const listed = after.list(undefined, 10).flavors as Flavor[];
    expect(listed).toEqual(before.list(undefined, 10).flavors);
    expect(listed.map((f) => f.flavorId)).toEqual(['slice-r1']);
    expect(listed[0].type).toMatchObject({ characteristics: { cpuMilli: 3000, memoryBytes: 6 * GI, pods: 8 } });
    const t = after.reserve(3, 'slice-r1', 11, { cpuMilli: 500, memoryBytes: GI, pods: 1 });
    expect(txId(t)).toBe('p1-r1-tx-1');
    expect(after.purchaseAll(3, txId(t), 12).observed.find((o) => o.kind === 'rear.sold')).toMatchObject({
      contractId: 'p1-contract-2',
      remainder: 'slice-r2',
    });
  });

  it('strict: an expired hold is dropped when a reserve looks at what is free — a clock set back cannot revive it', () => {
    const p = provider('strict', backend);
    const a = p.reserve(1, 'slice', 0, { cpuMilli: 3000, memoryBytes: 6 * GI, pods: 2 });
    // Past a's TTP, before any sweep: b gets the capacity, and a's transaction is gone.
    expect(p.reserve(2, 'slice', 60_000_001, { cpuMilli: 3000, memoryBytes: 6 * GI, pods: 2 }).status).toBe(200);
    expect(p.purchase(1, txId(a), 30_000_000)).toMatchObject({ status: 408 }); // the clock set back
  });

  it('fluidos: a purchase of a swept transaction is unknown (500), as the implementation keeps no record of it', () => {
    const p = provider('fluidos', backend);
    const a = p.reserve(1, 'gpu-box', 0);
    expect(p.sweep(80_000_000)).toEqual([txId(a)]);
    expect(p.purchase(1, txId(a), 90_000_000)).toMatchObject({ status: 500 });
  });

  it('with an authority: a restarted provider asks with new request ids, so a verdict meant for the one before is not taken', () => {
    const first = provider('strict', backend, { authority: 'auth' });
    const second = provider('strict', backend, { authority: 'auth', incarnation: 1 });
    const ask = (p: typeof first) => p.reserveAll(1, 'gpu-box', 0).find((e) => e.msg.type === 'ValidateToken')!.msg.rid;
    expect(ask(first)).toBe(1);
    expect(ask(second)).toBe(1_000_000_001);
  });
});
