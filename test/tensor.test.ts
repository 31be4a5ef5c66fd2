// Tensor: construction, reading back, conversions (float16/bfloat16 rounding edge cases, checked
// against the independent reference rounding), dispose, errors, one class for import and require.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Tensor, selectiveScan, selectiveScanBackward, selectiveStateUpdate } from './helpers/api.js';
import { expectCode, expectThrow } from './helpers/expect-code.js';
import { Rng } from './helpers/random.js';
import { halfBits, halfFromBits, roundHalf, type HalfDType } from './helpers/reference.js';

const HALF: HalfDType[] = ['float16', 'bfloat16'];
const ROOT = fileURLToPath(new URL('..', import.meta.url));

function hex(n: number): string {
  return `0x${n.toString(16).padStart(4, '0')}`;
}

/** Compares tensor bits with the reference encoding of each value (NaN: any NaN pattern). */
function expectBitsOf(t: Tensor, values: ArrayLike<number>, dtype: HalfDType, label: string): void {
  const bits = t.bits();
  expect(bits).toBeInstanceOf(Uint16Array);
  expect(bits.length).toBe(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (Number.isNaN(v)) {
      expect(Number.isNaN(halfFromBits(bits[i], dtype)), `${label}: NaN at ${i}, got ${hex(bits[i])}`).toBe(true);
      continue;
    }
    const want = halfBits(v, dtype);
    if (bits[i] !== want) expect(hex(bits[i]), `${label}: ${dtype} of ${v} (index ${i})`).toBe(hex(want));
  }
}

describe('Tensor basics', () => {
  it('from: shape, dtype, device, numel, values rounded to float32', () => {
    const values = [1, -2.5, 0.1, 1e-40, 3e38, 1 / 3];
    const t = Tensor.from(values, [2, 3]);
    expect([...t.shape]).toEqual([2, 3]);
    expect(t.dtype).toBe('float32');
    expect(t.device).toBe('cpu');
    expect(t.numel).toBe(6);
    expect(t.isDisposed).toBe(false);
    const d = t.dataSync();
    expect(d).toBeInstanceOf(Float32Array);
    expect(Array.from(d)).toEqual(values.map(Math.fround));
  });

  it('from accepts any ArrayLike (typed arrays, plain arrays) and an explicit cpu device', () => {
    const a = Tensor.from(new Float64Array([1.5, 2.5]), [2], { device: 'cpu' });
    const b = Tensor.from(new Int32Array([3, 4]), [1, 2], { dtype: 'float16' });
    expect(Array.from(a.dataSync())).toEqual([1.5, 2.5]);
    expect(Array.from(b.dataSync())).toEqual([3, 4]);
    expect(b.dtype).toBe('float16');
    expect([...b.shape]).toEqual([1, 2]);
  });

  it('numel is the product of the shape', () => {
    expect(Tensor.zeros([2, 3, 4]).numel).toBe(24);
    expect(Tensor.zeros([7]).numel).toBe(7);
    expect(Tensor.zeros([1, 1, 1, 5], { dtype: 'bfloat16' }).numel).toBe(5);
  });

  it('zeros in every dtype reads back zeros', () => {
    for (const dtype of ['float32', 'float16', 'bfloat16'] as const) {
      const t = Tensor.zeros([3, 5], { dtype });
      expect(t.dtype).toBe(dtype);
      expect([...t.shape]).toEqual([3, 5]);
      expect(Array.from(t.dataSync())).toEqual(new Array(15).fill(0));
      if (dtype !== 'float32') expect(Array.from(t.bits())).toEqual(new Array(15).fill(0));
    }
  });

  it('data() resolves to the same values as dataSync()', async () => {
    const rng = new Rng(1);
    for (const dtype of ['float32', 'float16', 'bfloat16'] as const) {
      const t = Tensor.from(rng.normalArray(100), [10, 10], { dtype });
      const p = t.data();
      expect(p).toBeInstanceOf(Promise);
      const d = await p;
      expect(d).toBeInstanceOf(Float32Array);
      expect(Array.from(d)).toEqual(Array.from(t.dataSync()));
    }
  });

  it('shape is read-only: changing the returned shape does not change the tensor', () => {
    const t = Tensor.zeros([2, 3]);
    try {
      (t.shape as number[])[0] = 5;
    } catch {
      // a frozen array may throw in strict mode: fine
    }
    expect([...t.shape]).toEqual([2, 3]);
    expect(t.numel).toBe(6);
  });

  it('devicePointer throws on a CPU tensor', () => {
    const t = Tensor.zeros([4]);
    expect(() => t.devicePointer).toThrow();
  });
});

describe('float16 / bfloat16 conversion from doubles', () => {
  const f16Edges: [string, number, number][] = [
    ['1', 1, 0x3c00],
    ['tie 1 + 2^-11 rounds down to even', 1 + 2 ** -11, 0x3c00],
    ['tie 1 + 3*2^-11 rounds up to even', 1 + 3 * 2 ** -11, 0x3c02],
    ['tie -(1 + 3*2^-11) rounds up in magnitude', -(1 + 3 * 2 ** -11), 0xbc02],
    ['largest finite 65504', 65504, 0x7bff],
    ['65519.99 rounds to 65504', 65519.99, 0x7bff],
    ['65520 overflows to Inf (tie, odd mantissa)', 65520, 0x7c00],
    ['-1e10 overflows to -Inf', -1e10, 0xfc00],
    ['1e300 overflows to Inf', 1e300, 0x7c00],
    ['smallest subnormal 2^-24', 2 ** -24, 0x0001],
    ['2^-25 is a tie and rounds to zero', 2 ** -25, 0x0000],
    ['2^-25 * (1 + 2^-30) rounds up to the smallest subnormal', 2 ** -25 * (1 + 2 ** -30), 0x0001],
    ['3 * 2^-26 rounds to the smallest subnormal', 3 * 2 ** -26, 0x0001],
    ['-2^-26 rounds to -0', -(2 ** -26), 0x8000],
    ['1e-300 rounds to +0', 1e-300, 0x0000],
    ['-0 stays -0', -0, 0x8000],
    ['largest subnormal', 1023 * 2 ** -24, 0x03ff],
    ['tie between largest subnormal and smallest normal goes to even (normal)', 1023.5 * 2 ** -24, 0x0400],
    ['Infinity', Infinity, 0x7c00],
    ['-Infinity', -Infinity, 0xfc00],
    ['0.1', 0.1, 0x2e66],
    ['double rounding trap: 1 + 2^-11 + 2^-40 must round up', 1 + 2 ** -11 + 2 ** -40, 0x3c01],
    ['double rounding trap in the subnormals: 2^-25 + 2^-60', 2 ** -25 + 2 ** -60, 0x0001],
  ];
  const bf16Edges: [string, number, number][] = [
    ['1', 1, 0x3f80],
    ['tie 1 + 2^-8 rounds down to even', 1 + 2 ** -8, 0x3f80],
    ['tie 1 + 3*2^-8 rounds up to even', 1 + 3 * 2 ** -8, 0x3f82],
    ['largest finite', 3.3895313892515355e38, 0x7f7f],
    ['just below the overflow tie rounds to largest finite', (2 - 2 ** -8) * 2 ** 127 * (1 - 2 ** -40), 0x7f7f],
    ['overflow tie (2 - 2^-8) * 2^127 goes to Inf', (2 - 2 ** -8) * 2 ** 127, 0x7f80],
    ['1e39 (beyond float32) is Inf', 1e39, 0x7f80],
    ['-1e39 is -Inf', -1e39, 0xff80],
    ['smallest subnormal 2^-133', 2 ** -133, 0x0001],
    ['2^-134 is a tie and rounds to zero', 2 ** -134, 0x0000],
    ['1.5 * 2^-134 rounds up to the smallest subnormal', 1.5 * 2 ** -134, 0x0001],
    ['1e-45 (below float32 subnormals) rounds to zero', 1e-45, 0x0000],
    ['-1e-300 rounds to -0', -1e-300, 0x8000],
    ['-0', -0, 0x8000],
    ['smallest normal 2^-126', 2 ** -126, 0x0080],
    ['Infinity', Infinity, 0x7f80],
    ['double rounding trap: 1 + 2^-8 + 2^-40 must round up', 1 + 2 ** -8 + 2 ** -40, 0x3f81],
    ['double rounding trap: 3 + 3*2^-7 - 2^-35 must round down', 3 + 3 * 2 ** -7 - 2 ** -35, 0x4041],
  ];

  for (const [dtype, edges] of [
    ['float16', f16Edges],
    ['bfloat16', bf16Edges],
  ] as const) {
    it(`${dtype}: edge cases round to nearest even, once, from the double`, () => {
      for (const [, x, bits] of edges) expect(hex(halfBits(x, dtype)), `reference self-check for ${x}`).toBe(hex(bits));
      const t = Tensor.from(
        edges.map((e) => e[1]),
        [edges.length],
        { dtype },
      );
      const got = t.bits();
      for (const [i, [label, , bits]] of edges.entries()) expect(hex(got[i]), label).toBe(hex(bits));
      // and dataSync decodes them
      const d = t.dataSync();
      for (const [i, [label, , bits]] of edges.entries()) expect(d[i], label).toBe(halfFromBits(bits, dtype));
      expect(Object.is(d[edges.findIndex((e) => Object.is(e[1], -0))], -0), '-0 decodes to -0').toBe(true);
    });

    it(`${dtype}: NaN converts to a NaN`, () => {
      const t = Tensor.from([NaN, 1, -NaN], [3], { dtype });
      const b = t.bits();
      expect(Number.isNaN(halfFromBits(b[0], dtype))).toBe(true);
      expect(Number.isNaN(halfFromBits(b[2], dtype))).toBe(true);
      expect(Number.isNaN(t.dataSync()[0])).toBe(true);
      expect(t.dataSync()[1]).toBe(1);
    });

    it(`${dtype}: many constructed double-rounding traps (midpoint + tiny, below float32 precision)`, () => {
      const rng = new Rng(dtype === 'float16' ? 11 : 12);
      const xs: number[] = [];
      const mant = dtype === 'float16' ? 10 : 7;
      for (let k = 0; k < 2000; k++) {
        // a representable value m * 2^e with m even (so the midpoint above ties to m, down)
        const e = Math.floor(rng.uniform(dtype === 'float16' ? -14 : -100, dtype === 'float16' ? 15 : 100));
        const m = 2 ** mant + 2 * Math.floor(rng.uniform(0, 2 ** (mant - 1) - 1));
        const ulp = 2 ** (e - mant);
        const mid = (m + 0.5) * ulp;
        const tiny = ulp * 2 ** -30; // lost when going through float32 first
        const x = (rng.next() < 0.5 ? 1 : -1) * (rng.next() < 0.5 ? mid + tiny : mid - tiny);
        expect(Math.fround(x), 'the trap: float32 rounds it onto the midpoint').toBe(x < 0 ? -mid : mid);
        xs.push(x);
      }
      expectBitsOf(Tensor.from(xs, [xs.length], { dtype }), xs, dtype, 'traps');
    });

    it(`${dtype}: 20,000 random doubles over the whole range match the reference rounding`, () => {
      const rng = new Rng(dtype === 'float16' ? 21 : 22);
      const range = dtype === 'float16' ? [-27, 17] : [-136, 129];
      const xs = Array.from(
        { length: 20000 },
        () => (rng.next() < 0.5 ? -1 : 1) * 2 ** rng.uniform(range[0], range[1]),
      );
      expectBitsOf(Tensor.from(xs, [100, 200], { dtype }), xs, dtype, 'random');
    });

    it(`${dtype}: fromBits of all 65,536 patterns decodes exactly and bits() returns them unchanged`, () => {
      const all = new Uint16Array(65536);
      for (let i = 0; i < 65536; i++) all[i] = i;
      const t = Tensor.fromBits(all, [256, 256], { dtype });
      expect(t.dtype).toBe(dtype);
      expect([...t.shape]).toEqual([256, 256]);
      const d = t.dataSync();
      let bad = -1;
      for (let i = 0; i < 65536; i++) {
        const want = halfFromBits(i, dtype);
        if (Number.isNaN(want) ? !Number.isNaN(d[i]) : !Object.is(d[i], want)) {
          bad = i;
          break;
        }
      }
      expect(bad, bad >= 0 ? `pattern ${hex(bad)} decoded to ${d[bad]}, want ${halfFromBits(bad, dtype)}` : '').toBe(
        -1,
      );
      expect(Array.from(t.bits())).toEqual(Array.from(all));
    });
  }

  it('fromBits copies its input: later changes to the array do not affect the tensor', () => {
    const bits = Uint16Array.from([0x3c00, 0x4000]);
    const t = Tensor.fromBits(bits, [2], { dtype: 'float16' });
    bits[0] = 0;
    expect(Array.from(t.dataSync())).toEqual([1, 2]);
  });
});

describe('Tensor.to', () => {
  it('float32 -> float16 / bfloat16 rounds the float32 values to nearest even', () => {
    const rng = new Rng(31);
    const vals = Array.from({ length: 5000 }, () => (rng.next() < 0.5 ? -1 : 1) * 2 ** rng.uniform(-28, 18));
    vals.push(65520, 70000, -1e6, 2 ** -25, 0, -0, Infinity);
    const t32 = Tensor.from(vals, [vals.length]);
    const f32 = t32.dataSync();
    for (const dtype of HALF) {
      const h = t32.to({ dtype });
      expect(h.dtype).toBe(dtype);
      expect(h.device).toBe('cpu');
      expect([...h.shape]).toEqual([vals.length]);
      expectBitsOf(h, f32, dtype, `float32 -> ${dtype}`);
    }
  });

  it('16-bit -> float32 is exact, and float16 <-> bfloat16 round through the exact value', () => {
    const rng = new Rng(32);
    const vals = Array.from({ length: 3000 }, () => rng.normal(0, 100));
    const h = Tensor.from(vals, [vals.length], { dtype: 'float16' });
    const hv = Array.from(h.bits(), (b) => halfFromBits(b, 'float16'));
    expect(Array.from(h.to({ dtype: 'float32' }).dataSync())).toEqual(hv);
    expectBitsOf(h.to({ dtype: 'bfloat16' }), hv, 'bfloat16', 'float16 -> bfloat16');
    const b = Tensor.from(
      vals.map((v) => v * 1e3),
      [vals.length],
      { dtype: 'bfloat16' },
    );
    const bv = Array.from(b.bits(), (x) => halfFromBits(x, 'bfloat16'));
    expect(Array.from(b.to({ dtype: 'float32' }).dataSync())).toEqual(bv);
    const bh = b.to({ dtype: 'float16' });
    expectBitsOf(bh, bv, 'float16', 'bfloat16 -> float16');
    expect(
      bv.some((v) => Math.abs(v) > 65520),
      'some values overflow float16',
    ).toBe(true);
    expect(Array.from(bh.dataSync()).some((v) => v === Infinity || v === -Infinity)).toBe(true);
  });

  it("to('cpu') and to({}) make independent copies", () => {
    const t = Tensor.from([1, 2, 3], [3], { dtype: 'bfloat16' });
    const a = t.to('cpu');
    const b = t.to({});
    const c = t.to({ device: 'cpu', dtype: 'bfloat16' });
    for (const x of [a, b, c]) {
      expect(x).toBeInstanceOf(Tensor);
      expect(x).not.toBe(t);
      expect(x.dtype).toBe('bfloat16');
      expect([...x.shape]).toEqual([3]);
    }
    t.dispose();
    for (const x of [a, b, c]) {
      expect(x.isDisposed).toBe(false);
      expect(Array.from(x.dataSync())).toEqual([1, 2, 3]);
    }
  });
});

describe('dispose', () => {
  it('dispose() marks the tensor disposed; later use throws ERR_DISPOSED', async () => {
    const t = Tensor.from([1, 2], [2], { dtype: 'float16' });
    t.dispose();
    expect(t.isDisposed).toBe(true);
    expectCode(() => t.dataSync(), 'ERR_DISPOSED');
    expectCode(() => t.bits(), 'ERR_DISPOSED');
    expectCode(() => t.to({ dtype: 'float32' }), 'ERR_DISPOSED');
    await expect((async () => t.data())()).rejects.toMatchObject({ code: 'ERR_DISPOSED' });
  });

  it('[Symbol.dispose]() disposes', () => {
    const t = Tensor.zeros([3]);
    expect(typeof t[Symbol.dispose]).toBe('function');
    t[Symbol.dispose]();
    expect(t.isDisposed).toBe(true);
    expectCode(() => t.dataSync(), 'ERR_DISPOSED');
  });

  it('disposing twice is harmless', () => {
    const t = Tensor.zeros([3]);
    t.dispose();
    expect(() => t.dispose()).not.toThrow();
    expect(() => t[Symbol.dispose]()).not.toThrow();
    expect(t.isDisposed).toBe(true);
  });

  it('disposing one tensor leaves the others alone', () => {
    const a = Tensor.from([1], [1]);
    const b = Tensor.from([2], [1]);
    a.dispose();
    expect(b.isDisposed).toBe(false);
    expect(b.dataSync()[0]).toBe(2);
  });
});

describe('Tensor errors', () => {
  it('fromBits with float32 (or no 16-bit dtype) is a TypeError', () => {
    expectThrow(() => Tensor.fromBits(new Uint16Array(2), [2], { dtype: 'float32' as never }), TypeError);
    expectThrow(() => Tensor.fromBits(new Uint16Array(2), [2], {} as never), TypeError);
  });

  it('fromBits with something other than a Uint16Array is a TypeError', () => {
    expectThrow(() => Tensor.fromBits([0x3c00, 0] as never, [2], { dtype: 'float16' }), TypeError);
    expectThrow(() => Tensor.fromBits(new Float32Array(2) as never, [2], { dtype: 'float16' }), TypeError);
  });

  it('values / bits length not matching the shape is a RangeError', () => {
    expectThrow(() => Tensor.from([1, 2, 3], [2, 2]), RangeError);
    expectThrow(() => Tensor.from([1, 2, 3, 4, 5], [2, 2], { dtype: 'bfloat16' }), RangeError);
    expectThrow(() => Tensor.fromBits(new Uint16Array(3), [2, 2], { dtype: 'float16' }), RangeError);
  });

  it('bad shapes (negative, fractional, NaN, Infinity) are RangeErrors', () => {
    for (const shape of [[-1, 2], [1.5], [NaN], [Infinity], [2, -3]]) {
      expectThrow(() => Tensor.zeros(shape), RangeError);
      expectThrow(() => Tensor.from([], shape), RangeError);
    }
  });

  it("an unknown dtype is a TypeError ('float64')", () => {
    expectThrow(() => Tensor.from([1], [1], { dtype: 'float64' as never }), TypeError);
    expectThrow(() => Tensor.zeros([1], { dtype: 'int8' as never }), TypeError);
    expectThrow(() => Tensor.zeros([1]).to({ dtype: 'float64' as never }), TypeError);
  });

  it("an unknown device ('tpu', 'cuda:x') is rejected", () => {
    for (const device of ['tpu', 'cuda:x', 'cuda:-1', 'CPU']) {
      const err = expectThrow(() => Tensor.zeros([1], { device: device as never }), Error);
      expect(err instanceof RangeError || err instanceof TypeError, `${device}: ${err.name}`).toBe(true);
    }
  });

  it('bits() on a float32 tensor is a TypeError', () => {
    expectThrow(() => Tensor.zeros([2]).bits(), TypeError);
  });
});

describe('one Tensor class', () => {
  it('tensors returned by every op are instances of Tensor', () => {
    const u = Tensor.from([0.1, 0.2, 0.3, 0.4], [1, 2, 2]);
    const delta = Tensor.from([0.1, 0.2, 0.3, 0.4], [1, 2, 2]);
    const A = Tensor.from([-1, -2], [2, 1]);
    const B = Tensor.from([1, 2], [2, 1]);
    const C = Tensor.from([1, 1], [2, 1]);
    const res = selectiveScan(u, delta, A, B, C, { returnLastState: true, saveForBackward: true });
    expect(res.out).toBeInstanceOf(Tensor);
    expect(res.lastState).toBeInstanceOf(Tensor);
    const g = selectiveScanBackward(res.ctx!, Tensor.from([1, 1, 1, 1], [1, 2, 2]));
    for (const k of ['du', 'ddelta', 'dA', 'dB', 'dC'] as const) expect(g[k], k).toBeInstanceOf(Tensor);
    const y = selectiveStateUpdate(
      Tensor.zeros([1, 2, 1]),
      Tensor.from([1, 2], [1, 2]),
      Tensor.from([0.1, 0.1], [1, 2]),
      A,
      Tensor.from([1], [1, 1]),
      Tensor.from([1], [1, 1]),
    );
    expect(y).toBeInstanceOf(Tensor);
    expect(u.to({ dtype: 'float16' })).toBeInstanceOf(Tensor);
  });

  it("import and require of 'selective-scan' give the same Tensor class", async () => {
    const require = createRequire(import.meta.url);
    const cjs = require('selective-scan');
    const esm = await import('selective-scan');
    expect(typeof cjs.Tensor).toBe('function');
    expect(esm.Tensor).toBe(cjs.Tensor);
    expect(esm.selectiveScan).toBe(cjs.selectiveScan);
    expect(cjs.Tensor.zeros([1])).toBeInstanceOf(esm.Tensor);
    expect(esm.Tensor.zeros([1])).toBeInstanceOf(cjs.Tensor);
  });

  it('the same holds in plain Node (ESM import and require in one process)', () => {
    const script = `
      import { Tensor, selectiveScan, cuda, buildInfo, setNumThreads, selectiveStateUpdate, selectiveScanBackward } from 'selective-scan';
      import { createRequire } from 'node:module';
      const require = createRequire(import.meta.url);
      const cjs = require('selective-scan');
      const t = cjs.Tensor.from([1, 2], [2]);
      console.log(JSON.stringify({
        same: cjs.Tensor === Tensor, inst: t instanceof Tensor,
        fns: [selectiveScan, selectiveScanBackward, selectiveStateUpdate, buildInfo, setNumThreads].every((f) => typeof f === 'function'),
        cuda: typeof cuda.isAvailable === 'function',
      }));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
    expect(JSON.parse(out.trim().split('\n').pop()!)).toEqual({ same: true, inst: true, fns: true, cuda: true });
  });
});

describe('rounding helper sanity (reference vs Tensor agree on a smooth range)', () => {
  it('roundHalf(x) equals the decoded tensor value for 1,000 normals', () => {
    const rng = new Rng(41);
    const xs = Array.from({ length: 1000 }, () => rng.normal(0, 10));
    for (const dtype of HALF) {
      const d = Tensor.from(xs, [1000], { dtype }).dataSync();
      for (let i = 0; i < xs.length; i++)
        if (d[i] !== roundHalf(xs[i], dtype)) expect(d[i]).toBe(roundHalf(xs[i], dtype));
    }
  });
});
