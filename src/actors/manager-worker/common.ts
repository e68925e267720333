/**
 * Pieces shared by the manager and worker machines: their event types and the effect builders that
 * answer requests. Pure protocol logic: no engine, no transport, no `node:*`.
 */
import type { ExecEffect, HaltEffect, ObserveEffect, SendEffect } from '../../protocol/host.js';
import { effect } from '../../protocol/host.js';
import type { MwMessage, MwObservation, MwRequest, NodeType } from '../../protocol/managerWorker.js';

/** A message delivered to a manager/worker node. */
export type MwMessageEvent = { type: MwMessage['type']; from: string; msg: MwMessage; now: number };

/** Answers of the environment to `host.exec` (see protocol/host.ts). */
export type MwEnvEvent =
  { type: 'env.fetch'; ref: string; ok: boolean; now: number } | { type: 'env.run'; ref: string; ok: boolean; result: string; now: number };

export type MwControlEvent = { type: 'host.shutdown'; now: number } | { type: 'task.timeout'; taskId: string; now: number };

/** Timer events carry `now` too: the host adds it when it delivers them. */
export type MwTimerEvent = { type: `xstate.after.${string}`; now: number };

export type MwEvent = MwMessageEvent | MwEnvEvent | MwControlEvent | MwTimerEvent;

export type MwEmitted = SendEffect<MwMessage> | ObserveEffect<MwObservation> | ExecEffect | HaltEffect;

/** A node's request counter, advanced by every request it sends. */
export interface RequestCounter {
  rid: number;
}

export const send = (to: string, msg: MwMessage): SendEffect<MwMessage> => effect.send(to, msg);
export const observe = (obs: MwObservation): ObserveEffect<MwObservation> => effect.observe(obs);

/** A request without its id (distributes over the request union). */
export type RequestBody = MwRequest extends infer R ? (R extends MwRequest ? Omit<R, 'rid'> : never) : never;

/** Builds a request with the node's next request id. */
export function request(ctx: RequestCounter, body: RequestBody): MwRequest {
  ctx.rid += 1;
  // The body is a fresh literal at every call site: stamping it avoids a copy on the hot path.
  (body as { rid?: number }).rid = ctx.rid;
  return body as MwRequest;
}

/** The request id of a delivered request (answers use it as `re`). */
export function ridOf(ev: MwEvent): number {
  return ((ev as MwMessageEvent).msg as { rid?: number }).rid ?? -1;
}

export function fromOf(ev: MwEvent): string {
  return (ev as MwMessageEvent).from;
}

/** Records a peer's type; the first type reported is kept (protocol: "Handshake"). */
export function recordPeerType(
  peerTypes: Map<string, NodeType>,
  peer: string,
  reported: NodeType,
): ObserveEffect<MwObservation> | undefined {
  const first = peerTypes.get(peer);
  if (first === undefined) {
    peerTypes.set(peer, reported);
    return undefined;
  }
  return first === reported ? undefined : observe({ kind: 'mw.type-changed', peer, first, reported });
}

type PeerTypesArgs = { context: { peerTypes: Map<string, NodeType> }; event: MwEvent; enqueue: { emit(e: MwEmitted): void } };

/** NodeTypeRequest at a node of type `self`: record what the sender says it is, answer with ours. */
export function answerNodeTypeAs(self: NodeType): (args: PeerTypesArgs) => void {
  return ({ context, event, enqueue }) => {
    const ev = event as MwMessageEvent;
    const changed = ev.msg.type === 'NodeTypeRequest' ? recordPeerType(context.peerTypes, ev.from, ev.msg.nodeType) : undefined;
    if (changed) enqueue.emit(changed);
    enqueue.emit(send(ev.from, { type: 'NodeTypeAnswer', re: ridOf(event), nodeType: self }));
  };
}

/** NodeTypeAnswer: record the peer's type (the first one reported is kept). */
export function recordNodeTypeAnswer({ context, event, enqueue }: PeerTypesArgs): void {
  const ev = event as MwMessageEvent;
  if (ev.msg.type !== 'NodeTypeAnswer') return;
  const changed = recordPeerType(context.peerTypes, ev.from, ev.msg.nodeType);
  if (changed) enqueue.emit(changed);
}
