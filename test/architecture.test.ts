/**
 * Layer directions (design.md, "Layers"): imports point downward only, and actors stay pure
 * protocol logic (no engine, no transport, no node:*).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const src = join(import.meta.dirname, '..', 'src');

/** Which top-level folders of src/ each layer may import at run time. */
const allowed: Record<string, string[]> = {
  protocol: ['protocol'],
  actors: ['actors', 'protocol'],
  engine: ['engine', 'protocol', 'buffers'],
  // The WebAssembly core's facade and its TypeScript reference: nothing above them.
  buffers: ['buffers'],
  // The checkers observe the kernel: they may name its types (`import type`), never its code.
  invariants: ['invariants', 'protocol', 'buffers'],
  scenario: ['scenario', 'engine', 'actors', 'invariants', 'protocol', 'buffers'],
  // Live hosts run machines through the same execution backends as the simulator.
  transports: ['transports', 'actors', 'protocol', 'engine'],
  // Worker threads for parallel runs: each rebuilds its part of a scenario (the runtime adapters live here).
  threads: ['threads', 'scenario', 'engine'],
  cli: ['cli', 'threads', 'scenario', 'engine', 'invariants', 'protocol', 'transports', 'buffers'],
  'index.ts': ['engine', 'actors', 'protocol', 'invariants', 'scenario', 'buffers'],
};
const forbiddenPackages: Record<string, RegExp> = {
  protocol: /^(node:|xstate|ws|@grpc)/,
  actors: /^(node:|ws|@grpc|yaml)/,
  engine: /^(node:|ws|@grpc|yaml)/,
  buffers: /^(node:|ws|@grpc|yaml|xstate)/,
  invariants: /^(node:|ws|@grpc|yaml|xstate)/,
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function imports(text: string): { spec: string; typeOnly: boolean }[] {
  const out: { spec: string; typeOnly: boolean }[] = [];
  const re =
    /^\s*(import|export)\s+(type\s+)?[^'"]*?from\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm;
  for (const m of text.matchAll(re)) out.push({ spec: m[3] ?? m[4] ?? m[5], typeOnly: Boolean(m[2]) });
  return out;
}

describe('architecture', () => {
  const all = files(src);

  it('finds the layers', () => {
    expect(all.length).toBeGreaterThan(15);
  });

  it.each(all.map((f) => relative(src, f)))('%s imports only what its layer may', (file) => {
    const layer = file.split('/')[0];
    const ok = allowed[layer];
    expect(ok, `layer ${layer} is not in the layer table`).toBeDefined();
    const text = readFileSync(join(src, file), 'utf8');
    for (const { spec, typeOnly } of imports(text)) {
      if (spec.startsWith('.')) {
        const target = relative(src, join(src, file, '..', spec)).split('/')[0];
        if (typeOnly) continue;
        expect(ok, `${file} imports ${spec} (layer ${target})`).toContain(target);
      } else {
        const bad = forbiddenPackages[layer];
        if (bad && !typeOnly) expect(spec, `${file} imports package ${spec}`).not.toMatch(bad);
      }
    }
  });
});
