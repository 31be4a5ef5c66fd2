// The oracle of the causal depthwise convolution: a plain float64 forward, analytic backward and
// one-step update, written from the API's definition and independent of lib/ and csrc/.
// test/conv-reference.test.ts proves the backward against finite differences of the forward and
// the step against the forward run one step at a time.
//
//   xs = initialState ‖ x along time (zeros in place of a missing initialState)
//   p_t = bias[d] + sum_{k<W} weight[d,k] * xs[t+k]      (xs[t+W-1] is x_t)
//   out_t = silu(p_t) or p_t;  finalState[j] = xs[L+j], j < W-1
//
// With cuSeqlens (batch 1) every sequence restarts the window from its own initialState row.
import { sigmoid, silu } from './reference.js';

export interface ConvRefInputs {
  batch: number;
  dim: number;
  L: number;
  W: number;
  /** (batch, dim, L) */
  x: Float64Array;
  /** (dim, W) */
  weight: Float64Array;
  /** (dim) */
  bias?: Float64Array;
  silu?: boolean;
  /** (rows, dim, W - 1): rows = batch, or nseq with cuSeqlens */
  initialState?: Float64Array;
  cuSeqlens?: Int32Array;
}

interface Segment {
  b: number; // batch row of x
  row: number; // state row
  t0: number;
  len: number;
}

function segments(inp: ConvRefInputs): Segment[] {
  const segs: Segment[] = [];
  if (inp.cuSeqlens) {
    const c = inp.cuSeqlens;
    for (let i = 0; i + 1 < c.length; i++) segs.push({ b: 0, row: i, t0: c[i], len: c[i + 1] - c[i] });
  } else {
    for (let b = 0; b < inp.batch; b++) segs.push({ b, row: b, t0: 0, len: inp.L });
  }
  return segs;
}

/** Number of state rows: batch, or nseq with cuSeqlens. */
export function convStateRows(inp: ConvRefInputs): number {
  return inp.cuSeqlens ? inp.cuSeqlens.length - 1 : inp.batch;
}

/** xs(j) of one segment and channel: j < 0 reads the initial state, j >= 0 reads x. */
function xsAt(inp: ConvRefInputs, s: Segment, d: number, j: number): number {
  const { dim, L, W } = inp;
  if (j >= 0) return inp.x[(s.b * dim + d) * L + s.t0 + j];
  return inp.initialState ? inp.initialState[(s.row * dim + d) * (W - 1) + W - 1 + j] : 0;
}

function preact(inp: ConvRefInputs, s: Segment, d: number, j: number): number {
  const W = inp.W;
  let p = inp.bias ? inp.bias[d] : 0;
  for (let k = 0; k < W; k++) p += inp.weight[d * W + k] * xsAt(inp, s, d, j - (W - 1) + k);
  return p;
}

export function convRef(inp: ConvRefInputs): { out: Float64Array; finalState: Float64Array } {
  const { batch, dim, L, W } = inp;
  const out = new Float64Array(batch * dim * L);
  const finalState = new Float64Array(convStateRows(inp) * dim * (W - 1));
  for (const s of segments(inp)) {
    for (let d = 0; d < dim; d++) {
      for (let j = 0; j < s.len; j++) {
        const p = preact(inp, s, d, j);
        out[(s.b * dim + d) * L + s.t0 + j] = inp.silu ? silu(p) : p;
      }
      for (let i = 0; i < W - 1; i++)
        finalState[(s.row * dim + d) * (W - 1) + i] = xsAt(inp, s, d, s.len - (W - 1) + i);
    }
  }
  return { out, finalState };
}

export interface ConvRefGrads {
  dx: Float64Array;
  dweight: Float64Array;
  dbias: Float64Array;
  dInitialState: Float64Array;
}

/** Gradients of sum(out * dout) + sum(finalState * dFinalState). */
export function convRefBackward(inp: ConvRefInputs, dout: Float64Array, dFinalState?: Float64Array): ConvRefGrads {
  const { batch, dim, L, W } = inp;
  const dx = new Float64Array(batch * dim * L);
  const dweight = new Float64Array(dim * W);
  const dbias = new Float64Array(dim);
  const dInitialState = new Float64Array(convStateRows(inp) * dim * (W - 1));
  for (const s of segments(inp)) {
    for (let d = 0; d < dim; d++) {
      // dxs(j) lands in dx for j >= 0 and in dInitialState for j < 0.
      const addXs = (j: number, g: number): void => {
        if (j >= 0) dx[(s.b * dim + d) * L + s.t0 + j] += g;
        else dInitialState[(s.row * dim + d) * (W - 1) + W - 1 + j] += g;
      };
      for (let j = 0; j < s.len; j++) {
        const p = preact(inp, s, d, j);
        const g = dout[(s.b * dim + d) * L + s.t0 + j];
        const sg = sigmoid(p);
        const dp = inp.silu ? g * sg * (1 + p * (1 - sg)) : g;
        dbias[d] += dp;
        for (let k = 0; k < W; k++) {
          const jj = j - (W - 1) + k;
          dweight[d * W + k] += dp * xsAt(inp, s, d, jj);
          addXs(jj, dp * inp.weight[d * W + k]);
        }
      }
      if (dFinalState)
        for (let i = 0; i < W - 1; i++) addXs(s.len - (W - 1) + i, dFinalState[(s.row * dim + d) * (W - 1) + i]);
    }
  }
  return { dx, dweight, dbias, dInitialState };
}

/**
 * One decoding step: x (batch, dim), convState (slots, dim, W - 1) shifted in place. Row b uses
 * slot stateBatchIndices[b] (b without them); a negative index outputs zeros and leaves the state.
 */
export function convUpdateRef(
  convState: Float64Array,
  x: Float64Array,
  weight: Float64Array,
  batch: number,
  dim: number,
  W: number,
  opts: { bias?: Float64Array; silu?: boolean; stateBatchIndices?: Int32Array } = {},
): Float64Array {
  const out = new Float64Array(batch * dim);
  for (let b = 0; b < batch; b++) {
    const slot = opts.stateBatchIndices ? opts.stateBatchIndices[b] : b;
    if (slot < 0) continue;
    for (let d = 0; d < dim; d++) {
      const base = (slot * dim + d) * (W - 1);
      const window = [...convState.subarray(base, base + W - 1), x[b * dim + d]];
      let p = opts.bias ? opts.bias[d] : 0;
      for (let k = 0; k < W; k++) p += weight[d * W + k] * window[k];
      out[b * dim + d] = opts.silu ? silu(p) : p;
      for (let i = 0; i < W - 1; i++) convState[base + i] = window[i + 1];
    }
  }
  return out;
}
