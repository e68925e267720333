// The buffer/rate core (issue 3). So far: the seeded random streams the distribution step will
// shuffle consumers with.
export { rngInt, rngNext, rngNextU32, rngSeed, rngState } from './rng';
