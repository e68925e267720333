// The buffer/rate core (issue 3), built to build/core.wasm. So far: the seeded random streams and
// the distribution step.
export { rngInt, rngNext, rngNextU32, rngSeed, rngState } from './rng';
export { alloc, distribute } from './distribute';
