// The internal hook behind the tfjs adapter's zero-copy data path: CPU tensors over the memory of
// JavaScript Float32Arrays. The wrapped memory stays alive as long as the storage does, and a
// buffer that was detached (or shrank) is refused, never read.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { native } from '../dist/native.js';
import { allocateInFloat32Arrays, float32ArrayOf, liveTensorCount, wrapFloat32Array } from '../dist/internal.js';
import { Tensor, selectiveScan } from './helpers/api.js';
import { expectCode, expectThrow } from './helpers/expect-code.js';
import { Rng } from './helpers/random.js';
import { expectBitsEqual } from './helpers/run.js';

const detach = (buffer: ArrayBuffer) => structuredClone(buffer, { transfer: [buffer] });

describe('wrapFloat32Array', () => {
  it('shares the memory both ways, at any offset into the buffer', () => {
    const buffer = new Float32Array(10);
    const values = buffer.subarray(3, 9); // 12-byte offset: 4-byte aligned only
    values.set([1, 2, 3, 4, 5, 6]);
    const t = wrapFloat32Array(values, [2, 3]);
    expect(Array.from(t.dataSync())).toEqual([1, 2, 3, 4, 5, 6]);
    values[0] = 7;
    expect(t.dataSync()[0]).toBe(7);
    expect(float32ArrayOf(t)).toBe(values);
    t.dispose();
    expect(float32ArrayOf(Tensor.from([1], [1]))).toBeUndefined();
  });

  it('ops read wrapped tensors as they read their own, and write into Float32Arrays when asked', () => {
    const rng = new Rng(1601);
    const [batch, dim, L, N] = [2, 3, 70, 4];
    const arrays = {
      u: rng.normalArray(batch * dim * L),
      delta: rng.uniformArray(batch * dim * L, 0, 0.5),
      A: rng.uniformArray(dim * N, -1, -0.2),
      B: rng.normalArray(batch * N * L),
      C: rng.normalArray(dim * N),
    };
    const shapes = { u: [batch, dim, L], delta: [batch, dim, L], A: [dim, N], B: [batch, N, L], C: [dim, N] };
    const args = (make: (v: Float32Array, s: number[]) => Tensor) =>
      (['u', 'delta', 'A', 'B', 'C'] as const).map((k) => make(Float32Array.from(arrays[k]), shapes[k])) as [
        Tensor,
        Tensor,
        Tensor,
        Tensor,
        Tensor,
      ];
    const copied = selectiveScan(...args((v, s) => Tensor.from(v, s)), { returnLastState: true });
    const inputs = args(wrapFloat32Array);
    const wrapped = allocateInFloat32Arrays(() => selectiveScan(...inputs, { returnLastState: true }));
    const out = float32ArrayOf(wrapped.out)!;
    expect(out).toBeInstanceOf(Float32Array);
    expect(float32ArrayOf(wrapped.lastState!)).toBeInstanceOf(Float32Array);
    expectBitsEqual(out, copied.out.dataSync(), 'out');
    expectBitsEqual(wrapped.lastState!.dataSync(), copied.lastState!.dataSync(), 'lastState');
    // The array outlives the tensor: its memory is JavaScript's.
    wrapped.out.dispose();
    expectBitsEqual(out, copied.out.dataSync(), 'out after dispose');
    // Outside allocateInFloat32Arrays the addon allocates as before.
    expect(float32ArrayOf(selectiveScan(...inputs).out)).toBeUndefined();
  });

  it('refuses a detached buffer, at wrapping and at every later use', () => {
    const values = new Float32Array([1, 2, 3, 4]);
    const t = wrapFloat32Array(values, [1, 1, 4]);
    const A = Tensor.from([-1], [1, 1]);
    detach(values.buffer);
    expectCode(() => t.dataSync(), 'ERR_DISPOSED');
    expectCode(() => selectiveScan(Tensor.zeros([1, 1, 4]), t, A, A, A), 'ERR_DISPOSED');
    expectThrow(() => wrapFloat32Array(values, [4]), RangeError, /holds 4 values, got 0/);
    // The addon checks for itself, whatever lib/ does.
    expectThrow(() => new native.Storage(-1, 0, values), TypeError, /detached/);
  });

  it('refuses shared and resizable buffers, and memory the array does not hold', () => {
    expectThrow(
      () => wrapFloat32Array(new Float32Array(new SharedArrayBuffer(16)), [4]),
      TypeError,
      /fixed-length ArrayBuffer, got SharedArrayBuffer/,
    );
    const ResizableArrayBuffer = ArrayBuffer as unknown as new (n: number, o: object) => ArrayBuffer;
    const resizable = new ResizableArrayBuffer(16, { maxByteLength: 32 });
    expectThrow(() => wrapFloat32Array(new Float32Array(resizable), [4]), TypeError, /fixed-length ArrayBuffer/);
    expectThrow(() => new native.Storage(-1, 16, new Float32Array(new SharedArrayBuffer(16))), TypeError);
    expectThrow(() => new native.Storage(-1, 20, new Float32Array(4)), RangeError, /smaller/);
    expectThrow(() => new native.Storage(0, 16, new Float32Array(4)), TypeError, /only host/);
  });

  it('a storage over a buffer that shrank is refused by the addon', () => {
    const ResizableArrayBuffer = ArrayBuffer as unknown as new (n: number, o: object) => ArrayBuffer;
    const resizable = new ResizableArrayBuffer(16, { maxByteLength: 32 });
    const storage = new native.Storage(-1, 16, new Float32Array(resizable, 0, 4));
    expect(native.readValues(storage, 0, 4)).toEqual(new Float32Array(4));
    (resizable as ArrayBuffer & { resize(n: number): void }).resize(8);
    expectCode(() => native.readValues(storage, 0, 4), 'ERR_DISPOSED');
  });

  it('keeps the wrapped memory alive after the last JavaScript reference to the array is gone', () => {
    // In a process of its own, to run the garbage collector: only the storage references the array.
    const script = `
      const { native } = require('./dist/native.js');
      const storages = [];
      for (let i = 0; i < 50; i++) storages.push(new native.Storage(-1, 4096, new Float32Array(1024).fill(i)));
      for (let round = 0; round < 3; round++) { global.gc(); new Float32Array(1 << 20).fill(1); }
      const bad = storages.findIndex((s, i) => native.readValues(s, 0, 1024).some((v) => v !== i));
      console.log(bad);`;
    const run = spawnSync(process.execPath, ['--expose-gc', '-e', script], {
      cwd: path.join(__dirname, '..'),
      encoding: 'utf8',
    });
    expect(run.stderr).toBe('');
    expect(run.stdout.trim()).toBe('-1');
  });
});

describe('liveTensorCount', () => {
  it('counts tensors made and not disposed, disposing twice counting once', () => {
    const before = liveTensorCount();
    const a = Tensor.zeros([3]);
    const b = wrapFloat32Array(new Float32Array(3), [3]);
    expect(liveTensorCount()).toBe(before + 2);
    a.dispose();
    a.dispose();
    b.dispose();
    expect(liveTensorCount()).toBe(before);
  });
});
