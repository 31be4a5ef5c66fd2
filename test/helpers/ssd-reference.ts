// The oracle of Mamba-2's state space dual scan (ssdScan): a plain float64 forward and analytic
// backward of the recurrence (not the chunked form), written from the API's definition and
// independent of lib/ and csrc/. test/ssd-reference.test.ts proves the backward against finite
// differences of the forward.
//
// For batch row b, step t, head h (group g = floor(h / (H / G))), position p, state n:
//   v_t  = dt[b,t,h] + dtBias[h];  s_t = softplus(v_t) or v_t
//   dt_t = clamp(s_t, lo, hi)                  (d dt_t / d s_t = 0 where s_t < lo or s_t > hi)
//   h_t[p,n] = exp(dt_t A[h]) h_{t-1}[p,n] + dt_t x[b,t,h,p] B[b,t,g,n]
//   y_t[p]   = sum_n C[b,t,g,n] h_t[p,n] + D x[b,t,h,p];   out = y_t silu(z[b,t,h,p]) with z
// With cuSeqlens (batch 1) every sequence starts from its own initialState row and ends in its own
// lastState row.
import { sigmoid, silu, softplus } from './reference.js';

export interface SsdRefInputs {
  batch: number;
  L: number;
  H: number;
  P: number;
  G: number;
  N: number;
  /** (batch, L, H, P) */
  x: Float64Array;
  /** (batch, L, H) */
  dt: Float64Array;
  /** (H) */
  A: Float64Array;
  /** (batch, L, G, N) */
  B: Float64Array;
  C: Float64Array;
  /** (H) or (H * P) */
  D?: Float64Array;
  /** (batch, L, H, P) */
  z?: Float64Array;
  /** (H) */
  dtBias?: Float64Array;
  dtSoftplus?: boolean;
  /** default [0, Infinity] */
  dtLimit?: [number, number];
  /** (rows, H, P, N): rows = batch, or nseq with cuSeqlens */
  initialState?: Float64Array;
  cuSeqlens?: Int32Array;
}

export interface SsdRefOutputs {
  /** (batch, L, H, P) */
  out: Float64Array;
  /** (rows, H, P, N) */
  lastState: Float64Array;
}

export interface SsdRefGrads {
  dx: Float64Array;
  ddt: Float64Array;
  dA: Float64Array;
  dB: Float64Array;
  dC: Float64Array;
  /** like D */
  dD?: Float64Array;
  dz?: Float64Array;
  ddtBias?: Float64Array;
  /** (rows, H, P, N), always returned (the gradient of a zero initial state where none is given) */
  dInitialState: Float64Array;
}

/** Number of state rows: batch, or nseq with cuSeqlens. */
export function ssdStateRows(inp: SsdRefInputs): number {
  return inp.cuSeqlens ? inp.cuSeqlens.length - 1 : inp.batch;
}

interface Segment {
  b: number; // batch row
  row: number; // state row
  t0: number;
  t1: number;
}

function segments(inp: SsdRefInputs): Segment[] {
  const segs: Segment[] = [];
  if (inp.cuSeqlens) {
    const c = inp.cuSeqlens;
    for (let i = 0; i + 1 < c.length; i++) segs.push({ b: 0, row: i, t0: c[i], t1: c[i + 1] });
  } else {
    for (let b = 0; b < inp.batch; b++) segs.push({ b, row: b, t0: 0, t1: inp.L });
  }
  return segs;
}

/** dt_t after bias, softplus and clamp, and d dt_t / d dt[b,t,h]. */
function effectiveDt(inp: SsdRefInputs, b: number, t: number, h: number): { dt: number; grad: number } {
  const [lo, hi] = inp.dtLimit ?? [0, Number.POSITIVE_INFINITY];
  const v = inp.dt[(b * inp.L + t) * inp.H + h] + (inp.dtBias ? inp.dtBias[h] : 0);
  const s = inp.dtSoftplus ? softplus(v) : v;
  if (s < lo) return { dt: lo, grad: 0 };
  if (s > hi) return { dt: hi, grad: 0 };
  return { dt: s, grad: inp.dtSoftplus ? (v > 20 ? 1 : sigmoid(v)) : 1 };
}

function dAt(inp: SsdRefInputs, h: number, p: number): number {
  if (!inp.D) return 0;
  return inp.D.length === inp.H ? inp.D[h] : inp.D[h * inp.P + p];
}

// Index helpers.
const xi = (inp: SsdRefInputs, b: number, t: number, h: number, p: number) => ((b * inp.L + t) * inp.H + h) * inp.P + p;
const bci = (inp: SsdRefInputs, b: number, t: number, g: number, n: number) =>
  ((b * inp.L + t) * inp.G + g) * inp.N + n;
const si = (inp: SsdRefInputs, row: number, h: number, p: number, n: number) =>
  ((row * inp.H + h) * inp.P + p) * inp.N + n;

/** The states h_t of one (segment, head, position), t0 <= t < t1, as [t - t0][n]. */
function statesOf(inp: SsdRefInputs, seg: Segment, h: number, p: number): Float64Array {
  const { N, A } = inp;
  const g = Math.floor(h / (inp.H / inp.G));
  const states = new Float64Array((seg.t1 - seg.t0) * N);
  const state = new Float64Array(N);
  for (let n = 0; n < N; n++) state[n] = inp.initialState ? inp.initialState[si(inp, seg.row, h, p, n)] : 0;
  for (let t = seg.t0; t < seg.t1; t++) {
    const { dt } = effectiveDt(inp, seg.b, t, h);
    const a = Math.exp(dt * A[h]);
    const xv = inp.x[xi(inp, seg.b, t, h, p)];
    for (let n = 0; n < N; n++) {
      state[n] = a * state[n] + dt * xv * inp.B[bci(inp, seg.b, t, g, n)];
      states[(t - seg.t0) * N + n] = state[n];
    }
  }
  return states;
}

export function ssdRef(inp: SsdRefInputs): SsdRefOutputs {
  const { batch, L, H, P, G, N } = inp;
  const out = new Float64Array(batch * L * H * P);
  const lastState = new Float64Array(ssdStateRows(inp) * H * P * N);
  for (const seg of segments(inp)) {
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / G));
      for (let p = 0; p < P; p++) {
        const states = statesOf(inp, seg, h, p);
        for (let t = seg.t0; t < seg.t1; t++) {
          const i = xi(inp, seg.b, t, h, p);
          let y = dAt(inp, h, p) * inp.x[i];
          for (let n = 0; n < N; n++) y += inp.C[bci(inp, seg.b, t, g, n)] * states[(t - seg.t0) * N + n];
          out[i] = inp.z ? y * silu(inp.z[i]) : y;
        }
        for (let n = 0; n < N; n++) {
          const len = seg.t1 - seg.t0;
          lastState[si(inp, seg.row, h, p, n)] =
            len > 0 ? states[(len - 1) * N + n] : inp.initialState ? inp.initialState[si(inp, seg.row, h, p, n)] : 0;
        }
      }
    }
  }
  return { out, lastState };
}

/** Gradients of sum(out * dout) + sum(lastState * dLastState). */
export function ssdRefBackward(inp: SsdRefInputs, dout: Float64Array, dLastState?: Float64Array): SsdRefGrads {
  const { batch, L, H, P, G, N, A } = inp;
  const dx = new Float64Array(inp.x.length);
  const ddt = new Float64Array(inp.dt.length);
  const dA = new Float64Array(H);
  const dB = new Float64Array(inp.B.length);
  const dC = new Float64Array(inp.C.length);
  const dD = inp.D ? new Float64Array(inp.D.length) : undefined;
  const dz = inp.z ? new Float64Array(inp.z.length) : undefined;
  const dInitialState = new Float64Array(ssdStateRows(inp) * H * P * N);
  // Gradient with respect to dt_t (after the clamp), summed over positions; chained at the end.
  const dDtEff = new Float64Array(batch * L * H);
  const adj = new Float64Array(N);
  for (const seg of segments(inp)) {
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / G));
      for (let p = 0; p < P; p++) {
        const states = statesOf(inp, seg, h, p);
        for (let n = 0; n < N; n++) adj[n] = dLastState ? dLastState[si(inp, seg.row, h, p, n)] : 0;
        for (let t = seg.t1 - 1; t >= seg.t0; t--) {
          const i = xi(inp, seg.b, t, h, p);
          const xv = inp.x[i];
          const { dt } = effectiveDt(inp, seg.b, t, h);
          const a = Math.exp(dt * A[h]);
          const ht = (n: number) => states[(t - seg.t0) * N + n];
          const hPrev = (n: number) =>
            t > seg.t0
              ? states[(t - 1 - seg.t0) * N + n]
              : inp.initialState
                ? inp.initialState[si(inp, seg.row, h, p, n)]
                : 0;
          // The gate.
          let dy = dout[i];
          if (inp.z && dz) {
            let y = dAt(inp, h, p) * xv;
            for (let n = 0; n < N; n++) y += inp.C[bci(inp, seg.b, t, g, n)] * ht(n);
            const zv = inp.z[i];
            const sg = sigmoid(zv);
            dz[i] = dy * y * sg * (1 + zv * (1 - sg));
            dy *= silu(zv);
          }
          // y_t = C . h_t + D x.
          if (dD) {
            if (inp.D!.length === H) dD[h] += dy * xv;
            else dD[h * P + p] += dy * xv;
          }
          dx[i] += dAt(inp, h, p) * dy;
          for (let n = 0; n < N; n++) {
            const c = bci(inp, seg.b, t, g, n);
            dC[c] += dy * ht(n);
            adj[n] += inp.C[c] * dy;
          }
          // h_t = a h_{t-1} + dt x B, with a = exp(dt A).
          let dDt = 0;
          for (let n = 0; n < N; n++) {
            const c = bci(inp, seg.b, t, g, n);
            const Bv = inp.B[c];
            dB[c] += adj[n] * dt * xv;
            dx[i] += adj[n] * dt * Bv;
            dDt += adj[n] * (xv * Bv + A[h] * a * hPrev(n));
            dA[h] += adj[n] * dt * a * hPrev(n);
            adj[n] *= a;
          }
          dDtEff[(seg.b * L + t) * H + h] += dDt;
        }
        for (let n = 0; n < N; n++) dInitialState[si(inp, seg.row, h, p, n)] = adj[n];
      }
    }
  }
  const ddtBias = inp.dtBias ? new Float64Array(H) : undefined;
  for (const seg of segments(inp)) {
    for (let t = seg.t0; t < seg.t1; t++) {
      for (let h = 0; h < H; h++) {
        const k = (seg.b * L + t) * H + h;
        ddt[k] = dDtEff[k] * effectiveDt(inp, seg.b, t, h).grad;
        if (ddtBias) ddtBias[h] += ddt[k];
      }
    }
  }
  const grads: SsdRefGrads = { dx, ddt, dA, dB, dC, dInitialState };
  if (dD) grads.dD = dD;
  if (dz) grads.dz = dz;
  if (ddtBias) grads.ddtBias = ddtBias;
  return grads;
}
