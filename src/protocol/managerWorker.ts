/**
 * Manager/worker protocol types (`shared/protocols/manager-worker.md`): node types, tasks, task
 * statuses and the request/answer messages, with a validator for messages that arrive from outside
 * (a live transport, an injected message in a scenario).
 */
import { z } from 'zod';

export const NODE_TYPES = ['MANAGER', 'WORKER'] as const;
export type NodeType = (typeof NODE_TYPES)[number];

export const TASK_ERROR_KINDS = ['TIMED_OUT', 'DOWNLOAD', 'RUNTIME', 'ABORTED', 'UNKNOWN'] as const;
export type TaskErrorKind = (typeof TASK_ERROR_KINDS)[number];

/** Error kinds that count one failure towards `maxFailures` (protocol: "Tasks on the manager"). */
export const COUNTED_FAILURES: ReadonlySet<TaskErrorKind> = new Set(['TIMED_OUT', 'DOWNLOAD', 'RUNTIME']);

/** The protocol's modes: `strict` follows the draft, `balthazar` the original implementation. */
export const MW_MODES = ['strict', 'balthazar'] as const;
export type MwMode = (typeof MW_MODES)[number];

export type TaskStatus =
  | { kind: 'Pending' }
  | { kind: 'Started'; startTime: number }
  | { kind: 'Error'; error: TaskErrorKind }
  | { kind: 'Completed'; result: string }
  | { kind: 'Unknown' };

/** Order of statuses in a task's life: reports must strictly increase (invariant 6). */
export function statusRank(status: TaskStatus): number {
  switch (status.kind) {
    case 'Pending':
      return 0;
    case 'Started':
      return 1;
    case 'Completed':
    case 'Error':
      return 2;
    default:
      return -1;
  }
}

export function isTerminal(status: TaskStatus): boolean {
  return status.kind === 'Completed' || status.kind === 'Error';
}

export interface TaskSpec {
  taskId: string;
  programAddresses: string[];
  programHash: string;
  programKind: string;
  argument: string;
  /** Seconds, as in the original. */
  timeout: number;
  maxNetworkUsage: number;
}

export interface WorkerSpecs {
  workerPrice: number;
  networkPrice: number;
  cpuCount: number;
  memory: number;
  networkSpeed: number;
  supportedProgramKinds: string[];
}

// Requests carry `rid`, answers carry `re` (see protocol/host.ts).
export type NodeTypeRequest = { type: 'NodeTypeRequest'; rid: number; nodeType: NodeType };
export type ManagerRequest = { type: 'ManagerRequest'; rid: number } & WorkerSpecs;
export type ManagerBye = { type: 'ManagerBye'; rid: number };
export type ManagerPing = { type: 'ManagerPing'; rid: number };
export type TasksExecute = { type: 'TasksExecute'; rid: number; tasks: TaskSpec[] };
export type TasksPing = { type: 'TasksPing'; rid: number; taskIds: string[] };
export type TasksAbord = { type: 'TasksAbord'; rid: number; taskIds: string[] };
export type TaskStatusMsg = { type: 'TaskStatus'; rid: number; taskId: string; status: TaskStatus };

export type NodeTypeAnswer = { type: 'NodeTypeAnswer'; re: number; nodeType: NodeType };
export type ManagerAnswer = { type: 'ManagerAnswer'; re: number; accepted: boolean };
export type Ack = { type: 'Ack'; re: number };
export type ManagerPong = { type: 'ManagerPong'; re: number };
export type NotMine = { type: 'NotMine'; re: number };
export type TasksPong = { type: 'TasksPong'; re: number; statuses: { taskId: string; status: TaskStatus }[] };

export type MwRequest = NodeTypeRequest | ManagerRequest | ManagerBye | ManagerPing | TasksExecute | TasksPing | TasksAbord | TaskStatusMsg;
export type MwAnswer = NodeTypeAnswer | ManagerAnswer | Ack | ManagerPong | NotMine | TasksPong;
export type MwMessage = MwRequest | MwAnswer;
export type MwRequestType = MwRequest['type'];
export type MwAnswerType = MwAnswer['type'];

/** The answers each request may get (protocol table "Messages"). */
export const MW_ANSWERS: Readonly<Record<MwRequestType, readonly MwAnswerType[]>> = {
  NodeTypeRequest: ['NodeTypeAnswer'],
  ManagerRequest: ['ManagerAnswer'],
  ManagerBye: ['Ack'],
  ManagerPing: ['ManagerPong', 'NotMine'],
  TasksExecute: ['Ack', 'NotMine'],
  TasksPing: ['TasksPong', 'NotMine'],
  TasksAbord: ['Ack', 'NotMine'],
  TaskStatus: ['Ack', 'NotMine'],
};

/** Requests that only a partner may send; a non-partner gets `NotMine` (invariant 3). */
export const RELATIONSHIP_SCOPED: ReadonlySet<string> = new Set(['ManagerPing', 'TasksExecute', 'TasksPing', 'TasksAbord', 'TaskStatus']);

export function isMwRequest(msg: { type: string }): msg is MwRequest {
  return MW_ANSWERS_BY_TYPE.has(msg.type);
}
const MW_ANSWERS_BY_TYPE: ReadonlyMap<string, readonly MwAnswerType[]> = new Map(Object.entries(MW_ANSWERS));

// ---- validation of messages that come from outside -------------------------------------------

const rid = z.number().int().nonnegative();
const nodeType = z.enum(NODE_TYPES);
const taskStatus = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('Pending') }),
  z.strictObject({ kind: z.literal('Started'), startTime: z.number().nonnegative() }),
  z.strictObject({ kind: z.literal('Error'), error: z.enum(TASK_ERROR_KINDS) }),
  z.strictObject({ kind: z.literal('Completed'), result: z.string() }),
  z.strictObject({ kind: z.literal('Unknown') }),
]);
const taskSpec = z.strictObject({
  taskId: z.string().min(1),
  programAddresses: z.array(z.string()),
  programHash: z.string(),
  programKind: z.string(),
  argument: z.string(),
  timeout: z.number().positive(),
  maxNetworkUsage: z.number().nonnegative(),
});
const taskIds = z.array(z.string().min(1));

/** Zod schema of every manager/worker message (used where messages come from outside the simulator). */
export const mwMessageSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('NodeTypeRequest'), rid, nodeType }),
  z.strictObject({
    type: z.literal('ManagerRequest'),
    rid,
    workerPrice: z.number().nonnegative(),
    networkPrice: z.number().nonnegative(),
    cpuCount: z.number().int().positive(),
    memory: z.number().nonnegative(),
    networkSpeed: z.number().nonnegative(),
    supportedProgramKinds: z.array(z.string()),
  }),
  z.strictObject({ type: z.literal('ManagerBye'), rid }),
  z.strictObject({ type: z.literal('ManagerPing'), rid }),
  z.strictObject({ type: z.literal('TasksExecute'), rid, tasks: z.array(taskSpec) }),
  z.strictObject({ type: z.literal('TasksPing'), rid, taskIds }),
  z.strictObject({ type: z.literal('TasksAbord'), rid, taskIds }),
  z.strictObject({ type: z.literal('TaskStatus'), rid, taskId: z.string().min(1), status: taskStatus }),
  z.strictObject({ type: z.literal('NodeTypeAnswer'), re: rid, nodeType }),
  z.strictObject({ type: z.literal('ManagerAnswer'), re: rid, accepted: z.boolean() }),
  z.strictObject({ type: z.literal('Ack'), re: rid }),
  z.strictObject({ type: z.literal('ManagerPong'), re: rid }),
  z.strictObject({ type: z.literal('NotMine'), re: rid }),
  z.strictObject({
    type: z.literal('TasksPong'),
    re: rid,
    statuses: z.array(z.strictObject({ taskId: z.string(), status: taskStatus })),
  }),
]);

/** Validates an untrusted manager/worker message. */
export function parseMwMessage(input: unknown): { ok: true; msg: MwMessage } | { ok: false; error: string } {
  const r = mwMessageSchema.safeParse(input);
  if (r.success) return { ok: true, msg: r.data as MwMessage };
  const issue = r.error.issues[0];
  return { ok: false, error: `${issue.path.join('.') || '(message)'}: ${issue.message.replace(/^Invalid input: /, '')}` };
}

// ---- observations the machines emit for the invariant checkers -------------------------------

/** Why a relationship ended. */
export type DropReason = 'bye' | 'timeout' | 'not-mine' | 'shutdown' | 'superseded';

export type MwObservation =
  /** Worker: its manager changed (`null`: none). */
  | { kind: 'mw.manager'; manager: string | null; reason?: DropReason }
  /** Manager: a worker joined (with its declared slots) or left. */
  | { kind: 'mw.worker.add'; worker: string; cpuCount: number }
  | { kind: 'mw.worker.drop'; worker: string; reason: DropReason }
  /** Either side: the liveness check gave up on a partner. */
  | { kind: 'mw.timeout'; peer: string }
  /** Manager: an assigned task of a lost worker is marked `Error(ABORTED)`. */
  | { kind: 'mw.task.aborted'; taskId: string; worker: string }
  /** Manager: a failure counted for a task (with the running count). */
  | { kind: 'mw.task.failure'; taskId: string; error: TaskErrorKind; failures: number }
  /** Manager: a task completed, or failed definitely. */
  | { kind: 'mw.task.completed'; taskId: string; worker: string }
  | { kind: 'mw.task.failed'; taskId: string; failures: number }
  /** Manager: a status arrived for a task it did not assign to that worker (the original panicked). */
  | { kind: 'mw.task.unexpected'; taskId: string; worker: string }
  /** Manager: every task is completed or definitely failed. */
  | { kind: 'mw.done'; completed: number; failed: number }
  /** A node began shutting down. */
  | { kind: 'mw.shutdown' }
  /** A peer reported a type other than the first one recorded (kept the first). */
  | { kind: 'mw.type-changed'; peer: string; first: NodeType; reported: NodeType };
