// Random test cases of the scan, built once in float64 and rounded to the dtype each argument is
// stored in, so that the reference and the addon see exactly the same numbers.
import { Rng } from './random.js';
import {
  bcShape,
  bcSize,
  roundArray,
  stateRowCount,
  type AnyDType,
  type BCLayout,
  type ScanRefInputs,
} from './reference.js';

export interface ScanCaseSpec {
  batch: number;
  dim: number;
  L: number;
  N: number;
  dtype?: AnyDType; // of u, delta, z, input-dependent B/C, dout (default float32)
  B?: BCLayout; // default fixed
  C?: BCLayout; // default fixed
  D?: boolean;
  z?: boolean;
  deltaBias?: boolean;
  softplus?: boolean;
  initialState?: boolean;
  lastState?: boolean; // returnLastState
  dLastState?: boolean; // needs lastState
  /** A = uniform(-0.6, 0.15): some entries positive (keep L short). */
  Apositive?: boolean;
  /** with softplus: a third of the deltas in [21, 24] (the x > 20 branch of softplus) */
  bigDelta?: boolean;
  /** Packed sequences (batch 1): the offsets, nseq + 1 of them; the states then have nseq rows. */
  cuSeqlens?: number[];
  seed: number;
}

export interface ScanCase {
  spec: ScanCaseSpec;
  dtype: AnyDType;
  ref: ScanRefInputs; // rounded inputs, as float64
  dout: Float64Array; // rounded to dtype
  dLastState?: Float64Array; // float32-rounded
}

/** Every option of the scan, with a gradient flowing into lastState (spread into a spec). */
export const EVERY_OPTION = {
  D: true,
  z: true,
  deltaBias: true,
  softplus: true,
  initialState: true,
  lastState: true,
  dLastState: true,
} as const;

export const FIXED: BCLayout = { kind: 'fixed' };
export const VARYING: BCLayout = { kind: 'varying' };
export const grouped = (G: number): BCLayout => ({ kind: 'grouped', G });

export function layoutName(l: BCLayout): string {
  return l.kind === 'grouped' ? `grouped(G=${l.G})` : l.kind;
}

export function specName(s: ScanCaseSpec): string {
  const opts = (
    ['D', 'z', 'deltaBias', 'softplus', 'initialState', 'lastState', 'dLastState', 'Apositive', 'bigDelta'] as const
  ).filter((k) => s[k]);
  return (
    `${s.dtype ?? 'float32'} b${s.batch} d${s.dim} L${s.L} N${s.N} B=${layoutName(s.B ?? FIXED)} ` +
    `C=${layoutName(s.C ?? FIXED)}${opts.length ? ` +${opts.join(',')}` : ''}` +
    (s.cuSeqlens ? ` cuSeqlens=[${s.cuSeqlens.join(',')}]` : '')
  );
}

export function makeScanCase(spec: ScanCaseSpec): ScanCase {
  const rng = new Rng(spec.seed);
  const { batch, dim, L, N } = spec;
  const dtype = spec.dtype ?? 'float32';
  const Blayout = spec.B ?? FIXED;
  const Clayout = spec.C ?? FIXED;
  const rowSize = batch * dim * L;
  const bcDtype = (l: BCLayout): AnyDType => (l.kind === 'fixed' ? 'float32' : dtype);

  const u = roundArray(rng.normalArray(rowSize), dtype);
  const deltaRaw = spec.softplus ? rng.uniformArray(rowSize, -3, 0) : rng.uniformArray(rowSize, 0, 0.5);
  if (spec.bigDelta) for (let i = 0; i < rowSize; i += 3) deltaRaw[i] = rng.uniform(21, 24);
  const delta = roundArray(deltaRaw, dtype);
  const Araw = new Float64Array(dim * N);
  for (let i = 0; i < Araw.length; i++)
    Araw[i] = spec.Apositive ? rng.uniform(-0.6, 0.15) : -Math.exp(rng.uniform(-1, 1));
  const A = roundArray(Araw, 'float32');
  const B = roundArray(rng.normalArray(bcSize(Blayout, batch, dim, L, N)), bcDtype(Blayout));
  const C = roundArray(rng.normalArray(bcSize(Clayout, batch, dim, L, N)), bcDtype(Clayout));
  const ref: ScanRefInputs = { batch, dim, L, N, u, delta, A, B, Blayout, C, Clayout };
  if (spec.cuSeqlens) ref.cuSeqlens = Int32Array.from(spec.cuSeqlens);
  const stateSize = stateRowCount(ref) * dim * N;
  if (spec.D) ref.D = roundArray(rng.normalArray(dim), 'float32');
  if (spec.z) ref.z = roundArray(rng.normalArray(rowSize), dtype);
  if (spec.deltaBias) {
    ref.deltaBias = roundArray(spec.softplus ? rng.uniformArray(dim, -1, 1) : rng.uniformArray(dim, 0, 0.2), 'float32');
  }
  if (spec.softplus) ref.deltaSoftplus = true;
  if (spec.initialState) ref.initialState = roundArray(rng.normalArray(stateSize), 'float32');
  const dout = roundArray(rng.normalArray(rowSize), dtype);
  const c: ScanCase = { spec, dtype, ref, dout };
  if (spec.dLastState) c.dLastState = roundArray(rng.normalArray(stateSize), 'float32');
  return c;
}

export function bcShapeOf(c: ScanCase, which: 'B' | 'C'): number[] {
  const { batch, dim, L, N } = c.ref;
  return bcShape(which === 'B' ? c.ref.Blayout : c.ref.Clayout, batch, dim, L, N);
}
