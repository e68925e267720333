// The part of the WebAssembly JS API protosim uses. Node and Deno provide it as a global; the
// TypeScript libs declare it only with the DOM/WebWorker libs, which this project does not load.
declare namespace WebAssembly {
  class Module {
    constructor(bytes: Uint8Array);
  }
  class Instance {
    constructor(module: Module, imports?: Record<string, Record<string, unknown>>);
    readonly exports: Record<string, unknown>;
  }
  class Memory {
    readonly buffer: ArrayBuffer;
  }
}
