/**
 * comlink speaks to an endpoint shaped like a Web Worker (addEventListener('message', …) with
 * `{ data }` events); Node's worker_threads ports emit the data itself. This adapts a Node port.
 */
import type { Endpoint } from 'comlink';

interface NodePort {
  postMessage(message: unknown, transfer?: readonly unknown[]): void;
  on(event: 'message', listener: (data: unknown) => void): unknown;
  off(event: 'message', listener: (data: unknown) => void): unknown;
}

type Handler = ((ev: { data: unknown }) => void) | { handleEvent(ev: { data: unknown }): void };

/** A comlink endpoint over a Node worker or its parentPort. */
export function nodePortEndpoint(port: NodePort): Endpoint {
  const listeners = new Map<Handler, (data: unknown) => void>();
  const endpoint = {
    postMessage: (message: unknown, transfer?: unknown[]) => port.postMessage(message, transfer),
    addEventListener: (_type: string, h: Handler) => {
      const l = (data: unknown) => (typeof h === 'function' ? h({ data }) : h.handleEvent({ data }));
      listeners.set(h, l);
      port.on('message', l);
    },
    removeEventListener: (_type: string, h: Handler) => {
      const l = listeners.get(h);
      if (l) port.off('message', l);
      listeners.delete(h);
    },
  };
  return endpoint as unknown as Endpoint;
}
