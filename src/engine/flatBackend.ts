/**
 * The `flat` backend: an XState v5 machine definition compiled into a table
 * `(state, event type) → candidate transitions`, each with its exit, transition and entry actions
 * already in XState's order. Delivering an event is a table lookup, the guards, and the actions —
 * no microstep machinery, no snapshot objects — which is what lets the simulator keep up with
 * hundreds of thousands of messages a second.
 *
 * It supports the subset protosim's machines use, and refuses anything else at compile time (never
 * a silent difference): top-level atomic and final states; event transitions with a string/function
 * guard; targetless transitions, transitions to another top-level state, and self-transitions with
 * `reenter`; actions `assign`, `emit`, delayed `raise` with an id, `cancel`, `enqueueActions`, and
 * plain functions; `after` delays (numbers or named delays). What only shows when it runs — a
 * raise whose delay is not a number, which XState raises at once — throws the same error then. The
 * differential property tests in `test/engine/flatBackend.test.ts` check it against XState's
 * interpreter.
 *
 * Context is updated in place (`assign` merges into the same object), which is how protosim's
 * machines treat context anyway (owned, mutable state; see actors/manager-worker/worker.machine.ts).
 */
import type { AnyStateMachine, EventObject } from 'xstate';
import type { HostEffect } from '../protocol/host.js';
import type { KernelEffect, MachineInstance } from './machineBackend.js';

type Ctx = Record<string, unknown>;
type Args = { context: Ctx; event: EventObject };
/** A compiled action: runs against the live context, appends effects. */
type Step = (ctx: Ctx, event: EventObject, out: KernelEffect[]) => void;
type Guard = (args: Args) => boolean;

type RaiseOptions = { id?: string; delay?: unknown };
/** An item `enqueueActions` had to defer: it comes after an assign or a custom action. */
type Queued =
  | { kind: 'action'; a: unknown }
  | { kind: 'emit'; e: unknown }
  | { kind: 'raise'; e: unknown; o: RaiseOptions | undefined }
  | { kind: 'cancel'; sendId: unknown }
  | { kind: 'assign'; assignment: unknown };
/** An `enqueueActions` call running now. */
interface Frame {
  ctx: Ctx;
  event: EventObject;
  out: KernelEffect[];
  queued: Queued[];
}
const NO_CTX: Ctx = {};
const NO_EVENT: EventObject = { type: '' };
const NO_OUT: KernelEffect[] = [];

interface FlatTransition {
  guard: Guard | undefined;
  /** Exit actions of the source, the transition's actions, the target's entry actions. */
  steps: Step[];
  /** Index of the next state, or -1 to stay. */
  target: number;
}

interface FlatState {
  key: string;
  final: boolean;
  on: Map<string, FlatTransition[]>;
}

/** Raised when a machine uses a feature the flat backend does not compile. */
export class FlatCompileError extends Error {
  constructor(machineId: string, what: string) {
    super(`flat backend: machine '${machineId}' uses ${what}; run it with --backend xstate or simplify the machine`);
    this.name = 'FlatCompileError';
  }
}

interface AnyNode {
  key: string;
  id: string;
  type: string;
  parent?: AnyNode;
  states: Record<string, AnyNode>;
  entry: unknown[];
  exit: unknown[];
  after: unknown;
  transitions: Map<string, AnyTransition[]>;
  initial?: { target: AnyNode[] };
}

interface AnyTransition {
  target?: AnyNode[];
  source: AnyNode;
  actions: unknown[];
  guard?: unknown;
  reenter?: boolean;
}

export function compileFlatMachine(machine: AnyStateMachine): { start(input: unknown, out: KernelEffect[]): MachineInstance } {
  const root = machine.root as unknown as AnyNode;
  const impl = machine.implementations as {
    actions: Record<string, unknown>;
    guards: Record<string, unknown>;
    delays: Record<string, unknown>;
  };
  const id = root.id;
  const fail = (what: string): never => {
    throw new FlatCompileError(id, what);
  };

  const keys = Object.keys(root.states);
  const nodes = keys.map((k) => root.states[k]);
  for (const node of [root, ...nodes]) {
    const extra = node as unknown as { always?: unknown[]; invoke?: unknown[] };
    if (extra.always?.length) fail(`eventless (always) transitions ('${node.key || id}')`);
    if (extra.invoke?.length) fail(`invoked actors ('${node.key || id}')`);
  }
  for (const node of nodes) {
    if (node.type !== 'atomic' && node.type !== 'final') fail(`a ${node.type} state ('${node.key}')`);
    void node.after; // materialises XState's delayed-transition raise/cancel actions in entry/exit
  }
  if (root.entry.length || root.exit.length) fail('entry/exit actions on the root');
  const indexOf = (node: AnyNode): number => {
    const i = nodes.indexOf(node);
    if (i < 0) fail(`a transition to a nested state ('${node.id}')`);
    return i;
  };

  const compileAction = (action: unknown, where: string): Step => {
    let params: unknown;
    let fn: unknown = action;
    if (typeof action === 'string') {
      fn = impl.actions[action];
      if (fn === undefined) fail(`an unknown action '${action}' (${where})`);
    } else if (typeof action === 'object' && action !== null && 'type' in action) {
      const named = action as { type: string; params?: unknown };
      fn = impl.actions[named.type];
      params = named.params;
      if (fn === undefined) fail(`an unknown action '${named.type}' (${where})`);
    }
    if (typeof fn !== 'function') return fail(`an action that is not a function (${where})`);
    const builtin = fn as unknown as { type?: string } & Record<string, unknown>;
    const resolveParams = (ctx: Ctx, event: EventObject): unknown =>
      typeof params === 'function' ? (params as (a: Args) => unknown)({ context: ctx, event }) : params;
    switch (builtin.type) {
      case 'xstate.assign':
        return compileAssign(builtin.assignment, resolveParams);
      case 'xstate.emit': {
        const ev = builtin.event;
        return (ctx, event, out) => {
          out.push((typeof ev === 'function' ? ev({ context: ctx, event }, resolveParams(ctx, event)) : ev) as HostEffect);
        };
      }
      case 'xstate.raise':
        return compileRaise(builtin.event, builtin.delay, builtin.id, resolveParams);
      case 'xstate.cancel': {
        const sendId = builtin.sendId;
        return (ctx, event, out) => {
          const resolved = typeof sendId === 'function' ? sendId({ context: ctx, event }, resolveParams(ctx, event)) : sendId;
          out.push({ type: 'timer.cancel', id: String(resolved) });
        };
      }
      case 'xstate.enqueueActions': {
        const collect = builtin.collect as (a: unknown, p: unknown) => void;
        // The call running now, in a frame reused from call to call (an enqueued action may start
        // another call: one frame per depth). Effects (emit, delayed raise, cancel) go out at once
        // while nothing deferred is queued before them, with no item made for them; from the first
        // assign or custom action on, everything waits for `collect` to return — the order XState
        // resolves enqueued actions in.
        const frames: Frame[] = [];
        let depth = 0;
        let run: Frame | undefined;
        // An `enqueue` kept and called after its call returned does nothing, as in XState.
        const defer = (item: Queued): void => void run?.queued.push(item);
        const enqueue = Object.assign((a: unknown) => defer({ kind: 'action', a }), {
          emit: (e: unknown) => {
            const f = run;
            if (f?.queued.length === 0) emitNow(e, f.ctx, f.event, f.out);
            else defer({ kind: 'emit', e });
          },
          raise: (e: unknown, o?: RaiseOptions) => {
            const f = run;
            if (f?.queued.length === 0) raiseNow(e, o, f.ctx, f.event, f.out);
            else defer({ kind: 'raise', e, o });
          },
          cancel: (sendId: unknown) => {
            const f = run;
            if (f?.queued.length === 0) cancelNow(sendId, f.ctx, f.event, f.out);
            else defer({ kind: 'cancel', sendId });
          },
          assign: (assignment: unknown) => defer({ kind: 'assign', assignment }),
        });
        const check = (): never => fail('check() inside enqueueActions');
        return (ctx, event, out) => {
          const outer = run;
          const f = (frames[depth] ??= { ctx, event, out, queued: [] });
          f.ctx = ctx;
          f.event = event;
          f.out = out;
          run = f;
          depth++;
          try {
            collect({ context: ctx, event, enqueue, check }, resolveParams(ctx, event));
            for (let i = 0; i < f.queued.length; i++) runQueued(f.queued[i], ctx, event, out);
          } finally {
            // Nothing of this call is kept past it.
            f.queued.length = 0;
            f.ctx = NO_CTX;
            f.event = NO_EVENT;
            f.out = NO_OUT;
            depth--;
            run = outer;
          }
        };
      }
      case undefined:
        return (ctx, event) => void (fn as (a: Args, p: unknown) => void)({ context: ctx, event }, resolveParams(ctx, event));
      default:
        return fail(`the action '${builtin.type}' (${where})`);
    }
  };

  const compileAssign = (assignment: unknown, resolveParams: (c: Ctx, e: EventObject) => unknown): Step => {
    if (typeof assignment === 'function') {
      return (ctx, event) =>
        void Object.assign(ctx, (assignment as (a: Args, p: unknown) => Ctx)({ context: ctx, event }, resolveParams(ctx, event)));
    }
    const entries = Object.entries(assignment as Record<string, unknown>);
    return (ctx, event) => {
      const p = resolveParams(ctx, event);
      const partial: Ctx = {};
      for (const [k, v] of entries)
        partial[k] = typeof v === 'function' ? (v as (a: Args, p: unknown) => unknown)({ context: ctx, event }, p) : v;
      Object.assign(ctx, partial);
    };
  };

  const resolveDelay = (delay: unknown, ctx: Ctx, event: EventObject, p: unknown): unknown => {
    if (typeof delay === 'string') {
      const d = impl.delays[delay];
      return typeof d === 'function' ? (d as (a: Args, p: unknown) => unknown)({ context: ctx, event }, p) : d;
    }
    return typeof delay === 'function' ? (delay as (a: Args, p: unknown) => unknown)({ context: ctx, event }, p) : delay;
  };

  const compileRaise = (ev: unknown, delay: unknown, sendId: unknown, resolveParams: (c: Ctx, e: EventObject) => unknown): Step => {
    if (delay === undefined) fail('an immediate raise (only delayed raises compile)');
    if (sendId === undefined) fail('a delayed raise without an id');
    return (ctx, event, out) => {
      const p = resolveParams(ctx, event);
      const d = resolveDelay(delay, ctx, event, p);
      const e = (typeof ev === 'function' ? ev({ context: ctx, event }, p) : ev) as EventObject;
      const idText = typeof sendId === 'function' ? sendId({ context: ctx, event }, p) : sendId;
      out.push({ type: 'timer.set', id: String(idText), delayMs: delayMsOf(d, e), event: e });
    };
  };

  /** A raise's resolved delay; XState raises at once when it is not a number, which the flat backend does not run. */
  const delayMsOf = (d: unknown, e: EventObject): number => {
    if (typeof d !== 'number')
      throw new FlatCompileError(
        id,
        `a raise of '${e?.type}' whose delay is ${typeof d === 'string' ? JSON.stringify(d) : String(d)}, not a number (XState raises it at once)`,
      );
    return d;
  };

  const emitNow = (e: unknown, ctx: Ctx, event: EventObject, out: KernelEffect[]): void =>
    void out.push((typeof e === 'function' ? e({ context: ctx, event }) : e) as HostEffect);

  /** A delayed raise enqueued by `enqueue.raise(event, { id, delay })`. */
  const raiseNow = (e: unknown, o: RaiseOptions | undefined, ctx: Ctx, event: EventObject, out: KernelEffect[]): void => {
    if (o?.delay === undefined) fail('an immediate raise (only delayed raises compile)');
    if (o!.id === undefined) fail('a delayed raise without an id');
    const d = resolveDelay(o!.delay, ctx, event, undefined);
    const raised = (typeof e === 'function' ? e({ context: ctx, event }, undefined) : e) as EventObject;
    out.push({ type: 'timer.set', id: String(o!.id), delayMs: delayMsOf(d, raised), event: raised });
  };

  /** `enqueue.cancel(sendId)`: a function id is called, as XState does. */
  const cancelNow = (sendId: unknown, ctx: Ctx, event: EventObject, out: KernelEffect[]): void => {
    const resolved = typeof sendId === 'function' ? sendId({ context: ctx, event }, undefined) : sendId;
    out.push({ type: 'timer.cancel', id: String(resolved) });
  };

  const runQueued = (item: Queued, ctx: Ctx, event: EventObject, out: KernelEffect[]): void => {
    switch (item.kind) {
      case 'action':
        compileAction(item.a, 'enqueueActions')(ctx, event, out);
        return;
      case 'emit':
        emitNow(item.e, ctx, event, out);
        return;
      case 'raise':
        raiseNow(item.e, item.o, ctx, event, out);
        return;
      case 'cancel':
        cancelNow(item.sendId, ctx, event, out);
        return;
      case 'assign':
        compileAssign(item.assignment, () => undefined)(ctx, event, out);
        return;
      default:
        fail(`an unknown enqueued item`);
    }
  };

  const compileGuard = (guard: unknown, where: string): Guard | undefined => {
    if (guard === undefined) return undefined;
    let fn: unknown = guard;
    let params: unknown;
    if (typeof guard === 'string') fn = impl.guards[guard];
    else if (typeof guard === 'object' && guard !== null && 'type' in guard) {
      fn = impl.guards[(guard as { type: string }).type];
      params = (guard as { params?: unknown }).params;
    }
    if (typeof fn !== 'function' || (fn as { check?: unknown }).check !== undefined) {
      return fail(`a guard that is not a plain function (${where})`);
    }
    const g = fn as (a: Args, p: unknown) => boolean;
    return (args) => g(args, typeof params === 'function' ? (params as (a: Args) => unknown)(args) : params);
  };

  const entrySteps = nodes.map((n) => n.entry.map((a) => compileAction(a, `entry of '${n.key}'`)));
  const exitSteps = nodes.map((n) => n.exit.map((a) => compileAction(a, `exit of '${n.key}'`)));

  const compileTransition = (t: AnyTransition, from: number, eventType: string): FlatTransition => {
    const where = `'${eventType}' in '${t.source.key || id}'`;
    if ((t.target?.length ?? 0) > 1) fail(`a transition with several targets (${where})`);
    const guard = compileGuard(t.guard, where);
    const actions = t.actions.map((a) => compileAction(a, where));
    const targetNode = t.target?.[0];
    if (targetNode === undefined) return { guard, steps: actions, target: -1 };
    const to = indexOf(targetNode);
    const fromRoot = t.source === root;
    if (fromRoot && t.reenter) fail(`reenter on a root transition (${where})`);
    // XState: a targeted transition of a state to itself without `reenter` neither exits nor enters.
    if (!fromRoot && to === from && !t.reenter) return { guard, steps: actions, target: -1 };
    return { guard, steps: [...exitSteps[from], ...actions, ...entrySteps[to]], target: to };
  };

  const states: FlatState[] = nodes.map((node, i) => {
    const on = new Map<string, FlatTransition[]>();
    const types = new Set([...node.transitions.keys(), ...root.transitions.keys()]);
    for (const type of types) {
      if (type.includes('*')) fail(`a wildcard event descriptor '${type}'`);
      const list = [...(node.transitions.get(type) ?? []), ...(root.transitions.get(type) ?? [])];
      on.set(
        type,
        list.map((t) => compileTransition(t, i, type)),
      );
    }
    return { key: node.key, final: node.type === 'final', on };
  });

  const initialNode = root.initial?.target[0];
  if (!initialNode) fail('no initial state');
  const initialIndex = indexOf(initialNode as AnyNode);
  const contextConfig = (machine.config as { context?: unknown }).context;

  return {
    start(input, out) {
      const ctx = (
        typeof contextConfig === 'function'
          ? (contextConfig as (a: unknown) => Ctx)({ input, self: undefined, spawn: () => fail('spawn') })
          : { ...(contextConfig as Ctx | undefined) }
      ) as Ctx;
      const init = { type: 'xstate.init', input } as EventObject;
      for (const step of entrySteps[initialIndex]) step(ctx, init, out);
      return new FlatInstance(states, ctx, initialIndex);
    },
  };
}

/**
 * One running flat machine: three fields and shared prototype methods, so that 10⁵–10⁶ idle
 * actors cost no closures each.
 */
class FlatInstance implements MachineInstance {
  done: boolean;
  constructor(
    private readonly states: readonly FlatState[],
    readonly context: Ctx,
    private current: number,
  ) {
    this.done = states[current].final;
  }

  get state(): string {
    return this.states[this.current].key;
  }

  deliver(event: EventObject, effects: KernelEffect[]): void {
    if (this.done) return;
    const candidates = this.states[this.current].on.get(event.type);
    if (candidates === undefined) return;
    const ctx = this.context;
    const args: Args = { context: ctx, event };
    for (const t of candidates) {
      if (t.guard !== undefined && !t.guard(args)) continue;
      for (const step of t.steps) step(ctx, event, effects);
      if (t.target >= 0) {
        this.current = t.target;
        this.done = this.states[t.target].final;
      }
      return;
    }
  }
}
