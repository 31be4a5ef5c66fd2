// Runs the addon on a ScanCase (public API only) and compares with the reference.
import { expect } from 'vitest';
import { Tensor, selectiveScan, selectiveScanBackward } from './api.js';
import { bcShapeOf, makeScanCase, type ScanCase, type ScanCaseSpec } from './cases.js';
import {
  relErr,
  scanRef,
  stateRowCount,
  scanRefBackward,
  type AnyDType,
  type ScanRefGrads,
  type ScanRefOutputs,
} from './reference.js';

export type DeviceName = 'cpu' | 'cuda';

export interface CaseTensors {
  u: Tensor;
  delta: Tensor;
  A: Tensor;
  B: Tensor;
  C: Tensor;
  D?: Tensor;
  z?: Tensor;
  deltaBias?: Tensor;
  initialState?: Tensor;
  dout: Tensor;
  dLastState?: Tensor;
}

export function tensor(
  values: ArrayLike<number>,
  shape: number[],
  dtype: AnyDType = 'float32',
  device: DeviceName = 'cpu',
): Tensor {
  return Tensor.from(values, shape, { dtype, device });
}

export function caseTensors(c: ScanCase, device: DeviceName = 'cpu'): CaseTensors {
  const { batch, dim, L, N } = c.ref;
  const r = c.ref;
  const bcDtype = (kind: string): AnyDType => (kind === 'fixed' ? 'float32' : c.dtype);
  const t: CaseTensors = {
    u: tensor(r.u, [batch, dim, L], c.dtype, device),
    delta: tensor(r.delta, [batch, dim, L], c.dtype, device),
    A: tensor(r.A, [dim, N], 'float32', device),
    B: tensor(r.B, bcShapeOf(c, 'B'), bcDtype(r.Blayout.kind), device),
    C: tensor(r.C, bcShapeOf(c, 'C'), bcDtype(r.Clayout.kind), device),
    dout: tensor(c.dout, [batch, dim, L], c.dtype, device),
  };
  if (r.D) t.D = tensor(r.D, [dim], 'float32', device);
  if (r.z) t.z = tensor(r.z, [batch, dim, L], c.dtype, device);
  if (r.deltaBias) t.deltaBias = tensor(r.deltaBias, [dim], 'float32', device);
  const rows = stateRowCount(r);
  if (r.initialState) t.initialState = tensor(r.initialState, [rows, dim, N], 'float32', device);
  if (c.dLastState) t.dLastState = tensor(c.dLastState, [rows, dim, N], 'float32', device);
  return t;
}

export function scanOpts(c: ScanCase, t: CaseTensors, saveForBackward = true) {
  const opts: Record<string, unknown> = { saveForBackward };
  if (t.D) opts.D = t.D;
  if (t.z) opts.z = t.z;
  if (t.deltaBias) opts.deltaBias = t.deltaBias;
  if (c.ref.deltaSoftplus) opts.deltaSoftplus = true;
  if (t.initialState) opts.initialState = t.initialState;
  if (c.spec.lastState) opts.returnLastState = true;
  if (c.ref.cuSeqlens) opts.cuSeqlens = c.ref.cuSeqlens;
  return opts;
}

export interface AddonResult {
  out: Float32Array;
  lastState?: Float32Array;
  grads: Record<string, Float32Array>;
  outTensor: Tensor;
  lastStateTensor?: Tensor;
  gradTensors: Record<string, Tensor>;
}

/** Forward (and backward unless noBackward) on the addon; everything read back with dataSync. */
export function runAddon(
  c: ScanCase,
  device: DeviceName = 'cpu',
  opts: { deterministic?: boolean; noBackward?: boolean } = {},
): AddonResult {
  const t = caseTensors(c, device);
  const res = selectiveScan(t.u, t.delta, t.A, t.B, t.C, scanOpts(c, t, !opts.noBackward) as never);
  const r: AddonResult = {
    out: res.out.dataSync(),
    outTensor: res.out,
    grads: {},
    gradTensors: {},
  };
  if (res.lastState) {
    r.lastState = res.lastState.dataSync();
    r.lastStateTensor = res.lastState;
  }
  if (!opts.noBackward) {
    const bopts: Record<string, unknown> = {};
    if (t.dLastState) bopts.dLastState = t.dLastState;
    if (opts.deterministic !== undefined) bopts.deterministic = opts.deterministic;
    const g = selectiveScanBackward(res.ctx!, t.dout, bopts as never) as unknown as Record<string, Tensor | undefined>;
    for (const [k, v] of Object.entries(g)) {
      if (v === undefined) continue;
      r.gradTensors[k] = v;
      r.grads[k] = v.dataSync();
    }
  }
  return r;
}

export function referenceOf(c: ScanCase): { fwd: ScanRefOutputs; grads: ScanRefGrads } {
  return { fwd: scanRef(c.ref), grads: scanRefBackward(c.ref, c.dout, c.dLastState) };
}

/** Asserts ||got - ref|| / ||ref|| < tol, naming what is compared. */
export function expectRelClose(got: ArrayLike<number>, ref: ArrayLike<number>, tol: number, what: string): void {
  expect(got.length, `${what}: length`).toBe(ref.length);
  const e = relErr(got, ref);
  expect(e, `${what}: relative error ${e} (tolerance ${tol})`).toBeLessThan(tol);
}

export function expectBitsEqual(a: Float32Array, b: Float32Array, what: string): void {
  expect(a.length, `${what}: length`).toBe(b.length);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let diff = -1;
  for (let i = 0; i < ua.length; i++)
    if (ua[i] !== ub[i]) {
      diff = i;
      break;
    }
  expect(diff, `${what}: first differing element (${diff >= 0 ? `${a[diff]} vs ${b[diff]}` : ''})`).toBe(-1);
}

export const GRAD_INPUT: Record<string, string> = {
  du: 'u',
  ddelta: 'delta',
  dA: 'A',
  dB: 'B',
  dC: 'C',
  dD: 'D',
  dz: 'z',
  ddeltaBias: 'deltaBias',
  dInitialState: 'initialState',
};

export function tolerances(dtype: AnyDType): { fwd: number; grad: number } {
  return dtype === 'float32' ? { fwd: 1e-5, grad: 1e-4 } : { fwd: 1e-2, grad: 1e-2 };
}

/** Slice of a (rows, L) row-major array along the last axis: [t0, t1). */
export function sliceLast(a: ArrayLike<number>, L: number, t0: number, t1: number): Float64Array {
  const rows = a.length / L;
  const r = new Float64Array(rows * (t1 - t0));
  for (let i = 0; i < rows; i++) for (let t = t0; t < t1; t++) r[i * (t1 - t0) + t - t0] = a[i * L + t];
  return r;
}

/** Concatenation along the last axis of two (rows, L1) and (rows, L2) arrays. */
export function concatLast(a: ArrayLike<number>, L1: number, b: ArrayLike<number>, L2: number): Float64Array {
  const rows = a.length / L1;
  const r = new Float64Array(rows * (L1 + L2));
  for (let i = 0; i < rows; i++) {
    for (let t = 0; t < L1; t++) r[i * (L1 + L2) + t] = a[i * L1 + t];
    for (let t = 0; t < L2; t++) r[i * (L1 + L2) + L1 + t] = b[i * L2 + t];
  }
  return r;
}

/**
 * Runs a case on the CPU and checks everything against the reference: out, lastState, and a
 * gradient for every input given, each of its input's shape and with the dtype rules.
 */
export function checkCase(spec: ScanCaseSpec): void {
  const c = makeScanCase(spec);
  const { batch, dim, L, N } = c.ref;
  const tol = tolerances(c.dtype);
  const got = runAddon(c);
  const ref = referenceOf(c);

  // forward
  expect(got.outTensor).toBeInstanceOf(Tensor);
  expect([...got.outTensor.shape]).toEqual([batch, dim, L]);
  expect(got.outTensor.dtype).toBe(c.dtype);
  expect(got.outTensor.device).toBe('cpu');
  expectRelClose(got.out, ref.fwd.out, tol.fwd, 'out');
  if (spec.lastState) {
    expect(got.lastStateTensor, 'lastState returned').toBeDefined();
    expect([...got.lastStateTensor!.shape]).toEqual([stateRowCount(c.ref), dim, N]);
    expect(got.lastStateTensor!.dtype).toBe('float32');
    expectRelClose(got.lastState!, ref.fwd.lastState, tol.fwd, 'lastState');
  } else {
    expect(got.lastStateTensor, 'no lastState unless asked').toBeUndefined();
  }

  // backward: a gradient for every input given, of the input's shape, with the dtype rules
  const given = ['u', 'delta', 'A', 'B', 'C', 'D', 'z', 'deltaBias', 'initialState'].filter(
    (k) => (c.ref as unknown as Record<string, unknown>)[k] !== undefined,
  );
  const returned = Object.keys(got.gradTensors).sort();
  expect(returned).toEqual(
    Object.keys(GRAD_INPUT)
      .filter((g) => given.includes(GRAD_INPUT[g]))
      .sort(),
  );
  const t = caseTensors(c);
  const refGrads = ref.grads as unknown as Record<string, Float64Array>;
  for (const [g, gt] of Object.entries(got.gradTensors)) {
    const input = (t as unknown as Record<string, Tensor>)[GRAD_INPUT[g]];
    expect(gt, g).toBeInstanceOf(Tensor);
    expect([...gt.shape], `${g} shape`).toEqual([...input.shape]);
    const float32Grad = ['dA', 'dD', 'ddeltaBias', 'dInitialState'].includes(g) || input.dtype === 'float32';
    expect(gt.dtype, `${g} dtype`).toBe(float32Grad ? 'float32' : c.dtype);
    expectRelClose(got.grads[g], refGrads[g], tol.grad, g);
  }
}
