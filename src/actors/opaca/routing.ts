/**
 * Where an OPACA platform sends a call (`shared/protocols/opaca.md`, "Message flows"): its local
 * containers first, then — when the call may be forwarded — its connected platforms, each taken as
 * a target only when it fully matches (container id, agent id, action, parameter types). Pure: the
 * platform machine asks, and dispatches.
 */
import type { AgentContainer, AgentDescription, RuntimePlatform } from '../../protocol/opaca.js';
import { argumentProblem } from '../../protocol/opaca.js';

/** A place a call can go: a local container, or a connected platform (the call then carries `forward=false`). */
export type Target = { kind: 'container'; containerId: string } | { kind: 'platform'; url: string };

/** What a platform knows: its containers, and its connected platforms as it last pulled their `/info`. */
export interface PlatformView {
  containers: readonly AgentContainer[];
  connected: readonly RuntimePlatform[];
  /** Where each agent id lives, in routing order (local containers, then connected platforms); built on demand. */
  byAgent?: Map<string, { target: Target; container: AgentContainer; agent: AgentDescription }[]>;
}

/** The view's agent index (built once per view: a platform keeps its view until its containers or connections change). */
function agentIndex(view: PlatformView): NonNullable<PlatformView['byAgent']> {
  if (view.byAgent) return view.byAgent;
  const byAgent: NonNullable<PlatformView['byAgent']> = new Map();
  const add = (target: Target, container: AgentContainer): void => {
    for (const agent of container.agents) {
      const list = byAgent.get(agent.agentId);
      if (list) list.push({ target, container, agent });
      else byAgent.set(agent.agentId, [{ target, container, agent }]);
    }
  };
  for (const c of view.containers) add({ kind: 'container', containerId: c.containerId }, c);
  for (const p of view.connected) {
    const target: Target = { kind: 'platform', url: p.baseUrl };
    for (const c of p.containers) add(target, c);
  }
  (view as { byAgent?: typeof byAgent }).byAgent = byAgent;
  return byAgent;
}

/**
 * Targets of a call to one agent id, from the index: each container (or connected platform, once)
 * where `fits` accepts the agent, in routing order.
 */
function agentTargets(view: PlatformView, want: Want & { agent: string }, fits: (agent: AgentDescription) => boolean): Target[] {
  const targets: Target[] = [];
  for (const e of agentIndex(view).get(want.agent) ?? []) {
    if (e.target.kind === 'platform' && !want.forward) continue;
    if (want.containerId !== undefined && e.container.containerId !== want.containerId) continue;
    const last = targets[targets.length - 1];
    if (e.target.kind === 'platform' && last?.kind === 'platform' && last.url === e.target.url) continue;
    if (fits(e.agent)) targets.push(e.target);
  }
  return targets;
}

export interface Candidates {
  targets: Target[];
  /** Some container had the action (and agent) but not the parameter types: 400 when no target is left. */
  mismatch: boolean;
}

interface Want {
  agent?: string;
  containerId?: string;
  forward: boolean;
}

/** Does a container match a call's agent and container id? The agents that do. */
const agentsOf = (c: AgentContainer, want: Want) =>
  want.containerId !== undefined && c.containerId !== want.containerId
    ? []
    : c.agents.filter((a) => want.agent === undefined || a.agentId === want.agent);

/** Targets of an invoke of `action` with `args`: the containers with a fully matching agent, local first. */
export function invokeTargets(view: PlatformView, want: Want & { action: string; args: Record<string, unknown> }): Candidates {
  let mismatch = false;
  if (want.agent !== undefined) {
    const fits = (agent: AgentDescription): boolean =>
      agent.actions.some((act) => {
        if (act.name !== want.action) return false;
        if (argumentProblem(act, want.args) === undefined) return true;
        mismatch = true;
        return false;
      });
    const targets = agentTargets(view, { ...want, agent: want.agent }, fits);
    return { targets, mismatch };
  }
  return invokeTargetsByScan(view, want);
}

/** {@link invokeTargets} by scanning every container (without an agent id; the index's reference in tests). */
export function invokeTargetsByScan(view: PlatformView, want: Want & { action: string; args: Record<string, unknown> }): Candidates {
  let mismatch = false;
  const matches = (c: AgentContainer): boolean =>
    agentsOf(c, want).some((agent) =>
      agent.actions.some((act) => {
        if (act.name !== want.action) return false;
        if (argumentProblem(act, want.args) === undefined) return true;
        mismatch = true;
        return false;
      }),
    );
  const targets: Target[] = view.containers.filter(matches).map((c) => ({ kind: 'container', containerId: c.containerId }));
  if (want.forward) for (const p of view.connected) if (p.containers.some(matches)) targets.push({ kind: 'platform', url: p.baseUrl });
  return { targets, mismatch };
}

/** Targets of a send to `agent`: the containers that host it, local first. */
export function sendTargets(view: PlatformView, want: Want & { agent: string }): Candidates {
  return { targets: agentTargets(view, want, () => true), mismatch: false };
}

/** {@link sendTargets} by scanning every container (the index's reference, for tests). */
export function sendTargetsByScan(view: PlatformView, want: Want & { agent: string }): Candidates {
  const has = (c: AgentContainer): boolean => agentsOf(c, want).length > 0;
  const targets: Target[] = view.containers.filter(has).map((c) => ({ kind: 'container', containerId: c.containerId }));
  if (want.forward) for (const p of view.connected) if (p.containers.some(has)) targets.push({ kind: 'platform', url: p.baseUrl });
  return { targets, mismatch: false };
}

/** Targets of a broadcast: every local container (or the one named), then every connected platform. */
export function broadcastTargets(view: PlatformView, want: Want): Candidates {
  const targets: Target[] = view.containers
    .filter((c) => want.containerId === undefined || c.containerId === want.containerId)
    .map((c) => ({ kind: 'container', containerId: c.containerId }));
  if (want.forward) for (const p of view.connected) targets.push({ kind: 'platform', url: p.baseUrl });
  return { targets, mismatch: false };
}
