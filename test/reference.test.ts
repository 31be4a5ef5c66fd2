// Proves the oracle: the float64 reference's analytic gradients equal central finite differences of
// its own forward, across the option grid; the stepwise reference equals the scan reference; the
// float16/bfloat16 rounding helpers are right. None of this touches the addon.
import { describe, expect, it } from 'vitest';
import { Rng } from './helpers/random.js';
import {
  halfBits,
  halfFromBits,
  relErr,
  roundHalf,
  scanRef,
  scanRefBackward,
  softplus,
  stateRowCount,
  stateUpdateRef,
  type ScanRefInputs,
} from './helpers/reference.js';
import { makeStepCase, refStep } from './helpers/stepcase.js';
import { FIXED, VARYING, grouped, makeScanCase, specName, type ScanCaseSpec } from './helpers/cases.js';

type Key = 'u' | 'delta' | 'A' | 'B' | 'C' | 'D' | 'z' | 'deltaBias' | 'initialState';
const GRAD_OF: Record<Key, string> = {
  u: 'du',
  delta: 'ddelta',
  A: 'dA',
  B: 'dB',
  C: 'dC',
  D: 'dD',
  z: 'dz',
  deltaBias: 'ddeltaBias',
  initialState: 'dInitialState',
};

function loss(inp: ScanRefInputs, w: Float64Array, wl?: Float64Array): number {
  const { out, lastState } = scanRef(inp);
  let s = 0;
  for (let i = 0; i < out.length; i++) s += out[i] * w[i];
  if (wl) for (let i = 0; i < lastState.length; i++) s += lastState[i] * wl[i];
  return s;
}

/** Central differences of loss with respect to every element of inp[key]. */
function finiteDiff(inp: ScanRefInputs, key: Key, w: Float64Array, wl?: Float64Array): Float64Array {
  const arr = inp[key] as Float64Array;
  const g = new Float64Array(arr.length);
  for (let i = 0; i < arr.length; i++) {
    const x0 = arr[i];
    const h = 1e-5 * Math.max(1, Math.abs(x0));
    arr[i] = x0 + h;
    const lp = loss(inp, w, wl);
    arr[i] = x0 - h;
    const lm = loss(inp, w, wl);
    arr[i] = x0;
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}

const SMALL = { batch: 2, dim: 4, L: 7, N: 3 };
const GRID: ScanCaseSpec[] = [
  { ...SMALL, seed: 1 },
  { ...SMALL, B: VARYING, C: VARYING, seed: 2 },
  { ...SMALL, B: grouped(2), C: FIXED, D: true, seed: 3 },
  { ...SMALL, B: FIXED, C: grouped(2), z: true, seed: 4 },
  { ...SMALL, B: grouped(4), C: VARYING, deltaBias: true, softplus: true, seed: 5 },
  { ...SMALL, B: grouped(1), C: grouped(2), initialState: true, seed: 6 },
  { ...SMALL, B: VARYING, C: FIXED, lastState: true, dLastState: true, seed: 7 },
  {
    ...SMALL,
    B: grouped(2),
    C: grouped(4),
    D: true,
    z: true,
    deltaBias: true,
    softplus: true,
    initialState: true,
    lastState: true,
    dLastState: true,
    seed: 8,
  },
  { ...SMALL, B: VARYING, C: grouped(2), D: true, z: true, softplus: true, bigDelta: true, seed: 9 },
  {
    ...SMALL,
    B: FIXED,
    C: VARYING,
    D: true,
    initialState: true,
    lastState: true,
    dLastState: true,
    Apositive: true,
    seed: 10,
  },
  {
    ...SMALL,
    L: 1,
    B: grouped(2),
    C: VARYING,
    D: true,
    z: true,
    deltaBias: true,
    initialState: true,
    lastState: true,
    dLastState: true,
    seed: 11,
  },
  {
    batch: 1,
    dim: 6,
    L: 5,
    N: 2,
    B: grouped(3),
    C: grouped(2),
    z: true,
    deltaBias: true,
    initialState: true,
    seed: 12,
  },
  // Packed sequences: the boundary terms (a state replaced at each start, dLastState entering at
  // each end, dInitialState leaving at each start), empty sequences first, inside and last.
  {
    batch: 1,
    dim: 4,
    L: 9,
    N: 2,
    B: VARYING,
    C: grouped(2),
    D: true,
    z: true,
    deltaBias: true,
    softplus: true,
    initialState: true,
    lastState: true,
    dLastState: true,
    cuSeqlens: [0, 3, 3, 7, 9],
    seed: 13,
  },
  { batch: 1, dim: 3, L: 8, N: 3, lastState: true, dLastState: true, cuSeqlens: [0, 0, 5, 8, 8], seed: 14 },
  {
    batch: 1,
    dim: 4,
    L: 7,
    N: 2,
    B: grouped(2),
    C: FIXED,
    initialState: true,
    lastState: true,
    dLastState: true,
    Apositive: true,
    cuSeqlens: [0, 1, 1, 4, 7],
    seed: 15,
  },
];

describe('reference backward equals central finite differences of the reference forward', () => {
  for (const spec of GRID) {
    it(specName(spec), () => {
      const c = makeScanCase(spec);
      const rng = new Rng(1000 + spec.seed);
      const w = rng.normalArray(c.ref.u.length);
      const wl = spec.dLastState ? rng.normalArray(stateRowCount(c.ref) * spec.dim * spec.N) : undefined;
      const grads = scanRefBackward(c.ref, w, wl) as unknown as Record<string, Float64Array | undefined>;
      const keys: Key[] = ['u', 'delta', 'A', 'B', 'C', 'D', 'z', 'deltaBias', 'initialState'];
      let checked = 0;
      for (const key of keys) {
        const given = c.ref[key] !== undefined;
        const g = grads[GRAD_OF[key]];
        expect(g !== undefined, `${GRAD_OF[key]} present iff ${key} given`).toBe(given);
        if (!given || !g) continue;
        const fd = finiteDiff(c.ref, key, w, wl);
        const e = relErr(g, fd);
        expect(e, `${GRAD_OF[key]}: relative error vs finite differences`).toBeLessThan(1e-8);
        let scale = 0;
        for (const v of fd) scale = Math.max(scale, Math.abs(v));
        expect(scale, `${GRAD_OF[key]} is not trivially zero`).toBeGreaterThan(1e-3);
        for (let i = 0; i < g.length; i++) {
          expect(Math.abs(g[i] - fd[i]), `${GRAD_OF[key]}[${i}]`).toBeLessThan(1e-7 * scale + 1e-10);
        }
        checked++;
      }
      expect(checked).toBeGreaterThanOrEqual(5);
    });
  }

  it('softplus switches to the identity above 20, and its derivative (sigmoid) is used below', () => {
    expect(softplus(20.5)).toBe(20.5);
    expect(softplus(0)).toBeCloseTo(Math.LN2, 15);
    expect(softplus(-30)).toBeCloseTo(Math.exp(-30), 25);
  });
});

describe('reference forward: hand-checked values', () => {
  it('one channel, N = 1, two steps, with D, z and initial state', () => {
    const inp: ScanRefInputs = {
      batch: 1,
      dim: 1,
      L: 2,
      N: 1,
      u: Float64Array.from([1, 2]),
      delta: Float64Array.from([0.5, 0.25]),
      A: Float64Array.from([-1]),
      B: Float64Array.from([3]),
      Blayout: FIXED,
      C: Float64Array.from([2]),
      Clayout: FIXED,
      D: Float64Array.from([0.5]),
      z: Float64Array.from([0, 1]),
      initialState: Float64Array.from([4]),
    };
    const { out, lastState } = scanRef(inp);
    const h0 = Math.exp(-0.5) * 4 + 0.5 * 3 * 1;
    const h1 = Math.exp(-0.25) * h0 + 0.25 * 3 * 2;
    const silu = (x: number) => x / (1 + Math.exp(-x));
    expect(out[0]).toBeCloseTo((2 * h0 + 0.5 * 1) * silu(0), 14);
    expect(out[1]).toBeCloseTo((2 * h1 + 0.5 * 2) * silu(1), 14);
    expect(lastState[0]).toBeCloseTo(h1, 14);
  });

  it('packed sequences restart from their own state: an Inf in the first does not reach the second', () => {
    const inp: ScanRefInputs = {
      batch: 1,
      dim: 1,
      L: 3,
      N: 1,
      u: Float64Array.from([Infinity, 1, 2]),
      delta: Float64Array.from([0.5, 0.5, 0.25]),
      A: Float64Array.from([-1]),
      B: Float64Array.from([3]),
      Blayout: FIXED,
      C: Float64Array.from([2]),
      Clayout: FIXED,
      initialState: Float64Array.from([10, 4, 7]),
      cuSeqlens: Int32Array.from([0, 1, 3, 3]),
    };
    const { out, lastState } = scanRef(inp);
    const h1 = Math.exp(-0.5) * 4 + 0.5 * 3 * 1;
    const h2 = Math.exp(-0.25) * h1 + 0.25 * 3 * 2;
    expect(out[0]).toBe(Infinity);
    expect(out[1]).toBeCloseTo(2 * h1, 14);
    expect(out[2]).toBeCloseTo(2 * h2, 14);
    expect(Array.from(lastState)).toEqual([Infinity, h2, 7]);
  });
});

describe('reference step update equals the reference scan, one step at a time', () => {
  const forms: [string, 'channels' | 'heads' | 'headsScalar', number | null][] = [
    ['channels, B/C (batch, N)', 'channels', null],
    ['channels, B/C (batch, G=2, N)', 'channels', 2],
    ['heads, G=2', 'heads', 2],
    ['heads, one scalar per head, G=1', 'headsScalar', 1],
    ['heads, one scalar per head, G=2', 'headsScalar', 2],
  ];
  for (const [name, form, G] of forms) {
    it(name, () => {
      const c = makeStepCase({
        form,
        batch: 2,
        H: form === 'channels' ? 4 : 2,
        P: form === 'channels' ? 1 : 3,
        N: 3,
        L: 6,
        G,
        D: form === 'headsScalar' ? 'head' : 'channel',
        z: true,
        dtBias: true,
        softplus: true,
        seed: 77,
      });
      const scan = scanRef(c.scan);
      const state = Float64Array.from(c.init);
      const L = c.spec.L;
      for (let t = 0; t < L; t++) {
        const y = refStep(c, t, state);
        for (let i = 0; i < y.length; i++) expect(y[i]).toBeCloseTo(scan.out[i * L + t], 12);
      }
      expect(relErr(state, scan.lastState)).toBeLessThan(1e-14);
    });
  }

  it('padding rows (negative index) give y = 0 and leave the state untouched', () => {
    const rng = new Rng(5);
    const state = rng.normalArray(3 * 2 * 2);
    const before = Float64Array.from(state);
    const y = stateUpdateRef({
      form: 'channels',
      batch: 2,
      H: 2,
      P: 1,
      N: 2,
      G: null,
      state,
      x: rng.normalArray(4),
      dt: rng.uniformArray(4, 0, 1),
      A: rng.uniformArray(4, -1, 0),
      B: rng.normalArray(4),
      C: rng.normalArray(4),
      stateBatchIndices: Int32Array.from([-1, 2]),
    });
    expect(Array.from(y.slice(0, 2))).toEqual([0, 0]);
    expect(Array.from(state.slice(0, 8))).toEqual(Array.from(before.slice(0, 8)));
    expect(state.slice(8).some((v, i) => v !== before[8 + i])).toBe(true);
  });
});

describe('reference float16 / bfloat16 rounding', () => {
  it('known float16 encodings', () => {
    const cases: [number, number][] = [
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65519.99, 0x7bff],
      [65520, 0x7c00],
      [1e6, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000],
      [2 ** -25 * 1.0001, 0x0001],
      [-(2 ** -26), 0x8000],
      [2 ** -14, 0x0400],
      [2 ** -14 - 2 ** -24, 0x03ff],
      [0.1, 0x2e66],
      [1 + 2 ** -11, 0x3c00],
      [1 + 3 * 2 ** -11, 0x3c02],
      [1 + 2 ** -11 + 2 ** -40, 0x3c01],
      [-0, 0x8000],
    ];
    for (const [x, bits] of cases) expect(halfBits(x, 'float16'), `halfBits(${x})`).toBe(bits);
    expect(halfBits(NaN, 'float16') & 0x7c00).toBe(0x7c00);
    expect(halfBits(NaN, 'float16') & 0x3ff).not.toBe(0);
  });

  it('known bfloat16 encodings', () => {
    const cases: [number, number][] = [
      [1, 0x3f80],
      [-1, 0xbf80],
      [1 + 2 ** -8, 0x3f80],
      [1 + 3 * 2 ** -8, 0x3f82],
      [1 + 2 ** -8 + 2 ** -40, 0x3f81],
      [3.3895313892515355e38, 0x7f7f],
      [3.4e38, 0x7f80],
      [2 ** -133, 0x0001],
      [2 ** -134, 0x0000],
      [2 ** -126, 0x0080],
      [Infinity, 0x7f80],
      [-0, 0x8000],
    ];
    for (const [x, bits] of cases) expect(halfBits(x, 'bfloat16'), `bf16Bits(${x})`).toBe(bits);
  });

  it('decode(encode(bits)) is the identity on all non-NaN patterns of both formats', () => {
    for (const dtype of ['float16', 'bfloat16'] as const) {
      const expMask = dtype === 'float16' ? 0x7c00 : 0x7f80;
      const mantMask = dtype === 'float16' ? 0x03ff : 0x007f;
      for (let bits = 0; bits < 0x10000; bits++) {
        const v = halfFromBits(bits, dtype);
        if ((bits & expMask) === expMask && (bits & mantMask) !== 0) {
          expect(Number.isNaN(v)).toBe(true);
          continue;
        }
        if (halfBits(v, dtype) !== bits) expect(halfBits(v, dtype), `${dtype} 0x${bits.toString(16)}`).toBe(bits);
      }
    }
  });

  it('bfloat16 rounding of float32 values agrees with the float32 bit trick', () => {
    const rng = new Rng(3);
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    for (let k = 0; k < 200000; k++) {
      u[0] = (rng.next() * 2 ** 32) >>> 0;
      if (!Number.isFinite(f[0])) continue;
      const bits = u[0];
      const trick = ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
      const got = halfBits(f[0], 'bfloat16');
      if (got !== trick) expect(got, `bf16 of bits 0x${bits.toString(16)}`).toBe(trick);
    }
  });

  it('float16 rounding picks the nearest representable value (ties to even) for random doubles', () => {
    const rng = new Rng(4);
    for (let k = 0; k < 20000; k++) {
      const x = (rng.next() < 0.5 ? -1 : 1) * 2 ** rng.uniform(-27, 17);
      const r = roundHalf(x, 'float16');
      const bits = halfBits(x, 'float16');
      expect(halfFromBits(bits, 'float16')).toBe(r);
      if (!Number.isFinite(r)) {
        expect(Math.abs(x)).toBeGreaterThanOrEqual(65520);
        continue;
      }
      // neighbours in magnitude
      const mag = bits & 0x7fff;
      const up = halfFromBits(mag + 1, 'float16');
      const down = mag > 0 ? halfFromBits(mag - 1, 'float16') : 0;
      const a = Math.abs(x),
        ra = Math.abs(r);
      expect(Math.abs(a - ra)).toBeLessThanOrEqual(Math.abs(a - (Number.isFinite(up) ? up : 65536)));
      expect(Math.abs(a - ra)).toBeLessThanOrEqual(Math.abs(a - down));
    }
  });
});
