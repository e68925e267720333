/**
 * The live WebSocket host: runs ONE actor (the same pure machine the simulator runs) on the wall
 * clock, and carries its messages as JSON frames `{from, to, msg}` over real WebSockets.
 *
 * How the host interprets the machine's effects (compare engine/createSimulation.ts):
 * - `host.send` → a frame to the peer: over this node's own connection to the peer's URL from the
 *   directory (opened lazily, reused, frames queued while it connects), or, when the directory has
 *   no URL for that name, back over the connection on which that peer last sent us a valid frame.
 *   A message to an unknown or unreachable peer is dropped, counted and logged (like a lossy link).
 * - `timer.set` / `timer.cancel` → `setTimeout` / `clearTimeout`; a timer replaces the one with the
 *   same id, and a cancelled timer never fires.
 * - `host.exec` → the {@link LiveEnvironment}; its answer is delivered back as an event.
 * - `host.observe` → kept in `node.observations` and passed to `onObserve`.
 * - `host.halt` (or the machine reaching a final state) → nothing more is delivered.
 *
 * Every delivered event carries `now`: `epochUs` + the microseconds of wall time since the node
 * started. Deliveries go through one mailbox and are strictly one at a time. Incoming frames are
 * validated (JSON, frame shape, recipient, then the protocol's message validator); an invalid frame
 * is counted, logged and otherwise ignored: it never reaches the machine and never crashes the node.
 */
import { performance } from 'node:perf_hooks';
import type { AnyStateMachine, EventObject } from 'xstate';
import { WebSocket, WebSocketServer } from 'ws';
import type { RawData } from 'ws';
import type { KernelEffect, MachineBackend, MachineInstance } from '../../engine/machineBackend.js';
import { flatBackend } from '../../engine/machineBackend.js';
import type { Envelope, ExecEffect } from '../../protocol/host.js';
import { parseMwMessage } from '../../protocol/managerWorker.js';

/**
 * Answers the actor's `host.exec` effects on the wall clock. `exec` returns the event to deliver
 * back (`{ type: 'env.<op>', ref, ... }`, without `now`: the host adds it), a promise of it, or
 * `undefined` for no answer (as a hung task). The node owns its environment: `close()` calls
 * `env.close()`.
 */
/** The longest delay setTimeout honours. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

export interface LiveEnvironment {
  exec(effect: ExecEffect, now: number): Promise<EventObject | undefined> | EventObject | undefined;
  close?(): void;
}

/** Validates an untrusted message (the `msg` of a frame). */
export type MessageValidator = (input: unknown) => { ok: true; msg: Envelope } | { ok: false; error: string };

/** Why a message was not sent. */
export type DropReason = 'unknown-peer' | 'unreachable' | 'queue-full' | 'closed';

/** What the node reports besides observations (also kept, the last 1000, in `node.log`). */
export type LiveLogEntry =
  | { kind: 'invalid-frame'; now: number; reason: string; sample: string }
  | { kind: 'drop'; now: number; to: string; type: string; reason: DropReason }
  | { kind: 'socket-error'; now: number; peer: string | undefined; message: string }
  | { kind: 'actor-error'; now: number; message: string }
  | { kind: 'env-error'; now: number; op: string; ref: string; message: string }
  | { kind: 'callback-error'; now: number; message: string };

export interface LiveNodeStats {
  /** Frames that arrived on any socket (valid or not). */
  framesReceived: number;
  /** Frames handed to a socket. */
  framesSent: number;
  /** Events delivered to the machine (messages, timers, environment answers, shutdown). */
  eventsDelivered: number;
  messagesDelivered: number;
  timersFired: number;
  invalidFrames: number;
  /** Dropped outgoing messages by reason. */
  dropped: Record<string, number>;
}

export interface LiveNodeOptions {
  /** The actor's name: its address in frames and in peers' directories. */
  name: string;
  machine: AnyStateMachine;
  input: unknown;
  /** Default: the flat backend (as the simulator). */
  backend?: MachineBackend;
  /** Answers `host.exec`; without it, exec effects get no answer. */
  env?: LiveEnvironment;
  /** Peer directory: name → `ws://host:port` (update later with `setPeer`). */
  peers?: Record<string, string>;
  /** Listening address. Default `127.0.0.1`. */
  host?: string;
  /** Listening port; 0 (the default) picks a free one (see `node.port`, `node.url`). */
  port?: number;
  /** Validator of incoming messages. Default: `parseMwMessage` (manager/worker). */
  validate?: MessageValidator;
  /** Added to every `now`. Default 0: the actor's clock starts at 0, as in the simulator. */
  epochUs?: number;
  /** Largest accepted frame. Default 1 MiB. */
  maxFrameBytes?: number;
  onObserve?(obs: { kind: string }, now: number, node: LiveNode): void;
  onLog?(entry: LiveLogEntry, node: LiveNode): void;
}

export interface LiveNode {
  readonly name: string;
  /** The bound port and `ws://host:port` URL of this node's server. */
  readonly port: number;
  readonly url: string;
  /** Every observation the actor made, in order. */
  readonly observations: ReadonlyArray<{ now: number; obs: { kind: string } }>;
  /** The last 1000 log entries. */
  readonly log: readonly LiveLogEntry[];
  readonly stats: Readonly<LiveNodeStats>;
  /** True once the actor halted (host.halt, final state, actor error) or the node closed. */
  readonly halted: boolean;
  /** The machine's state and context (read only). */
  readonly state: unknown;
  readonly context: unknown;
  /** The actor's clock now (µs). */
  now(): number;
  /** Adds or replaces a peer's URL. A changed URL takes effect at the next send. */
  setPeer(name: string, url: string): void;
  removePeer(name: string): void;
  /** Delivers `host.shutdown` (the protocol's graceful goodbye). */
  shutdown(): void;
  /** Stops timers, the environment, every socket and the server; resolves when all are closed. */
  close(): Promise<void>;
}

const LOG_KEEP = 1000;
const QUEUE_LIMIT = 10_000;
const CLOSE_GRACE_MS = 1000;

type Mail =
  | { kind: 'msg'; from: string; msg: Envelope }
  | { kind: 'timer'; id: string; seq: number; event: EventObject }
  | { kind: 'event'; event: EventObject };

interface Outgoing {
  url: string;
  ws: WebSocket;
  /** Frames waiting for the connection to open. */
  queue: { frame: string; msg: Envelope }[];
}

/**
 * Starts a live node: listens on `host:port`, then starts the machine. Resolves once it listens.
 *
 * @example
 * import { createLiveNode, createMwWorkerEnv } from 'protosim/transports/ws';
 * import { managerMachine, workerMachine } from 'protosim';
 *
 * const manager = await createLiveNode({ name: 'manager', machine: managerMachine, input: managerInput,
 *   onObserve: (obs) => { if (obs.kind === 'mw.done') console.log('done', obs); } });
 * const worker = await createLiveNode({ name: 'w0', machine: workerMachine, input: workerInput,
 *   env: createMwWorkerEnv({ runMs: 20 }), peers: { manager: manager.url } });
 * manager.setPeer('w0', worker.url); // optional: without it the manager answers on w0's connection
 * // … later
 * await Promise.all([worker.close(), manager.close()]);
 */
export async function createLiveNode(opts: LiveNodeOptions): Promise<LiveNode> {
  const { name, env } = opts;
  const backend = opts.backend ?? flatBackend;
  const validate = opts.validate ?? (parseMwMessage as MessageValidator);
  const epochUs = opts.epochUs ?? 0;
  const maxPayload = opts.maxFrameBytes ?? 1 << 20;
  const directory = new Map<string, string>(Object.entries(opts.peers ?? {}));
  const outgoing = new Map<string, Outgoing>();
  /** Every connection this node opened and that is not closed yet. */
  const clientSockets = new Set<WebSocket>();
  /** Peer name → the connection it last sent a valid frame on (route back when it has no URL). */
  const learned = new Map<string, WebSocket>();
  const timers = new Map<string, { handle: NodeJS.Timeout; seq: number }>();
  const mailbox: Mail[] = [];
  const observations: { now: number; obs: { kind: string } }[] = [];
  const log: LiveLogEntry[] = [];
  const stats: LiveNodeStats = {
    framesReceived: 0,
    framesSent: 0,
    eventsDelivered: 0,
    messagesDelivered: 0,
    timersFired: 0,
    invalidFrames: 0,
    dropped: {},
  };
  const t0 = performance.now();
  const now = (): number => epochUs + Math.floor((performance.now() - t0) * 1000);
  let instance: MachineInstance | null = null;
  let halted = false;
  let closing: Promise<void> | null = null;
  let draining = false;
  let timerSeq = 0;

  const report = (entry: LiveLogEntry): void => {
    log.push(entry);
    if (log.length > LOG_KEEP) log.splice(0, log.length - LOG_KEEP);
    try {
      opts.onLog?.(entry, node);
    } catch {
      // a faulty log callback must not stop the node
    }
  };
  const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

  // ---- the mailbox: one delivery at a time ----------------------------------------------------

  const post = (mail: Mail): void => {
    if (halted) return;
    mailbox.push(mail);
    drain();
  };

  /** Delivers the mailbox in order; a mail posted during a step waits for the step to end. */
  const drain = (): void => {
    if (draining) return;
    draining = true;
    try {
      while (mailbox.length > 0 && !halted) step(mailbox.shift()!);
    } finally {
      draining = false;
      if (halted) mailbox.length = 0;
    }
  };

  const step = (mail: Mail): void => {
    let event: EventObject;
    if (mail.kind === 'msg') {
      event = { type: mail.msg.type, from: mail.from, msg: mail.msg, now: now() } as EventObject;
      stats.messagesDelivered++;
    } else if (mail.kind === 'timer') {
      if (timers.get(mail.id)?.seq !== mail.seq) return; // replaced or cancelled meanwhile
      timers.delete(mail.id);
      stats.timersFired++;
      event = { ...mail.event, now: now() } as EventObject;
    } else {
      event = { ...mail.event, now: now() } as EventObject;
    }
    stats.eventsDelivered++;
    const effects: KernelEffect[] = [];
    try {
      instance!.deliver(event, effects);
      apply(effects);
    } catch (err) {
      actorFailed(err); // a machine that throws (or emits an unsendable message) stops, as in the simulator
      return;
    }
    if (instance!.done) halt();
  };

  const actorFailed = (err: unknown): void => {
    report({ kind: 'actor-error', now: now(), message: errorText(err) });
    halt();
  };

  const halt = (): void => {
    halted = true;
    for (const t of timers.values()) clearTimeout(t.handle);
    timers.clear();
  };

  // ---- effects ------------------------------------------------------------------------------

  const apply = (effects: KernelEffect[]): void => {
    for (const e of effects) {
      switch (e.type) {
        case 'host.send':
          send(e.to, e.msg);
          break;
        case 'host.observe': {
          const at = now();
          observations.push({ now: at, obs: e.obs });
          try {
            opts.onObserve?.(e.obs, at, node);
          } catch (err) {
            report({ kind: 'callback-error', now: at, message: errorText(err) });
          }
          break;
        }
        case 'host.exec':
          exec(e);
          break;
        case 'host.halt':
          halt();
          break;
        case 'timer.set': {
          if (halted) break;
          const old = timers.get(e.id);
          if (old) clearTimeout(old.handle);
          const seq = ++timerSeq;
          const { id, event } = e;
          // setTimeout fires at once beyond 2³¹−1 ms (~24.8 days): longer timers wait in legs.
          const arm = (remainingMs: number): void => {
            const leg = Math.min(Math.max(0, remainingMs), MAX_TIMEOUT_MS);
            const handle = setTimeout(() => {
              if (timers.get(id)?.seq !== seq) return;
              if (remainingMs > MAX_TIMEOUT_MS) arm(remainingMs - MAX_TIMEOUT_MS);
              else post({ kind: 'timer', id, seq, event });
            }, leg);
            timers.set(id, { handle, seq });
          };
          arm(e.delayMs);
          break;
        }
        case 'timer.cancel': {
          const old = timers.get(e.id);
          if (old) clearTimeout(old.handle);
          timers.delete(e.id);
          break;
        }
      }
    }
  };

  const exec = (e: ExecEffect): void => {
    if (!env) return;
    const failed = (err: unknown): void => report({ kind: 'env-error', now: now(), op: e.op, ref: e.ref, message: errorText(err) });
    const answered = (answer: EventObject | undefined): void => {
      if (answer && !closing) post({ kind: 'event', event: answer });
    };
    try {
      const r = env.exec(e, now());
      if (r instanceof Promise) r.then(answered, failed);
      else answered(r); // delivered right after the current step
    } catch (err) {
      failed(err);
    }
  };

  // ---- sockets ------------------------------------------------------------------------------

  const drop = (to: string, msg: Envelope, reason: DropReason): void => {
    stats.dropped[reason] = (stats.dropped[reason] ?? 0) + 1;
    report({ kind: 'drop', now: now(), to, type: msg.type, reason });
  };

  const send = (to: string, msg: Envelope): void => {
    if (closing) {
      drop(to, msg, 'closed');
      return;
    }
    if (to === name) {
      post({ kind: 'msg', from: name, msg });
      return;
    } // to itself: no socket needed
    const frame = JSON.stringify({ from: name, to, msg });
    const url = directory.get(to);
    if (url === undefined) {
      const back = learned.get(to);
      if (back?.readyState !== WebSocket.OPEN) {
        drop(to, msg, 'unknown-peer');
        return;
      }
      back.send(frame);
      stats.framesSent++;
      return;
    }
    let out = outgoing.get(to);
    if (!out || out.url !== url || out.ws.readyState >= WebSocket.CLOSING) {
      if (out) void closeSocket(out.ws); // the peer moved: leave its old address
      try {
        out = connect(to, url);
      } catch (err) {
        report({ kind: 'socket-error', now: now(), peer: to, message: errorText(err) }); // e.g. a malformed URL
        drop(to, msg, 'unreachable');
        return;
      }
    }
    if (out.ws.readyState === WebSocket.OPEN) {
      out.ws.send(frame);
      stats.framesSent++;
    } else if (out.queue.length >= QUEUE_LIMIT) {
      drop(to, msg, 'queue-full');
    } else {
      out.queue.push({ frame, msg });
    }
  };

  const connect = (peer: string, url: string): Outgoing => {
    const ws = new WebSocket(url, { maxPayload });
    const out: Outgoing = { url, ws, queue: [] };
    outgoing.set(peer, out);
    clientSockets.add(ws);
    ws.on('open', () => {
      for (const q of out.queue) ws.send(q.frame);
      stats.framesSent += out.queue.length;
      out.queue.length = 0;
    });
    ws.on('message', (data, isBinary) => receive(data, isBinary, ws));
    ws.on('error', (err) => report({ kind: 'socket-error', now: now(), peer, message: errorText(err) }));
    ws.on('close', () => {
      for (const q of out.queue) drop(peer, q.msg, closing ? 'closed' : 'unreachable');
      out.queue.length = 0;
      clientSockets.delete(ws);
      if (outgoing.get(peer) === out) outgoing.delete(peer);
      for (const [p, s] of learned) if (s === ws) learned.delete(p);
    });
    return out;
  };

  const invalid = (reason: string, text: string): void => {
    stats.invalidFrames++;
    report({ kind: 'invalid-frame', now: now(), reason, sample: text.slice(0, 200) });
  };

  const receive = (data: RawData, isBinary: boolean, ws: WebSocket): void => {
    stats.framesReceived++;
    if (closing) return;
    const bytes = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    const text = bytes.toString('utf8');
    if (isBinary) {
      invalid('binary frame (expected JSON text)', text);
      return;
    }
    let frame: unknown;
    try {
      frame = JSON.parse(text);
    } catch {
      invalid('not JSON', text);
      return;
    }
    if (typeof frame !== 'object' || frame === null || Array.isArray(frame)) {
      invalid('frame is not an object', text);
      return;
    }
    const { from, to, msg } = frame as Record<string, unknown>;
    if (typeof from !== 'string' || from === '' || typeof to !== 'string' || msg === undefined) {
      invalid('frame must be {from: string, to: string, msg}', text);
      return;
    }
    if (to !== name) {
      invalid(`frame addressed to ${JSON.stringify(to)}, not ${JSON.stringify(name)}`, text);
      return;
    }
    const parsed = validate(msg);
    if (!parsed.ok) {
      invalid(`invalid message: ${parsed.error}`, text);
      return;
    }
    learned.set(from, ws);
    post({ kind: 'msg', from, msg: parsed.msg });
  };

  /** Closes one socket gracefully (terminating it after a grace period); resolves once closed. */
  const closeSocket = (ws: WebSocket): Promise<void> =>
    new Promise((resolve) => {
      if (ws.readyState === WebSocket.CLOSED) return resolve();
      const timer = setTimeout(() => ws.terminate(), CLOSE_GRACE_MS);
      ws.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      ws.close(1001, 'node closing');
    });

  // ---- the server ---------------------------------------------------------------------------

  const wss = await new Promise<WebSocketServer>((resolve, reject) => {
    const server = new WebSocketServer({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 0, maxPayload });
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      resolve(server);
    });
  });
  wss.on('error', (err) => report({ kind: 'socket-error', now: now(), peer: undefined, message: errorText(err) }));
  wss.on('connection', (ws) => {
    ws.on('error', (err) => report({ kind: 'socket-error', now: now(), peer: undefined, message: errorText(err) }));
    if (closing) {
      ws.terminate();
      return;
    }
    ws.on('message', (data, isBinary) => receive(data, isBinary, ws));
    ws.on('close', () => {
      for (const [peer, s] of learned) if (s === ws) learned.delete(peer);
    });
  });
  const address = wss.address();
  if (address === null || typeof address === 'string') {
    wss.close();
    throw new Error(`unexpected server address ${String(address)}`);
  }
  const url = `ws://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;

  const node: LiveNode = {
    name,
    port: address.port,
    url,
    observations,
    log,
    stats,
    get halted() {
      return halted;
    },
    get state() {
      return instance?.state;
    },
    get context() {
      return instance?.context;
    },
    now,
    setPeer(peer, peerUrl) {
      directory.set(peer, peerUrl);
    },
    removePeer(peer) {
      directory.delete(peer);
    },
    shutdown() {
      if (!closing) post({ kind: 'event', event: { type: 'host.shutdown' } });
    },
    close() {
      closing ??= (async () => {
        halt();
        try {
          env?.close?.();
        } catch (err) {
          report({ kind: 'env-error', now: now(), op: 'close', ref: '', message: errorText(err) });
        }
        const serverClosed = new Promise<void>((resolve) => wss.close(() => resolve()));
        await Promise.all([...clientSockets, ...wss.clients].map(closeSocket));
        await serverClosed;
      })();
      return closing;
    },
  };

  // Start the machine once the server listens, so that answers to its first messages can arrive.
  const initial: KernelEffect[] = [];
  try {
    instance = backend.start(opts.machine, opts.input, initial);
  } catch (err) {
    actorFailed(err);
    return node;
  }
  draining = true; // what the start posts (a sync env answer, a message to itself) waits for it
  try {
    apply(initial);
    if (instance.done) halt();
  } finally {
    draining = false;
  }
  drain();
  return node;
}
