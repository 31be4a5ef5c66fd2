// Random inputs for L steps of selectiveStateUpdate in one of the three forms of docs/API.md, with the
// equivalent inputs of one scan (channel d = h * P + p).
import { Rng } from './random.js';
import {
  roundArray,
  stateUpdateRef,
  type AnyDType,
  type ScanRefInputs,
  type StepForm,
  type StepRefInputs,
} from './reference.js';
import { VARYING, grouped } from './cases.js';

export interface StepCaseSpec {
  form: StepForm;
  batch: number;
  H: number; // channels form: dim
  P: number; // channels form: 1
  N: number;
  L: number;
  G: number | null; // null: B, C of shape (batch, N) (channels form only)
  dtype?: AnyDType;
  D?: 'channel' | 'head'; // D (dim)/(H, P) or, in headsScalar form only, (H)
  z?: boolean;
  dtBias?: boolean;
  softplus?: boolean;
  seed: number;
}

export interface StepCase {
  spec: StepCaseSpec;
  dtype: AnyDType;
  dim: number;
  xs: Float64Array[];
  dts: Float64Array[];
  zs: Float64Array[];
  Bs: Float64Array[];
  Cs: Float64Array[];
  A: Float64Array;
  D?: Float64Array;
  dtBias?: Float64Array;
  init: Float64Array; // (batch, dim, N)
  shapes: { state: number[]; x: number[]; dt: number[]; A: number[]; B: number[]; D: number[]; dtBias: number[] };
  scan: ScanRefInputs; // the same computation as one scan with initialState
}

export function makeStepCase(spec: StepCaseSpec): StepCase {
  const rng = new Rng(spec.seed);
  const { form, batch, H, P, N, L } = spec;
  const dtype = spec.dtype ?? 'float32';
  const dim = H * P;
  const Gs = spec.G ?? 1;
  const scalar = form === 'headsScalar';
  const dtLen = batch * (scalar ? H : dim);
  const xs: Float64Array[] = [],
    dts: Float64Array[] = [],
    zs: Float64Array[] = [];
  const Bs: Float64Array[] = [],
    Cs: Float64Array[] = [];
  for (let t = 0; t < L; t++) {
    xs.push(roundArray(rng.normalArray(batch * dim), dtype));
    dts.push(roundArray(spec.softplus ? rng.uniformArray(dtLen, -3, 0) : rng.uniformArray(dtLen, 0, 0.5), dtype));
    zs.push(roundArray(rng.normalArray(batch * dim), dtype));
    Bs.push(roundArray(rng.normalArray(batch * Gs * N), dtype));
    Cs.push(roundArray(rng.normalArray(batch * Gs * N), dtype));
  }
  const A = roundArray(
    Float64Array.from({ length: scalar ? H : dim * N }, () => -Math.exp(rng.uniform(-1, 1))),
    'float32',
  );
  const c: StepCase = {
    spec,
    dtype,
    dim,
    xs,
    dts,
    zs,
    Bs,
    Cs,
    A,
    init: roundArray(rng.normalArray(batch * dim * N), 'float32'),
    shapes:
      form === 'channels'
        ? {
            state: [batch, dim, N],
            x: [batch, dim],
            dt: [batch, dim],
            A: [dim, N],
            B: spec.G === null ? [batch, N] : [batch, Gs, N],
            D: [dim],
            dtBias: [dim],
          }
        : {
            state: [batch, H, P, N],
            x: [batch, H, P],
            dt: scalar ? [batch, H] : [batch, H, P],
            A: scalar ? [H] : [H, P, N],
            B: [batch, Gs, N],
            D: scalar && spec.D === 'head' ? [H] : [H, P],
            dtBias: scalar ? [H] : [H, P],
          },
    scan: undefined as unknown as ScanRefInputs,
  };
  if (spec.D) c.D = roundArray(rng.normalArray(scalar && spec.D === 'head' ? H : dim), 'float32');
  if (spec.dtBias) {
    const n = scalar ? H : dim;
    c.dtBias = roundArray(spec.softplus ? rng.uniformArray(n, -1, 1) : rng.uniformArray(n, 0, 0.2), 'float32');
  }

  // The equivalent scan.
  const u = new Float64Array(batch * dim * L),
    delta = new Float64Array(batch * dim * L),
    z = new Float64Array(batch * dim * L);
  for (let b = 0; b < batch; b++)
    for (let d = 0; d < dim; d++)
      for (let t = 0; t < L; t++) {
        const h = Math.floor(d / P);
        u[(b * dim + d) * L + t] = xs[t][b * dim + d];
        z[(b * dim + d) * L + t] = zs[t][b * dim + d];
        delta[(b * dim + d) * L + t] = scalar ? dts[t][b * H + h] : dts[t][b * dim + d];
      }
  const Bscan = new Float64Array(batch * Gs * N * L),
    Cscan = new Float64Array(batch * Gs * N * L);
  for (let b = 0; b < batch; b++)
    for (let g = 0; g < Gs; g++)
      for (let n = 0; n < N; n++)
        for (let t = 0; t < L; t++) {
          Bscan[((b * Gs + g) * N + n) * L + t] = Bs[t][(b * Gs + g) * N + n];
          Cscan[((b * Gs + g) * N + n) * L + t] = Cs[t][(b * Gs + g) * N + n];
        }
  const Ascan = new Float64Array(dim * N);
  const Dscan = new Float64Array(dim),
    bias = new Float64Array(dim);
  for (let d = 0; d < dim; d++) {
    const h = Math.floor(d / P);
    if (c.D) Dscan[d] = c.D.length === dim ? c.D[d] : c.D[h];
    if (c.dtBias) bias[d] = scalar ? c.dtBias[h] : c.dtBias[d];
    for (let n = 0; n < N; n++) Ascan[d * N + n] = scalar ? A[h] : A[d * N + n];
  }
  const layout = spec.G === null ? VARYING : grouped(spec.G);
  c.scan = {
    batch,
    dim,
    L,
    N,
    u,
    delta,
    A: Ascan,
    B: Bscan,
    Blayout: layout,
    C: Cscan,
    Clayout: layout,
    initialState: c.init,
  };
  if (c.D) c.scan.D = Dscan;
  if (spec.z) c.scan.z = z;
  if (c.dtBias) c.scan.deltaBias = bias;
  if (spec.softplus) c.scan.deltaSoftplus = true;
  return c;
}

/** Reference step t on a float64 state (slots, dim, N), in place; returns y (batch, dim). */
export function refStep(c: StepCase, t: number, state: Float64Array, stateBatchIndices?: Int32Array): Float64Array {
  const s = c.spec;
  const inp: StepRefInputs = {
    form: s.form,
    batch: s.batch,
    H: s.H,
    P: s.P,
    N: s.N,
    G: s.G,
    state,
    x: c.xs[t],
    dt: c.dts[t],
    A: c.A,
    B: c.Bs[t],
    C: c.Cs[t],
  };
  if (c.D) inp.D = c.D;
  if (s.z) inp.z = c.zs[t];
  if (c.dtBias) inp.dtBias = c.dtBias;
  if (s.softplus) inp.dtSoftplus = true;
  if (stateBatchIndices) inp.stateBatchIndices = stateBatchIndices;
  return stateUpdateRef(inp);
}
