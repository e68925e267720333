/**
 * For random small manager/worker scenarios — sizes, networks, modes and fault schedules — a correct
 * implementation never violates an invariant, in either mode. balthazar's known deviation
 * (TasksPing answered with Ack) is the one exception: mw.one-answer is not judged in that mode.
 * fast-check shrinks any failure to a small scenario and prints its seed.
 */
import { fc, test } from '@fast-check/vitest';
import { expect } from 'vitest';
import { parseScenario } from '../../src/scenario/loadScenario.js';
import { runScenario } from '../../src/scenario/runScenario.js';
import { mwScenario, mwYaml } from '../helpers/mwScenario.js';
import { sample } from '../helpers/property.js';

// A fixed sample in CI; PROTOSIM_PROPERTY_RUNS=N explores (test/helpers/property.ts).
test.prop([mwScenario], sample(80))('no invariant is violated by the correct machines, whatever the scenario', (p) => {
  const yaml = mwYaml(p);
  const summary = runScenario(parseScenario(yaml, 'property.yaml'));
  const violated = summary.invariants.filter((i) => i.status === 'violated').map((i) => `${i.id}: ${i.violations[0].message}`);
  expect({ violated, errors: summary.actorErrors, stalled: summary.stoppedBecause === 'stalled' }, yaml).toEqual({
    violated: [],
    errors: [],
    stalled: false,
  });
});
