/**
 * Loads the WebAssembly buffer/rate core from its embedded bytes: the same code path on Node and
 * Deno, no file-system glue, no extra permissions. The module is compiled once per process, on
 * first use, and instantiated once per world. A run with a world keeps all its actors on one shard
 * (the core delivers to all of them at once: togetherOf in scenario/runScenario.ts), and a run of
 * one shard stays in the main thread, so a worker thread never loads the core.
 *
 * @example
 * const core = instantiateCore();
 * core.rngSeed(0, ...new RandomStream(42, 'shuffle:r0').state());
 * core.rngInt(0, 10); // the same number RandomStream#int(10) draws
 */
import { CORE_WASM_BASE64 } from './coreWasm.generated.js';

/** The core's exports (see assembly/index.ts), with unsigned results as unsigned numbers. */
export interface CoreExports {
  rngSeed(slot: number, a: number, b: number, c: number, d: number): void;
  rngNextU32(slot: number): number;
  rngNext(slot: number): number;
  rngInt(slot: number, n: number): number;
  rngState(slot: number, which: number): number;
  /** Reserves bytes of linear memory; returns their address. */
  alloc(bytes: number): number;
  /** One step of every buffer (assembly/step.ts); `table` holds the field addresses (layout.ts). */
  step(table: number, resources: number, producers: number, consumers: number, dtMs: number, flags: number): number;
  memory: WebAssembly.Memory;
}

/** What WebAssembly hands back (the same shape, but u32 results arrive as signed i32). */
type RawExports = CoreExports;

/** Random stream slots in the core (assembly/rng.ts): one per resource. */
export const RNG_SLOTS = 1 << 16;

let compiled: WebAssembly.Module | undefined;

function bytesOf(base64: string): Uint8Array {
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/** The compiled core module (compiled on first use). */
export function coreModule(): WebAssembly.Module {
  compiled ??= new WebAssembly.Module(bytesOf(CORE_WASM_BASE64));
  return compiled;
}

/** A fresh instance of the core, with its own memory. */
export function instantiateCore(): CoreExports {
  const instance = new WebAssembly.Instance(coreModule(), {
    env: {
      abort(_msg: number, _file: number, line: number, col: number): never {
        throw new Error(`WebAssembly core aborted at ${line}:${col}`);
      },
    },
  });
  const raw = instance.exports as unknown as RawExports;
  return {
    rngSeed: raw.rngSeed,
    rngNextU32: (slot) => raw.rngNextU32(slot) >>> 0,
    rngNext: raw.rngNext,
    rngInt: raw.rngInt,
    rngState: (slot, which) => raw.rngState(slot, which) >>> 0,
    alloc: (bytes) => raw.alloc(bytes) >>> 0,
    step: raw.step,
    memory: raw.memory,
  };
}
