/**
 * Scenario problems and their error: apart from loadScenario.ts so that code which builds a
 * scenario already parsed (a shard's worker thread) does not load the YAML parser and the
 * scenario schema (yaml, schema.ts, loadScenario.ts).
 */
import { ProtosimError } from '../engine/errors.js';

export type Path = (string | number)[];

export interface ScenarioProblem {
  file: string;
  line: number;
  col: number;
  path: string;
  message: string;
}

/** Formats a problem the way every protosim error names a place in a file. */
export function formatProblem(p: ScenarioProblem): string {
  return `${p.file}:${p.line}:${p.col} ${p.path ? `${p.path}: ` : ''}${p.message}`;
}

export class ScenarioError extends ProtosimError {
  readonly problems: ScenarioProblem[];
  constructor(problems: ScenarioProblem[]) {
    super('E_SCENARIO_INVALID', problems.map(formatProblem).join('\n'), { problems });
    this.problems = problems;
  }
}
