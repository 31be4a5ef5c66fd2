// ssdScan / ssdScanBackward on the CPU backend: every option against the float64 reference
// (test/helpers/ssd-reference.ts) in float32, float16 and bfloat16; L steps of the heads form of
// selectiveStateUpdate against the forward; against selectiveScan with A repeated over P and N,
// where no clamp applies (softplus on); packed sequences against separate calls; bit-identical
// results across thread counts; errors.
import { afterAll, describe, expect, it } from 'vitest';
import {
  Tensor,
  buildInfo,
  selectiveScan,
  selectiveScanBackward,
  selectiveStateUpdate,
  setNumThreads,
  ssdScan,
  ssdScanBackward,
} from './helpers/api.js';
import { Rng } from './helpers/random.js';
import { type AnyDType, relErr, roundArray } from './helpers/reference.js';
import { type SsdRefInputs, ssdRef, ssdRefBackward, ssdStateRows } from './helpers/ssd-reference.js';

interface Sizes {
  b: number;
  L: number;
  H: number;
  P: number;
  G: number;
  N: number;
}

function inputs(s: Sizes, seed: number) {
  const rng = new Rng(seed);
  const { b, L, H, P, G, N } = s;
  return {
    x: rng.normalArray(b * L * H * P),
    dt: rng.normalArray(b * L * H),
    A: rng.uniformArray(H, -1.5, -0.2),
    B: rng.normalArray(b * L * G * N),
    C: rng.normalArray(b * L * G * N),
    D: rng.normalArray(H * P),
    z: rng.normalArray(b * L * H * P),
    dtBias: rng.uniformArray(H, -0.5, 0.5),
    h0: rng.normalArray(b * H * P * N),
    dout: rng.normalArray(b * L * H * P),
    dLast: rng.normalArray(b * H * P * N),
  };
}

const t = (v: ArrayLike<number>, shape: number[]) => Tensor.from(v, shape);

describe('ssdScan equals selectiveScan with A repeated over P and N', () => {
  for (const s of [
    { b: 2, L: 70, H: 4, P: 3, G: 2, N: 5 },
    { b: 1, L: 150, H: 2, P: 20, G: 1, N: 17 },
  ]) {
    it(`forward and every gradient at ${JSON.stringify(s)}`, () => {
      const { b, L, H, P, G, N } = s;
      const dim = H * P;
      const v = inputs(s, 7 + L);
      const ssd = ssdScan(
        t(v.x, [b, L, H, P]),
        t(v.dt, [b, L, H]),
        t(v.A, [H]),
        t(v.B, [b, L, G, N]),
        t(v.C, [b, L, G, N]),
        {
          D: t(v.D, [H, P]),
          z: t(v.z, [b, L, H, P]),
          dtBias: t(v.dtBias, [H]),
          dtSoftplus: true,
          initialState: t(v.h0, [b, H, P, N]),
          returnLastState: true,
          saveForBackward: true,
        },
      );
      // The same in Mamba-1's layout: (batch, dim, L) rows, B/C (batch, G, N, L).
      const toRows = (a: ArrayLike<number>, perHead: boolean) => {
        const r = new Float64Array(b * dim * L);
        for (let i = 0; i < b; i++)
          for (let h = 0; h < H; h++)
            for (let p = 0; p < P; p++)
              for (let k = 0; k < L; k++)
                r[(i * dim + h * P + p) * L + k] = perHead ? a[(i * L + k) * H + h] : a[((i * L + k) * H + h) * P + p];
        return r;
      };
      const toGroups = (a: ArrayLike<number>) => {
        const r = new Float64Array(b * G * N * L);
        for (let i = 0; i < b; i++)
          for (let g = 0; g < G; g++)
            for (let n = 0; n < N; n++)
              for (let k = 0; k < L; k++) r[((i * G + g) * N + n) * L + k] = a[((i * L + k) * G + g) * N + n];
        return r;
      };
      const Arep = Float64Array.from({ length: dim * N }, (_, i) => v.A[Math.floor(i / N / P)]);
      const biasRep = Float64Array.from({ length: dim }, (_, d) => v.dtBias[Math.floor(d / P)]);
      const m1 = selectiveScan(
        t(toRows(v.x, false), [b, dim, L]),
        t(toRows(v.dt, true), [b, dim, L]),
        t(Arep, [dim, N]),
        t(toGroups(v.B), [b, G, N, L]),
        t(toGroups(v.C), [b, G, N, L]),
        {
          D: t(v.D, [dim]),
          z: t(toRows(v.z, false), [b, dim, L]),
          deltaBias: t(biasRep, [dim]),
          deltaSoftplus: true,
          initialState: t(v.h0, [b, dim, N]),
          returnLastState: true,
          saveForBackward: true,
        },
      );
      expect(relErr(toRows(ssd.out.dataSync(), false), m1.out.dataSync())).toBeLessThan(1e-5);
      expect(relErr(ssd.lastState!.dataSync(), m1.lastState!.dataSync())).toBeLessThan(1e-5);

      const g2 = ssdScanBackward(ssd.ctx!, t(v.dout, [b, L, H, P]), { dLastState: t(v.dLast, [b, H, P, N]) });
      const g1 = selectiveScanBackward(m1.ctx!, t(toRows(v.dout, false), [b, dim, L]), {
        dLastState: t(v.dLast, [b, dim, N]),
      });
      expect(relErr(toRows(g2.dx.dataSync(), false), g1.du.dataSync())).toBeLessThan(1e-4);
      expect(relErr(toRows(g2.dz!.dataSync(), false), g1.dz!.dataSync())).toBeLessThan(1e-4);
      // Per-head gradients are sums over the head's channels (and states).
      const ddt = new Float64Array(b * L * H);
      const ddelta = g1.ddelta.dataSync();
      for (let i = 0; i < b; i++)
        for (let h = 0; h < H; h++)
          for (let p = 0; p < P; p++)
            for (let k = 0; k < L; k++) ddt[(i * L + k) * H + h] += ddelta[(i * dim + h * P + p) * L + k];
      expect(relErr(g2.ddt.dataSync(), ddt)).toBeLessThan(1e-4);
      const dA = new Float64Array(H);
      g1.dA.dataSync().forEach((g, i) => {
        dA[Math.floor(i / N / P)] += g;
      });
      expect(relErr(g2.dA.dataSync(), dA)).toBeLessThan(1e-4);
      const dBias = new Float64Array(H);
      g1.ddeltaBias!.dataSync().forEach((g, d) => {
        dBias[Math.floor(d / P)] += g;
      });
      expect(relErr(g2.ddtBias!.dataSync(), dBias)).toBeLessThan(1e-4);
      expect(relErr(toGroups(g2.dB.dataSync()), g1.dB.dataSync())).toBeLessThan(1e-4);
      expect(relErr(toGroups(g2.dC.dataSync()), g1.dC.dataSync())).toBeLessThan(1e-4);
      expect(relErr(g2.dD!.dataSync(), g1.dD!.dataSync())).toBeLessThan(1e-4);
      expect(relErr(g2.dInitialState!.dataSync(), g1.dInitialState!.dataSync())).toBeLessThan(1e-4);
    });
  }
});

describe('ssdScan with cuSeqlens', () => {
  it('equals separate calls, states and gradients per sequence (empty sequences included)', () => {
    const [H, P, G, N] = [4, 5, 2, 6];
    const lengths = [37, 0, 70, 1, 0, 65];
    const L = lengths.reduce((a, c) => a + c, 0);
    const offsets = Int32Array.from([0, ...lengths.map((_, i) => lengths.slice(0, i + 1).reduce((a, c) => a + c, 0))]);
    const nseq = lengths.length;
    const v = inputs({ b: 1, L, H, P, G, N }, 3);
    const h0 = new Rng(5).normalArray(nseq * H * P * N);
    const dLast = new Rng(6).normalArray(nseq * H * P * N);
    const opts = {
      D: t(v.D.slice(0, H), [H]),
      dtBias: t(v.dtBias, [H]),
      dtSoftplus: true,
      dtLimit: [0.05, 2] as [number, number],
    };
    const packed = ssdScan(
      t(v.x, [1, L, H, P]),
      t(v.dt, [1, L, H]),
      t(v.A, [H]),
      t(v.B, [1, L, G, N]),
      t(v.C, [1, L, G, N]),
      {
        ...opts,
        z: t(v.z, [1, L, H, P]),
        initialState: t(h0, [nseq, H, P, N]),
        returnLastState: true,
        cuSeqlens: offsets,
        saveForBackward: true,
      },
    );
    const gp = ssdScanBackward(packed.ctx!, t(v.dout, [1, L, H, P]), { dLastState: t(dLast, [nseq, H, P, N]) });
    const state = H * P * N;
    for (let i = 0; i < nseq; i++) {
      const [a, e] = [offsets[i]!, offsets[i + 1]!];
      const h0i = t(h0.slice(i * state, (i + 1) * state), [1, H, P, N]);
      const dLi = t(dLast.slice(i * state, (i + 1) * state), [1, H, P, N]);
      const packedState = packed.lastState!.dataSync().slice(i * state, (i + 1) * state);
      const packedDh0 = gp.dInitialState!.dataSync().slice(i * state, (i + 1) * state);
      if (a === e) {
        expect(Array.from(packedState)).toEqual(Array.from(h0i.dataSync()));
        expect(Array.from(packedDh0)).toEqual(Array.from(dLi.dataSync()));
        continue;
      }
      const n = e - a;
      const sl = (arr: Float64Array, w: number) => arr.slice(a * w, e * w);
      const one = ssdScan(
        t(sl(v.x, H * P), [1, n, H, P]),
        t(sl(v.dt, H), [1, n, H]),
        t(v.A, [H]),
        t(sl(v.B, G * N), [1, n, G, N]),
        t(sl(v.C, G * N), [1, n, G, N]),
        {
          ...opts,
          z: t(sl(v.z, H * P), [1, n, H, P]),
          initialState: h0i,
          returnLastState: true,
          saveForBackward: true,
        },
      );
      const go = ssdScanBackward(one.ctx!, t(sl(v.dout, H * P), [1, n, H, P]), { dLastState: dLi });
      const part = (x: Float32Array, w: number) => Array.from(x.slice(a * w, e * w));
      expect(part(packed.out.dataSync(), H * P)).toEqual(Array.from(one.out.dataSync()));
      expect(Array.from(packedState)).toEqual(Array.from(one.lastState!.dataSync()));
      expect(part(gp.dx.dataSync(), H * P)).toEqual(Array.from(go.dx.dataSync()));
      expect(part(gp.ddt.dataSync(), H)).toEqual(Array.from(go.ddt.dataSync()));
      expect(part(gp.dB.dataSync(), G * N)).toEqual(Array.from(go.dB.dataSync()));
      expect(part(gp.dC.dataSync(), G * N)).toEqual(Array.from(go.dC.dataSync()));
      expect(Array.from(packedDh0)).toEqual(Array.from(go.dInitialState!.dataSync()));
    }
  });
});

describe('ssdScan errors', () => {
  const s = { b: 1, L: 4, H: 4, P: 2, G: 2, N: 3 };
  const v = inputs(s, 1);
  const args = () =>
    [t(v.x, [1, 4, 4, 2]), t(v.dt, [1, 4, 4]), t(v.A, [4]), t(v.B, [1, 4, 2, 3]), t(v.C, [1, 4, 2, 3])] as const;
  it('names the argument, expected and given', () => {
    const [x, dt, A, B, C] = args();
    expect(() => ssdScan(x, dt, A, t(new Float64Array(36), [1, 4, 3, 3]), C)).toThrow(
      /^ssdScan: B has G=3 groups, which must divide H=4/,
    );
    expect(() => ssdScan(x, dt, t([1, 2], [2]), B, C)).toThrow(/^ssdScan: A must have shape \[H=4\]/);
    expect(() => ssdScan(x, dt, A, B, C, { dtLimit: [1, 0] })).toThrow(RangeError);
    expect(() => ssdScan(x, dt, A, B, C, { dtLimit: [Number.NaN, 1] })).toThrow(/dtLimit/);
    expect(() => ssdScan(x, dt, A, B, C, { cuSeqlens: Int32Array.from([0, 3]) })).toThrow(/must end at L=4/);
    expect(() => ssdScan(x, dt, A, B, C, { cuSeqlens: Int32Array.from([0, 3, 2, 4]) })).toThrow(/never decrease/);
    const big = t(new Float64Array(4 * 2 * 257), [1, 4, 2, 257]);
    expect(() => ssdScan(x, dt, A, big, big)).toThrow(/N must be at most 256/);
    expect(() => ssdScan(x, dt, A, B, C, { D: t([1, 2, 3], [3]) })).toThrow(/^ssdScan: D must have shape/);
  });
});

describe('ssdScan options', () => {
  const s = { b: 2, L: 90, H: 4, P: 3, G: 2, N: 5 };
  const v = inputs(s, 11);
  const run = (dtype: 'float32' | 'float16' | 'bfloat16', opts: Record<string, unknown> = {}) => {
    const T = (a: ArrayLike<number>, shape: number[]) => Tensor.from(a, shape, { dtype });
    const r = ssdScan(
      T(v.x, [2, 90, 4, 3]),
      T(v.dt, [2, 90, 4]),
      t(v.A, [4]),
      T(v.B, [2, 90, 2, 5]),
      T(v.C, [2, 90, 2, 5]),
      { dtBias: t(v.dtBias, [4]), ...opts, saveForBackward: true },
    );
    const g = ssdScanBackward(r.ctx!, T(v.dout, [2, 90, 4, 3]));
    return { out: r.out.dataSync(), g };
  };

  it('float16 and bfloat16 agree with float32 on the same rounded inputs within 1e-2', () => {
    for (const dtype of ['float16', 'bfloat16'] as const) {
      const half = run(dtype, { dtSoftplus: true });
      // float32 fed the values the 16-bit tensors hold.
      const rounded = (a: Float64Array, shape: number[]) => Tensor.from(a, shape, { dtype }).dataSync();
      const r = ssdScan(
        t(rounded(v.x, [2, 90, 4, 3]), [2, 90, 4, 3]),
        t(rounded(v.dt, [2, 90, 4]), [2, 90, 4]),
        t(v.A, [4]),
        t(rounded(v.B, [2, 90, 2, 5]), [2, 90, 2, 5]),
        t(rounded(v.C, [2, 90, 2, 5]), [2, 90, 2, 5]),
        { dtBias: t(v.dtBias, [4]), dtSoftplus: true },
      );
      expect(relErr(half.out, r.out.dataSync())).toBeLessThan(1e-2);
    }
  });

  it('dtLimit: no gradient flows to dt where the clamp applies; the default clamps negative dt to 0', () => {
    const clamped = run('float32', { dtLimit: [100, 200] });
    expect(clamped.g.ddt.dataSync().every((x) => x === 0)).toBe(true);
    expect(clamped.g.ddtBias!.dataSync().every((x) => x === 0)).toBe(true);
    // Without softplus, dt + dtBias < 0 is clamped to 0: the same as dt raised to 0 where negative.
    const base = run('float32');
    const ddt = base.g.ddt.dataSync();
    const bias = v.dtBias;
    for (let i = 0; i < ddt.length; i++)
      if (Math.fround(v.dt[i]!) + Math.fround(bias[i % 4]!) < 0) expect(Math.abs(ddt[i]!)).toBe(0);
    expect(ddt.some((x) => x !== 0)).toBe(true);
  });

  it('is deterministic: the same bits on every run', () => {
    const a = run('float32', { dtSoftplus: true });
    const b = run('float32', { dtSoftplus: true });
    expect(Array.from(a.out)).toEqual(Array.from(b.out));
    for (const k of ['dx', 'ddt', 'dA', 'dB', 'dC'] as const)
      expect(Array.from(a.g[k].dataSync())).toEqual(Array.from(b.g[k].dataSync()));
  });
});

// ---- Against the float64 reference -----------------------------------------------------------------

interface RefSpec {
  batch: number;
  L: number;
  H: number;
  P: number;
  G: number;
  N: number;
  D?: 'head' | 'position';
  z?: boolean;
  dtBias?: boolean;
  dtSoftplus?: boolean;
  dtLimit?: [number, number];
  initialState?: boolean;
  dLastState?: boolean;
  cuSeqlens?: number[];
}

/** Inputs of a spec as the reference takes them, every value already what a `dtype` tensor holds. */
function refInputs(spec: RefSpec, seed: number, dtype: AnyDType) {
  const rng = new Rng(seed);
  const { batch, L, H, P, G, N } = spec;
  const r = (a: ArrayLike<number>) => roundArray(a, dtype);
  const f = (a: ArrayLike<number>) => roundArray(a, 'float32');
  const inp: SsdRefInputs = {
    batch,
    L,
    H,
    P,
    G,
    N,
    x: r(rng.normalArray(batch * L * H * P)),
    // Without softplus, dt mostly positive so that the default clamp at 0 bites only sometimes.
    dt: r(spec.dtSoftplus ? rng.normalArray(batch * L * H) : rng.uniformArray(batch * L * H, -0.2, 1)),
    A: f(rng.uniformArray(H, -1.5, -0.2)),
    B: r(rng.normalArray(batch * L * G * N)),
    C: r(rng.normalArray(batch * L * G * N)),
    dtSoftplus: spec.dtSoftplus ?? false,
  };
  if (spec.D) inp.D = f(rng.normalArray(spec.D === 'head' ? H : H * P));
  if (spec.z) inp.z = r(rng.normalArray(batch * L * H * P));
  if (spec.dtBias) inp.dtBias = f(rng.uniformArray(H, -0.3, 0.3));
  if (spec.dtLimit) inp.dtLimit = spec.dtLimit;
  if (spec.cuSeqlens) inp.cuSeqlens = Int32Array.from(spec.cuSeqlens);
  const rows = ssdStateRows(inp);
  if (spec.initialState) inp.initialState = f(rng.normalArray(rows * H * P * N));
  const dout = r(rng.normalArray(batch * L * H * P));
  const dLastState = spec.dLastState ? f(rng.normalArray(rows * H * P * N)) : undefined;
  return { inp, dout, dLastState };
}

/** The op on the reference's inputs: forward (with lastState) and backward. */
function runOp(spec: RefSpec, inp: SsdRefInputs, dout: Float64Array, dLast: Float64Array | undefined, dtype: AnyDType) {
  const { batch, L, H, P, G, N } = spec;
  const T = (a: ArrayLike<number>, shape: number[]) => Tensor.from(a, shape, { dtype });
  const rows = ssdStateRows(inp);
  const r = ssdScan(
    T(inp.x, [batch, L, H, P]),
    T(inp.dt, [batch, L, H]),
    t(inp.A, [H]),
    T(inp.B, [batch, L, G, N]),
    T(inp.C, [batch, L, G, N]),
    {
      D: inp.D && t(inp.D, spec.D === 'head' ? [H] : [H, P]),
      z: inp.z && T(inp.z, [batch, L, H, P]),
      dtBias: inp.dtBias && t(inp.dtBias, [H]),
      dtSoftplus: inp.dtSoftplus,
      dtLimit: inp.dtLimit,
      initialState: inp.initialState && t(inp.initialState, [rows, H, P, N]),
      cuSeqlens: inp.cuSeqlens,
      returnLastState: true,
      saveForBackward: true,
    },
  );
  const g = ssdScanBackward(r.ctx!, T(dout, [batch, L, H, P]), {
    dLastState: dLast && t(dLast, [rows, H, P, N]),
  });
  return { out: r.out.dataSync(), lastState: r.lastState!.dataSync(), g };
}

// L crosses the CPU backend's chunks (64 steps), P its vectors (up to 16 lanes), N is odd.
const REF_SPECS: RefSpec[] = [
  { batch: 2, L: 150, H: 2, P: 20, G: 1, N: 17 },
  {
    batch: 2,
    L: 70,
    H: 4,
    P: 3,
    G: 2,
    N: 5,
    D: 'head',
    z: true,
    dtBias: true,
    dtSoftplus: true,
    initialState: true,
    dLastState: true,
  },
  { batch: 1, L: 130, H: 3, P: 17, G: 3, N: 9, D: 'position', dtBias: true, initialState: true },
  { batch: 2, L: 65, H: 4, P: 2, G: 1, N: 8, z: true, dtSoftplus: true, dtLimit: [0.3, 1.1], dLastState: true },
  { batch: 1, L: 90, H: 2, P: 5, G: 2, N: 4, D: 'position', dtBias: true, dtLimit: [0.2, 0.8], initialState: true },
  {
    batch: 1,
    L: 200,
    H: 4,
    P: 3,
    G: 2,
    N: 6,
    D: 'head',
    z: true,
    dtBias: true,
    dtSoftplus: true,
    dtLimit: [0.1, 1.5],
    initialState: true,
    dLastState: true,
    cuSeqlens: [0, 37, 37, 107, 108, 108, 200],
  },
];

const refName = (s: RefSpec): string =>
  Object.entries(s)
    .map(([k, v]) => (v === true ? k : `${k} ${Array.isArray(v) ? `[${v.join(',')}]` : v}`))
    .join(' ');

function compare(spec: RefSpec, seed: number, dtype: AnyDType, fwdTol: number, gradTol: number) {
  const { inp, dout, dLastState } = refInputs(spec, seed, dtype);
  const ref = ssdRef(inp);
  const rg = ssdRefBackward(inp, dout, dLastState);
  const op = runOp(spec, inp, dout, dLastState, dtype);
  expect(relErr(op.out, ref.out)).toBeLessThan(fwdTol);
  expect(relErr(op.lastState, ref.lastState)).toBeLessThan(fwdTol);
  const grad = (name: string, got: Tensor | undefined, want: Float64Array | undefined) => {
    expect(got, name).toBeDefined();
    expect(relErr(got!.dataSync(), want!), name).toBeLessThan(gradTol);
  };
  grad('dx', op.g.dx, rg.dx);
  grad('ddt', op.g.ddt, rg.ddt);
  grad('dA', op.g.dA, rg.dA);
  grad('dB', op.g.dB, rg.dB);
  grad('dC', op.g.dC, rg.dC);
  if (inp.D) grad('dD', op.g.dD, rg.dD);
  if (inp.z) grad('dz', op.g.dz, rg.dz);
  if (inp.dtBias) grad('ddtBias', op.g.ddtBias, rg.ddtBias);
  if (inp.initialState) grad('dInitialState', op.g.dInitialState, rg.dInitialState);
  // The clamp: where it applies the gradient to dt is exactly zero.
  if (inp.dtLimit) {
    const ddt = op.g.ddt.dataSync();
    expect(ddt.some((v, i) => v === 0 && rg.ddt[i] === 0)).toBe(true);
    ddt.forEach((v, i) => {
      if (rg.ddt[i] === 0) expect(Math.abs(v)).toBe(0);
    });
  }
}

describe('ssdScan against the float64 reference', () => {
  REF_SPECS.forEach((spec, i) => {
    it(`float32 ${refName(spec)}`, () => compare(spec, 300 + i, 'float32', 1e-5, 1e-4));
  });
  for (const dtype of ['float16', 'bfloat16'] as const) {
    it(`${dtype}: the reference fed the rounded inputs, within 1e-2`, () => {
      compare(REF_SPECS[1]!, 400, dtype, 1e-2, 1e-2);
      compare(REF_SPECS[5]!, 401, dtype, 1e-2, 1e-2);
    });
  }
});

describe('ssdScan and the step', () => {
  it('L steps of the heads form of selectiveStateUpdate equal the forward (softplus on)', () => {
    const spec: RefSpec = {
      batch: 2,
      L: 70,
      H: 4,
      P: 5,
      G: 2,
      N: 6,
      D: 'head',
      z: true,
      dtBias: true,
      dtSoftplus: true,
      initialState: true,
    };
    const { batch, L, H, P, G, N } = spec;
    const { inp } = refInputs(spec, 500, 'float32');
    const ref = ssdRef(inp);
    const fwd = ssdScan(
      t(inp.x, [batch, L, H, P]),
      t(inp.dt, [batch, L, H]),
      t(inp.A, [H]),
      t(inp.B, [batch, L, G, N]),
      t(inp.C, [batch, L, G, N]),
      {
        D: t(inp.D!, [H]),
        z: t(inp.z!, [batch, L, H, P]),
        dtBias: t(inp.dtBias!, [H]),
        dtSoftplus: true,
        initialState: t(inp.initialState!, [batch, H, P, N]),
        returnLastState: true,
      },
    );
    const state = t(inp.initialState!, [batch, H, P, N]);
    const out = new Float64Array(batch * L * H * P);
    const step = (a: Float64Array, width: number, k: number) => {
      const r = new Float64Array(batch * width);
      for (let b = 0; b < batch; b++) r.set(a.subarray((b * L + k) * width, (b * L + k + 1) * width), b * width);
      return r;
    };
    for (let k = 0; k < L; k++) {
      const y = selectiveStateUpdate(
        state,
        t(step(inp.x, H * P, k), [batch, H, P]),
        t(step(inp.dt, H, k), [batch, H]),
        t(inp.A, [H]),
        t(step(inp.B, G * N, k), [batch, G, N]),
        t(step(inp.C, G * N, k), [batch, G, N]),
        {
          D: t(inp.D!, [H]),
          z: t(step(inp.z!, H * P, k), [batch, H, P]),
          dtBias: t(inp.dtBias!, [H]),
          dtSoftplus: true,
        },
      ).dataSync();
      for (let b = 0; b < batch; b++) out.set(y.subarray(b * H * P, (b + 1) * H * P), (b * L + k) * H * P);
    }
    expect(relErr(out, ref.out)).toBeLessThan(1e-5);
    expect(relErr(out, fwd.out.dataSync())).toBeLessThan(1e-5);
    expect(relErr(state.dataSync(), ref.lastState)).toBeLessThan(1e-5);
    expect(relErr(state.dataSync(), fwd.lastState!.dataSync())).toBeLessThan(1e-5);
  });
});

describe('ssdScan across thread counts', () => {
  const initial = buildInfo().cpuThreads;
  afterAll(() => setNumThreads(initial));
  it('the same bits with 1, 2, 3 and 8 threads (forward and every gradient)', () => {
    const spec = REF_SPECS[5]!;
    const { inp, dout, dLastState } = refInputs(spec, 600, 'float32');
    const runs = [1, 2, 3, 8].map((n) => {
      setNumThreads(n);
      const r = runOp(spec, inp, dout, dLastState, 'float32');
      return [r.out, r.lastState, ...Object.values(r.g).map((g) => (g as Tensor).dataSync())].map((a) => Array.from(a));
    });
    for (const r of runs.slice(1)) expect(r).toEqual(runs[0]);
  });
});
