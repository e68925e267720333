/**
 * Machine execution backends. A host runs every actor through one small interface, so a faster
 * backend can replace XState's interpreter without touching protocols or scenarios:
 *
 * - `xstate`: XState v5's own interpreter, driven through the pure `machine.transition` API with a
 *   reusable inert actor scope (no live actor, no XState clock: the host owns time).
 * - `flat`: the same machine definition compiled into a flat transition table (see flatBackend.ts),
 *   checked against `xstate` by differential property tests.
 *
 * Both report the machine's effects as {@link KernelEffect}s, in the order the machine made them.
 */
import type { AnyStateMachine, EventObject } from 'xstate';
import { createActor } from 'xstate';
import type { HostEffect } from '../protocol/host.js';
import { compileFlatMachine } from './flatBackend.js';

/** What a machine asks of its host: protocol effects plus timers. */
export type KernelEffect =
  HostEffect | { type: 'timer.set'; id: string; delayMs: number; event: EventObject } | { type: 'timer.cancel'; id: string };

/** One running machine. */
export interface MachineInstance {
  /** Delivers one event; effects are appended to `out`. */
  deliver(event: EventObject, out: KernelEffect[]): void;
  /** True once the machine reached a top-level final state. */
  readonly done: boolean;
  /** The current state (top-level state key, or XState's state value). */
  readonly state: unknown;
  /** The machine's context (owned by the machine; read it, never write it). */
  readonly context: unknown;
}

export interface MachineBackend {
  readonly name: BackendName;
  /** Starts `machine` with `input`; the initial effects are appended to `out`. */
  start(machine: AnyStateMachine, input: unknown, out: KernelEffect[]): MachineInstance;
}

export const BACKEND_NAMES = ['flat', 'xstate'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

/** An executable action as XState hands it to `actionExecutor`. */
interface XStateExecutable {
  type: string;
  info?: unknown;
  params?: unknown;
  exec?: ((info: unknown, params: unknown) => void) | undefined;
}

/** Translates one executable XState action into kernel effects (or runs a custom action). */
function collectAction(action: XStateExecutable, out: KernelEffect[]): void {
  const p = action.params as Record<string, unknown> | undefined;
  switch (action.type) {
    case 'xstate.emit':
      out.push(p!.event as HostEffect);
      return;
    case 'xstate.raise':
      if (typeof p!.delay === 'number') {
        out.push({ type: 'timer.set', id: String(p!.id), delayMs: p!.delay, event: p!.event as EventObject });
      }
      return;
    case 'xstate.cancel':
      out.push({ type: 'timer.cancel', id: String(p!.sendId) });
      return;
    default:
      if (action.type.startsWith('xstate.')) return; // assign and friends are already resolved
      action.exec?.(action.info, action.params); // a custom action, run as XState's own actor would
  }
}

interface XStateScope {
  out: KernelEffect[];
  scope: unknown;
}

const scopes = new WeakMap<AnyStateMachine, XStateScope>();

function scopeFor(machine: AnyStateMachine): XStateScope {
  const s = scopes.get(machine);
  if (s) return s;
  const self = createActor(machine as AnyStateMachine, { input: {} as never });
  const holder: XStateScope = { out: [], scope: undefined };
  holder.scope = {
    self,
    defer: () => {},
    id: '',
    logger: () => {},
    sessionId: '',
    stopChild: () => {},
    system: self.system,
    emit: () => {},
    actionExecutor: (action: XStateExecutable) => collectAction(action, holder.out),
  };
  scopes.set(machine, holder);
  return holder;
}

/** XState's interpreter, through the pure transition API. */
export const xstateBackend: MachineBackend = {
  name: 'xstate',
  start(machine, input, out) {
    const holder = scopeFor(machine);
    holder.out = out;
    let snapshot = machine.getInitialSnapshot(holder.scope as never, input);
    return {
      deliver(event, effects) {
        if (snapshot.status !== 'active') return;
        holder.out = effects;
        snapshot = machine.transition(snapshot, event as never, holder.scope as never);
        if (snapshot.status === 'error') throw snapshot.error;
      },
      get done() {
        return snapshot.status !== 'active';
      },
      get state() {
        return snapshot.value;
      },
      get context() {
        return snapshot.context;
      },
    };
  },
};

const compiled = new WeakMap<AnyStateMachine, ReturnType<typeof compileFlatMachine>>();

/** The compiled flat backend (see flatBackend.ts). */
export const flatBackend: MachineBackend = {
  name: 'flat',
  start(machine, input, out) {
    let program = compiled.get(machine);
    if (!program) {
      program = compileFlatMachine(machine);
      compiled.set(machine, program);
    }
    return program.start(input, out);
  },
};

export function backendByName(name: BackendName): MachineBackend {
  return name === 'xstate' ? xstateBackend : flatBackend;
}
