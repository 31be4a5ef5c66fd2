// selectiveScan with packed variable-length sequences (cuSeqlens) on the CPU: random packings
// against the float64 reference for every output and gradient; packed equals separate (bit for bit
// per position and per sequence, within 1e-6 for the sums over sequences); an Inf or NaN in one
// sequence leaves every other sequence as it was; validation. The CUDA backend against this one:
// test/gpu.test.ts and the kernel emulator's packed cases.
import { describe, expect, it } from 'vitest';
import { selectiveScan, selectiveScanBackward } from './helpers/api.js';
import {
  EVERY_OPTION,
  FIXED,
  VARYING,
  grouped,
  makeScanCase,
  specName,
  type ScanCase,
  type ScanCaseSpec,
} from './helpers/cases.js';
import { expectThrow } from './helpers/expect-code.js';
import { Rng } from './helpers/random.js';
import { relErr, type AnyDType, type BCLayout } from './helpers/reference.js';
import {
  caseTensors,
  checkCase,
  expectBitsEqual,
  runAddon,
  sliceLast,
  tensor,
  type AddonResult,
} from './helpers/run.js';

/** The CPU backend's checkpoint interval for L >= 256 (checked below through checkpointBytes). */
const INTERVAL = 256;

/**
 * nseq sequences of 0 to three checkpoint intervals: a fifth empty or of length 1, a fifth cut to
 * end on an interval edge, the rest of any length; at least one step in all.
 */
function randomPacking(seed: number, nseq: number): number[] {
  const rng = new Rng(seed);
  const offsets = [0];
  for (let i = 0; i < nseq; i++) {
    const start = offsets[i]!;
    const r = rng.next();
    let len = r < 0.1 ? 0 : r < 0.2 ? 1 : rng.int(3 * INTERVAL + 1);
    if (r >= 0.2 && r < 0.4) len = Math.max(0, len - ((start + len) % INTERVAL));
    offsets.push(start + len);
  }
  if (offsets[nseq] === 0) offsets[nseq] = 1;
  return offsets;
}

/** Boundaries on interval edges (an empty sequence on one), one step either side, and inside. */
const ON_EDGES = [0, 256, 256, 512, 513, 767, 768, 1024, 1031, 1536, 1537, 1600];

function packedSpec(cuSeqlens: number[], rest: Omit<ScanCaseSpec, 'batch' | 'L' | 'cuSeqlens'>): ScanCaseSpec {
  return { batch: 1, L: cuSeqlens[cuSeqlens.length - 1]!, cuSeqlens, ...rest };
}

const GRID: ScanCaseSpec[] = [
  packedSpec(randomPacking(1, 64), { dim: 20, N: 4, B: VARYING, C: FIXED, ...EVERY_OPTION, seed: 1 }),
  packedSpec(ON_EDGES, {
    dim: 20,
    N: 3,
    B: grouped(2),
    C: VARYING,
    D: true,
    z: true,
    lastState: true,
    dLastState: true,
    seed: 2,
  }),
  packedSpec(randomPacking(3, 17), {
    dtype: 'bfloat16',
    dim: 18,
    N: 4,
    B: FIXED,
    C: grouped(3),
    ...EVERY_OPTION,
    seed: 3,
  }),
  packedSpec(randomPacking(4, 9), {
    dtype: 'float16',
    dim: 16,
    N: 2,
    B: grouped(4),
    C: grouped(2),
    deltaBias: true,
    softplus: true,
    bigDelta: true,
    initialState: true,
    lastState: true,
    seed: 4,
  }),
  packedSpec([0, 700], { dim: 5, N: 16, initialState: true, lastState: true, dLastState: true, seed: 5 }),
  packedSpec([0, 0, 0, 300, 300], { dim: 3, N: 2, B: VARYING, C: VARYING, ...EVERY_OPTION, seed: 6 }),
  packedSpec(randomPacking(7, 2), { dim: 17, N: 8, B: FIXED, C: VARYING, D: true, deltaBias: true, seed: 7 }),
];

describe('selectiveScan with cuSeqlens vs the float64 reference (every output and gradient)', () => {
  for (const spec of GRID) {
    it(
      `${specName(spec).replace(/cuSeqlens=\[.*\]/, '')} ${spec.cuSeqlens!.length - 1} sequences, L=${spec.L}`,
      () => checkCase(spec),
      60000,
    );
  }

  it('the packings cross checkpoint intervals: boundaries fall on interval edges and inside intervals', () => {
    const c = makeScanCase(GRID[1]!);
    const t = caseTensors(c);
    const { ctx } = selectiveScan(t.u, t.delta, t.A, t.B, t.C, { saveForBackward: true });
    const { dim, N, L } = c.ref;
    expect(ctx!.checkpointBytes).toBe(dim * Math.ceil(L / INTERVAL) * N * 4);
    const offsets = GRID.flatMap((s) => s.cuSeqlens!.slice(1, -1));
    expect(offsets.some((o) => o > 0 && o % INTERVAL === 0)).toBe(true);
    expect(offsets.some((o) => o % INTERVAL !== 0)).toBe(true);
    const lengths = GRID[0]!.cuSeqlens!.slice(1).map((o, i) => o - GRID[0]!.cuSeqlens![i]!);
    expect(Math.min(...lengths)).toBe(0);
    expect(Math.max(...lengths)).toBeGreaterThan(2 * INTERVAL);
  });
});

// ---- Packed equals separate --------------------------------------------------------------------

const PER_POSITION = ['du', 'ddelta', 'dz'];
const SUMMED = ['dA', 'dD', 'ddeltaBias'];

/** Sequence i of a packed case, as a case of its own (batch 1, L = its length, one state row). */
function sequenceCase(c: ScanCase, i: number): ScanCase {
  const cu = c.ref.cuSeqlens!;
  const [t0, t1] = [cu[i]!, cu[i + 1]!];
  const { dim, L, N } = c.ref;
  const slice = (a: Float64Array) => sliceLast(a, L, t0, t1);
  const row = (a: Float64Array) => a.slice(i * dim * N, (i + 1) * dim * N);
  const bc = (layout: BCLayout, a: Float64Array) => (layout.kind === 'fixed' ? a : slice(a));
  const r = c.ref;
  const ref = {
    ...r,
    L: t1 - t0,
    u: slice(r.u),
    delta: slice(r.delta),
    B: bc(r.Blayout, r.B),
    C: bc(r.Clayout, r.C),
    z: r.z && slice(r.z),
    initialState: r.initialState && row(r.initialState),
    cuSeqlens: undefined,
  };
  const one: ScanCase = {
    spec: { ...c.spec, L: t1 - t0, cuSeqlens: undefined },
    dtype: c.dtype,
    ref,
    dout: slice(c.dout),
  };
  if (c.dLastState) one.dLastState = row(c.dLastState);
  return one;
}

function expectPackedEqualsSeparate(spec: ScanCaseSpec): void {
  const c = makeScanCase(spec);
  const cu = c.ref.cuSeqlens!;
  const { dim, L, N } = c.ref;
  const packed = runAddon(c);
  const stateSize = dim * N;
  const sums: Record<string, Float64Array> = {};
  const fixed = (name: string) => (name === 'dB' ? c.ref.Blayout : c.ref.Clayout).kind === 'fixed';
  const summed = [...SUMMED, ...['dB', 'dC'].filter(fixed)].filter((g) => packed.grads[g]);
  for (const g of summed) sums[g] = new Float64Array(packed.grads[g]!.length);
  let nonEmpty = 0;
  for (let i = 0; i + 1 < cu.length; i++) {
    const [t0, t1] = [cu[i]!, cu[i + 1]!];
    const what = (name: string) => `sequence ${i} [${t0}, ${t1}): ${name}`;
    const row = (a: Float32Array) => a.slice(i * stateSize, (i + 1) * stateSize);
    const slice = (a: Float32Array) => Float32Array.from(sliceLast(a, L, t0, t1));
    if (t0 === t1) {
      // An empty sequence: lastState is its initial state, dInitialState its dLastState.
      const zeros = new Float32Array(stateSize);
      const rowOf = (a: Float64Array | undefined) =>
        a ? Float32Array.from(a.subarray(i * stateSize, (i + 1) * stateSize)) : zeros;
      const init = rowOf(c.ref.initialState);
      if (packed.lastState) expectBitsEqual(row(packed.lastState), init, what('lastState'));
      if (packed.grads.dInitialState) {
        expectBitsEqual(row(packed.grads.dInitialState), rowOf(c.dLastState), what('dInitialState'));
      }
      continue;
    }
    nonEmpty++;
    const one = runAddon(sequenceCase(c, i));
    expectBitsEqual(slice(packed.out), one.out, what('out'));
    if (packed.lastState) expectBitsEqual(row(packed.lastState), one.lastState!, what('lastState'));
    for (const g of PER_POSITION) {
      if (packed.grads[g]) expectBitsEqual(slice(packed.grads[g]!), one.grads[g]!, what(g));
    }
    for (const g of ['dB', 'dC']) {
      if (!fixed(g)) expectBitsEqual(slice(packed.grads[g]!), one.grads[g]!, what(g));
    }
    if (packed.grads.dInitialState) {
      expectBitsEqual(row(packed.grads.dInitialState), one.grads.dInitialState!, what('dInitialState'));
    }
    for (const g of summed) {
      const sum = sums[g]!;
      one.grads[g]!.forEach((v, j) => {
        sum[j]! += v;
      });
    }
    dispose(one);
  }
  expect(nonEmpty).toBeGreaterThan(0);
  for (const g of summed) {
    const e = relErr(packed.grads[g]!, sums[g]!);
    expect(e, `${g}: relative error ${e} against the sum of the separate runs`).toBeLessThan(1e-6);
  }
  dispose(packed);
}

function dispose(r: AddonResult): void {
  r.outTensor.dispose();
  r.lastStateTensor?.dispose();
  for (const t of Object.values(r.gradTensors)) t.dispose();
}

describe('selectiveScan with cuSeqlens equals running each sequence by itself (CPU, bit for bit)', () => {
  const cases: [string, ScanCaseSpec][] = [];
  for (const dtype of ['float32', 'float16', 'bfloat16'] as AnyDType[]) {
    cases.push([
      `${dtype}, varying B, grouped C, every option, boundaries on and off interval edges`,
      packedSpec(ON_EDGES, { dtype, dim: 20, N: 4, B: VARYING, C: grouped(4), ...EVERY_OPTION, seed: 11 }),
    ]);
  }
  cases.push(
    [
      'float32, fixed B and C, every option, 24 random sequences',
      packedSpec(randomPacking(12, 24), { dim: 33, N: 5, B: FIXED, C: FIXED, ...EVERY_OPTION, seed: 12 }),
    ],
    [
      'float32, grouped B, fixed C, no initial state, gradient into lastState',
      packedSpec(randomPacking(13, 40), {
        dim: 8,
        N: 3,
        B: grouped(2),
        C: FIXED,
        z: true,
        lastState: true,
        dLastState: true,
        seed: 13,
      }),
    ],
  );
  for (const [name, spec] of cases) it(name, () => expectPackedEqualsSeparate(spec), 60000);

  it('the backward is the same with deterministic: true', () => {
    const c = makeScanCase(packedSpec(ON_EDGES, { dim: 20, N: 4, B: VARYING, C: VARYING, ...EVERY_OPTION, seed: 14 }));
    const a = runAddon(c);
    const b = runAddon(c, 'cpu', { deterministic: true });
    for (const g of Object.keys(a.grads)) expectBitsEqual(b.grads[g]!, a.grads[g]!, g);
  });
});

// ---- Inf and NaN stay in their sequence ----------------------------------------------------------

describe('an Inf or NaN in one sequence never reaches another', () => {
  it('every other sequence: out, lastState and every per-position and per-sequence gradient bit-identical and finite', () => {
    // Sequence 1 crosses an interval edge and holds a NaN input; sequence 3's initial state is Inf
    // (its state stays Inf to its end, so a state multiplied by 0 at the next start would be NaN);
    // sequence 5 gets a NaN dLastState. Sequences 2, 4 and 6 start inside intervals.
    const offsets = [0, 200, 300, 340, 600, 700, 900, 1000];
    const spec = packedSpec(offsets, { dim: 20, N: 4, B: VARYING, C: VARYING, ...EVERY_OPTION, seed: 21 });
    const clean = makeScanCase(spec);
    const poisoned = makeScanCase(spec);
    const { dim, L, N } = clean.ref;
    const stateSize = dim * N;
    for (let d = 0; d < dim; d++) poisoned.ref.u[d * L + 250] = Number.NaN;
    poisoned.ref.initialState!.fill(Number.POSITIVE_INFINITY, 3 * stateSize, 4 * stateSize);
    poisoned.dLastState![5 * stateSize + 7] = Number.NaN;
    const a = runAddon(clean);
    const b = runAddon(poisoned);
    const bad = new Set([1, 3, 5]);
    const rowOf = (x: Float32Array, i: number) => x.slice(i * stateSize, (i + 1) * stateSize);
    const sliceOf = (x: Float32Array, i: number) => Float32Array.from(sliceLast(x, L, offsets[i]!, offsets[i + 1]!));
    for (const i of bad) {
      const reached = [
        sliceOf(b.out, i),
        rowOf(b.lastState!, i),
        rowOf(b.grads.dInitialState!, i),
        sliceOf(b.grads.du!, i),
      ];
      expect(
        reached.some((x) => x.some((v) => !Number.isFinite(v))),
        `the poison reaches sequence ${i} itself`,
      ).toBe(true);
    }
    for (let i = 0; i + 1 < offsets.length; i++) {
      if (bad.has(i)) continue;
      const parts: [string, Float32Array, Float32Array][] = [
        ['out', sliceOf(b.out, i), sliceOf(a.out, i)],
        ['lastState', rowOf(b.lastState!, i), rowOf(a.lastState!, i)],
        ['dInitialState', rowOf(b.grads.dInitialState!, i), rowOf(a.grads.dInitialState!, i)],
        ...['du', 'ddelta', 'dz', 'dB', 'dC'].map(
          (g) => [g, sliceOf(b.grads[g]!, i), sliceOf(a.grads[g]!, i)] as [string, Float32Array, Float32Array],
        ),
      ];
      for (const [name, got, want] of parts) {
        expect(
          got.every((v) => Number.isFinite(v)),
          `sequence ${i}: ${name} finite`,
        ).toBe(true);
        expectBitsEqual(got, want, `sequence ${i}: ${name}`);
      }
    }
  });
});

// ---- Validation ---------------------------------------------------------------------------------

describe('cuSeqlens validation', () => {
  const dim = 3;
  const N = 2;
  const L = 10;
  const make = (batch = 1) => ({
    u: tensor(new Float32Array(batch * dim * L).fill(0.5), [batch, dim, L]),
    delta: tensor(new Float32Array(batch * dim * L).fill(0.1), [batch, dim, L]),
    A: tensor(new Float32Array(dim * N).fill(-1), [dim, N]),
    B: tensor(new Float32Array(dim * N).fill(1), [dim, N]),
    C: tensor(new Float32Array(dim * N).fill(1), [dim, N]),
  });
  const cu = (...v: number[]) => Int32Array.from(v);

  it('each wrong cuSeqlens is a clear error, and the failed call changes nothing', () => {
    const x = make();
    const before = [x.u, x.delta, x.A, x.B, x.C].map((t) => Array.from(t.dataSync()));
    const call =
      (cuSeqlens: unknown, extra: Record<string, unknown> = {}) =>
      () =>
        selectiveScan(x.u, x.delta, x.A, x.B, x.C, { cuSeqlens, ...extra } as never);
    expectThrow(call([0, 10]), TypeError, /^selectiveScan: cuSeqlens must be an Int32Array, got/);
    expectThrow(call(new Uint32Array([0, 10])), TypeError, /cuSeqlens must be an Int32Array/);
    expectThrow(call(cu(0)), RangeError, /^selectiveScan: cuSeqlens must have at least 2 entries, got 1$/);
    expectThrow(call(cu(1, 10)), RangeError, /^selectiveScan: cuSeqlens must start at 0, got 1$/);
    expectThrow(call(cu(0, 4, 9)), RangeError, /^selectiveScan: cuSeqlens must end at L=10, got 9$/);
    expectThrow(call(cu(0, 4, 11)), RangeError, /must end at L=10, got 11/);
    expectThrow(
      call(cu(0, 6, 4, 10)),
      RangeError,
      /^selectiveScan: cuSeqlens must never decrease; cuSeqlens\[2\]=4 < 6$/,
    );
    const init2 = tensor(new Float32Array(2 * dim * N), [2, dim, N]);
    expectThrow(
      call(cu(0, 4, 4, 10), { initialState: init2 }),
      RangeError,
      /^selectiveScan: initialState must have shape \[nseq=3, dim=3, N=2\], got \[2, 3, 2\]$/,
    );
    const y = make(2);
    expectThrow(
      () => selectiveScan(y.u, y.delta, y.A, y.B, y.C, { cuSeqlens: cu(0, 10) }),
      RangeError,
      /^selectiveScan: cuSeqlens needs batch=1, got batch=2$/,
    );
    expect([x.u, x.delta, x.A, x.B, x.C].map((t) => Array.from(t.dataSync()))).toEqual(before);
  });

  it('dLastState has nseq rows; the backward reads the offsets the forward copied', () => {
    const x = make();
    const offsets = cu(0, 3, 3, 10);
    const init = tensor(
      Float32Array.from({ length: 3 * dim * N }, (_, i) => i / 10),
      [3, dim, N],
    );
    const opts = { cuSeqlens: offsets, initialState: init, returnLastState: true, saveForBackward: true };
    const { out, lastState, ctx } = selectiveScan(x.u, x.delta, x.A, x.B, x.C, opts);
    expect([...lastState!.shape]).toEqual([3, dim, N]);
    const dout = tensor(new Float32Array(dim * L).fill(1), [1, dim, L]);
    expectThrow(
      () => selectiveScanBackward(ctx!, dout, { dLastState: tensor(new Float32Array(dim * N), [1, dim, N]) }),
      RangeError,
      /^selectiveScanBackward: dLastState must have shape \[nseq=3, dim=3, N=2\], got \[1, 3, 2\]$/,
    );
    const dLast = tensor(
      Float32Array.from({ length: 3 * dim * N }, (_, i) => 1 - i / 20),
      [3, dim, N],
    );
    const g1 = selectiveScanBackward(ctx!, dout, { dLastState: dLast });
    offsets[1] = 7; // changing the caller's array after the forward changes nothing
    const g2 = selectiveScanBackward(ctx!, dout, { dLastState: dLast });
    for (const k of ['du', 'ddelta', 'dA', 'dInitialState'] as const) {
      expectBitsEqual(g2[k]!.dataSync(), g1[k]!.dataSync(), k);
    }
    // the empty sequence: lastState is its initial state, dInitialState its dLastState
    expectBitsEqual(
      lastState!.dataSync().slice(dim * N, 2 * dim * N),
      init.dataSync().slice(dim * N, 2 * dim * N),
      'lastState[1]',
    );
    expectBitsEqual(
      g1.dInitialState!.dataSync().slice(dim * N, 2 * dim * N),
      dLast.dataSync().slice(dim * N, 2 * dim * N),
      'dInitialState[1]',
    );
    out.dispose();
  });
});
