/**
 * Trace lines between a shard's thread and the main thread (slabs.ts): each slab crosses once,
 * then by number; given back by number, the shard finds the same slab. Here both sides pass through
 * a real MessageChannel, as the threads' messages do.
 */
import { MessageChannel } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import type { WireLines } from '../../src/threads/slabs.js';
import { SlabReceiver, SlabSender } from '../../src/threads/slabs.js';

/** `value` as the other side of a MessageChannel receives it (structured clone: a SharedArrayBuffer is shared). */
async function across<T>(value: T): Promise<T> {
  const { port1, port2 } = new MessageChannel();
  const got = new Promise<T>((resolve) => port2.once('message', (v: T) => resolve(v)));
  port1.postMessage(value);
  const v = await got;
  port1.close();
  port2.close();
  return v;
}

describe('slabs', () => {
  it('a slab crosses once, then by its number; the receiver sees what the sender writes later', async () => {
    const sender = new SlabSender();
    const receiver = new SlabReceiver();
    const slab = new Uint8Array(new SharedArrayBuffer(16));
    slab.set([1, 2, 3]);
    const first = sender.send(slab.subarray(0, 3));
    expect(first.shared).toBe(slab.buffer);
    const seen = receiver.receive(await across<WireLines>(first));
    expect([...seen]).toEqual([1, 2, 3]);
    // Filled again after it came back: the same memory, named by number only.
    slab.set([7, 8, 9, 10]);
    const again = sender.send(slab.subarray(0, 4));
    expect(again).toEqual({ slab: 0, length: 4 });
    expect([...receiver.receive(await across<WireLines>(again))]).toEqual([7, 8, 9, 10]);
    // Given back: the receiver's view's buffer names it, and the sender finds its own slab.
    const numbers = receiver.numbersOf([seen.buffer]);
    expect(numbers).toEqual([0]);
    expect(sender.slabsOf(await across(numbers))).toEqual([slab.buffer]);
    expect(sender.slabsOf(numbers)[0]).toBe(slab.buffer);
    // A second slab gets the next number.
    const other = new Uint8Array(new SharedArrayBuffer(4));
    expect(sender.send(other).slab).toBe(1);
  });

  it('bytes outside shared memory cross as a copy, and are not given back', async () => {
    const sender = new SlabSender();
    const receiver = new SlabReceiver();
    const plain = new Uint8Array([5, 6]);
    const wire = sender.send(plain);
    expect(wire.slab).toBe(-1);
    const seen = receiver.receive(await across(wire));
    expect([...seen]).toEqual([5, 6]);
    expect(receiver.numbersOf([seen.buffer])).toEqual([]);
  });

  it('a number the receiver never got is an error, not garbage', () => {
    expect(() => new SlabReceiver().receive({ slab: 3, length: 1 })).toThrow(/slab 3/);
  });
});
