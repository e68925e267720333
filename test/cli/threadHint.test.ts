/**
 * bin/protosim.js's guess, before the CLI loads, at whether `run` may use threads
 * (src/cli/threadHint.ts): it must agree with the families, read the protocol line of real files,
 * and say "maybe" whenever it cannot tell.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MAX_WORKERS, mayUseThreads, PROTOCOL_THREADS, protocolLine, workersCount } from '../../src/cli/threadHint.js';
import { FAMILIES } from '../../src/scenario/families/index.js';

const root = join(import.meta.dirname, '..', '..');
const read = (file: string): string => readFileSync(join(root, file), 'utf8');
const mw = 'scenarios/manager-worker/sites.yaml';
const rear = 'scenarios/rear/tokens.yaml';
const virdi = 'scenarios/virdi/one-producer.yaml';
const opaca = 'scenarios/opaca/chain.yaml';

describe('the thread hint', () => {
  it("agrees with every family's oneShard and shardLocal", () => {
    expect(Object.keys(PROTOCOL_THREADS).sort()).toEqual(FAMILIES.map((f) => f.protocol).sort());
    for (const f of FAMILIES) {
      const expected = f.oneShard !== undefined ? 'never' : f.shardLocal ? 'local' : 'windows';
      expect([f.protocol, PROTOCOL_THREADS[f.protocol]]).toEqual([f.protocol, expected]);
    }
  });

  it('reads a top-level protocol line, plain, quoted or commented, and nothing else', () => {
    expect(protocolLine('name: x\nprotocol: rear\n')).toBe('rear');
    expect(protocolLine('protocol: "manager-worker"   # the family\nname: x')).toBe('manager-worker');
    expect(protocolLine("protocol: 'virdi'")).toBe('virdi');
    expect(protocolLine('name: x\n  protocol: rear\n')).toBeUndefined();
    expect(protocolLine('{ protocol: rear }')).toBeUndefined();
    expect(protocolLine('protocol: "rear\n')).toBeUndefined();
    for (const file of [mw, rear, virdi, opaca]) expect(protocolLine(read(file))).toBe(/scenarios\/([^/]+)/.exec(file)![1]);
  });

  it('says which runs stay on one thread', () => {
    expect(mayUseThreads([mw, '--workers', '2'], read)).toBe(true);
    expect(mayUseThreads([rear, '--workers', '2'], read)).toBe(false);
    expect(mayUseThreads([rear, '--workers', '2', '--windows'], read)).toBe(true);
    expect(mayUseThreads([opaca, '--workers=auto', '--hash'], read)).toBe(false);
    expect(mayUseThreads([virdi, '--workers', '2', '--windows'], read)).toBe(false);
    // Any file of the command, or only the first (the early threads are the first run's).
    expect(mayUseThreads([rear, '--seed', '3', mw, '--workers', '2'], read)).toBe(true);
    expect(mayUseThreads([rear, '--seed', '3', mw, '--workers', '2'], read, 0)).toBe(false);
    expect(mayUseThreads([rear, mw, '--workers', '2'], read, 1)).toBe(true);
  });

  it('says maybe when it cannot tell (the CLI reports the problem)', () => {
    expect(mayUseThreads(['no-such-file.yaml', '--workers', '2'], read)).toBe(true);
    expect(mayUseThreads([rear, '--workers', '2', '--no-such-option'], read)).toBe(true);
    expect(mayUseThreads(['x.yaml', '--workers', '2'], () => 'name: x\nprotocol: something-new\n')).toBe(true);
    expect(mayUseThreads(['x.yaml', '--workers', '2'], () => '{ "protocol": "rear" }')).toBe(true);
  });

  it('reads --workers as the CLI does (bin/protosim.js starts no thread nor child for a count the CLI refuses)', () => {
    expect(workersCount('auto', 6)).toBe(6);
    expect(workersCount('1', 6)).toBe(1);
    expect(workersCount(String(MAX_WORKERS), 6)).toBe(MAX_WORKERS);
    for (const bad of [String(MAX_WORKERS + 1), '999', '0', '02', '-2', '2.5', '', 'two'])
      expect(workersCount(bad, 6), bad).toBeUndefined();
  });
});
