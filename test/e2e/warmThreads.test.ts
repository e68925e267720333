/**
 * Warm threads (bin/protosim.js starts them before the CLI loads): the first file's build must reach
 * them while the main thread plans. Planning is synchronous, so a call sent from a promise callback
 * would leave only once the plan is done, and the threads would build after it instead of meanwhile.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { loadScenario } from '../../src/scenario/loadScenario.js';
import type { RunSummary } from '../../src/scenario/runScenario.js';
import { runScenario, runScenarioAsync } from '../../src/scenario/runScenario.js';
import { peekWarmThreads, prestartThreads, releaseWarmThreads } from '../../src/threads/nodeThread.js';
import { prepareWarmThreads, spawnThreadShards } from '../../src/threads/shardThreads.js';

const root = join(import.meta.dirname, '..', '..');
/** What must match the one-thread run. */
const same = (r: RunSummary) => ({ hash: r.traceHash, events: r.events, invariants: r.invariants, metrics: r.metrics });

it('a warm thread already started gets the build call at once, not a microtask later', async () => {
  prestartThreads(1);
  const [warm] = peekWarmThreads();
  await warm.thread;
  const thread = warm.ready!;
  expect(thread).toBeDefined();
  const posted: unknown[] = [];
  const post = thread.endpoint.postMessage.bind(thread.endpoint);
  thread.endpoint.postMessage = (message: unknown, transfer?: Parameters<typeof post>[1]) => {
    posted.push(message);
    post(message, transfer);
  };
  const file = join(root, 'scenarios/manager-worker/sites.yaml');
  prepareWarmThreads({ text: readFileSync(file, 'utf8'), file, overrides: {} }, { workers: 2, first: 1, hashes: true, lines: false });
  // Before any promise callback could run: sent during the caller's synchronous work.
  expect(posted).toHaveLength(1);
  await releaseWarmThreads(0);
  expect(peekWarmThreads()).toHaveLength(0);
});

it(
  'a warm thread that made another shard ahead than the one it is given builds afresh: the one-thread summary',
  { timeout: 120_000 },
  async () => {
    const file = join(root, 'scenarios/manager-worker/sites.yaml');
    const one = runScenario(loadScenario(file), { hash: true });
    prestartThreads(1);
    await peekWarmThreads()[0].thread;
    // The warm thread makes and starts shard 2 ahead; it is taken for shard 1.
    prepareWarmThreads({ text: readFileSync(file, 'utf8'), file, overrides: {} }, { workers: 3, first: 2, hashes: true, lines: false });
    const three = await runScenarioAsync(loadScenario(file), { hash: true, workers: 3, threads: spawnThreadShards });
    expect(peekWarmThreads()).toHaveLength(0);
    expect(three.parallel?.mode).toBe('local');
    expect(three.parallel?.shards).toBe(3);
    expect(same(three)).toEqual(same(one));
  },
);

it("a warm thread builds its shard from the main thread's parse: the one-thread summary", { timeout: 120_000 }, async () => {
  const file = join(root, 'scenarios/manager-worker/sites.yaml');
  const loaded = loadScenario(file);
  const one = runScenario(loaded, { hash: true });
  // The thread (its environment copied when it starts) fails any parse of the text: it must build
  // from the parse it is sent, and init must take that build.
  process.env.PROTOSIM_TEST_NO_PARSE = '1';
  try {
    prestartThreads(1);
    await peekWarmThreads()[0].thread;
  } finally {
    delete process.env.PROTOSIM_TEST_NO_PARSE;
  }
  // As the CLI sends it: a structured copy of the parse crosses to the thread.
  prepareWarmThreads(
    { text: loaded.text, file, scenario: loaded.scenario, overrides: {} },
    { workers: 2, first: 1, hashes: true, lines: false },
  );
  const two = await runScenarioAsync(loadScenario(file), { hash: true, workers: 2, threads: spawnThreadShards });
  expect(two.parallel?.mode).toBe('local');
  expect(two.parallel?.shards).toBe(2);
  expect(same(two)).toEqual(same(one));
});

it(
  'a parse whose build fails on the warm thread is dropped there (it could not say where): init builds from the file text',
  { timeout: 120_000 },
  async () => {
    const file = join(root, 'scenarios/manager-worker/sites.yaml');
    const loaded = loadScenario(file);
    const one = runScenario(loaded, { hash: true });
    // A parse that does not build (two actors of one name), sent with the file's own text.
    const broken = structuredClone(loaded.scenario);
    broken.actors[1] = { ...broken.actors[1], name: broken.actors[0].name };
    expect(() => runScenario({ ...loaded, scenario: broken })).toThrow(/duplicate actor name/);
    prestartThreads(1);
    await peekWarmThreads()[0].thread;
    prepareWarmThreads({ text: loaded.text, file, scenario: broken, overrides: {} }, { workers: 2, first: 1, hashes: true, lines: false });
    const two = await runScenarioAsync(loadScenario(file), { hash: true, workers: 2, threads: spawnThreadShards });
    expect(two.parallel?.mode).toBe('local');
    expect(same(two)).toEqual(same(one));
  },
);
