/**
 * The contract between actors (pure protocol logic) and their hosts (the simulator, live transports).
 *
 * An actor never touches a socket, a timer, a clock or a random source. It receives events and asks
 * its host, as data (XState `emit`), for effects: send a message, record an observation, ask the
 * environment to do something (fetch a program, run a task), or halt. Timers are XState delayed
 * events (`after`, delayed `raise`), which every host schedules on its own clock.
 */

/** A protocol message. Requests carry the sender's request id `rid`; answers carry `re`, the `rid` they answer. */
export interface Envelope {
  readonly type: string;
  readonly rid?: number;
  readonly re?: number;
}

/** Send `msg` to the actor named `to`. */
export interface SendEffect<M extends Envelope = Envelope> {
  type: 'host.send';
  to: string;
  msg: M;
}

/** Record an observation (state an invariant checker needs to see). */
export interface ObserveEffect<O extends { kind: string } = { kind: string }> {
  type: 'host.observe';
  obs: O;
}

/**
 * Ask the environment to do `op` for the actor (for example fetch a program, run a task). The host
 * answers later with the event `{ type: 'env.<op>', ref, ...result }`.
 */
export interface ExecEffect {
  type: 'host.exec';
  op: string;
  ref: string;
  data?: unknown;
}

/** The actor has finished for good (for example after a shutdown); the host stops delivering to it. */
export interface HaltEffect {
  type: 'host.halt';
}

export type HostEffect = SendEffect | ObserveEffect | ExecEffect | HaltEffect;

/** Every event a host delivers carries `now`: the actor's clock reading in microseconds. */
export interface HostEventBase {
  now: number;
}

/** A delivered message: the event's type is the message's type. */
export interface MessageEvent<M extends Envelope = Envelope> extends HostEventBase {
  type: M['type'];
  from: string;
  msg: M;
}

/** A request reached a server that is down and refuses connections (`ActorDefinition.refuses`): `re` is the request's `rid`. */
export interface RefusedEvent extends HostEventBase {
  type: 'host.refused';
  from: string;
  msg: { type: 'host.refused'; re: number };
}

/** The host asks the actor to shut down gracefully. */
export interface ShutdownEvent extends HostEventBase {
  type: 'host.shutdown';
}

/** Builders that keep machine code short and typed. */
export const effect = {
  send<M extends Envelope>(to: string, msg: M): SendEffect<M> {
    return { type: 'host.send', to, msg };
  },
  observe<O extends { kind: string }>(obs: O): ObserveEffect<O> {
    return { type: 'host.observe', obs };
  },
  exec(op: string, ref: string, data?: unknown): ExecEffect {
    return { type: 'host.exec', op, ref, data };
  },
  halt(): HaltEffect {
    return { type: 'host.halt' };
  },
};
