// The buffer/rate core (issue 3), built to build/core.wasm: seeded random streams and one step of
// Virdi's buffers (production, distribution, rate-limited sends, threshold edges).
export { rngInt, rngNext, rngNextU32, rngSeed, rngState } from './rng';
export { alloc, distributeStep, step } from './step';
