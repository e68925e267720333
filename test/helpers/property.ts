/**
 * How many cases a property test runs. CI runs a fixed sample (seed 20261122), so a red run always
 * means a change broke something; PROTOSIM_PROPERTY_RUNS=N explores N fresh random cases instead,
 * and PROTOSIM_PROPERTY_SEED=S replays the cases of the seed a failed exploration printed.
 */
export function sample(numRuns: number): { numRuns: number; seed?: number } {
  const explore = process.env.PROTOSIM_PROPERTY_RUNS;
  const seed = process.env.PROTOSIM_PROPERTY_SEED;
  if (seed !== undefined) return { numRuns: Number(explore ?? numRuns), seed: Number(seed) };
  return explore !== undefined ? { numRuns: Number(explore) } : { numRuns, seed: 20261122 };
}
