// Proves the state space dual scan's oracle (test/helpers/ssd-reference.ts): its analytic gradients
// equal central finite differences of its own forward across the options, a packed call equals its
// sequences run apart, and where no clamp applies it equals the Mamba-1 reference
// (test/helpers/reference.ts) with A repeated over P and N. None of this touches the addon.
import { describe, expect, it } from 'vitest';
import { Rng } from './helpers/random.js';
import { relErr, scanRef } from './helpers/reference.js';
import { type SsdRefInputs, ssdRef, ssdRefBackward, ssdStateRows } from './helpers/ssd-reference.js';

interface Spec {
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
  cuSeqlens?: number[];
}

function randn(rng: Rng, n: number, scale = 1): Float64Array {
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = scale * rng.normal();
  return a;
}

function makeInputs(spec: Spec, seed: number): SsdRefInputs {
  const rng = new Rng(seed);
  const { batch, L, H, P, G, N } = spec;
  const inp: SsdRefInputs = {
    batch,
    L,
    H,
    P,
    G,
    N,
    x: randn(rng, batch * L * H * P),
    // Without softplus dt stays mostly positive, so the default clamp at 0 bites only sometimes.
    dt: spec.dtSoftplus
      ? randn(rng, batch * L * H)
      : Float64Array.from(randn(rng, batch * L * H), (v) => 0.5 + 0.4 * v),
    A: Float64Array.from({ length: H }, () => -rng.uniform(0.2, 1.5)),
    B: randn(rng, batch * L * G * N),
    C: randn(rng, batch * L * G * N),
    dtSoftplus: spec.dtSoftplus ?? false,
  };
  if (spec.D) inp.D = randn(rng, spec.D === 'head' ? H : H * P);
  if (spec.z) inp.z = randn(rng, batch * L * H * P);
  if (spec.dtBias) inp.dtBias = randn(rng, H, 0.3);
  if (spec.dtLimit) inp.dtLimit = spec.dtLimit;
  if (spec.cuSeqlens) inp.cuSeqlens = Int32Array.from(spec.cuSeqlens);
  if (spec.initialState) inp.initialState = randn(rng, ssdStateRows(inp) * H * P * N);
  return inp;
}

function loss(inp: SsdRefInputs, w: Float64Array, wf: Float64Array): number {
  const { out, lastState } = ssdRef(inp);
  let s = 0;
  for (let i = 0; i < out.length; i++) s += out[i] * w[i];
  for (let i = 0; i < lastState.length; i++) s += lastState[i] * wf[i];
  return s;
}

function finiteDiff(inp: SsdRefInputs, arr: Float64Array, w: Float64Array, wf: Float64Array): Float64Array {
  const g = new Float64Array(arr.length);
  for (let i = 0; i < arr.length; i++) {
    const x0 = arr[i];
    const h = 1e-6 * Math.max(1, Math.abs(x0));
    arr[i] = x0 + h;
    const lp = loss(inp, w, wf);
    arr[i] = x0 - h;
    const lm = loss(inp, w, wf);
    arr[i] = x0;
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}

const SPECS: Spec[] = [
  { batch: 2, L: 5, H: 2, P: 3, G: 1, N: 4 },
  { batch: 2, L: 6, H: 4, P: 2, G: 2, N: 3, D: 'head', z: true, dtBias: true, dtSoftplus: true, initialState: true },
  { batch: 1, L: 7, H: 2, P: 3, G: 2, N: 5, D: 'position', dtBias: true, initialState: true },
  { batch: 2, L: 6, H: 3, P: 2, G: 3, N: 2, z: true, dtSoftplus: true, dtLimit: [0.3, 1.1] },
  { batch: 1, L: 6, H: 2, P: 2, G: 1, N: 3, D: 'position', dtBias: true, dtLimit: [0.2, 0.8], initialState: true },
  {
    batch: 1,
    L: 10,
    H: 4,
    P: 2,
    G: 2,
    N: 3,
    D: 'head',
    z: true,
    dtBias: true,
    dtSoftplus: true,
    dtLimit: [0.1, 1.5],
    initialState: true,
    cuSeqlens: [0, 3, 3, 9, 10],
  },
  { batch: 1, L: 6, H: 2, P: 2, G: 1, N: 2, cuSeqlens: [0, 1, 6] },
];

const specName = (s: Spec): string =>
  Object.entries(s)
    .map(([k, v]) => (v === true ? k : `${k} ${Array.isArray(v) ? `[${v.join(',')}]` : v}`))
    .join(' ');

describe('ssd reference: gradients equal finite differences', () => {
  SPECS.forEach((spec, i) => {
    it(specName(spec), () => {
      const inp = makeInputs(spec, 200 + i);
      const rng = new Rng(17 + i);
      const w = randn(rng, spec.batch * spec.L * spec.H * spec.P);
      const wf = randn(rng, ssdStateRows(inp) * spec.H * spec.P * spec.N);
      const g = ssdRefBackward(inp, w, wf);
      const check = (got: Float64Array | undefined, arr: Float64Array | undefined): void => {
        expect(got).toBeDefined();
        const fd = finiteDiff(inp, arr!, w, wf);
        expect(got!.length).toBe(fd.length);
        expect(relErr(got!, fd)).toBeLessThan(1e-6);
        // Something flows: the comparison is of non-trivial gradients.
        expect(fd.some((v) => v !== 0)).toBe(true);
      };
      check(g.dx, inp.x);
      check(g.ddt, inp.dt);
      check(g.dA, inp.A);
      check(g.dB, inp.B);
      check(g.dC, inp.C);
      if (inp.D) check(g.dD, inp.D);
      if (inp.z) check(g.dz, inp.z);
      if (inp.dtBias) check(g.ddtBias, inp.dtBias);
      if (inp.initialState) check(g.dInitialState, inp.initialState);
    });
  });

  it('dtLimit: dt clamped on both sides, and its gradient is zero exactly there', () => {
    const spec: Spec = { batch: 2, L: 8, H: 2, P: 2, G: 1, N: 3, dtBias: true, dtLimit: [0.3, 0.7] };
    const inp = makeInputs(spec, 9);
    const w = randn(new Rng(10), inp.x.length);
    const g = ssdRefBackward(inp, w);
    let below = 0;
    let above = 0;
    for (let i = 0; i < inp.dt.length; i++) {
      const v = inp.dt[i] + inp.dtBias![i % spec.H];
      if (v < 0.3 || v > 0.7) expect(Math.abs(g.ddt[i])).toBe(0);
      else expect(g.ddt[i]).not.toBe(0);
      if (v < 0.3) below++;
      if (v > 0.7) above++;
    }
    expect(below).toBeGreaterThan(0);
    expect(above).toBeGreaterThan(0);
  });
});

describe('ssd reference: definitions', () => {
  it('a packed call equals its sequences run apart (an empty sequence keeps its initial state)', () => {
    const c = [0, 4, 4, 9];
    const [H, P, G, N] = [2, 2, 1, 3];
    const inp = makeInputs(
      {
        batch: 1,
        L: 9,
        H,
        P,
        G,
        N,
        D: 'head',
        z: true,
        dtBias: true,
        dtSoftplus: true,
        initialState: true,
        cuSeqlens: c,
      },
      5,
    );
    const { out, lastState } = ssdRef(inp);
    const state = H * P * N;
    for (let i = 0; i + 1 < c.length; i++) {
      const [a, e] = [c[i], c[i + 1]];
      const sl = (arr: Float64Array, width: number) => arr.slice(a * width, e * width);
      const init = inp.initialState!.slice(i * state, (i + 1) * state);
      const one = ssdRef({
        ...inp,
        cuSeqlens: undefined,
        L: e - a,
        x: sl(inp.x, H * P),
        z: sl(inp.z!, H * P),
        dt: sl(inp.dt, H),
        B: sl(inp.B, G * N),
        C: sl(inp.C, G * N),
        initialState: init,
      });
      expect(Array.from(sl(out, H * P))).toEqual(Array.from(one.out));
      expect(Array.from(lastState.slice(i * state, (i + 1) * state))).toEqual(Array.from(one.lastState));
      if (a === e) expect(Array.from(one.lastState)).toEqual(Array.from(init));
    }
  });

  it('equals the Mamba-1 reference with A repeated over P and N (softplus, no clamp)', () => {
    const [batch, L, H, P, G, N] = [2, 7, 4, 3, 2, 5];
    const inp = makeInputs(
      { batch, L, H, P, G, N, D: 'position', z: true, dtBias: true, dtSoftplus: true, initialState: true },
      6,
    );
    const dim = H * P;
    // Mamba-1's layout: (batch, dim, L) rows, B/C (batch, G, N, L), states (batch, dim, N).
    const rows = (a: Float64Array, perHead: boolean) => {
      const r = new Float64Array(batch * dim * L);
      for (let b = 0; b < batch; b++)
        for (let d = 0; d < dim; d++)
          for (let t = 0; t < L; t++)
            r[(b * dim + d) * L + t] = perHead ? a[(b * L + t) * H + Math.floor(d / P)] : a[(b * L + t) * dim + d];
      return r;
    };
    const groups = (a: Float64Array) => {
      const r = new Float64Array(batch * G * N * L);
      for (let b = 0; b < batch; b++)
        for (let g = 0; g < G; g++)
          for (let n = 0; n < N; n++)
            for (let t = 0; t < L; t++) r[((b * G + g) * N + n) * L + t] = a[((b * L + t) * G + g) * N + n];
      return r;
    };
    const m1 = scanRef({
      batch,
      dim,
      L,
      N,
      u: rows(inp.x, false),
      delta: rows(inp.dt, true),
      A: Float64Array.from({ length: dim * N }, (_, i) => inp.A[Math.floor(i / N / P)]),
      B: groups(inp.B),
      Blayout: { kind: 'grouped', G },
      C: groups(inp.C),
      Clayout: { kind: 'grouped', G },
      D: inp.D,
      z: rows(inp.z!, false),
      deltaBias: Float64Array.from({ length: dim }, (_, d) => inp.dtBias![Math.floor(d / P)]),
      deltaSoftplus: true,
      initialState: inp.initialState,
    });
    const ssd = ssdRef(inp);
    expect(relErr(rows(ssd.out, false), m1.out)).toBeLessThan(1e-12);
    expect(relErr(ssd.lastState, m1.lastState)).toBeLessThan(1e-12);
  });
});
