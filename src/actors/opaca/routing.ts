/**
 * Where an OPACA platform sends a call (`shared/protocols/opaca.md`, "Message flows"): its local
 * containers first, then — when the call may be forwarded — its connected platforms, each taken as
 * a target only when it fully matches (container id, agent id, action, parameter types). Pure: the
 * platform machine asks, and dispatches.
 */
import type { AgentContainer, RuntimePlatform } from '../../protocol/opaca.js';
import { argumentProblem } from '../../protocol/opaca.js';

/** A place a call can go: a local container, or a connected platform (the call then carries `forward=false`). */
export type Target = { kind: 'container'; containerId: string } | { kind: 'platform'; url: string };

/** What a platform knows: its containers, and its connected platforms as it last pulled their `/info`. */
export interface PlatformView {
  containers: readonly AgentContainer[];
  connected: readonly RuntimePlatform[];
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
