// selective-scan/tfjs's ssdScan: its outputs and the gradients tf.grads computes through it equal
// the float64 reference (test/helpers/ssd-reference.ts) on the tfjs 'cpu' and 'wasm' backends,
// across the options (D per head or per position, z, dtBias, softplus, dtLimit, initialState,
// lastState, grouped B/C, packed sequences); nothing leaks; bad options get clear errors.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
// tfjs-core's Node build registers no gradients of its own ops; tfjs-layers' (like @tensorflow/tfjs) does.
import '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { liveTensorCount } from '../dist/internal.js';
import { SUPPORTED_BACKENDS, ssdScan } from '../dist/tfjs/index.js';
import { Rng } from './helpers/random.js';
import { relErr, roundArray } from './helpers/reference.js';
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
  lastState?: boolean;
  cuSeqlens?: number[];
}

const SPECS: Spec[] = [
  { batch: 2, L: 70, H: 2, P: 5, G: 1, N: 6 },
  {
    batch: 2,
    L: 40,
    H: 4,
    P: 3,
    G: 2,
    N: 5,
    D: 'head',
    z: true,
    dtBias: true,
    dtSoftplus: true,
    initialState: true,
    lastState: true,
  },
  { batch: 1, L: 90, H: 2, P: 4, G: 2, N: 3, D: 'position', dtBias: true, dtLimit: [0.2, 0.8], lastState: true },
  {
    batch: 1,
    L: 80,
    H: 2,
    P: 3,
    G: 1,
    N: 4,
    z: true,
    dtSoftplus: true,
    dtLimit: [0.1, 1.5],
    initialState: true,
    lastState: true,
    cuSeqlens: [0, 30, 30, 79, 80],
  },
];

const f32 = (a: ArrayLike<number>) => roundArray(a, 'float32');

function makeCase(spec: Spec, seed: number) {
  const rng = new Rng(seed);
  const { batch, L, H, P, G, N } = spec;
  const inp: SsdRefInputs = {
    batch,
    L,
    H,
    P,
    G,
    N,
    x: f32(rng.normalArray(batch * L * H * P)),
    dt: f32(spec.dtSoftplus ? rng.normalArray(batch * L * H) : rng.uniformArray(batch * L * H, -0.2, 1)),
    A: f32(rng.uniformArray(H, -1.5, -0.2)),
    B: f32(rng.normalArray(batch * L * G * N)),
    C: f32(rng.normalArray(batch * L * G * N)),
    dtSoftplus: spec.dtSoftplus ?? false,
  };
  if (spec.D) inp.D = f32(rng.normalArray(spec.D === 'head' ? H : H * P));
  if (spec.z) inp.z = f32(rng.normalArray(batch * L * H * P));
  if (spec.dtBias) inp.dtBias = f32(rng.uniformArray(H, -0.3, 0.3));
  if (spec.dtLimit) inp.dtLimit = spec.dtLimit;
  if (spec.cuSeqlens) inp.cuSeqlens = Int32Array.from(spec.cuSeqlens);
  const rows = ssdStateRows(inp);
  if (spec.initialState) inp.initialState = f32(rng.normalArray(rows * H * P * N));
  const w = f32(rng.normalArray(batch * L * H * P));
  const wf = spec.lastState ? f32(rng.normalArray(rows * H * P * N)) : undefined;
  return { inp, w, wf };
}

const NAMES = ['x', 'dt', 'A', 'B', 'C', 'D', 'z', 'dtBias', 'initialState'] as const;
type Name = (typeof NAMES)[number];

/** Forward and the gradients of sum(out w) + sum(lastState wf) through tfjs, by input name. */
function viaTfjs(spec: Spec, inp: SsdRefInputs, w: Float64Array, wf: Float64Array | undefined) {
  const { batch, L, H, P, G, N } = spec;
  const rows = ssdStateRows(inp);
  const shapes: Record<Name, number[]> = {
    x: [batch, L, H, P],
    dt: [batch, L, H],
    A: [H],
    B: [batch, L, G, N],
    C: [batch, L, G, N],
    D: spec.D === 'head' ? [H] : [H, P],
    z: [batch, L, H, P],
    dtBias: [H],
    initialState: [rows, H, P, N],
  };
  const names = NAMES.filter((n) => inp[n] !== undefined);
  const tensors = names.map((n) => tf.tensor(Float32Array.from(inp[n]!), shapes[n]));
  const call = (...ts: tf.Tensor[]) => {
    const by = Object.fromEntries(names.map((n, i) => [n, ts[i]!])) as Record<Name, tf.Tensor>;
    const opts: Record<string, unknown> = { dtSoftplus: inp.dtSoftplus };
    for (const n of ['D', 'z', 'dtBias', 'initialState'] as const) if (by[n]) opts[n] = by[n];
    if (inp.dtLimit) opts.dtLimit = inp.dtLimit;
    if (inp.cuSeqlens) opts.cuSeqlens = inp.cuSeqlens;
    if (wf) opts.returnLastState = true;
    return ssdScan(by.x, by.dt, by.A, by.B, by.C, opts);
  };
  const result = tf.tidy(() => {
    const { out, lastState } = call(...tensors);
    const loss = (...ts: tf.Tensor[]) => {
      const r = call(...ts);
      const l = tf.sum(tf.mul(r.out, tf.tensor(Float32Array.from(w), r.out.shape)));
      return r.lastState
        ? tf.add(l, tf.sum(tf.mul(r.lastState, tf.tensor(Float32Array.from(wf!), r.lastState.shape))))
        : l;
    };
    const grads = tf.grads(loss)(tensors);
    return {
      out: out.dataSync(),
      lastState: lastState?.dataSync(),
      grads: Object.fromEntries(names.map((n, i) => [n, grads[i]!.dataSync()])) as Record<Name, Float32Array>,
    };
  });
  for (const t of tensors) t.dispose();
  return result;
}

beforeAll(async () => {
  expect(await tf.setBackend('cpu')).toBe(true);
});

describe.each(SUPPORTED_BACKENDS)('ssdScan on the tfjs %s backend', (backend) => {
  beforeAll(async () => {
    expect(await tf.setBackend(backend)).toBe(true);
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  SPECS.forEach((spec, i) => {
    it(`outputs and every gradient equal the float64 reference: ${JSON.stringify(spec)}`, () => {
      const { inp, w, wf } = makeCase(spec, 700 + i);
      const before = tf.memory().numTensors;
      const ours = liveTensorCount();
      const got = viaTfjs(spec, inp, w, wf);
      expect(tf.memory().numTensors).toBe(before);
      expect(liveTensorCount()).toBe(ours);
      const ref = ssdRef(inp);
      const g = ssdRefBackward(inp, w, wf);
      expect(relErr(got.out, ref.out)).toBeLessThan(1e-5);
      if (wf) expect(relErr(got.lastState!, ref.lastState)).toBeLessThan(1e-5);
      const want: Record<Name, Float64Array | undefined> = {
        x: g.dx,
        dt: g.ddt,
        A: g.dA,
        B: g.dB,
        C: g.dC,
        D: g.dD,
        z: g.dz,
        dtBias: g.ddtBias,
        initialState: g.dInitialState,
      };
      for (const [name, values] of Object.entries(got.grads)) {
        expect(relErr(values, want[name as Name]!), name).toBeLessThan(1e-4);
      }
    });
  });
});

describe('ssdScan (tfjs) errors', () => {
  it('names the option or argument at fault', () => {
    const x = tf.zeros([1, 4, 2, 2]);
    const dt = tf.zeros([1, 4, 2]);
    const A = tf.zeros([2]);
    const B = tf.zeros([1, 4, 1, 3]);
    expect(() => ssdScan(x, dt, A, B, B, { saveForBackward: true } as never)).toThrow(
      /^ssdScan: unknown option 'saveForBackward'/,
    );
    expect(() => ssdScan(x, dt, A, B, B, { cuSeqlens: [0, 4] } as never)).toThrow(
      /^ssdScan: cuSeqlens must be an Int32Array/,
    );
    expect(() => ssdScan(x, dt, A, B, B, { dtLimit: [1, 0] })).toThrow(/^ssdScan: dtLimit must be \[lo, hi\]/);
    expect(() => ssdScan(x, dt, tf.zeros([3]), B, B)).toThrow(/^ssdScan: A must have shape \[H=2\]/);
    tf.dispose([x, dt, A, B]);
  });

  it('takes cuSeqlens as selectiveScan (tfjs) does: by its real type and length', () => {
    const x = tf.zeros([1, 4, 2, 2]);
    const dt = tf.zeros([1, 4, 2]);
    const A = tf.zeros([2]);
    const B = tf.zeros([1, 4, 1, 3]);
    // An Int8Array that claims to be an Int32Array.
    const disguised = Object.setPrototypeOf(Int8Array.from([0, 4]), Int32Array.prototype) as Int32Array;
    expect(() => ssdScan(x, dt, A, B, B, { cuSeqlens: disguised })).toThrow(
      /^ssdScan: cuSeqlens must be an Int32Array, got an Int8Array \(with the prototype of Int32Array\)$/,
    );
    const detached = Int32Array.from([0, 4]);
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    expect(() => ssdScan(x, dt, A, B, B, { cuSeqlens: detached })).toThrow(
      /^ssdScan: cuSeqlens must have at least 2 entries, got 0$/,
    );
    expect(() => ssdScan(x, dt, A, B, B, { cuSeqlens: new Int32Array(0) })).toThrow(
      /^ssdScan: cuSeqlens must have at least 2 entries, got 0$/,
    );
    // Two sequences [0, 2) and [2, 4) with x = dt = B = C = 1 and A = 0: each of the N = 3 states
    // sums its sequence's x, so out is 3, 6, then 3, 6 again (a state carried over would give 9, 12).
    const x1 = tf.ones([1, 4, 2, 2]);
    const dt1 = tf.ones([1, 4, 2]);
    const B1 = tf.ones([1, 4, 1, 3]);
    const { out, lastState } = ssdScan(x1, dt1, A, B1, B1, {
      cuSeqlens: Int32Array.from([0, 2, 4]),
      returnLastState: true,
    });
    expect(Array.from(out.dataSync()).filter((_, i) => i % 4 === 0)).toEqual([3, 6, 3, 6]);
    expect(lastState!.shape).toEqual([2, 2, 2, 3]);
    expect(Array.from(lastState!.dataSync())).toEqual(new Array(24).fill(2));
    tf.dispose([x1, dt1, B1, out, lastState!]);
    tf.dispose([x, dt, A, B, out, lastState!]);
  });
});
