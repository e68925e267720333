/**
 * OPACA protocol types and validation (`shared/protocols/opaca.md`, "REST API of a platform",
 * "Models"): routes with their error answers (404 unknown route, 422 malformed body, 400 invalid
 * URL), typed action parameters (a mismatch is a 400 at invoke), URL normalisation, roles.
 */
import { describe, expect, it } from 'vitest';
import type { Action } from '../../src/protocol/opaca.js';
import {
  argumentProblem,
  normaliseUrl,
  parseOpacaRequest,
  parseRoute,
  requestRole,
  roleAtLeast,
  routeRole,
} from '../../src/protocol/opaca.js';

const add: Action = {
  name: 'Add',
  parameters: { x: { type: 'integer', required: true }, y: { type: 'integer', required: true }, note: { type: 'string', required: false } },
  result: { type: 'integer', required: true },
};

describe('routes', () => {
  const route = (method: 'GET' | 'POST' | 'DELETE', path: string, body?: string, query?: Record<string, string>) =>
    parseRoute({ method, path, ...(body !== undefined ? { body } : {}), ...(query ? { query } : {}) });

  it('parses the agent routes, with forward defaulting to true', () => {
    expect(route('GET', '/info')).toEqual({ ok: true, route: { kind: 'info' } });
    expect(route('GET', '/agents', undefined, { includeConnected: 'true' })).toEqual({
      ok: true,
      route: { kind: 'agents', includeConnected: true },
    });
    expect(route('GET', '/agents/echo-1')).toEqual({ ok: true, route: { kind: 'agent', agent: 'echo-1' } });
    expect(route('POST', '/send/echo-1', '{"payload":{"n":1},"replyTo":"me"}')).toEqual({
      ok: true,
      route: { kind: 'send', agent: 'echo-1', forward: true, message: { payload: { n: 1 }, replyTo: 'me' } },
    });
    expect(route('POST', '/broadcast/pings', '{"payload":"Ping","replyTo":""}', { forward: 'false', containerId: 'c1' })).toEqual({
      ok: true,
      route: { kind: 'broadcast', channel: 'pings', containerId: 'c1', forward: false, message: { payload: 'Ping', replyTo: '' } },
    });
    expect(route('POST', '/invoke/Add/calc-1', '{"x":1,"y":2}', { timeout: '5' })).toEqual({
      ok: true,
      route: { kind: 'invoke', action: 'Add', agent: 'calc-1', forward: true, timeoutS: 5, args: { x: 1, y: 2 } },
    });
    expect(route('POST', '/invoke/Add')).toMatchObject({ ok: true, route: { kind: 'invoke', action: 'Add', timeoutS: -1, args: {} } });
  });

  it('parses the platform routes; connection URLs are normalised', () => {
    expect(route('POST', '/containers/notify', '"c-7"')).toEqual({ ok: true, route: { kind: 'notifyContainer', containerId: 'c-7' } });
    expect(route('DELETE', '/containers/c-7')).toEqual({ ok: true, route: { kind: 'undeploy', containerId: 'c-7' } });
    expect(route('POST', '/containers', '{"image":{"imageName":"echo"}}')).toMatchObject({
      ok: true,
      route: { kind: 'deploy', container: { image: { imageName: 'echo', apiPort: 8082, requires: [] }, arguments: {} } },
    });
    expect(route('POST', '/connections', '{"url":" http://platform-b:8000 ","connectBack":true}')).toEqual({
      ok: true,
      route: { kind: 'connect', request: { url: 'http://platform-b:8000', connectBack: true } },
    });
    expect(route('POST', '/connections/notify', '"http://b:8000"')).toEqual({
      ok: true,
      route: { kind: 'notifyPlatform', url: 'http://b:8000' },
    });
    expect(route('GET', '/history')).toEqual({ ok: true, route: { kind: 'history' } });
    expect(route('DELETE', '/connections', '"http://b:8000"')).toEqual({
      ok: true,
      route: { kind: 'disconnect', url: 'http://b:8000', connectBack: false },
    });
    expect(route('DELETE', '/connections', '{"url":"http://b:8000","connectBack":true}')).toEqual({
      ok: true,
      route: { kind: 'disconnect', url: 'http://b:8000', connectBack: true },
    });
  });

  it('answers 404 to a route that does not exist, 422 to a malformed body or flag, 400 to an invalid URL', () => {
    expect(route('GET', '/nope')).toMatchObject({ ok: false, status: 404, error: { statusCode: 404, message: 'no route GET /nope' } });
    expect(route('DELETE', '/info')).toMatchObject({ ok: false, status: 404 });
    expect(route('POST', '/send/echo-1', '{"payload":')).toMatchObject({ ok: false, status: 422 });
    expect(route('POST', '/send/echo-1', '{"payload":1,"color":"red"}')).toMatchObject({ ok: false, status: 422 });
    expect(route('POST', '/invoke/Add', '[1,2]')).toMatchObject({ ok: false, status: 422 });
    expect(route('POST', '/send/echo-1', '{"payload":1}', { forward: 'maybe' })).toMatchObject({ ok: false, status: 422 });
    expect(route('POST', '/connections', '{"url":"gopher://b"}')).toMatchObject({ ok: false, status: 400 });
    expect(route('POST', '/connections', '{"url":"not a url"}')).toMatchObject({ ok: false, status: 400 });
    expect(route('POST', '/connections/notify', '"http://b:99999"')).toMatchObject({ ok: false, status: 400 });
  });
});

describe('typed parameters (an invoke whose arguments do not match is a 400)', () => {
  it('accepts matching arguments, optional ones left out', () => {
    expect(argumentProblem(add, { x: 1, y: 2 })).toBeUndefined();
    expect(argumentProblem(add, { x: 1, y: 2, note: 'hi' })).toBeUndefined();
  });

  it('names a missing, unknown or mistyped argument', () => {
    expect(argumentProblem(add, { x: 1 })).toBe('y: missing (required by Add)');
    expect(argumentProblem(add, { x: 1, y: 2, z: 3 })).toBe('z: Add has no such parameter');
    expect(argumentProblem(add, { x: 1, y: 'two' })).toBe('y: expected integer, got "two"');
    expect(argumentProblem(add, { x: 1.5, y: 2 })).toBe('x: expected integer, got 1.5');
  });

  it('checks numbers, booleans, arrays item by item; integers fit 32 bits; a named schema is not checked (the implementation lets an unknown one pass)', () => {
    const action: Action = {
      name: 'Plan',
      parameters: {
        weights: { type: 'array', required: true, items: { type: 'number', required: true } },
        fast: { type: 'boolean', required: true },
        car: { type: 'Car', required: true },
      },
      result: { type: 'string', required: true },
    };
    expect(argumentProblem(action, { weights: [1, 2.5], fast: false, car: { wheels: 4 } })).toBeUndefined();
    expect(argumentProblem(action, { weights: [1, '2'], fast: false, car: {} })).toBe('weights[1]: expected number, got "2"');
    expect(argumentProblem(action, { weights: [], fast: 'no', car: {} })).toBe('fast: expected boolean, got "no"');
    expect(argumentProblem(action, { weights: [], fast: true, car: [1] })).toBeUndefined();
    expect(argumentProblem(add, { x: 2 ** 31, y: 1 })).toBe('x: expected integer, got 2147483648');
    expect(argumentProblem(add, { x: 1, y: 2, note: null })).toBeUndefined();
    const noItems: Action = {
      name: 'A',
      parameters: { xs: { type: 'array', required: true } },
      result: { type: 'string', required: true },
    };
    expect(argumentProblem(noItems, { xs: [] })).toBe('xs: the parameter declares an array without items');
  });
});

describe('URLs, roles and requests from outside', () => {
  it('takes a URL as the implementation does: trimmed, quotes dropped, absolute, a known protocol; case and slashes kept', () => {
    expect(normaliseUrl(' "https://Example.ORG:443/api/" ')).toEqual({ ok: true, url: 'https://Example.ORG:443/api/' });
    expect(normaliseUrl('http://b')).toEqual({ ok: true, url: 'http://b' });
    expect(normaliseUrl('b:8000')).toMatchObject({ ok: false, error: /^Invalid URL/ });
    expect(normaliseUrl('gopher://b')).toMatchObject({ ok: false, error: /unknown protocol gopher/ });
  });

  it('orders roles ADMIN > CONTRIBUTOR > USER > GUEST, and gives each route its threshold', () => {
    expect(roleAtLeast('ADMIN', 'USER')).toBe(true);
    expect(roleAtLeast('GUEST', 'USER')).toBe(false);
    expect(routeRole({ kind: 'info' })).toBe('GUEST');
    expect(routeRole({ kind: 'history' })).toBe('USER');
    expect(routeRole({ kind: 'invoke', action: 'a', forward: true, timeoutS: -1, args: {} })).toBe('USER');
    expect(routeRole({ kind: 'undeploy', containerId: 'c' })).toBe('CONTRIBUTOR');
    expect(routeRole({ kind: 'connect', request: { url: 'http://b', connectBack: false } })).toBe('ADMIN');
    expect(routeRole({ kind: 'login', username: 'u', password: 'p' })).toBeUndefined();
  });

  it('gives a request its role from method and path alone, as routeRole does for every route it parses', () => {
    const requests: [string, string, string?][] = [
      ['GET', '/info'],
      ['GET', '/agents'],
      ['GET', '/agents/a1'],
      ['POST', '/send/a1', '{"payload":1,"replyTo":""}'],
      ['POST', '/broadcast/ch', '{"payload":1,"replyTo":""}'],
      ['POST', '/invoke/Add/a1', '{}'],
      ['GET', '/containers'],
      ['GET', '/containers/c1'],
      ['POST', '/containers', '{"image":{"imageName":"x"}}'],
      ['DELETE', '/containers/c1'],
      ['POST', '/containers/notify', '"c1"'],
      ['GET', '/connections'],
      ['POST', '/connections', '{"url":"http://b:8000"}'],
      ['DELETE', '/connections', '"http://b:8000"'],
      ['POST', '/connections/notify', '"http://b:8000"'],
      ['GET', '/history'],
      ['POST', '/login', '{"username":"u","password":"p"}'],
      ['GET', '/token'],
    ];
    for (const [method, path, body] of requests) {
      const r = parseRoute({ method: method as 'GET', path, ...(body !== undefined ? { body } : {}) });
      expect(r.ok, `${method} ${path}`).toBe(true);
      if (r.ok) expect(requestRole(method, path), `${method} ${path}`).toBe(routeRole(r.route));
    }
    // A body that does not parse does not lower the bar: still CONTRIBUTOR, ADMIN.
    expect(requestRole('POST', '/containers')).toBe('CONTRIBUTOR');
    expect(requestRole('POST', '/connections')).toBe('ADMIN');
  });

  it('validates a request message and names its first problem', () => {
    expect(parseOpacaRequest({ type: 'OpacaRequest', rid: 1, method: 'GET', path: '/info' }).ok).toBe(true);
    expect(parseOpacaRequest({ type: 'OpacaRequest', rid: 1, method: 'PUT', path: '/info' })).toMatchObject({
      ok: false,
      error: /^method: /,
    });
    expect(parseOpacaRequest({ type: 'OpacaRequest', rid: 1, method: 'GET', path: 'info' })).toMatchObject({ ok: false, error: /^path: / });
  });
});
