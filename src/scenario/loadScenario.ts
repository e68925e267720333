/**
 * Reads a scenario file: YAML → validated {@link Scenario}, with every error located as
 * `file:line:col field.path: expected …, got …`. Nothing here throws a stack trace at a user:
 * problems come back as a {@link ScenarioError} (code `E_SCENARIO_INVALID`, exit 2).
 */
import { readFileSync } from 'node:fs';
import type { Node as YamlNode } from 'yaml';
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { ProtosimError } from '../engine/errors.js';
import { FAMILIES } from './families/index.js';
import type { Path, ScenarioProblem } from './problems.js';
import { ScenarioError } from './problems.js';
import type { Scenario } from './schema.js';
import { scenarioSchema } from './schema.js';

export type { Path, ScenarioProblem } from './problems.js';
export { formatProblem, ScenarioError } from './problems.js';

export interface LoadedScenario {
  file: string;
  /** The file's text (a shard's worker thread builds the run again from it). */
  text: string;
  scenario: Scenario;
  /** Locates a path of the file for messages that come after validation. */
  locate(path: Path, message: string): ScenarioProblem;
}

/** `actors[1].count` */
export function formatPath(path: Path): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out === '' ? String(seg) : `.${String(seg)}`;
  return out;
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}

function valueAt(root: unknown, path: Path): unknown {
  let v: unknown = root;
  for (const seg of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string | number, unknown>)[seg];
  }
  return v;
}

/** Loads and validates one scenario file. */
export function loadScenario(file: string): LoadedScenario {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new ProtosimError(
      'E_SCENARIO_UNREADABLE',
      `${file}: cannot read the scenario file (${code === 'ENOENT' ? 'no such file' : (code ?? String(err))})`,
    );
  }
  return parseScenario(text, file);
}

/** Parses and validates scenario text (`file` names it in messages). */
export function parseScenario(text: string, file: string): LoadedScenario {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const at = (offset: number): { line: number; col: number } => lineCounter.linePos(offset);

  if (doc.errors.length > 0) {
    throw new ScenarioError(
      doc.errors.map((e) => {
        const { line, col } = at(e.pos[0]);
        const first = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
        const hint = /indicator|indent/i.test(first) ? ' (check the indentation)' : '';
        return { file, line, col, path: '', message: `YAML syntax: ${first}${hint}` };
      }),
    );
  }

  const nodeAt = (path: Path): { node: YamlNode | undefined; depth: number } => {
    let node: unknown = doc.contents;
    let depth = 0;
    for (const seg of path) {
      if (isMap(node)) {
        const pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === seg);
        if (!pair) break;
        node = pair.value ?? pair.key;
      } else if (isSeq(node) && typeof seg === 'number' && seg < node.items.length) {
        node = node.items[seg];
      } else break;
      depth++;
    }
    return { node: node as YamlNode | undefined, depth };
  };

  const locate = (path: Path, message: string, keyName?: string): ScenarioProblem => {
    const { node } = nodeAt(path);
    let offset = node?.range?.[0] ?? 0;
    if (keyName !== undefined && isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && p.key.value === keyName);
      if (pair && isScalar(pair.key) && pair.key.range) offset = pair.key.range[0];
    }
    const { line, col } = at(offset);
    return { file, line, col, path: formatPath(keyName !== undefined ? [...path, keyName] : path), message };
  };

  const data = doc.toJS() as unknown;
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new ScenarioError([locate([], `expected a mapping with name, protocol, duration and actors, got ${describe(data)}`)]);
  }

  const result = scenarioSchema.safeParse(data);
  if (!result.success) {
    throw new ScenarioError(result.error.issues.slice(0, 20).map((issue) => problemOf(issue, data, locate)));
  }
  const scenario = result.data;

  // Checks that need more than one field: mode, invariant ids, role families.
  const problems: ScenarioProblem[] = [];
  const family = FAMILIES.find((f) => f.protocol === scenario.protocol)!;
  if (scenario.mode !== undefined && !family.modes.includes(scenario.mode)) {
    problems.push(
      locate(['mode'], `expected one of ${family.modes.join(', ')} for protocol ${family.protocol}, got ${describe(scenario.mode)}`),
    );
  }
  const familyRoles = family.roles.map((r) => (r.shape.role as z.ZodLiteral<string>).value);
  scenario.actors.forEach((a, i) => {
    if (!familyRoles.includes(a.role as string)) {
      problems.push(
        locate(
          ['actors', i, 'role'],
          `expected a role of protocol ${family.protocol} (${familyRoles.join(', ')}), got ${describe(a.role)}`,
        ),
      );
    }
  });
  const ids = family.invariants.map((inv) => inv.id);
  const checkIds = (list: string[], path: Path): void =>
    list.forEach((id, i) => {
      if (!ids.includes(id))
        problems.push(locate([...path, i], `expected an invariant id of ${family.protocol} (${ids.join(', ')}), got ${describe(id)}`));
    });
  if (scenario.invariants !== 'all') checkIds(scenario.invariants, ['invariants']);
  checkIds(scenario.expect.violated, ['expect', 'violated']);
  checkIds(scenario.expect.held, ['expect', 'held']);
  if (problems.length > 0) throw new ScenarioError(problems);

  return { file, text, scenario, locate: (path, message) => locate(path, message) };
}

function problemOf(issue: z.core.$ZodIssue, data: unknown, locate: (p: Path, m: string, k?: string) => ScenarioProblem): ScenarioProblem {
  const path = issue.path as Path;
  const got = valueAt(data, path);
  const parentValue = valueAt(data, path.slice(0, -1));
  if (
    got === undefined &&
    path.length > 0 &&
    issue.code !== 'unrecognized_keys' &&
    typeof parentValue === 'object' &&
    parentValue !== null &&
    !Array.isArray(parentValue)
  ) {
    return locate(path.slice(0, -1), `missing field ${JSON.stringify(path[path.length - 1])}: ${baseMessage(issue.message)}`);
  }
  switch (issue.code) {
    case 'unrecognized_keys':
      return locate(
        path,
        `unknown field (expected one of the fields of ${formatPath(path) || 'the scenario'}; see scenarios/scenario.schema.json)`,
        issue.keys[0],
      );
    case 'invalid_type':
      if (got === undefined) {
        const parent = path.slice(0, -1);
        return locate(parent, `missing field ${JSON.stringify(path[path.length - 1])}: ${baseMessage(issue.message)}`);
      }
      return locate(path, `${baseMessage(issue.message)}, got ${describe(got)}`);
    case 'invalid_union': {
      const role = (got as { role?: unknown } | undefined)?.role;
      if ((issue as { note?: string }).note === 'No matching discriminator' && got !== null && typeof got === 'object') {
        return locate([...path, 'role'], `${baseMessage(issue.message)}, got ${describe(role)}`);
      }
      return locate(path, `${baseMessage(issue.message)}, got ${describe(got)}`);
    }
    case 'custom':
      return locate(path, baseMessage(issue.message));
    default:
      return locate(
        path,
        got === undefined || typeof got === 'object' ? baseMessage(issue.message) : `${baseMessage(issue.message)}, got ${describe(got)}`,
      );
  }
}

/** Zod's default messages start with "Invalid input: "; ours already say what was expected. */
function baseMessage(message: string): string {
  return message.replace(/^Invalid input: /, '').replace(/, received .*$/, '');
}
