/**
 * The kernel's event queue: a binary min-heap under a total order that never depends on insertion
 * order across actors — `(time, kind, target, origin, originSeq)`. `originSeq` is the origin's own
 * counter, so two events from one origin keep the order in which that origin made them.
 */

/** Kinds of queued events, in the order they run when everything else ties. */
export const EventKind = {
  /** Scheduled faults and control events from the scenario. */
  Fault: 0,
  /** Release of held messages, partition heals and similar network control. */
  Network: 1,
  /** A timer an actor set (XState `after` or a delayed raise). */
  Timer: 2,
  /** A message delivered by the network. */
  Message: 3,
  /** An answer of the environment (a program fetched, a task finished). */
  Env: 4,
  /** A step of the bulk world (the buffer/rate core), after every actor event of its instant. */
  World: 5,
} as const;
export type EventKind = (typeof EventKind)[keyof typeof EventKind];

/** What orders events. `target`/`origin` are stable actor indices (`-1` for the kernel). */
export interface EventKey {
  time: number;
  kind: EventKind;
  target: number;
  origin: number;
  originSeq: number;
}

/** One queued event. */
export interface QueuedEvent extends EventKey {
  payload: unknown;
}

/** The queue's order on event keys: `a` runs before `b`. */
export function less(a: EventKey, b: EventKey): boolean {
  if (a.time !== b.time) return a.time < b.time;
  if (a.kind !== b.kind) return a.kind < b.kind;
  if (a.target !== b.target) return a.target < b.target;
  if (a.origin !== b.origin) return a.origin < b.origin;
  return a.originSeq < b.originSeq;
}

/** A min-heap of {@link QueuedEvent}s. */
export class EventQueue {
  private heap: QueuedEvent[] = [];

  get size(): number {
    return this.heap.length;
  }

  push(ev: QueuedEvent): void {
    const heap = this.heap;
    let i = heap.length;
    heap.push(ev);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent];
      if (!less(ev, p)) break;
      heap[i] = p;
      i = parent;
    }
    heap[i] = ev;
  }

  peek(): QueuedEvent | undefined {
    return this.heap[0];
  }

  pop(): QueuedEvent | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length === 0 || last === undefined) return top;
    const n = heap.length;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && less(heap[r], heap[l]) ? r : l;
      if (!less(heap[c], last)) break;
      heap[i] = heap[c];
      i = c;
    }
    heap[i] = last;
    return top;
  }
}
