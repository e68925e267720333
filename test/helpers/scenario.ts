/** Helpers for tests that run small scenarios written inline. */
import type { AnyStateMachine } from 'xstate';
import { parseScenario } from '../../src/scenario/loadScenario.js';
import type { RunOverrides, RunSummary } from '../../src/scenario/runScenario.js';
import { runScenario } from '../../src/scenario/runScenario.js';

/** Runs scenario YAML text (with optional machine replacements by role). */
export function runText(yaml: string, overrides: RunOverrides = {}): RunSummary {
  return runScenario(parseScenario(yaml, 'inline.yaml'), overrides);
}

export function statusOf(summary: RunSummary, id: string): string | undefined {
  return summary.invariants.find((i) => i.id === id)?.status;
}

export function violationsOf(summary: RunSummary, id: string): string[] {
  return summary.invariants.find((i) => i.id === id)?.violations.map((v) => v.message) ?? [];
}

export type Machines = Record<string, AnyStateMachine>;
