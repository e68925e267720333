/**
 * OPACA protocol types (`shared/protocols/opaca.md`): runtime platforms, agent containers and their
 * images, agent descriptions, actions with typed parameters, messages, connection requests, the
 * event history, error responses and roles — and their validation. Pure data and functions: no
 * engine, no XState.
 *
 * In the simulator a call is an HTTP-shaped request (method, path, query, body) answered by a
 * response (status, body), so the same actors can sit behind the real REST API. {@link parseRoute}
 * turns a request into a typed route, or into the error the platform answers (404 unknown route,
 * 422 malformed body, 400 invalid URL); {@link argumentProblem} checks an invoke's arguments against
 * an action's declared parameters (a mismatch is a 400).
 *
 * @example
 * parseRoute({ method: 'POST', path: '/invoke/Add/calc-1', query: { forward: 'false' }, body: '{"x":1,"y":2}' });
 * // { ok: true, route: { kind: 'invoke', action: 'Add', agent: 'calc-1', forward: false, timeoutS: -1, args: { x: 1, y: 2 } } }
 * argumentProblem(addAction, { x: 1, y: 'two' }); // 'y: expected integer, got "two"'
 */
import { z } from 'zod';

/** `documented`: send and broadcast reach every valid target; `current` (the implementation): the first success only. */
export const OPACA_MODES = ['documented', 'current'] as const;
export type OpacaMode = (typeof OPACA_MODES)[number];

/** Status codes of the REST API ("Error mapping"). */
export const OPACA_STATUS = {
  ok: 200,
  badRequest: 400,
  unauthorized: 401,
  forbidden: 403,
  notFound: 404,
  unprocessable: 422,
  badGateway: 502,
} as const;
export type OpacaStatus = (typeof OPACA_STATUS)[keyof typeof OPACA_STATUS];

// ---- roles -------------------------------------------------------------------------------------------

/** Roles, highest first: a route runs for its threshold role and every role above it. */
export const ROLES = ['ADMIN', 'CONTRIBUTOR', 'USER', 'GUEST'] as const;
export type Role = (typeof ROLES)[number];

/** Does `role` reach `threshold` (ADMIN > CONTRIBUTOR > USER > GUEST)? */
export function roleAtLeast(role: Role, threshold: Role): boolean {
  return ROLES.indexOf(role) <= ROLES.indexOf(threshold);
}

/** Token lifetimes with auth on, in seconds: login 1 h, renewed 10 h, container 24 h, platform connection 7 d. */
export const TOKEN_LIFETIME_S = { login: 3600, renew: 36_000, container: 86_400, connection: 604_800 } as const;

// ---- models --------------------------------------------------------------------------------------------

/** A parameter or result type: a primitive, an array of `items`, or a named schema (an object). */
export interface Parameter {
  type: string;
  required: boolean;
  items?: Parameter;
}

/**
 * The types a parameter may declare by name (the implementation's ArgumentValidator). Any other name
 * is a schema from the image's `definitions`, which the simulator does not model: any value passes,
 * as the implementation lets an unknown schema name pass.
 */
export const PRIMITIVE_TYPES = ['string', 'integer', 'number', 'boolean', 'null', 'array'] as const;

export interface Action {
  name: string;
  description?: string;
  parameters: Record<string, Parameter>;
  result: Parameter;
}

export interface StreamDescription {
  name: string;
  mode: 'GET' | 'POST';
}

export interface AgentDescription {
  agentId: string;
  agentType: string;
  description?: string;
  actions: Action[];
  streams: StreamDescription[];
}

export interface AgentContainerImage {
  imageName: string;
  requires: string[];
  provides: string[];
  apiPort: number;
  parameters: { name: string; type: string; required: boolean; confidential: boolean; defaultValue?: string }[];
}

export interface AgentContainer {
  containerId: string;
  image: AgentContainerImage;
  arguments: Record<string, string>;
  agents: AgentDescription[];
  owner: string;
  /** Virtual time (µs) it started. */
  runningSince: number;
  connectivity?: { publicUrl: string; apiPortMapping: number; extraPortMappings: Record<string, unknown> };
}

export interface RuntimePlatform {
  platformId: string;
  baseUrl: string;
  containers: AgentContainer[];
  provides: string[];
  /** Base URLs of the connected platforms. */
  connections: string[];
  runningSince: number;
}

/** What send and broadcast carry. */
export interface Message {
  payload: unknown;
  replyTo: string;
}

export interface ConnectionRequest {
  url: string;
  connectBack: boolean;
  token?: string;
}

/** The body of `POST /containers`. */
export interface PostAgentContainer {
  image: AgentContainerImage;
  arguments: Record<string, string>;
}

export const EVENT_TYPES = ['CALL', 'FORWARD', 'SUCCESS', 'ERROR'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/**
 * An entry of a platform's `/history`, in the implementation's shape: each call yields a CALL, then
 * a SUCCESS or an ERROR whose `relatedId` is the CALL's id; a forwarded call adds a FORWARD. ERROR
 * carries the status code (≥ 300); SUCCESS none.
 */
export interface OpacaEvent {
  id: string;
  /** Epoch milliseconds (virtual time in the simulator). */
  timestamp: number;
  eventType: EventType;
  /** `"METHOD /path"` (no query). */
  route: string;
  /** Fields the implementation leaves out when null (Jackson NON_NULL) are absent. */
  senderId?: string;
  receiver?: string;
  statusCode?: number;
  relatedId?: string;
}

/** The routes the implementation's EventsFilter records (method and first path segment). */
export function recordsEvents(method: string, path: string): boolean {
  const head = path.split('/').filter((x) => x !== '')[0] ?? '';
  const routes: Record<string, string[]> = {
    GET: ['stream', 'token'],
    POST: ['stream', 'invoke', 'send', 'broadcast', 'login', 'containers', 'connections'],
    PUT: ['containers'],
    DELETE: ['containers', 'connections'],
  };
  return routes[method]?.includes(head) ?? false;
}

/** The body of every error answer. */
export interface ErrorResponse {
  statusCode: number;
  message: string;
  cause?: ErrorResponse;
}

/** The platform's default event history length. */
export const DEFAULT_HISTORY_SIZE = 50;
/** Deploy: `/info` polled every second until this timeout, then 502 and cleanup. */
export const DEFAULT_DEPLOY_TIMEOUT_S = 10;
/** Request ids per incarnation of a simulated actor (answers meant for a crashed incarnation match nothing after its restart). */
export const INCARNATION_SPAN = 1_000_000_000;
/** The container library's invoke timeout when none is given. */
export const DEFAULT_INVOKE_TIMEOUT_S = 30;

// ---- typed parameters ------------------------------------------------------------------------------

/** Why `value` does not fit `param` (undefined: it fits). `path` names the value in the message. */
export function valueProblem(value: unknown, param: Parameter, path: string): string | undefined {
  const got = (): string => (value === null ? 'null' : Array.isArray(value) ? 'an array' : JSON.stringify(value));
  switch (param.type) {
    case 'string':
      return typeof value === 'string' ? undefined : `${path}: expected string, got ${got()}`;
    case 'integer':
      // Jackson's isInt(): a whole number that fits 32 bits.
      return typeof value === 'number' && Number.isInteger(value) && value >= -(2 ** 31) && value < 2 ** 31
        ? undefined
        : `${path}: expected integer, got ${got()}`;
    case 'null':
      return value === null ? undefined : `${path}: expected null, got ${got()}`;
    case 'number':
      return typeof value === 'number' && Number.isFinite(value) ? undefined : `${path}: expected number, got ${got()}`;
    case 'boolean':
      return typeof value === 'boolean' ? undefined : `${path}: expected boolean, got ${got()}`;
    case 'array': {
      if (!Array.isArray(value)) return `${path}: expected array, got ${got()}`;
      if (!param.items) return `${path}: the parameter declares an array without items`;
      for (let i = 0; i < value.length; i++) {
        const problem = valueProblem(value[i], param.items, `${path}[${i}]`);
        if (problem) return problem;
      }
      return undefined;
    }
    default:
      return undefined;
  }
}

/**
 * Why `args` do not match `action`'s parameters (undefined: they match): a required parameter
 * missing, an argument the action does not declare, or a value of the wrong type. An optional
 * parameter may be left out or given as null.
 */
export function argumentProblem(action: Action, args: Record<string, unknown>): string | undefined {
  for (const [name, param] of Object.entries(action.parameters)) {
    if (!(name in args)) {
      if (param.required) return `${name}: missing (required by ${action.name})`;
      continue;
    }
    if (!param.required && args[name] === null) continue;
    const problem = valueProblem(args[name], param, name);
    if (problem) return problem;
  }
  for (const name of Object.keys(args)) if (!(name in action.parameters)) return `${name}: ${action.name} has no such parameter`;
  return undefined;
}

// ---- URLs ------------------------------------------------------------------------------------------

/**
 * A connection URL as the implementation takes it (Utils.normalizeString, checkUrl): trimmed, one
 * pair of surrounding quotes dropped, and it must be an absolute URL of a protocol Java knows; or
 * the problem with it (a 400). Case and a trailing slash are kept: `http://a:8000/` and
 * `http://a:8000` are different platforms to it.
 */
export function normaliseUrl(text: string): { ok: true; url: string } | { ok: false; error: string } {
  const url = text.trim().replace(/^"/, '').replace(/"$/, '');
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#\s:]+)(?::(\d{1,5}))?([/?#]\S*)?$/.exec(url);
  if (!m) return { ok: false, error: `Invalid URL: ${JSON.stringify(text)} (expected scheme://host[:port][/path])` };
  const [, scheme, , port] = m;
  if (!['http', 'https', 'ftp', 'file', 'jar'].includes(scheme.toLowerCase()))
    return { ok: false, error: `Invalid URL: ${JSON.stringify(text)} (unknown protocol ${scheme})` };
  if (port !== undefined && Number(port) > 65535) return { ok: false, error: `Invalid URL: ${JSON.stringify(text)} (port ${port})` };
  return { ok: true, url };
}

// ---- requests and routes ---------------------------------------------------------------------------

/** A call as it travels in the simulator: HTTP-shaped. `body` is the raw JSON text (it may be malformed). */
export interface OpacaRequest {
  type: 'OpacaRequest';
  rid: number;
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  query?: Record<string, string>;
  body?: string;
  /** Bearer token (auth on). */
  token?: string;
  /**
   * The simulator's trace header: the id of the CALL event at the platform the call was first made
   * to, carried along forwards so a checker can follow one call across hops (no REST counterpart).
   */
  callId?: string;
}

export interface OpacaResponse {
  type: 'OpacaResponse';
  re: number;
  status: number;
  /** The answer's JSON value, or an ErrorResponse when status ≠ 200. */
  body: unknown;
}

/** An answer to request `re`: `body` is the JSON value, or an ErrorResponse when `status` ≠ 200. */
export const opacaAnswer = (re: number, status: number, body: unknown): OpacaResponse => ({ type: 'OpacaResponse', re, status, body });

/**
 * The `/subscribe` WebSocket, as simulator messages: a platform subscribes to another's topic
 * (`/containers`) and is pushed that topic's SUCCESS events.
 */
export type OpacaSubscribe = { type: 'OpacaSubscribe'; topic: string; subscribe: boolean };
export type OpacaPush = { type: 'OpacaPush'; topic: string; event: OpacaEvent };

/** A short, stable digest of a JSON value (FNV-1a over its text): views of a platform compare by it. */
export function digestOf(value: unknown): string {
  const text = JSON.stringify(value);
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

/** A request, typed: what {@link parseRoute} makes of method, path, query and body. */
export type Route =
  | { kind: 'info' }
  | { kind: 'agents'; includeConnected: boolean }
  | { kind: 'agent'; agent: string }
  | { kind: 'send'; agent: string; containerId?: string; forward: boolean; message: Message }
  | { kind: 'broadcast'; channel: string; containerId?: string; forward: boolean; message: Message }
  | {
      kind: 'invoke';
      action: string;
      agent?: string;
      containerId?: string;
      forward: boolean;
      timeoutS: number;
      args: Record<string, unknown>;
    }
  | { kind: 'containers' }
  | { kind: 'container'; containerId: string }
  | { kind: 'deploy'; container: PostAgentContainer }
  | { kind: 'undeploy'; containerId: string }
  | { kind: 'notifyContainer'; containerId: string }
  | { kind: 'connections' }
  | { kind: 'connect'; request: ConnectionRequest }
  | { kind: 'disconnect'; url: string; connectBack: boolean }
  | { kind: 'notifyPlatform'; url: string }
  | { kind: 'history' }
  | { kind: 'login'; username: string; password: string }
  | { kind: 'token' };

/**
 * The role each route needs with auth on (the implementation's SecurityConfiguration): reading
 * `/info`, agents and containers GUEST; calls, `/history` and the list of connections USER;
 * changing containers CONTRIBUTOR; changing connections ADMIN; `/login` none.
 */
export function routeRole(route: Route): Role | undefined {
  switch (route.kind) {
    case 'login':
      return undefined;
    case 'send':
    case 'broadcast':
    case 'invoke':
    case 'history':
    case 'connections':
    case 'token':
      return 'USER';
    case 'deploy':
    case 'undeploy':
    case 'notifyContainer':
      return 'CONTRIBUTOR';
    case 'connect':
    case 'disconnect':
    case 'notifyPlatform':
      return 'ADMIN';
    default:
      return 'GUEST';
  }
}

/**
 * The role a request needs with auth on, from its method and first path segment alone — so a body
 * that does not parse is refused for the role first, as the implementation's security filter runs
 * before its controllers. Agrees with {@link routeRole} on every route; a path no route serves
 * needs GUEST (any valid token).
 */
export function requestRole(method: string, path: string): Role | undefined {
  const segments = path.split('/').filter((s) => s !== '');
  const head = segments[0] ?? '';
  if (method === 'POST' && head === 'login' && segments.length === 1) return undefined;
  switch (head) {
    case 'send':
    case 'broadcast':
    case 'invoke':
    case 'stream':
    case 'token':
      return 'USER';
    case 'history':
      return 'USER';
    case 'containers':
      return method === 'GET' ? 'GUEST' : 'CONTRIBUTOR';
    case 'connections':
      return method === 'GET' ? 'USER' : 'ADMIN';
    default:
      return 'GUEST';
  }
}

export type RouteResult = { ok: true; route: Route } | { ok: false; status: OpacaStatus; error: ErrorResponse };

const message = z.strictObject({ payload: z.unknown(), replyTo: z.string().default('') });
const parameter: z.ZodType<Parameter> = z.lazy(() =>
  z.strictObject({ type: z.string().min(1), required: z.boolean().default(true), items: parameter.optional() }),
);
const image = z.strictObject({
  imageName: z.string().min(1),
  requires: z.array(z.string()).default([]),
  provides: z.array(z.string()).default([]),
  apiPort: z.number().int().min(1).max(65535).default(8082),
  parameters: z
    .array(
      z.strictObject({
        name: z.string().min(1),
        type: z.string().default('string'),
        required: z.boolean().default(false),
        confidential: z.boolean().default(false),
        defaultValue: z.string().optional(),
      }),
    )
    .default([]),
});
const postContainer = z.strictObject({ image, arguments: z.record(z.string(), z.string()).default({}) });
const connectionRequest = z.strictObject({ url: z.string(), connectBack: z.boolean().default(false), token: z.string().optional() });
const login = z.strictObject({ username: z.string(), password: z.string() });

/** Parses `parameter` declarations (an agent's action, from a scenario or a live container). */
export const parameterSchema = parameter;

const fail = (status: OpacaStatus, message: string): RouteResult => ({ ok: false, status, error: { statusCode: status, message } });

/** Parses a JSON body against `schema`: the value, or a 422 naming the field. */
function bodyOf<T>(body: string | undefined, schema: z.ZodType<T>): { ok: true; value: T } | { ok: false; result: RouteResult } {
  let json: unknown;
  try {
    json = JSON.parse(body ?? '');
  } catch {
    return { ok: false, result: fail(OPACA_STATUS.unprocessable, `malformed JSON body: ${JSON.stringify((body ?? '').slice(0, 40))}`) };
  }
  const r = schema.safeParse(json);
  if (r.success) return { ok: true, value: r.data };
  const issue = r.error.issues[0];
  return {
    ok: false,
    result: fail(OPACA_STATUS.unprocessable, `body${issue.path.length ? `.${issue.path.join('.')}` : ''}: ${issue.message}`),
  };
}

const flag = (query: Record<string, string>, name: string, dflt: boolean): boolean | undefined => {
  const v = query[name];
  if (v === undefined) return dflt;
  return v === 'true' ? true : v === 'false' ? false : undefined;
};

/**
 * Turns a request into its route, or into the platform's error answer: 404 for a route that does
 * not exist, 422 for a malformed body or query flag, 400 for an invalid URL.
 */
export function parseRoute(req: Pick<OpacaRequest, 'method' | 'path' | 'query' | 'body'>): RouteResult {
  const query = req.query ?? {};
  const segments = req.path
    .split('/')
    .filter((s) => s !== '')
    .map(decodeURIComponent);
  const [head, a, b, ...rest] = segments;
  const key = `${req.method} ${head ?? ''}`;
  const forward = flag(query, 'forward', true);
  if (forward === undefined) return fail(OPACA_STATUS.unprocessable, `forward: expected true or false, got ${query.forward}`);
  const containerId = query.containerId || undefined;
  const noMore = rest.length === 0;
  const ok = (route: Route): RouteResult => ({ ok: true, route });
  switch (key) {
    case 'GET info':
      if (a === undefined) return ok({ kind: 'info' });
      break;
    case 'GET agents': {
      if (a !== undefined && b === undefined) return ok({ kind: 'agent', agent: a });
      if (a !== undefined) break;
      const includeConnected = flag(query, 'includeConnected', false);
      if (includeConnected === undefined) return fail(OPACA_STATUS.unprocessable, `includeConnected: expected true or false`);
      return ok({ kind: 'agents', includeConnected });
    }
    case 'POST send':
    case 'POST broadcast': {
      if (a === undefined || b !== undefined) break;
      const m = bodyOf(req.body, message);
      if (!m.ok) return m.result;
      return head === 'send'
        ? ok({ kind: 'send', agent: a, ...(containerId ? { containerId } : {}), forward, message: m.value })
        : ok({ kind: 'broadcast', channel: a, ...(containerId ? { containerId } : {}), forward, message: m.value });
    }
    case 'POST invoke': {
      if (a === undefined || !noMore) break;
      const timeoutS = Number(query.timeout ?? '-1');
      if (!Number.isInteger(timeoutS)) return fail(OPACA_STATUS.unprocessable, `timeout: expected whole seconds, got ${query.timeout}`);
      const args = bodyOf(req.body ?? '{}', z.record(z.string(), z.unknown()));
      if (!args.ok) return args.result;
      return ok({
        kind: 'invoke',
        action: a,
        ...(b !== undefined ? { agent: b } : {}),
        ...(containerId ? { containerId } : {}),
        forward,
        timeoutS,
        args: args.value,
      });
    }
    case 'GET containers':
      if (a === undefined) return ok({ kind: 'containers' });
      if (b === undefined) return ok({ kind: 'container', containerId: a });
      break;
    case 'POST containers': {
      if (a === 'notify' && b === undefined) {
        const id = bodyOf(req.body, z.string().min(1));
        return id.ok ? ok({ kind: 'notifyContainer', containerId: id.value }) : id.result;
      }
      if (a !== undefined) break;
      const c = bodyOf(req.body, postContainer);
      return c.ok ? ok({ kind: 'deploy', container: c.value }) : c.result;
    }
    case 'DELETE containers':
      if (a !== undefined && b === undefined) return ok({ kind: 'undeploy', containerId: a });
      break;
    case 'GET connections':
      if (a === undefined) return ok({ kind: 'connections' });
      break;
    case 'POST connections': {
      if (a === 'notify' && b === undefined) {
        const u = bodyOf(req.body, z.string());
        if (!u.ok) return u.result;
        const url = normaliseUrl(u.value);
        return url.ok ? ok({ kind: 'notifyPlatform', url: url.url }) : fail(OPACA_STATUS.badRequest, url.error);
      }
      if (a !== undefined) break;
      const c = bodyOf(req.body, connectionRequest);
      if (!c.ok) return c.result;
      const url = normaliseUrl(c.value.url);
      return url.ok ? ok({ kind: 'connect', request: { ...c.value, url: url.url } }) : fail(OPACA_STATUS.badRequest, url.error);
    }
    case 'DELETE connections': {
      if (a !== undefined) break;
      // The URL, or a ConnectionRequest whose connectBack asks the other platform to disconnect too.
      const u = bodyOf(req.body, z.union([z.string(), connectionRequest]));
      if (!u.ok) return u.result;
      const request = typeof u.value === 'string' ? { url: u.value, connectBack: false } : u.value;
      const url = normaliseUrl(request.url);
      return url.ok ? ok({ kind: 'disconnect', url: url.url, connectBack: request.connectBack }) : fail(OPACA_STATUS.badRequest, url.error);
    }
    case 'GET history':
      if (a === undefined) return ok({ kind: 'history' });
      break;
    case 'POST login': {
      if (a !== undefined) break;
      const l = bodyOf(req.body, login);
      return l.ok ? ok({ kind: 'login', ...l.value }) : l.result;
    }
    case 'GET token':
      if (a === undefined) return ok({ kind: 'token' });
      break;
    default:
  }
  return fail(OPACA_STATUS.notFound, `no route ${req.method} ${req.path}`);
}

/** Validates an OpacaRequest from outside (a scenario `inject`, a live transport): the message, or its first problem. */
export function parseOpacaRequest(input: unknown): { ok: true; msg: OpacaRequest } | { ok: false; error: string } {
  const r = z
    .strictObject({
      type: z.literal('OpacaRequest'),
      rid: z.number().int().nonnegative(),
      method: z.enum(['GET', 'POST', 'DELETE']),
      path: z.string().startsWith('/'),
      query: z.record(z.string(), z.string()).optional(),
      body: z.string().optional(),
      token: z.string().optional(),
      callId: z.string().optional(),
    })
    .safeParse(input);
  if (r.success) return { ok: true, msg: r.data };
  const issue = r.error.issues[0];
  return { ok: false, error: `${issue.path.length ? `${issue.path.join('.')}: ` : ''}${issue.message}` };
}
