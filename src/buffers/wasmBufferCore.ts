/**
 * The typed facade over the WebAssembly core: consumer arrays live in the core's linear memory, and
 * the host reads and writes them through typed-array views (structure of arrays, no copies).
 *
 * @example
 * const core = new WasmBufferCore(1000);
 * core.bufferLimit.fill(60);
 * core.seedStream(0, new RandomStream(7, 'distribute:iron').state());
 * const leftover = core.distribute(25, [0, 1, 2], 0, true); // units for the global buffer
 */
import type { CoreExports } from './loadCore.js';
import { instantiateCore } from './loadCore.js';

export class WasmBufferCore {
  private readonly core: CoreExports;
  private readonly ptr: { serverBuffer: number; bufferLimit: number; members: number; order: number };
  /** Units allocated to each consumer and not yet sent (the server-side consumer buffer). */
  serverBuffer!: Uint32Array;
  /** Each consumer's buffer limit. */
  bufferLimit!: Uint32Array;
  private members!: Int32Array;
  private viewsOf: ArrayBuffer | undefined;

  constructor(readonly consumerCapacity: number) {
    this.core = instantiateCore();
    const bytes = consumerCapacity * 4;
    this.ptr = {
      serverBuffer: this.core.alloc(bytes),
      bufferLimit: this.core.alloc(bytes),
      members: this.core.alloc(bytes),
      order: this.core.alloc(bytes),
    };
    this.refreshViews();
  }

  /** Views die when memory grows: make them again if the buffer changed. */
  private refreshViews(): void {
    const buffer = this.core.memory.buffer;
    if (buffer === this.viewsOf) return;
    const n = this.consumerCapacity;
    this.serverBuffer = new Uint32Array(buffer, this.ptr.serverBuffer, n);
    this.bufferLimit = new Uint32Array(buffer, this.ptr.bufferLimit, n);
    this.members = new Int32Array(buffer, this.ptr.members, n);
    this.viewsOf = buffer;
  }

  /** Continues the random stream whose state words are `state` in slot `slot`. */
  seedStream(slot: number, state: readonly [number, number, number, number]): void {
    this.core.rngSeed(slot, state[0], state[1], state[2], state[3]);
  }

  /** Distributes `amount` among `members` with the stream in `slot`; returns the leftover (see distribute.ts for `fair`). */
  distribute(amount: number, members: ArrayLike<number>, slot: number, fair: boolean): number {
    this.refreshViews();
    this.members.set(members);
    return this.core.distribute(
      amount,
      this.ptr.members,
      members.length,
      this.ptr.order,
      this.ptr.serverBuffer,
      this.ptr.bufferLimit,
      slot,
      fair,
    );
  }
}
