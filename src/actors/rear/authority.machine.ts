/**
 * The REAR **token authority** (`shared/protocols/rear.md`: "An authentication token accompanies
 * reserve and purchase; a trusted third party validates it"): issues a token to a node, valid for
 * `lifetimeMs`, and tells a provider whether a token is valid — refusing one it never issued
 * (forged) or one past its lifetime (expired).
 */
import { enqueueActions, setup } from 'xstate';
import { effect } from '../../protocol/host.js';
import type { NodeIdentity, RearMessage, TokenIssued, TokenVerdict } from '../../protocol/rear.js';

export interface AuthorityInput {
  name: string;
  lifetimeMs: number;
}

export interface AuthorityContext {
  cfg: AuthorityInput;
  issued: number;
  tokens: Map<string, { node: NodeIdentity; expiresAtUs: number }>;
}

type AuthorityEvent = { type: RearMessage['type']; from: string; msg: RearMessage; now: number } | { type: 'host.shutdown'; now: number };

export const authorityMachine = setup({
  types: {
    context: {} as AuthorityContext,
    events: {} as AuthorityEvent,
    input: {} as AuthorityInput,
    emitted: {} as ReturnType<typeof effect.send>,
  },
  actions: {
    issue: enqueueActions(({ context, event, enqueue }) => {
      const e = event as Extract<AuthorityEvent, { from: string }>;
      const m = e.msg as Extract<RearMessage, { type: 'IssueToken' }>;
      const token = `${context.cfg.name}:${m.node.nodeId}:${++context.issued}`;
      const expiresAtUs = e.now + context.cfg.lifetimeMs * 1000;
      context.tokens.set(token, { node: m.node, expiresAtUs });
      enqueue.emit(effect.send(e.from, { type: 'TokenIssued', re: m.rid, token, expiresAtUs } satisfies TokenIssued));
    }),
    validate: enqueueActions(({ context, event, enqueue }) => {
      const e = event as Extract<AuthorityEvent, { from: string }>;
      const m = e.msg as Extract<RearMessage, { type: 'ValidateToken' }>;
      const known = context.tokens.get(m.token);
      const verdict: TokenVerdict = !known
        ? { type: 'TokenVerdict', re: m.rid, valid: false, reason: 'forged' }
        : e.now > known.expiresAtUs
          ? { type: 'TokenVerdict', re: m.rid, valid: false, node: known.node, reason: 'expired' }
          : { type: 'TokenVerdict', re: m.rid, valid: true, node: known.node };
      enqueue.emit(effect.send(e.from, verdict));
    }),
  },
}).createMachine({
  id: 'rear.authority',
  context: ({ input }) => ({ cfg: input, issued: 0, tokens: new Map() }),
  initial: 'serving',
  states: {
    serving: {
      on: {
        IssueToken: { actions: 'issue' },
        ValidateToken: { actions: 'validate' },
      },
    },
  },
});
