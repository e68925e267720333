/**
 * How many cases a property test runs. CI runs a fixed sample (seed 20261122), so a red run always
 * means a change broke something; PROTOSIM_PROPERTY_RUNS=N explores N fresh random cases instead.
 */
export function sample(numRuns: number): { numRuns: number; seed?: number } {
  const explore = process.env.PROTOSIM_PROPERTY_RUNS;
  return explore !== undefined ? { numRuns: Number(explore) } : { numRuns, seed: 20261122 };
}
