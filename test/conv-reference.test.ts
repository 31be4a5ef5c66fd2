// Proves the causal convolution's oracle (test/helpers/conv-reference.ts): its analytic gradients
// equal central finite differences of its own forward across the option grid, the one-step update
// equals the forward run one step at a time, and a packed call equals its sequences run apart.
// None of this touches the addon.
import { describe, expect, it } from 'vitest';
import { Rng } from './helpers/random.js';
import { relErr } from './helpers/reference.js';
import {
  convRef,
  convRefBackward,
  convStateRows,
  convUpdateRef,
  type ConvRefInputs,
} from './helpers/conv-reference.js';

function randn(rng: Rng, n: number): Float64Array {
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal();
  return a;
}

interface Spec {
  batch: number;
  dim: number;
  L: number;
  W: number;
  bias: boolean;
  silu: boolean;
  initialState: boolean;
  cuSeqlens?: number[];
}

function makeInputs(spec: Spec, seed: number): ConvRefInputs {
  const rng = new Rng(seed);
  const { batch, dim, L, W } = spec;
  const inp: ConvRefInputs = { batch, dim, L, W, x: randn(rng, batch * dim * L), weight: randn(rng, dim * W) };
  if (spec.bias) inp.bias = randn(rng, dim);
  inp.silu = spec.silu;
  if (spec.cuSeqlens) inp.cuSeqlens = Int32Array.from(spec.cuSeqlens);
  if (spec.initialState) inp.initialState = randn(rng, convStateRows(inp) * dim * (W - 1));
  return inp;
}

function loss(inp: ConvRefInputs, w: Float64Array, wf: Float64Array): number {
  const { out, finalState } = convRef(inp);
  let s = 0;
  for (let i = 0; i < out.length; i++) s += out[i] * w[i];
  for (let i = 0; i < finalState.length; i++) s += finalState[i] * wf[i];
  return s;
}

function finiteDiff(inp: ConvRefInputs, arr: Float64Array, w: Float64Array, wf: Float64Array): Float64Array {
  const g = new Float64Array(arr.length);
  for (let i = 0; i < arr.length; i++) {
    const x0 = arr[i];
    const h = 1e-5 * Math.max(1, Math.abs(x0));
    arr[i] = x0 + h;
    const lp = loss(inp, w, wf);
    arr[i] = x0 - h;
    const lm = loss(inp, w, wf);
    arr[i] = x0;
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}

const SPECS: Spec[] = [];
for (const W of [1, 2, 4, 8])
  for (const L of [1, 3, 9])
    for (const opt of [0, 1, 2, 3])
      SPECS.push({ batch: 2, dim: 3, L, W, bias: (opt & 1) !== 0, silu: (opt & 2) !== 0, initialState: opt >= 2 });
for (const W of [1, 3, 4])
  SPECS.push({ batch: 1, dim: 2, L: 10, W, bias: true, silu: true, initialState: true, cuSeqlens: [0, 2, 2, 7, 10] });
SPECS.push({ batch: 1, dim: 2, L: 6, W: 4, bias: false, silu: false, initialState: false, cuSeqlens: [0, 1, 6] });

const name = (s: Spec): string =>
  `batch ${s.batch} dim ${s.dim} L ${s.L} W ${s.W}${s.bias ? ' bias' : ''}${s.silu ? ' silu' : ''}` +
  `${s.initialState ? ' initialState' : ''}${s.cuSeqlens ? ` cuSeqlens [${s.cuSeqlens.join(',')}]` : ''}`;

describe('causal conv1d reference: gradients equal finite differences', () => {
  SPECS.forEach((spec, i) => {
    it(name(spec), () => {
      const inp = makeInputs(spec, 100 + i);
      const rng = new Rng(7 + i);
      const w = randn(rng, spec.batch * spec.dim * spec.L);
      const wf = randn(rng, convStateRows(inp) * spec.dim * (spec.W - 1));
      const g = convRefBackward(inp, w, wf);
      const check = (got: Float64Array, arr: Float64Array): void => {
        const fd = finiteDiff(inp, arr, w, wf);
        expect(got.length).toBe(fd.length);
        if (fd.length > 0) expect(relErr(got, fd)).toBeLessThan(1e-7);
      };
      check(g.dx, inp.x);
      check(g.dweight, inp.weight);
      if (inp.bias) check(g.dbias, inp.bias);
      if (inp.initialState) check(g.dInitialState, inp.initialState);
      // Something flows: the checks above compare non-trivial gradients.
      expect(g.dx.some((v) => v !== 0)).toBe(true);
    });
  });
});

describe('causal conv1d reference: definitions', () => {
  it('W = 1 is a per-channel scale plus bias with zero-width states', () => {
    const inp = makeInputs({ batch: 2, dim: 3, L: 4, W: 1, bias: true, silu: false, initialState: false }, 1);
    const { out, finalState } = convRef(inp);
    expect(finalState.length).toBe(0);
    for (let b = 0; b < 2; b++)
      for (let d = 0; d < 3; d++)
        for (let t = 0; t < 4; t++) {
          const i = (b * 3 + d) * 4 + t;
          expect(out[i]).toBeCloseTo(inp.weight[d] * inp.x[i] + inp.bias![d], 12);
        }
  });

  it('finalState holds the last W - 1 inputs, reaching into initialState when L < W - 1', () => {
    const inp = makeInputs({ batch: 1, dim: 1, L: 2, W: 5, bias: false, silu: false, initialState: true }, 2);
    const { finalState } = convRef(inp);
    expect(Array.from(finalState)).toEqual([inp.initialState![2], inp.initialState![3], inp.x[0], inp.x[1]]);
  });

  it('the step equals the forward run one step at a time, with padding rows', () => {
    for (const W of [1, 2, 4, 8]) {
      const spec: Spec = { batch: 3, dim: 2, L: 6, W, bias: true, silu: true, initialState: true };
      const inp = makeInputs(spec, 30 + W);
      const { out, finalState } = convRef(inp);
      // Slots in reverse order plus a padding row (-1) that must output zeros and touch nothing.
      const slots = 4;
      const indices = Int32Array.from([2, 0, -1, 1]);
      const rows = [1, 2, 0]; // batch row behind each slot 0..2 (slot 3 unused)
      const state = new Float64Array(slots * 2 * (W - 1)).fill(42);
      for (let s = 0; s < 3; s++)
        state.set(inp.initialState!.subarray(rows[s] * 2 * (W - 1), (rows[s] + 1) * 2 * (W - 1)), s * 2 * (W - 1));
      const untouched = state.slice(3 * 2 * (W - 1));
      for (let t = 0; t < spec.L; t++) {
        const xt = new Float64Array(4 * 2);
        for (let r = 0; r < 4; r++) {
          const b = [0, 1, -1, 2][r];
          if (b >= 0) for (let d = 0; d < 2; d++) xt[r * 2 + d] = inp.x[(b * 2 + d) * spec.L + t];
          else xt.fill(9, r * 2, r * 2 + 2);
        }
        const y = convUpdateRef(state, xt, inp.weight, 4, 2, W, {
          bias: inp.bias,
          silu: true,
          stateBatchIndices: indices,
        });
        for (let r = 0; r < 4; r++) {
          const b = [0, 1, -1, 2][r];
          for (let d = 0; d < 2; d++) {
            if (b < 0) expect(y[r * 2 + d]).toBe(0);
            else expect(y[r * 2 + d]).toBeCloseTo(out[(b * 2 + d) * spec.L + t], 12);
          }
        }
      }
      for (let s = 0; s < 3; s++)
        expect(Array.from(state.subarray(s * 2 * (W - 1), (s + 1) * 2 * (W - 1)))).toEqual(
          Array.from(finalState.subarray(rows[s] * 2 * (W - 1), (rows[s] + 1) * 2 * (W - 1))),
        );
      expect(Array.from(state.subarray(3 * 2 * (W - 1)))).toEqual(Array.from(untouched));
    }
  });

  it('a packed call equals its sequences run apart (empty sequence keeps its initial state)', () => {
    const c = [0, 3, 3, 8];
    const W = 4;
    const inp = makeInputs({ batch: 1, dim: 2, L: 8, W, bias: true, silu: true, initialState: true, cuSeqlens: c }, 5);
    const { out, finalState } = convRef(inp);
    for (let i = 0; i + 1 < c.length; i++) {
      const len = c[i + 1] - c[i];
      const x = new Float64Array(2 * len);
      for (let d = 0; d < 2; d++) for (let t = 0; t < len; t++) x[d * len + t] = inp.x[d * 8 + c[i] + t];
      const init = inp.initialState!.slice(i * 2 * (W - 1), (i + 1) * 2 * (W - 1));
      const one = convRef({ ...inp, cuSeqlens: undefined, batch: 1, L: len, x, initialState: init });
      for (let d = 0; d < 2; d++)
        for (let t = 0; t < len; t++) expect(out[d * 8 + c[i] + t]).toBe(one.out[d * len + t]);
      expect(Array.from(finalState.subarray(i * 2 * (W - 1), (i + 1) * 2 * (W - 1)))).toEqual(
        Array.from(one.finalState),
      );
    }
    expect(Array.from(finalState.subarray(2 * (W - 1), 4 * (W - 1)))).toEqual(
      Array.from(inp.initialState!.subarray(2 * (W - 1), 4 * (W - 1))),
    );
  });
});
