// selectiveStateUpdate on the CPU backend: L steps equal one scan (the addon's forward and the
// float64 reference) in all three forms and dtypes; stateBatchIndices (permuted slots, padding,
// duplicate and out-of-range indices).
import { afterAll, describe, expect, it } from 'vitest';
import { Tensor, buildInfo, selectiveScan, selectiveStateUpdate, setNumThreads } from './helpers/api.js';
import { makeStepCase, refStep, type StepCase, type StepCaseSpec } from './helpers/stepcase.js';
import { scanRef } from './helpers/reference.js';
import { expectBitsEqual, expectRelClose, tensor, tolerances } from './helpers/run.js';

function stepOpts(c: StepCase, t: number, extra: Record<string, unknown> = {}) {
  const s = c.spec;
  const o: Record<string, unknown> = { ...extra };
  if (c.D) o.D = tensor(c.D, c.shapes.D);
  if (s.z) o.z = tensor(c.zs[t], c.shapes.x, c.dtype);
  if (c.dtBias) o.dtBias = tensor(c.dtBias, c.shapes.dtBias);
  if (s.softplus) o.dtSoftplus = true;
  return o;
}

function runSteps(c: StepCase, state: Tensor): Float32Array[] {
  const ys: Float32Array[] = [];
  const A = tensor(c.A, c.shapes.A);
  for (let t = 0; t < c.spec.L; t++) {
    const y = selectiveStateUpdate(
      state,
      tensor(c.xs[t], c.shapes.x, c.dtype),
      tensor(c.dts[t], c.shapes.dt, c.dtype),
      A,
      tensor(c.Bs[t], c.shapes.B, c.dtype),
      tensor(c.Cs[t], c.shapes.B, c.dtype),
      stepOpts(c, t) as never,
    );
    expect(y).toBeInstanceOf(Tensor);
    expect([...y.shape]).toEqual(c.shapes.x);
    expect(y.dtype).toBe(c.dtype);
    ys.push(y.dataSync());
  }
  return ys;
}

/** ys[t] (batch*dim) gathered into (batch, dim, L). */
function gather(ys: ArrayLike<number>[], L: number): Float64Array {
  const rows = ys[0].length;
  const r = new Float64Array(rows * L);
  for (let t = 0; t < L; t++) for (let i = 0; i < rows; i++) r[i * L + t] = ys[t][i];
  return r;
}

const FORMS: StepCaseSpec[] = [
  {
    form: 'channels',
    batch: 2,
    H: 6,
    P: 1,
    N: 16,
    L: 12,
    G: null,
    D: 'channel',
    z: true,
    dtBias: true,
    softplus: true,
    seed: 401,
  },
  { form: 'channels', batch: 2, H: 6, P: 1, N: 5, L: 9, G: 3, seed: 402 },
  {
    form: 'heads',
    batch: 2,
    H: 4,
    P: 3,
    N: 16,
    L: 10,
    G: 2,
    D: 'channel',
    z: true,
    dtBias: true,
    softplus: true,
    seed: 403,
  },
  { form: 'heads', batch: 1, H: 2, P: 4, N: 33, L: 7, G: 1, dtBias: true, seed: 404 },
  {
    form: 'headsScalar',
    batch: 2,
    H: 4,
    P: 4,
    N: 16,
    L: 10,
    G: 2,
    D: 'head',
    z: true,
    dtBias: true,
    softplus: true,
    seed: 405,
  },
  { form: 'headsScalar', batch: 2, H: 4, P: 2, N: 8, L: 6, G: 4, D: 'channel', seed: 406 },
];

function name(s: StepCaseSpec): string {
  const extras = [s.D && `D(${s.D})`, s.z && 'z', s.dtBias && 'dtBias', s.softplus && 'softplus']
    .filter(Boolean)
    .join(',');
  return (
    `${s.dtype ?? 'float32'} ${s.form} batch ${s.batch} H ${s.H} P ${s.P} N ${s.N} L ${s.L} G ${s.G ?? '(batch, N)'}` +
    (extras ? ` +${extras}` : '')
  );
}

function checkStepsVsScan(spec: StepCaseSpec) {
  const c = makeStepCase(spec);
  const { batch, N, L } = spec;
  const dim = c.dim;
  const tol = tolerances(c.dtype);
  const state = tensor(c.init, c.shapes.state);
  const ys = runSteps(c, state);
  const stepOut = gather(ys, L);
  const stepState = state.dataSync();

  // the reference scan
  const ref = scanRef(c.scan);
  expectRelClose(stepOut, ref.out, tol.fwd, 'step outputs vs reference scan');
  expectRelClose(stepState, ref.lastState, tol.fwd, 'state after L steps vs reference lastState');

  // the addon's scan on the same inputs
  const s = c.scan;
  const layout = spec.G === null ? [batch, N, L] : [batch, spec.G, N, L];
  const opts: Record<string, unknown> = {
    initialState: tensor(c.init, [batch, dim, N]),
    returnLastState: true,
  };
  if (s.D) opts.D = tensor(s.D, [dim]);
  if (s.z) opts.z = tensor(s.z, [batch, dim, L], c.dtype);
  if (s.deltaBias) opts.deltaBias = tensor(s.deltaBias, [dim]);
  if (s.deltaSoftplus) opts.deltaSoftplus = true;
  const fwd = selectiveScan(
    tensor(s.u, [batch, dim, L], c.dtype),
    tensor(s.delta, [batch, dim, L], c.dtype),
    tensor(s.A, [dim, N]),
    tensor(s.B, layout, c.dtype),
    tensor(s.C, layout, c.dtype),
    opts as never,
  );
  expectRelClose(stepOut, fwd.out.dataSync(), tol.fwd, 'step outputs vs addon scan');
  expectRelClose(stepState, fwd.lastState!.dataSync(), tol.fwd, 'state vs addon scan lastState');
}

describe('selectiveStateUpdate run L times equals one scan', () => {
  for (const spec of FORMS) it(name(spec), () => checkStepsVsScan(spec));
  for (const dtype of ['float16', 'bfloat16'] as const) {
    for (const spec of [FORMS[0], FORMS[2], FORMS[4]]) {
      const s = { ...spec, dtype, seed: spec.seed + 20 };
      it(name(s), () => checkStepsVsScan(s));
    }
  }
});

// Large enough that the CPU backend cuts the rows into several tasks of about 8192 states: task
// boundaries fall inside a head (P = 6 is also not a multiple of the 4 rows done together) and inside
// a group of channels (with P = 1 and A per channel, a run spans the channels of one group).
describe('selectiveStateUpdate over several tasks', () => {
  const initial = buildInfo().cpuThreads;
  afterAll(() => setNumThreads(initial));
  const SPECS: StepCaseSpec[] = [
    {
      form: 'headsScalar',
      batch: 2,
      H: 3,
      P: 6,
      N: 256,
      L: 3,
      G: 3,
      D: 'head',
      z: true,
      dtBias: true,
      softplus: true,
      seed: 430,
    },
    { form: 'heads', batch: 2, H: 3, P: 6, N: 200, L: 3, G: 1, D: 'channel', dtBias: true, softplus: true, seed: 431 },
    {
      form: 'channels',
      batch: 2,
      H: 600,
      P: 1,
      N: 16,
      L: 3,
      G: 3,
      D: 'channel',
      z: true,
      dtBias: true,
      softplus: true,
      seed: 432,
    },
    { form: 'heads', batch: 2, H: 40, P: 1, N: 16, L: 3, G: 2, D: 'channel', z: true, seed: 433 },
  ];
  for (const spec of SPECS) {
    it(`${name(spec)}: equals the scan, with the same bits on 1, 2 and 3 threads`, () => {
      setNumThreads(2);
      checkStepsVsScan(spec);
      const c = makeStepCase(spec);
      const runs = [1, 2, 3].map((n) => {
        setNumThreads(n);
        const state = tensor(c.init, c.shapes.state);
        const ys = runSteps(c, state);
        return [...ys, state.dataSync()];
      });
      for (const r of runs.slice(1))
        for (let k = 0; k < r.length; k++)
          expectBitsEqual(r[k]!, runs[0]![k]!, k < spec.L ? `y at step ${k}` : 'state');
    });
  }
});

describe('selectiveStateUpdate with stateBatchIndices (continuous batching)', () => {
  const spec: StepCaseSpec = {
    form: 'channels',
    batch: 3,
    H: 4,
    P: 1,
    N: 8,
    L: 2,
    G: null,
    D: 'channel',
    z: true,
    dtBias: true,
    softplus: true,
    seed: 420,
  };
  const slots = 5;

  function setup(specOverride: Partial<StepCaseSpec> = {}) {
    const c = makeStepCase({ ...spec, ...specOverride });
    const dimN = c.dim * c.spec.N;
    // a cache of `slots` rows: random values
    const cache = new Float64Array(slots * dimN);
    for (let i = 0; i < cache.length; i++) cache[i] = Math.fround(Math.sin(i * 0.37) * 2);
    const stateShape = [slots, ...c.shapes.state.slice(1)];
    return { c, dimN, cache, stateShape };
  }

  function step(c: StepCase, state: Tensor, t: number, idx: Int32Array) {
    return selectiveStateUpdate(
      state,
      tensor(c.xs[t], c.shapes.x, c.dtype),
      tensor(c.dts[t], c.shapes.dt, c.dtype),
      tensor(c.A, c.shapes.A),
      tensor(c.Bs[t], c.shapes.B, c.dtype),
      tensor(c.Cs[t], c.shapes.B, c.dtype),
      stepOpts(c, t, { stateBatchIndices: idx }) as never,
    );
  }

  for (const form of ['channels', 'heads', 'headsScalar'] as const) {
    it(`${form}: permuted slots and a padding row`, () => {
      const over: Partial<StepCaseSpec> =
        form === 'channels' ? {} : { form, H: 2, P: 2, G: 1, D: form === 'headsScalar' ? 'head' : 'channel' };
      const { c, dimN, cache, stateShape } = setup(over);
      const idx = Int32Array.from([3, -1, 0]);
      const state = tensor(cache, stateShape);
      const refState = Float64Array.from(cache);
      for (let t = 0; t < c.spec.L; t++) {
        const y = step(c, state, t, idx).dataSync();
        const yRef = refStep(c, t, refState, idx);
        expectRelClose(y, yRef, 1e-5, `y at step ${t}`);
        const dim = c.dim;
        for (let d = 0; d < dim; d++) expect(y[1 * dim + d], 'padding row gives y = 0').toBe(0);
      }
      const got = state.dataSync();
      expectRelClose(got.subarray(3 * dimN, 4 * dimN), refState.subarray(3 * dimN, 4 * dimN), 1e-5, 'slot 3 (row 0)');
      expectRelClose(got.subarray(0, dimN), refState.subarray(0, dimN), 1e-5, 'slot 0 (row 2)');
      // slots 1, 2, 4 are untouched, bit for bit
      for (const s of [1, 2, 4]) {
        expectBitsEqual(
          got.slice(s * dimN, (s + 1) * dimN),
          Float32Array.from(cache.subarray(s * dimN, (s + 1) * dimN)),
          `slot ${s} untouched`,
        );
      }
      // and the touched slots did change
      expect(got[3 * dimN]).not.toBe(Math.fround(cache[3 * dimN]));
    });
  }

  it('channels form: B, C of shape (batch, N) and (batch, 1, N) give the same bits', () => {
    const c = makeStepCase({ ...spec, G: null });
    const run = (shapeB: number[]) => {
      const s = tensor(c.init, c.shapes.state);
      const y = selectiveStateUpdate(
        s,
        tensor(c.xs[0], c.shapes.x),
        tensor(c.dts[0], c.shapes.dt),
        tensor(c.A, c.shapes.A),
        tensor(c.Bs[0], shapeB),
        tensor(c.Cs[0], shapeB),
        stepOpts(c, 0) as never,
      ).dataSync();
      return { y, s: s.dataSync() };
    };
    const a = run([3, 8]);
    const b = run([3, 1, 8]);
    expectBitsEqual(b.y, a.y, 'y');
    expectBitsEqual(b.s, a.s, 'state');
  });

  it('the identity permutation gives the same result as no indices', () => {
    const { c } = setup();
    const s1 = tensor(c.init, c.shapes.state);
    const s2 = tensor(c.init, c.shapes.state);
    const y1 = selectiveStateUpdate(
      s1,
      tensor(c.xs[0], c.shapes.x),
      tensor(c.dts[0], c.shapes.dt),
      tensor(c.A, c.shapes.A),
      tensor(c.Bs[0], c.shapes.B),
      tensor(c.Cs[0], c.shapes.B),
      stepOpts(c, 0) as never,
    ).dataSync();
    const y2 = step(c, s2, 0, Int32Array.from([0, 1, 2])).dataSync();
    expectBitsEqual(y1, y2, 'y');
    expectBitsEqual(s1.dataSync(), s2.dataSync(), 'state');
  });

  for (const [label, idx] of [
    ['duplicate indices', [1, 1, 0]],
    ['an index equal to the slot count', [0, 5, 1]],
    ['an index above the slot count', [0, 2, 99]],
  ] as const) {
    it(`${label} throw RangeError and leave the state unchanged`, () => {
      const { c, cache, stateShape } = setup();
      const state = tensor(cache, stateShape);
      const before = state.dataSync().slice();
      expect(() => step(c, state, 0, Int32Array.from(idx))).toThrow(RangeError);
      expectBitsEqual(state.dataSync(), before, 'state after the failed call');
    });
  }

  it('several padding rows may share a negative value (-1 is not a duplicate)', () => {
    const { c, cache, stateShape } = setup();
    const state = tensor(cache, stateShape);
    const y = step(c, state, 0, Int32Array.from([-1, 2, -1])).dataSync();
    const dim = c.dim;
    for (let d = 0; d < dim; d++) {
      expect(y[d]).toBe(0);
      expect(y[2 * dim + d]).toBe(0);
    }
    const refState = Float64Array.from(cache);
    const yRef = refStep(c, 0, refState, Int32Array.from([-1, 2, -1]));
    expectRelClose(y, yRef, 1e-5, 'y');
    expectRelClose(state.dataSync(), refState, 1e-6, 'state');
  });
});
