// The tests' oracle: a plain float64 reference of the selective scan (forward and analytic
// backward), of the stepwise state update, and of float16/bfloat16 rounding. Written from
// docs/API.md and docs/ARCHITECTURE.md, independently of lib/ and csrc/. Straight loops, no
// cleverness: it must be obviously right, and test/reference.test.ts proves its gradients against
// finite differences of its own forward.

// ---------------------------------------------------------------------------------------------
// Scalar helpers

/** softplus(x) = x for x > 20, log1p(exp(x)) otherwise (the API's definition). */
export function softplus(x: number): number {
  return x > 20 ? x : Math.log1p(Math.exp(x));
}

export function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

export function silu(x: number): number {
  return x * sigmoid(x);
}

// ---------------------------------------------------------------------------------------------
// Layout of B and C in the scan

/**
 * fixed: (dim, N); varying: (batch, N, L); grouped: (batch, G, N, L) where channel d uses group
 * floor(d / (dim / G)).
 */
export type BCLayout = { kind: 'fixed' } | { kind: 'varying' } | { kind: 'grouped'; G: number };

export function bcShape(layout: BCLayout, batch: number, dim: number, L: number, N: number): number[] {
  switch (layout.kind) {
    case 'fixed':
      return [dim, N];
    case 'varying':
      return [batch, N, L];
    case 'grouped':
      return [batch, layout.G, N, L];
  }
}

export function bcSize(layout: BCLayout, batch: number, dim: number, L: number, N: number): number {
  return bcShape(layout, batch, dim, L, N).reduce((a, b) => a * b, 1);
}

/** Flat index of B[b, d, n, t] (the value channel d of batch b sees for state n at time t). */
export function bcIndex(
  layout: BCLayout,
  batch: number,
  dim: number,
  L: number,
  N: number,
  b: number,
  d: number,
  n: number,
  t: number,
): number {
  void batch;
  switch (layout.kind) {
    case 'fixed':
      return d * N + n;
    case 'varying':
      return (b * N + n) * L + t;
    case 'grouped': {
      const g = Math.floor(d / (dim / layout.G));
      return ((b * layout.G + g) * N + n) * L + t;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The scan

export interface ScanRefInputs {
  batch: number;
  dim: number;
  L: number;
  N: number;
  u: Float64Array; // (batch, dim, L)
  delta: Float64Array; // (batch, dim, L)
  A: Float64Array; // (dim, N)
  B: Float64Array;
  Blayout: BCLayout;
  C: Float64Array;
  Clayout: BCLayout;
  D?: Float64Array; // (dim)
  z?: Float64Array; // (batch, dim, L)
  deltaBias?: Float64Array; // (dim)
  deltaSoftplus?: boolean;
  initialState?: Float64Array; // (rows, dim, N): rows = nseq with cuSeqlens, else batch
  /** Packed sequences (batch 1): nseq + 1 offsets; sequence i is steps [cuSeqlens[i], cuSeqlens[i + 1]). */
  cuSeqlens?: Int32Array;
}

export interface ScanRefOutputs {
  out: Float64Array; // (batch, dim, L)
  lastState: Float64Array; // (rows, dim, N)
}

export interface ScanRefGrads {
  du: Float64Array;
  ddelta: Float64Array;
  dA: Float64Array;
  dB: Float64Array;
  dC: Float64Array;
  dD?: Float64Array;
  dz?: Float64Array;
  ddeltaBias?: Float64Array;
  dInitialState?: Float64Array;
}

/** The rows of the states: nseq with cuSeqlens, else batch. */
export function stateRowCount(inp: { batch: number; cuSeqlens?: Int32Array }): number {
  return inp.cuSeqlens ? inp.cuSeqlens.length - 1 : inp.batch;
}

/**
 * The runs of batch row b that each start from their own state: with cuSeqlens one per sequence
 * (empty ones included), else the whole row; `row` indexes the states.
 */
function runsOf(inp: ScanRefInputs, b: number): { start: number; end: number; row: number }[] {
  const cu = inp.cuSeqlens;
  if (!cu) return [{ start: 0, end: inp.L, row: b }];
  if (inp.batch !== 1) throw new RangeError('scanRef: cuSeqlens needs batch 1');
  const runs = [];
  for (let i = 0; i + 1 < cu.length; i++) runs.push({ start: cu[i], end: cu[i + 1], row: i });
  return runs;
}

/** dt_t for row (b, d) at time t, and x_t = delta + deltaBias (before softplus). */
function stepDt(inp: ScanRefInputs, b: number, d: number, t: number): { x: number; dt: number } {
  const { dim, L } = inp;
  const x = inp.delta[(b * dim + d) * L + t] + (inp.deltaBias ? inp.deltaBias[d] : 0);
  const dt = inp.deltaSoftplus ? softplus(x) : x;
  return { x, dt };
}

export function scanRef(inp: ScanRefInputs): ScanRefOutputs {
  const { batch, dim, L, N } = inp;
  const out = new Float64Array(batch * dim * L);
  const lastState = new Float64Array(stateRowCount(inp) * dim * N);
  for (let b = 0; b < batch; b++) {
    for (let d = 0; d < dim; d++) {
      for (const { start, end, row } of runsOf(inp, b)) {
        const h = new Float64Array(N);
        if (inp.initialState) for (let n = 0; n < N; n++) h[n] = inp.initialState[(row * dim + d) * N + n];
        for (let t = start; t < end; t++) {
          const i = (b * dim + d) * L + t;
          const { dt } = stepDt(inp, b, d, t);
          const u = inp.u[i];
          let y = 0;
          for (let n = 0; n < N; n++) {
            const Bv = inp.B[bcIndex(inp.Blayout, batch, dim, L, N, b, d, n, t)];
            const Cv = inp.C[bcIndex(inp.Clayout, batch, dim, L, N, b, d, n, t)];
            h[n] = Math.exp(dt * inp.A[d * N + n]) * h[n] + dt * Bv * u;
            y += Cv * h[n];
          }
          if (inp.D) y += inp.D[d] * u;
          out[i] = inp.z ? y * silu(inp.z[i]) : y;
        }
        for (let n = 0; n < N; n++) lastState[(row * dim + d) * N + n] = h[n];
      }
    }
  }
  return { out, lastState };
}

/**
 * The analytic backward of scanRef (docs/ARCHITECTURE.md's formulas). dout: (batch, dim, L); dLastState:
 * (rows, dim, N) or undefined. Returns a gradient for every input that was given. With cuSeqlens each
 * sequence is swept on its own: its carry starts at its dLastState and ends as its dInitialState.
 */
export function scanRefBackward(inp: ScanRefInputs, dout: Float64Array, dLastState?: Float64Array): ScanRefGrads {
  const { batch, dim, L, N } = inp;
  const du = new Float64Array(inp.u.length);
  const ddelta = new Float64Array(inp.delta.length);
  const dA = new Float64Array(inp.A.length);
  const dB = new Float64Array(inp.B.length);
  const dC = new Float64Array(inp.C.length);
  const dD = inp.D ? new Float64Array(dim) : undefined;
  const dz = inp.z ? new Float64Array(inp.z.length) : undefined;
  const ddeltaBias = inp.deltaBias ? new Float64Array(dim) : undefined;
  const dInitialState = inp.initialState ? new Float64Array(stateRowCount(inp) * dim * N) : undefined;

  for (let b = 0; b < batch; b++) {
    for (let d = 0; d < dim; d++) {
      for (const { start, end, row } of runsOf(inp, b)) {
        // Forward again for this run, keeping every state: hs[t][n] = h_t[n], hs[-1] = h_{-1}.
        const hPrev: Float64Array[] = []; // hPrev[t] = h_{t-1}
        const hAll: Float64Array[] = []; // hAll[t] = h_t
        const yPre = new Float64Array(L); // y_t before the z gate
        let h = new Float64Array(N);
        if (inp.initialState) for (let n = 0; n < N; n++) h[n] = inp.initialState[(row * dim + d) * N + n];
        for (let t = start; t < end; t++) {
          const i = (b * dim + d) * L + t;
          const { dt } = stepDt(inp, b, d, t);
          hPrev[t] = h;
          const hn = new Float64Array(N);
          let y = 0;
          for (let n = 0; n < N; n++) {
            const Bv = inp.B[bcIndex(inp.Blayout, batch, dim, L, N, b, d, n, t)];
            const Cv = inp.C[bcIndex(inp.Clayout, batch, dim, L, N, b, d, n, t)];
            hn[n] = Math.exp(dt * inp.A[d * N + n]) * h[n] + dt * Bv * inp.u[i];
            y += Cv * hn[n];
          }
          if (inp.D) y += inp.D[d] * inp.u[i];
          yPre[t] = y;
          hAll[t] = hn;
          h = hn;
        }

        // Reverse sweep. carry[n] = a_{t+1} g_{t+1}[n] (dLastState at the end of the sequence).
        const carry = new Float64Array(N);
        if (dLastState) for (let n = 0; n < N; n++) carry[n] = dLastState[(row * dim + d) * N + n];
        for (let t = end - 1; t >= start; t--) {
          const i = (b * dim + d) * L + t;
          const { x, dt } = stepDt(inp, b, d, t);
          const u = inp.u[i];
          let dy = dout[i];
          if (inp.z && dz) {
            const zv = inp.z[i];
            const s = sigmoid(zv);
            dy = dout[i] * silu(zv);
            dz[i] = dout[i] * yPre[t] * s * (1 + zv * (1 - s));
          }
          if (dD && inp.D) dD[d] += dy * u;
          let duAcc = inp.D ? inp.D[d] * dy : 0;
          let ddt = 0;
          for (let n = 0; n < N; n++) {
            const bi = bcIndex(inp.Blayout, batch, dim, L, N, b, d, n, t);
            const ci = bcIndex(inp.Clayout, batch, dim, L, N, b, d, n, t);
            const Bv = inp.B[bi];
            const Cv = inp.C[ci];
            const An = inp.A[d * N + n];
            const a = Math.exp(dt * An);
            const g = Cv * dy + carry[n]; // g_t = dL/dh_t
            duAcc += g * dt * Bv;
            ddt += g * (Bv * u + An * a * hPrev[t][n]);
            dA[d * N + n] += g * dt * a * hPrev[t][n];
            dB[bi] += g * dt * u;
            dC[ci] += dy * hAll[t][n];
            carry[n] = a * g; // becomes a_t g_t for step t-1
          }
          du[i] = duAcc;
          const dx = inp.deltaSoftplus ? (x > 20 ? ddt : ddt * sigmoid(x)) : ddt;
          ddelta[i] = dx;
          if (ddeltaBias) ddeltaBias[d] += dx;
        }
        if (dInitialState) for (let n = 0; n < N; n++) dInitialState[(row * dim + d) * N + n] = carry[n];
      }
    }
  }
  const grads: ScanRefGrads = { du, ddelta, dA, dB, dC };
  if (dD) grads.dD = dD;
  if (dz) grads.dz = dz;
  if (ddeltaBias) grads.ddeltaBias = ddeltaBias;
  if (dInitialState) grads.dInitialState = dInitialState;
  return grads;
}

// ---------------------------------------------------------------------------------------------
// The stepwise update (selectiveStateUpdate)

/**
 * channels: state (slots, dim, N); x, dt, z (batch, dim); A (dim, N); B, C (batch, N) or
 *           (batch, G, N) (G = null means (batch, N)); D, dtBias (dim).
 * heads:    state (slots, H, P, N); x, dt, z (batch, H, P); A (H, P, N); B, C (batch, G, N);
 *           D, dtBias (H, P).
 * headsScalar: as heads but dt (batch, H), A (H), dtBias (H), D (H) or (H, P).
 * In every form dim = H * P; the channels form is described with H = dim, P = 1 (channel d uses
 * group floor(d / (dim / G)), which is then the same as the heads rule).
 */
export type StepForm = 'channels' | 'heads' | 'headsScalar';

export interface StepRefInputs {
  form: StepForm;
  batch: number;
  H: number; // channels form: H = dim, P = 1
  P: number;
  N: number;
  G: number | null; // B, C groups; null = (batch, N) (channels form only)
  state: Float64Array; // (slots, dim, N): updated in place
  x: Float64Array;
  dt: Float64Array;
  A: Float64Array;
  B: Float64Array;
  C: Float64Array;
  D?: Float64Array; // length dim, or H in headsScalar form (per-head D)
  z?: Float64Array;
  dtBias?: Float64Array;
  dtSoftplus?: boolean;
  stateBatchIndices?: Int32Array;
}

/** Returns y (batch, dim) and updates inp.state in place. */
export function stateUpdateRef(inp: StepRefInputs): Float64Array {
  const { form, batch, H, P, N } = inp;
  const dim = H * P;
  const G = inp.G ?? 1;
  const slots = inp.state.length / (dim * N);
  const y = new Float64Array(batch * dim);
  for (let i = 0; i < batch; i++) {
    const slot = inp.stateBatchIndices ? inp.stateBatchIndices[i] : i;
    if (slot < 0) continue; // padding: y = 0, no state touched
    if (slot >= slots) throw new RangeError('stateUpdateRef: slot out of range');
    for (let d = 0; d < dim; d++) {
      const h = Math.floor(d / P); // head (channels form: h = d)
      const scalar = form === 'headsScalar';
      const dtRaw = scalar ? inp.dt[i * H + h] : inp.dt[i * dim + d];
      const bias = inp.dtBias ? (scalar ? inp.dtBias[h] : inp.dtBias[d]) : 0;
      const dtv = inp.dtSoftplus ? softplus(dtRaw + bias) : dtRaw + bias;
      const g = form === 'channels' ? Math.floor(d / (dim / G)) : Math.floor(h / (H / G));
      const xv = inp.x[i * dim + d];
      let acc = 0;
      for (let n = 0; n < N; n++) {
        const An = scalar ? inp.A[h] : inp.A[d * N + n];
        const Bv = inp.B[(i * G + g) * N + n];
        const Cv = inp.C[(i * G + g) * N + n];
        const si = (slot * dim + d) * N + n;
        inp.state[si] = Math.exp(dtv * An) * inp.state[si] + dtv * Bv * xv;
        acc += Cv * inp.state[si];
      }
      if (inp.D) acc += (inp.D.length === dim ? inp.D[d] : inp.D[h]) * xv;
      y[i * dim + d] = inp.z ? acc * silu(inp.z[i * dim + d]) : acc;
    }
  }
  return y;
}

// ---------------------------------------------------------------------------------------------
// float16 / bfloat16 rounding of a double, exact arithmetic, round to nearest even

interface FloatFormat {
  expBits: number;
  mantBits: number;
  minExp: number; // exponent of the smallest normal
  maxExp: number; // exponent of the largest finite (also the bias)
}

const FORMATS: Record<'float16' | 'bfloat16', FloatFormat> = {
  float16: { expBits: 5, mantBits: 10, minExp: -14, maxExp: 15 },
  bfloat16: { expBits: 8, mantBits: 7, minExp: -126, maxExp: 127 },
};

/** floor(log2(a)) for a finite a > 0, exactly. */
function floorLog2(a: number): number {
  let e = Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  return e;
}

function roundToFormat(x: number, f: FloatFormat): number {
  if (Number.isNaN(x) || !Number.isFinite(x) || x === 0) return x; // NaN, +-Inf, +-0 as they are
  const sign = x < 0 ? -1 : 1;
  const a = Math.abs(x);
  const e = Math.max(floorLog2(a), f.minExp); // subnormals share the smallest normal's quantum
  const quantum = 2 ** (e - f.mantBits);
  const q = a / quantum; // exact: scaling by a power of two
  const fl = Math.floor(q);
  const frac = q - fl; // exact
  let r: number;
  if (frac > 0.5) r = fl + 1;
  else if (frac < 0.5) r = fl;
  else r = fl % 2 === 0 ? fl : fl + 1; // tie: to even
  const v = r * quantum;
  if (v >= 2 ** (f.maxExp + 1)) return sign * Infinity;
  return sign * v; // r = 0 gives -0 for negative x, as IEEE does
}

function encode(x: number, f: FloatFormat): number {
  const expMask = (1 << f.expBits) - 1;
  const signShift = f.expBits + f.mantBits;
  if (Number.isNaN(x)) return (expMask << f.mantBits) | (1 << (f.mantBits - 1)); // quiet NaN
  const v = roundToFormat(x, f);
  const signBit = v < 0 || Object.is(v, -0) ? 1 : 0;
  const a = Math.abs(v);
  let exp: number;
  let mant: number;
  if (a === Infinity) {
    exp = expMask;
    mant = 0;
  } else if (a === 0) {
    exp = 0;
    mant = 0;
  } else if (a < 2 ** f.minExp) {
    exp = 0;
    mant = a / 2 ** (f.minExp - f.mantBits);
  } else {
    const e = floorLog2(a);
    exp = e + f.maxExp;
    mant = a / 2 ** (e - f.mantBits) - 2 ** f.mantBits;
  }
  return ((signBit << signShift) | (exp << f.mantBits) | mant) & 0xffff;
}

function decode(bits: number, f: FloatFormat): number {
  const expMask = (1 << f.expBits) - 1;
  const sign = (bits >> (f.expBits + f.mantBits)) & 1 ? -1 : 1;
  const exp = (bits >> f.mantBits) & expMask;
  const mant = bits & ((1 << f.mantBits) - 1);
  if (exp === expMask) return mant ? NaN : sign * Infinity;
  if (exp === 0) return sign * mant * 2 ** (f.minExp - f.mantBits);
  return sign * (2 ** f.mantBits + mant) * 2 ** (exp - f.maxExp - f.mantBits);
}

export type HalfDType = 'float16' | 'bfloat16';

/** The double rounded (once, to nearest even) to float16 or bfloat16, as a double. */
export function roundHalf(x: number, dtype: HalfDType): number {
  return roundToFormat(x, FORMATS[dtype]);
}

/** The bits of x rounded to float16 / bfloat16 (NaN gives the canonical quiet NaN). */
export function halfBits(x: number, dtype: HalfDType): number {
  return encode(x, FORMATS[dtype]);
}

/** The value of float16 / bfloat16 bits. */
export function halfFromBits(bits: number, dtype: HalfDType): number {
  return decode(bits, FORMATS[dtype]);
}

export type AnyDType = 'float32' | 'float16' | 'bfloat16';

/** Rounds x to what a tensor of this dtype holds (float32: Math.fround). */
export function roundTo(x: number, dtype: AnyDType): number {
  return dtype === 'float32' ? Math.fround(x) : roundHalf(x, dtype);
}

export function roundArray(a: ArrayLike<number>, dtype: AnyDType): Float64Array {
  const r = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) r[i] = roundTo(a[i], dtype);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Comparison helpers

/** ||got - ref|| / ||ref|| (2-norms); ||got - ref|| alone when ref is zero. */
export function relErr(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (got.length !== ref.length) throw new Error(`relErr: length ${got.length} vs ${ref.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    const diff = got[i] - ref[i];
    num += diff * diff;
    den += ref[i] * ref[i];
  }
  if (Number.isNaN(num)) return NaN;
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}
