// selectiveScan and selectiveScanBackward on the CPU backend against the float64 reference, across
// the option grid and the three dtypes.
import { describe, expect, it } from 'vitest';
import { Tensor, ScanContext, selectiveScan, selectiveScanBackward } from './helpers/api.js';
import { FIXED, VARYING, grouped, makeScanCase, specName, type ScanCaseSpec } from './helpers/cases.js';
import { caseTensors, checkCase, expectBitsEqual, referenceOf, runAddon, scanOpts } from './helpers/run.js';
import { halfBits, type HalfDType } from './helpers/reference.js';

const ALL = {
  D: true,
  z: true,
  deltaBias: true,
  softplus: true,
  initialState: true,
  lastState: true,
  dLastState: true,
};

const FLOAT32_GRID: ScanCaseSpec[] = [
  { batch: 2, dim: 3, L: 1, N: 1, seed: 101 },
  { batch: 2, dim: 4, L: 300, N: 16, B: VARYING, C: VARYING, D: true, z: true, seed: 102 },
  { batch: 2, dim: 4, L: 700, N: 16, B: grouped(2), C: FIXED, deltaBias: true, softplus: true, seed: 103 },
  {
    batch: 2,
    dim: 4,
    L: 257,
    N: 33,
    B: FIXED,
    C: grouped(4),
    initialState: true,
    lastState: true,
    dLastState: true,
    seed: 104,
  },
  { batch: 2, dim: 4, L: 64, N: 16, B: grouped(1), C: VARYING, ...ALL, seed: 105 },
  { batch: 1, dim: 2, L: 300, N: 256, B: VARYING, C: grouped(2), D: true, softplus: true, lastState: true, seed: 106 },
  { batch: 2, dim: 8, L: 33, N: 8, B: grouped(8), C: grouped(2), ...ALL, seed: 107 },
  {
    batch: 2,
    dim: 4,
    L: 48,
    N: 16,
    B: VARYING,
    C: FIXED,
    D: true,
    z: true,
    initialState: true,
    lastState: true,
    dLastState: true,
    Apositive: true,
    seed: 108,
  },
  { batch: 2, dim: 4, L: 40, N: 4, B: grouped(2), C: VARYING, D: true, softplus: true, bigDelta: true, seed: 109 },
  { batch: 3, dim: 4, L: 1, N: 16, B: grouped(2), C: grouped(4), ...ALL, seed: 110 },
  { batch: 2, dim: 4, L: 100, N: 16, B: FIXED, C: FIXED, initialState: true, seed: 111 },
  { batch: 2, dim: 4, L: 100, N: 16, B: VARYING, C: VARYING, lastState: true, seed: 112 },
  { batch: 1, dim: 2, L: 2100, N: 4, B: grouped(2), C: VARYING, ...ALL, seed: 113 },
  { batch: 1, dim: 3, L: 5, N: 256, B: FIXED, C: VARYING, z: true, initialState: true, seed: 114 },
  { batch: 1, dim: 2, L: 5000, N: 16, B: VARYING, C: grouped(1), ...ALL, seed: 115 },
];

const HALF_GRID: Omit<ScanCaseSpec, 'dtype'>[] = [
  { batch: 2, dim: 4, L: 1, N: 16, B: VARYING, C: FIXED, ...ALL, seed: 201 },
  { batch: 2, dim: 4, L: 300, N: 16, B: grouped(2), C: VARYING, D: true, z: true, softplus: true, seed: 202 },
  {
    batch: 2,
    dim: 4,
    L: 700,
    N: 33,
    B: FIXED,
    C: grouped(4),
    deltaBias: true,
    initialState: true,
    lastState: true,
    dLastState: true,
    seed: 203,
  },
  { batch: 1, dim: 2, L: 300, N: 256, B: VARYING, C: VARYING, ...ALL, seed: 204 },
  { batch: 2, dim: 4, L: 64, N: 1, B: grouped(4), C: grouped(1), D: true, z: true, seed: 205 },
];

describe('selectiveScan + backward vs the float64 reference, float32', () => {
  for (const spec of FLOAT32_GRID) {
    it(specName(spec), () => checkCase(spec), 30000);
  }
});

for (const dtype of ['float16', 'bfloat16'] as const) {
  describe(`selectiveScan + backward vs the float64 reference fed the same rounded inputs, ${dtype}`, () => {
    for (const s of HALF_GRID) {
      const spec = { ...s, dtype, seed: s.seed + (dtype === 'float16' ? 0 : 50) };
      it(specName(spec), () => checkCase(spec), 30000);
    }
  });
}

describe('forward results and context', () => {
  it('no ctx unless saveForBackward, ctx is a ScanContext when asked; no lastState unless asked', () => {
    const c = makeScanCase({ batch: 1, dim: 2, L: 5, N: 4, seed: 301 });
    const t = caseTensors(c);
    const plain = selectiveScan(t.u, t.delta, t.A, t.B, t.C);
    expect(plain.ctx).toBeUndefined();
    expect(plain.lastState).toBeUndefined();
    const saved = selectiveScan(t.u, t.delta, t.A, t.B, t.C, {
      ...scanOpts(c, t, true),
      returnLastState: true,
    } as never);
    expect(saved.ctx).toBeInstanceOf(ScanContext);
    expect(saved.lastState).toBeInstanceOf(Tensor);
    expect(Array.from(saved.out.dataSync())).toEqual(Array.from(plain.out.dataSync()));
  });

  it('the inputs are not modified by forward or backward', () => {
    const c = makeScanCase({ batch: 2, dim: 4, L: 20, N: 4, B: VARYING, C: grouped(2), ...ALL, seed: 302 });
    const t = caseTensors(c);
    const before = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, Array.from((v as Tensor).dataSync())]));
    const res = selectiveScan(t.u, t.delta, t.A, t.B, t.C, scanOpts(c, t) as never);
    res.out.dataSync();
    const g = selectiveScanBackward(res.ctx!, t.dout, { dLastState: t.dLastState });
    for (const v of Object.values(g)) if (v) (v as Tensor).dataSync();
    expect(Object.keys(g).length).toBe(9);
    for (const [k, v] of Object.entries(t)) {
      expect(Array.from((v as Tensor).dataSync()), k).toEqual(before[k]);
    }
  });
});

describe('more forward/backward properties', () => {
  it('B, C of shape (batch, 1, N, L) give bit-identical results to (batch, N, L)', () => {
    const spec: ScanCaseSpec = { batch: 2, dim: 4, L: 77, N: 16, B: VARYING, C: VARYING, ...ALL, seed: 311 };
    const a = runAddon(makeScanCase(spec));
    const b = runAddon(makeScanCase({ ...spec, B: grouped(1), C: grouped(1) }));
    expectBitsEqual(b.out, a.out, 'out');
    expectBitsEqual(b.lastState!, a.lastState!, 'lastState');
    for (const g of Object.keys(a.grads)) expectBitsEqual(b.grads[g], a.grads[g], g);
    expect([...b.gradTensors.dB.shape]).toEqual([2, 1, 16, 77]);
    expect([...a.gradTensors.dB.shape]).toEqual([2, 16, 77]);
  });

  it('zero dout and no dLastState give gradients that are exactly zero', () => {
    const c = makeScanCase({
      batch: 2,
      dim: 4,
      L: 50,
      N: 8,
      B: grouped(2),
      C: FIXED,
      D: true,
      z: true,
      deltaBias: true,
      softplus: true,
      initialState: true,
      seed: 312,
    });
    c.dout.fill(0);
    const got = runAddon(c);
    expect(Object.keys(got.grads).length).toBe(9);
    for (const [g, v] of Object.entries(got.grads))
      expect(
        v.every((x) => x === 0),
        `${g} all zero`,
      ).toBe(true);
  });

  it('forward outputs do not depend on saveForBackward or returnLastState (bit for bit)', () => {
    const c = makeScanCase({
      batch: 2,
      dim: 4,
      L: 300,
      N: 16,
      B: VARYING,
      C: grouped(2),
      D: true,
      z: true,
      softplus: true,
      initialState: true,
      seed: 313,
    });
    const t = caseTensors(c);
    const base = scanOpts(c, t, false);
    const a = selectiveScan(t.u, t.delta, t.A, t.B, t.C, base as never).out.dataSync();
    const b = selectiveScan(t.u, t.delta, t.A, t.B, t.C, {
      ...base,
      saveForBackward: true,
      returnLastState: true,
    } as never).out.dataSync();
    expectBitsEqual(b, a, 'out');
  });

  for (const dtype of ['float16', 'bfloat16'] as HalfDType[]) {
    it(`${dtype} outputs and gradients are the float32 result rounded once to nearest (not truncated)`, () => {
      const c = makeScanCase({
        batch: 2,
        dim: 8,
        L: 400,
        N: 16,
        dtype,
        B: VARYING,
        C: VARYING,
        D: true,
        z: true,
        softplus: true,
        seed: 314,
      });
      const got = runAddon(c);
      const ref = referenceOf(c);
      const pairs: [string, Tensor, ArrayLike<number>][] = [
        ['out', got.outTensor, ref.fwd.out],
        ['du', got.gradTensors.du, ref.grads.du],
        ['dz', got.gradTensors.dz, ref.grads.dz!],
        ['dB', got.gradTensors.dB, ref.grads.dB],
      ];
      for (const [name, t, r] of pairs) {
        const bits = t.bits();
        let rms = 0;
        for (let i = 0; i < r.length; i++) rms += r[i] * r[i];
        rms = Math.sqrt(rms / r.length);
        let inexact = 0,
          far = 0;
        for (let i = 0; i < r.length; i++) {
          const want = halfBits(r[i], dtype);
          if (bits[i] === want) continue;
          inexact++;
          // same sign, one unit in the last place apart, where the value is not tiny
          if (Math.abs(r[i]) > 1e-2 * rms && Math.abs(bits[i] - want) > 1) far++;
        }
        expect(far, `${name}: elements more than one ulp from the rounded reference`).toBe(0);
        expect(inexact / r.length, `${name}: fraction not equal to the correctly rounded reference`).toBeLessThan(0.05);
      }
    });
  }
});
