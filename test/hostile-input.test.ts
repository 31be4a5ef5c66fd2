// Input that tries to get past the checks (issue #10): typed arrays disguised by their prototype or
// an own `length`, Proxies and objects that inherit from a Tensor, assignments to a tensor's
// metadata, options inherited from a polluted Object.prototype, device strings that overflow,
// shapes too large to count, and Tensors of another copy of the package. Each gets a clear
// TypeError / RangeError / coded error naming the function, or the result it would get without
// the trick. test/fuzz.test.ts throws random such values at every public function.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  ScanContext,
  Tensor,
  causalConv1d,
  causalConv1dBackward,
  cuda,
  selectiveScan,
  selectiveScanBackward,
  selectiveStateUpdate,
  ssdScan,
  ssdScanBackward,
} from './helpers/api.js';
import { expectCode, expectThrow } from './helpers/expect-code.js';
import { Rng } from './helpers/random.js';
import { expectBitsEqual } from './helpers/run.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const rng = new Rng(1010);
const rand = (shape: number[], lo = -1, hi = 1) =>
  Tensor.from(
    rng.uniformArray(
      shape.reduce((a, b) => a * b, 1),
      lo,
      hi,
    ),
    shape,
  );

/** ssdScan's inputs x, dt, A, B, C at (batch 1, L 6, 2 heads of 2, 1 group, N 4). */
const ssdInputs = () =>
  [
    rand([1, 6, 2, 4]),
    rand([1, 6, 2], -0.5, 0.5),
    rand([2], -2, -0.5),
    rand([1, 6, 1, 4]),
    rand([1, 6, 1, 4]),
  ] as const;

/**
 * Runs `run` with a getter (undefined) and a setter on Object.prototype for each of `names`, then
 * removes them; returns what it returned and what the setters were given, as [name, value].
 */
function withPrototypeSetters<T>(names: string[], run: () => T): { result: T; seen: [string, unknown][] } {
  const seen: [string, unknown][] = [];
  const proto = Object.prototype as Record<string, unknown>;
  for (const name of names) {
    Object.defineProperty(proto, name, {
      configurable: true,
      get: () => undefined,
      set: (value: unknown) => {
        seen.push([name, value]);
      },
    });
  }
  try {
    return { result: run(), seen };
  } finally {
    for (const name of names) delete proto[name];
  }
}

/** A typed array of type `Real` whose prototype claims `Claimed`. */
function disguised<T extends ArrayBufferView>(real: T, claimed: { prototype: object }): T {
  Object.setPrototypeOf(real, claimed.prototype);
  return real;
}

describe('typed arrays are taken by their real type and length', () => {
  it('fromBits: a Uint8Array with the prototype of Uint16Array is a TypeError that names its real type', () => {
    const bits = disguised(new Uint8Array(4), Uint16Array);
    expect(bits instanceof Uint16Array).toBe(true);
    expectThrow(
      () => Tensor.fromBits(bits as unknown as Uint16Array, [4], { dtype: 'float16' }),
      TypeError,
      /^Tensor\.fromBits: bits must be a Uint16Array, got a Uint8Array \(with the prototype of Uint16Array\)$/,
    );
  });

  it('cuSeqlens on a detached buffer is a RangeError of the op (found by the fuzzer), for every op', () => {
    const detached = () => {
      const offsets = Int32Array.from([0, 4]);
      structuredClone(offsets.buffer, { transfer: [offsets.buffer] });
      return offsets;
    };
    const x = Tensor.zeros([1, 2, 4]);
    const A = Tensor.zeros([2, 3]);
    expectThrow(
      () => selectiveScan(x, x, A, A, A, { cuSeqlens: detached() }),
      RangeError,
      /^selectiveScan: cuSeqlens must have at least 2 entries, got 0$/,
    );
    expectThrow(
      () => causalConv1d(x, Tensor.zeros([2, 4]), { cuSeqlens: detached() }),
      RangeError,
      /^causalConv1d: cuSeqlens must have at least 2 entries, got 0$/,
    );
  });

  it('fromBits and from: an own `length` property does not change the length that counts', () => {
    const bits = Uint16Array.of(0x3c00, 0x4000);
    Object.defineProperty(bits, 'length', { value: 1000 });
    expect(Array.from(Tensor.fromBits(bits, [2], { dtype: 'float16' }).dataSync())).toEqual([1, 2]);
    expectThrow(() => Tensor.fromBits(bits, [1000], { dtype: 'float16' }), RangeError, /holds 1000 values, got 2$/);
    const values = Float32Array.of(1, 2, 3);
    Object.defineProperty(values, 'length', { value: 1 });
    expect(Array.from(Tensor.from(values, [3]).dataSync())).toEqual([1, 2, 3]);
    expectThrow(() => Tensor.from(values, [1]), RangeError, /^Tensor\.from: shape \[1\] holds 1 values, got 3$/);
  });

  it('from: a disguised typed array gives the values it really holds', () => {
    const bytes = disguised(Uint8Array.of(1, 2, 250, 4), Float32Array);
    expect(Array.from(Tensor.from(bytes as unknown as Float32Array, [4]).dataSync())).toEqual([1, 2, 250, 4]);
    const big = disguised(BigInt64Array.of(1n), Float64Array);
    expectThrow(
      () => Tensor.from(big as never, [1]),
      TypeError,
      /^Tensor\.from: values must hold numbers, got BigInt64Array$/,
    );
  });

  it('from: each element of an array-like is read once (a getter cannot pass the check and then change)', () => {
    let reads = 0;
    const values = {
      length: 2,
      get 0() {
        reads++;
        return reads === 1 ? 1.5 : 'not a number';
      },
      1: 2.5,
    };
    expect(Array.from(Tensor.from(values as never, [2]).dataSync())).toEqual([1.5, 2.5]);
    expect(reads).toBe(1);
  });

  describe('stateBatchIndices', () => {
    const state = () => rand([4, 2, 3]);
    const args = () =>
      [rand([2, 2]), rand([2, 2], 0, 0.5), rand([2, 3], -2, -0.5), rand([2, 3]), rand([2, 3])] as const;

    it('an Int8Array with the prototype of Int32Array is a TypeError', () => {
      const indices = disguised(Int8Array.of(0, 1), Int32Array) as unknown as Int32Array;
      const s = state();
      const before = s.dataSync().slice();
      expectThrow(
        () => selectiveStateUpdate(s, ...args(), { stateBatchIndices: indices }),
        TypeError,
        /^selectiveStateUpdate: stateBatchIndices must be an Int32Array, got an Int8Array \(with the prototype of Int32Array\)$/,
      );
      expectBitsEqual(s.dataSync(), before, 'state');
    });

    it('duplicates hidden by a subclass that overrides entries() and length are found', () => {
      class Hiding extends Int32Array {
        override entries(): ArrayIterator<[number, number]> {
          return [[0, 0] as [number, number]][Symbol.iterator]() as ArrayIterator<[number, number]>;
        }
        override get length() {
          return 2;
        }
      }
      const indices = Hiding.from([3, 3]);
      expectThrow(
        () => selectiveStateUpdate(state(), ...args(), { stateBatchIndices: indices }),
        RangeError,
        /^selectiveStateUpdate: stateBatchIndices must be distinct; 3 appears twice$/,
      );
      const long = Hiding.from([0, 1, 2]); // claims 2 elements, holds 3
      expectThrow(
        () => selectiveStateUpdate(state(), ...args(), { stateBatchIndices: long }),
        RangeError,
        /must have length batch=2, got 3$/,
      );
    });

    it('the op reads a copy: what was checked is what runs', () => {
      const indices = Int32Array.of(2, 0);
      const s1 = state();
      const s2 = Tensor.from(s1.dataSync(), [4, 2, 3]);
      const inputs = args();
      const y1 = selectiveStateUpdate(s1, ...inputs, { stateBatchIndices: indices });
      const y2 = selectiveStateUpdate(s2, ...inputs, { stateBatchIndices: Int32Array.of(2, 0) });
      expectBitsEqual(y1.dataSync(), y2.dataSync(), 'y');
      expectBitsEqual(s1.dataSync(), s2.dataSync(), 'state');
    });
  });
});

describe('tensor metadata cannot change', () => {
  it('assigning or redefining shape, dtype, device or numel throws and changes nothing', () => {
    const t = Tensor.from([1, 2, 3, 4], [2, 2]);
    const attempts: [string, () => unknown][] = [
      ['assign dtype', () => ((t as { dtype: string }).dtype = 'float16')],
      ['assign shape', () => ((t as unknown as { shape: number[] }).shape = [4])],
      ['assign numel', () => ((t as { numel: number }).numel = 2 ** 80)],
      ['assign device', () => ((t as { device: string }).device = 'cuda:0')],
      ['redefine dtype', () => Object.defineProperty(t, 'dtype', { value: 'float16' })],
      ['delete shape', () => delete (t as { shape?: unknown }).shape],
      ['grow shape', () => (t.shape as number[]).push(1)],
    ];
    for (const [what, attempt] of attempts) expect(attempt, what).toThrow(TypeError);
    expect(Reflect.set(t, 'numel', 8)).toBe(false);
    expect([t.shape, t.dtype, t.device, t.numel]).toEqual([[2, 2], 'float32', 'cpu', 4]);
    expect(Array.from(t.dataSync())).toEqual([1, 2, 3, 4]);
    expect(String(t)).toBe('Tensor([2, 2], float32, cpu)');
  });

  it('other properties may be added (tensors stay extensible)', () => {
    const t = Tensor.zeros([1]) as Tensor & { name?: string };
    t.name = 'weights';
    expect(t.name).toBe('weights');
  });
});

describe('only a Tensor of this package is a Tensor', () => {
  const t = rand([1, 2, 3]);

  it('a Proxy of a Tensor', () => {
    expectThrow(
      () => selectiveScan(new Proxy(t, {}), t, t, t, t),
      TypeError,
      /^selectiveScan: u must be a Tensor, got a Proxy$/,
    );
    expectThrow(
      () => Tensor.prototype.dataSync.call(new Proxy(t, {})),
      TypeError,
      /^Tensor\.dataSync: tensor must be a Tensor, got a Proxy$/,
    );
  });

  it('an object made with Object.create(tensor) or setPrototypeOf', () => {
    for (const fake of [Object.create(t), Object.setPrototypeOf({}, Tensor.prototype)]) {
      expectThrow(
        () => selectiveScan(t, fake, t, t, t),
        TypeError,
        /^selectiveScan: delta must be a Tensor itself, got an object that only inherits from one/,
      );
      expectThrow(
        () => Tensor.prototype.to.call(fake, 'cpu'),
        TypeError,
        /^Tensor\.to: tensor must be a Tensor itself/,
      );
      expectThrow(() => String(fake), TypeError, /^Tensor\.toString: this must be a Tensor itself/);
    }
  });

  it("ScanContext's members on another object are TypeErrors naming them", () => {
    const { ctx } = selectiveScan(t, t, rand([2, 4]), rand([2, 4]), rand([2, 4]), { saveForBackward: true });
    const fake = Object.create(ctx!);
    expectThrow(() => fake.isDisposed, TypeError, /^ScanContext\.isDisposed: this must be a ScanContext itself/);
    expectThrow(
      () => fake.checkpointBytes,
      TypeError,
      /^ScanContext\.checkpointBytes: this must be a ScanContext itself/,
    );
    expectThrow(
      () => ScanContext.prototype.dispose.call(new Proxy(ctx!, {})),
      TypeError,
      /^ScanContext\.dispose: this must be/,
    );
    expect(ctx!.checkpointBytes).toBe(1 * 2 * 1 * 4 * 4); // batch, dim, chunks, N float32
    ctx!.dispose();
    expect([ctx!.isDisposed, ctx!.checkpointBytes]).toEqual([true, 0]);
  });

  it('new Tensor() and new ScanContext() are TypeErrors; a fake ctx is too', () => {
    expectThrow(() => new (Tensor as unknown as new () => Tensor)(), TypeError, /^Tensor: use Tensor\.from/);
    expectThrow(
      () => new (ScanContext as unknown as new () => ScanContext)(),
      TypeError,
      /^ScanContext: made by selectiveScan/,
    );
    expectThrow(
      () => selectiveScanBackward(Object.create(ScanContext.prototype), t),
      TypeError,
      /^selectiveScanBackward: ctx must be a ScanContext itself/,
    );
    expectThrow(
      () => selectiveScanBackward({} as never, t),
      TypeError,
      /^selectiveScanBackward: ctx must be the ScanContext of selectiveScan\(\.\.\., \{ saveForBackward: true \}\), got Object$/,
    );
  });
});

describe('a Tensor from another copy of the package says so', () => {
  // A child process that loads the package twice: `second` is 'reload' (the same files again,
  // after clearing the module cache) or a folder holding a copy of dist/.
  function crossCopy(second: string) {
    const script = `
      const path = require('node:path');
      const first = require(${JSON.stringify(ROOT)});
      const secondRoot = ${JSON.stringify(second)} === 'reload' ? ${JSON.stringify(ROOT)} : ${JSON.stringify(second)};
      for (const key of Object.keys(require.cache)) if (key.startsWith(path.join(${JSON.stringify(ROOT)}, 'dist'))) delete require.cache[key];
      const other = require(secondRoot);
      const t = first.Tensor.from([1, 2], [1, 1, 2]);
      let message = 'no error';
      try { other.selectiveScan(t, t, t, t, t); } catch (e) { message = e.constructor.name + ': ' + e.message; }
      const own = other.Tensor.from([3], [1]).dataSync()[0] + first.Tensor.from([4], [1]).dataSync()[0];
      console.log(JSON.stringify({ distinct: first.Tensor !== other.Tensor, message, own }));`;
    const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(child.status, child.stderr).toBe(0);
    return JSON.parse(child.stdout.trim()) as { distinct: boolean; message: string; own: number };
  }

  it('the same files loaded twice (a cleared module cache)', () => {
    const r = crossCopy('reload');
    expect(r.distinct).toBe(true);
    expect(r.message).toBe(
      `TypeError: selectiveScan: u is a Tensor from another instance of selective-scan: its files at ${ROOT.replace(/\/$/, '')} ` +
        'were loaded twice (a cleared module cache, say). A Tensor works only with the copy that made it: load one copy ' +
        'of the package once (npm ls selective-scan lists the installed copies), or move values across with dataSync() and Tensor.from()',
    );
    expect(r.own).toBe(7); // both instances still work on their own tensors
  });

  it('a second installed copy names both folders', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'selective-scan-copy-'));
    try {
      for (const entry of ['dist', 'package.json'])
        cpSync(path.join(ROOT, entry), path.join(dir, entry), { recursive: true });
      for (const entry of ['build', 'node_modules']) symlinkSync(path.join(ROOT, entry), path.join(dir, entry));
      const r = crossCopy(dir);
      expect(r.message).toContain(
        `selectiveScan: u is a Tensor from another copy of selective-scan, at ${ROOT.replace(/\/$/, '')}; this copy is at ${dir}.`,
      );
      expect(r.own).toBe(7);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('options are own properties only: a polluted Object.prototype changes nothing', () => {
  // Runs f with Object.prototype[key] = value, removing it before anything else can run.
  function polluted<T>(pollution: Record<string, unknown>, f: () => T): T {
    const proto = Object.prototype as Record<string, unknown>;
    for (const [key, value] of Object.entries(pollution)) proto[key] = value;
    try {
      return f();
    } finally {
      for (const key of Object.keys(pollution)) delete proto[key];
    }
  }

  const u = rand([2, 3, 20]);
  const delta = rand([2, 3, 20], -0.5, 0.5);
  const A = rand([3, 4], -2, -0.5);
  const B = rand([2, 4, 20]);
  const C = rand([3, 4]);

  it('selectiveScan and its backward', () => {
    const clean = selectiveScan(u, delta, A, B, C, { saveForBackward: true });
    const dClean = selectiveScanBackward(clean.ctx!, u);
    const pollution = {
      deltaSoftplus: true,
      D: rand([3]),
      z: rand([2, 3, 20]),
      deltaBias: rand([3]),
      initialState: rand([2, 3, 4]),
      returnLastState: true,
      dLastState: rand([2, 3, 4]),
      deterministic: 'yes',
    };
    const dirty = polluted(pollution, () => selectiveScan(u, delta, A, B, C, { saveForBackward: true }));
    expect(dirty.lastState).toBeUndefined();
    expectBitsEqual(dirty.out.dataSync(), clean.out.dataSync(), 'out');
    const dDirty = polluted(pollution, () => selectiveScanBackward(dirty.ctx!, u, {}));
    expect(Object.keys(dDirty).sort()).toEqual(Object.keys(dClean).sort());
    for (const k of ['du', 'ddelta', 'dA', 'dB', 'dC'] as const)
      expectBitsEqual(dDirty[k].dataSync(), dClean[k].dataSync(), k);
  });

  it('selectiveStateUpdate', () => {
    const x = rand([2, 3]);
    const Bt = rand([2, 4]);
    const s1 = rand([2, 3, 4]);
    const s2 = Tensor.from(s1.dataSync(), [2, 3, 4]);
    const y1 = selectiveStateUpdate(s1, x, x, A, Bt, Bt);
    const y2 = polluted(
      { dtSoftplus: true, D: rand([3]), z: rand([2, 3]), dtBias: rand([3]), stateBatchIndices: Int32Array.of(1, 0) },
      () => selectiveStateUpdate(s2, x, x, A, Bt, Bt),
    );
    expectBitsEqual(y2.dataSync(), y1.dataSync(), 'y');
    expectBitsEqual(s2.dataSync(), s1.dataSync(), 'state');
  });

  it('setters on Object.prototype named like descriptor fields are never called (no Storage reaches user code)', () => {
    const names = [
      'out',
      'lastState',
      'checkpoints',
      'dtype',
      'u',
      'x',
      'y',
      'dout',
      'du',
      'dx',
      'finalState',
      'chunkLength',
    ];
    const [sx, sdt, sA, sB, sC] = ssdInputs();
    const cx = rand([2, 3, 20]);
    const cw = rand([3, 4]);
    const run = () => {
      const f = selectiveScan(u, delta, A, B, C, { saveForBackward: true });
      const g = selectiveScanBackward(f.ctx!, u);
      const s = ssdScan(sx, sdt, sA, sB, sC);
      const c = causalConv1d(cx, cw, { saveForBackward: true });
      const cg = causalConv1dBackward(c.ctx!, cx);
      return [f.out, g.du, g.dB, s.out, c.out, cg.dx, cg.dweight].map((t) => t.dataSync());
    };
    const clean = run();
    const { result: dirty, seen } = withPrototypeSetters(names, run);
    expect(seen).toEqual([]);
    for (const [i, values] of clean.entries()) expectBitsEqual(dirty[i]!, values, `output ${i}`);
  });

  it('setters on Object.prototype named like optional result fields neither get them nor hide them', () => {
    // The forward results' lastState, finalState and ctx and the gradients of optional inputs:
    // each an own field of the result, whatever Object.prototype says.
    const names = ['lastState', 'finalState', 'ctx', 'dD', 'dz', 'ddeltaBias', 'ddtBias', 'dbias', 'dInitialState'];
    const scanOpts = { D: rand([3]), z: rand([2, 3, 20]), deltaBias: rand([3]), initialState: rand([2, 3, 4]) };
    const [sx, sdt, sA, sB, sC] = ssdInputs();
    const ssdOpts = { D: rand([2]), z: rand([1, 6, 2, 4]), dtBias: rand([2]), initialState: rand([1, 2, 4, 4]) };
    const [cx, cw] = [rand([2, 3, 20]), rand([3, 4])];
    const convOpts = { bias: rand([3]), initialState: rand([2, 3, 3]) };
    const run = () => {
      const f = selectiveScan(u, delta, A, B, C, { ...scanOpts, returnLastState: true, saveForBackward: true });
      const g = f.ctx ? selectiveScanBackward(f.ctx, u) : undefined;
      const s = ssdScan(sx, sdt, sA, sB, sC, { ...ssdOpts, returnLastState: true, saveForBackward: true });
      const sg = s.ctx ? ssdScanBackward(s.ctx, sx) : undefined;
      const c = causalConv1d(cx, cw, { ...convOpts, returnFinalState: true, saveForBackward: true });
      const cg = c.ctx ? causalConv1dBackward(c.ctx, cx) : undefined;
      const fields = {
        'selectiveScan lastState': f.lastState,
        'selectiveScanBackward dD': g?.dD,
        'selectiveScanBackward dz': g?.dz,
        'selectiveScanBackward ddeltaBias': g?.ddeltaBias,
        'selectiveScanBackward dInitialState': g?.dInitialState,
        'ssdScan lastState': s.lastState,
        'ssdScanBackward dD': sg?.dD,
        'ssdScanBackward dz': sg?.dz,
        'ssdScanBackward ddtBias': sg?.ddtBias,
        'ssdScanBackward dInitialState': sg?.dInitialState,
        'causalConv1d finalState': c.finalState,
        'causalConv1dBackward dbias': cg?.dbias,
        'causalConv1dBackward dInitialState': cg?.dInitialState,
      };
      const own = [f, s, c].map((r) => Object.keys(r).sort().join(','));
      for (const r of [f, s, c]) r.ctx?.dispose();
      return { own, values: Object.entries(fields).map(([k, t]) => [k, t?.dataSync()] as const) };
    };
    const clean = run();
    const { result: dirty, seen } = withPrototypeSetters(names, run);
    expect(seen).toEqual([]);
    expect(clean.own).toEqual(['ctx,lastState,out', 'ctx,lastState,out', 'ctx,finalState,out']);
    expect(dirty.own).toEqual(clean.own);
    for (const [i, [name, values]] of clean.values.entries()) {
      expect(values, name).toBeDefined();
      expect(dirty.values[i]![1], name).toBeDefined();
      expectBitsEqual(dirty.values[i]![1]!, values!, name);
    }
  });

  it("a setter named 'code' on Object.prototype neither gets nor hides a coded error's code", () => {
    const t = rand([2, 3]);
    t.dispose();
    const { result: caught, seen } = withPrototypeSetters(['code'], () => {
      try {
        t.dataSync();
      } catch (e) {
        return e;
      }
    });
    expect(seen).toEqual([]);
    expect(caught).toBeInstanceOf(Error);
    expect(Object.hasOwn(caught as object, 'code')).toBe(true);
    expect((caught as { code: unknown }).code).toBe('ERR_DISPOSED');
  });

  it("Tensor.zeros, from, fromBits and to with Object.prototype.device = 'cuda' and .dtype = 'float16'", () => {
    const made = polluted({ device: 'cuda', dtype: 'float16' }, () => [
      Tensor.zeros([2]),
      Tensor.from([1, 2], [2]),
      Tensor.from([1, 2], [2], {}),
      Tensor.zeros([2]).to({}),
    ]);
    for (const t of made) expect([t.device, t.dtype]).toEqual(['cpu', 'float32']);
  });

  it('unknown own options are still TypeErrors; a getter option is read once', () => {
    expectThrow(
      () => Tensor.zeros([1], { device: 'cpu', colour: 'red' } as never),
      TypeError,
      /^Tensor\.zeros: unknown option 'colour'/,
    );
    let reads = 0;
    const opts = {
      get dtype() {
        reads++;
        return reads === 1 ? 'bfloat16' : 'float64';
      },
    };
    expect(Tensor.zeros([1], opts as never).dtype).toBe('bfloat16');
    expect(reads).toBe(1);
  });
});

describe('devices are parsed strictly', () => {
  it("'cuda:N' needs N below 2^16 with no leading zeros; huge indices do not wrap", () => {
    expectThrow(
      () => Tensor.zeros([1], { device: 'cuda:99999999999999999999' as never }),
      RangeError,
      /^Tensor\.zeros: device index must be below 65536, got 'cuda:99999999999999999999'$/,
    );
    expectThrow(() => Tensor.zeros([1], { device: 'cuda:65536' }), RangeError, /below 65536/);
    for (const device of ['cuda:01', ' cuda', 'cuda:', 'cuda:1e3', 'cuda:0x1', 'CUDA', 'cuda:+1']) {
      expectThrow(
        () => Tensor.zeros([1], { device: device as never }),
        RangeError,
        /^Tensor\.zeros: device must be 'cpu', 'cuda' or 'cuda:<index>'/,
      );
    }
    for (const device of [1, null, {}, ['cuda']]) {
      expectThrow(() => Tensor.zeros([1], { device: device as never }), TypeError, /^Tensor\.zeros: device must be/);
    }
  });

  it('an absent device (cuda:65535) is ERR_CUDA_UNAVAILABLE naming the function', () => {
    expectCode(() => Tensor.zeros([1], { device: 'cuda:65535' }), 'ERR_CUDA_UNAVAILABLE', /^Tensor\.zeros: /);
    if (!cuda.isAvailable()) expectCode(() => Tensor.zeros([1]).to('cuda'), 'ERR_CUDA_UNAVAILABLE', /^Tensor\.to: /);
  });

  it('Tensor.to takes a device or { device, dtype }: anything else is a TypeError saying so', () => {
    const t = Tensor.zeros([1]);
    for (const target of [5, null, undefined, true, ['cpu'], 5n]) {
      expectThrow(
        () => t.to(target as never),
        TypeError,
        /^Tensor\.to: target must be a device or \{ device, dtype \}, got /,
      );
    }
    expectThrow(() => t.to({ devcie: 'cpu' } as never), TypeError, /^Tensor\.to: unknown option 'devcie'/);
  });
});

describe('shapes', () => {
  it('more than 64 dimensions is a RangeError, read before any element (a huge Proxy length is harmless)', () => {
    expectThrow(
      () => Tensor.zeros(new Array(65).fill(1)),
      RangeError,
      /^Tensor\.zeros: shape has 65 dimensions; at most 64/,
    );
    let reads = 0;
    const huge = new Proxy([1], {
      get: (target, key) => {
        if (key === 'length') return 2 ** 32 - 1;
        reads++;
        return Reflect.get(target, key);
      },
    });
    expectThrow(() => Tensor.zeros(huge), RangeError, /4294967295 dimensions/);
    expect(reads).toBe(0);
    expect(Tensor.zeros(new Array(64).fill(1)).numel).toBe(1);
  });

  it('a shape whose byte count cannot be counted exactly is a RangeError; one too big for memory is ERR_OUT_OF_MEMORY', () => {
    expectThrow(
      () => Tensor.zeros([2 ** 30, 2 ** 30, 2 ** 30]),
      RangeError,
      /^Tensor\.zeros: shape \[1073741824, 1073741824, 1073741824\] holds 1\.2379400392853803e\+27 elements, too many to allocate$/,
    );
    expectThrow(() => Tensor.zeros([2 ** 51], { dtype: 'float32' }), RangeError, /too many to allocate/);
    expectThrow(() => Tensor.from([], [2 ** 40, 2 ** 40]), RangeError, /too many to allocate/);
    // 2^50 bytes: more than any address space holds, so the allocation fails without touching memory.
    expectCode(() => Tensor.zeros([2 ** 48]), 'ERR_OUT_OF_MEMORY', /^Tensor\.zeros: out of host memory/);
    expect(Tensor.zeros([0, 2 ** 52]).numel).toBe(0);
  });

  it('error messages stay short whatever the value (a 64-dimension shape, a 100,000-character string)', () => {
    const err = expectThrow(() => Tensor.zeros([...new Array(63).fill(1), -1]), RangeError);
    expect(err.message).toBe(
      'Tensor.zeros: shape must hold non-negative integers, got [1, 1, 1, 1, 1, 1, 1, 1, ... 56 more]',
    );
    const long = expectThrow(() => Tensor.zeros([1], { dtype: 'x'.repeat(100_000) as never }), TypeError);
    expect(long.message.length).toBeLessThan(200);
  });
});
