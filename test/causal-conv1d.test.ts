// causalConv1d, causalConv1dBackward and causalConv1dUpdate on the CPU backend against the float64
// reference (test/helpers/conv-reference.ts): every dtype, W = 1..8, bias, silu, initial and final
// states and their gradients, L below W - 1, packed sequences (cuSeqlens) against the reference
// and against their sequences run apart, the forward against L decoding steps, the context's
// rules, determinism across thread counts; stateBatchIndices with permuted slots and padding rows;
// errors name the argument and a failed call changes nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ConvContext,
  type Tensor,
  buildInfo,
  causalConv1d,
  causalConv1dBackward,
  causalConv1dUpdate,
  setNumThreads,
} from './helpers/api.js';
import {
  type ConvRefInputs,
  convRef,
  convRefBackward,
  convStateRows,
  convUpdateRef,
} from './helpers/conv-reference.js';
import { expectCode } from './helpers/expect-code.js';
import { Rng } from './helpers/random.js';
import { type AnyDType, relErr, roundArray } from './helpers/reference.js';
import { expectBitsEqual, expectRelClose, tensor, tolerances } from './helpers/run.js';

function randn(rng: Rng, n: number): Float64Array {
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal();
  return a;
}

const DTYPES: AnyDType[] = ['float32', 'float16', 'bfloat16'];

// ---- causalConv1d and causalConv1dBackward --------------------------------------------------------

interface ConvSpec {
  dtype?: AnyDType;
  batch: number;
  dim: number;
  L: number;
  W: number;
  bias?: boolean;
  silu?: boolean;
  initialState?: boolean;
  /** returnFinalState, with a dFinalState flowing back */
  finalState?: boolean;
  cuSeqlens?: number[];
  seed: number;
}

interface ConvCase {
  spec: ConvSpec;
  dtype: AnyDType;
  ref: ConvRefInputs; // inputs already rounded to their dtypes
  dout: Float64Array;
  dFinalState?: Float64Array;
}

function makeConvCase(spec: ConvSpec): ConvCase {
  const rng = new Rng(spec.seed);
  const dtype = spec.dtype ?? 'float32';
  const { batch, dim, L, W } = spec;
  const ref: ConvRefInputs = {
    batch,
    dim,
    L,
    W,
    x: roundArray(randn(rng, batch * dim * L), dtype),
    weight: roundArray(randn(rng, dim * W), 'float32'),
    silu: spec.silu ?? false,
  };
  if (spec.bias) ref.bias = roundArray(randn(rng, dim), 'float32');
  if (spec.cuSeqlens) ref.cuSeqlens = Int32Array.from(spec.cuSeqlens);
  const stateSize = convStateRows(ref) * dim * (W - 1);
  if (spec.initialState) ref.initialState = roundArray(randn(rng, stateSize), dtype);
  const c: ConvCase = { spec, dtype, ref, dout: roundArray(randn(rng, batch * dim * L), dtype) };
  if (spec.finalState) c.dFinalState = roundArray(randn(rng, stateSize), dtype);
  return c;
}

interface ConvRun {
  out: Float32Array;
  finalState?: Float32Array;
  grads: Record<string, Float32Array>;
}

function runConv(c: ConvCase, backwardOpts: { deterministic?: boolean } = {}): ConvRun {
  const { ref, dtype } = c;
  const { batch, dim, L, W } = ref;
  const rows = convStateRows(ref);
  const x = tensor(ref.x, [batch, dim, L], dtype);
  const { out, finalState, ctx } = causalConv1d(x, tensor(ref.weight, [dim, W]), {
    bias: ref.bias ? tensor(ref.bias, [dim]) : undefined,
    activation: ref.silu ? 'silu' : undefined,
    initialState: ref.initialState ? tensor(ref.initialState, [rows, dim, W - 1], dtype) : undefined,
    returnFinalState: c.dFinalState !== undefined,
    cuSeqlens: ref.cuSeqlens,
    saveForBackward: true,
  });
  expect(out.shape).toEqual([batch, dim, L]);
  expect(out.dtype).toBe(dtype);
  const g = causalConv1dBackward(ctx!, tensor(c.dout, [batch, dim, L], dtype), {
    dFinalState: c.dFinalState ? tensor(c.dFinalState, [rows, dim, W - 1], dtype) : undefined,
    ...backwardOpts,
  });
  expect(g.dx.dtype).toBe(dtype);
  expect(g.dweight.dtype).toBe('float32');
  expect(g.dbias !== undefined).toBe(ref.bias !== undefined);
  expect(g.dInitialState !== undefined).toBe(ref.initialState !== undefined);
  const grads: Record<string, Float32Array> = {};
  for (const [k, v] of Object.entries(g)) if (v) grads[k] = (v as Tensor).dataSync();
  if (g.dInitialState) expect(g.dInitialState.dtype).toBe(dtype);
  ctx!.dispose();
  const run: ConvRun = { out: out.dataSync(), grads };
  if (finalState) {
    expect(finalState.shape).toEqual([rows, dim, W - 1]);
    expect(finalState.dtype).toBe(dtype);
    run.finalState = finalState.dataSync();
  }
  return run;
}

function expectMatchesReference(c: ConvCase, run: ConvRun): void {
  const tol = tolerances(c.dtype);
  const fwd = convRef(c.ref);
  const ref = convRefBackward(c.ref, c.dout, c.dFinalState);
  expectRelClose(run.out, fwd.out, tol.fwd, 'out');
  // The final state holds inputs, exactly representable in their dtype: equal bit for bit.
  if (run.finalState) expect(Array.from(run.finalState)).toEqual(Array.from(fwd.finalState));
  expectRelClose(run.grads.dx!, ref.dx, tol.grad, 'dx');
  expectRelClose(run.grads.dweight!, ref.dweight, tol.grad, 'dweight');
  if (c.ref.bias) expectRelClose(run.grads.dbias!, ref.dbias, tol.grad, 'dbias');
  if (c.ref.initialState) expectRelClose(run.grads.dInitialState!, ref.dInitialState, tol.grad, 'dInitialState');
}

function label(spec: ConvSpec): string {
  const flags = (['bias', 'silu', 'initialState', 'finalState'] as const).filter((k) => spec[k]);
  return `${spec.dtype ?? 'float32'} W ${spec.W} L ${spec.L}${flags.map((f) => ` ${f}`).join('')}`;
}

describe('causalConv1d and its backward equal the reference', () => {
  for (const dtype of DTYPES)
    for (let W = 1; W <= 8; W++)
      for (let opt = 0; opt < 16; opt++) {
        const spec: ConvSpec = {
          dtype,
          batch: 2,
          dim: 5,
          L: 37 + W,
          W,
          bias: (opt & 1) !== 0,
          silu: (opt & 2) !== 0,
          initialState: (opt & 4) !== 0,
          finalState: (opt & 8) !== 0,
          seed: 3000 + W * 16 + opt,
        };
        it(label(spec), () => {
          const c = makeConvCase(spec);
          expectMatchesReference(c, runConv(c));
        });
      }

  // L below W - 1: the final state still holds initial-state columns, and their gradient flows back.
  for (const W of [3, 5, 8])
    for (let L = 1; L < W; L++)
      for (const initialState of [false, true]) {
        const spec: ConvSpec = {
          batch: 2,
          dim: 3,
          L,
          W,
          bias: true,
          silu: true,
          initialState,
          finalState: true,
          seed: 3500 + W * 10 + L,
        };
        it(label(spec), () => {
          const c = makeConvCase(spec);
          expectMatchesReference(c, runConv(c));
        });
      }

  // Several blocks of the CPU kernel, and a last block that ends mid-vector.
  for (const dtype of DTYPES) {
    const spec: ConvSpec = {
      dtype,
      batch: 2,
      dim: 3,
      L: 1537,
      W: 4,
      bias: true,
      silu: true,
      initialState: true,
      finalState: true,
      seed: 3600,
    };
    it(label(spec), () => {
      const c = makeConvCase(spec);
      expectMatchesReference(c, runConv(c));
    });
  }
});

// Random packings of sequences, with empty ones and ones shorter than W - 1.
function randomPacking(rng: Rng, nseq: number, W: number): number[] {
  const offsets = [0];
  for (let i = 0; i < nseq; i++) {
    const r = rng.next();
    const len = r < 0.2 ? 0 : r < 0.4 ? Math.floor(rng.next() * W) : r < 0.9 ? 1 + Math.floor(rng.next() * 40) : 600;
    offsets.push(offsets[i]! + len);
  }
  if (offsets[nseq] === 0) offsets[nseq] = 3; // at least one step in all
  return offsets;
}

describe('causalConv1d with cuSeqlens', () => {
  for (const dtype of DTYPES)
    for (const W of [1, 2, 4, 8])
      for (const initialState of [false, true]) {
        const rng = new Rng(4000 + W * 2 + (initialState ? 1 : 0) + DTYPES.indexOf(dtype) * 100);
        const cuSeqlens = randomPacking(rng, 7, W);
        const L = cuSeqlens[cuSeqlens.length - 1]!;
        const spec: ConvSpec = {
          dtype,
          batch: 1,
          dim: 4,
          L,
          W,
          bias: true,
          silu: true,
          initialState,
          finalState: true,
          cuSeqlens,
          seed: rng.next() * 1e6,
        };
        it(`${label(spec)} packing [${cuSeqlens.join(', ')}]: the reference, and each sequence run apart`, () => {
          const c = makeConvCase(spec);
          const packed = runConv(c);
          expectMatchesReference(c, packed);
          const { dim } = c.ref;
          const cols = W - 1;
          const sumWeight = new Float64Array(dim * W);
          const sumBias = new Float64Array(dim);
          const rowsOf = (a: ArrayLike<number>, i: number) =>
            Float32Array.from(
              Array.from(
                { length: dim * cols },
                (_, k) => a[(i * dim + Math.floor(k / Math.max(cols, 1))) * cols + (k % Math.max(cols, 1))]!,
              ),
            );
          for (let i = 0; i + 1 < cuSeqlens.length; i++) {
            const [t0, t1] = [cuSeqlens[i]!, cuSeqlens[i + 1]!];
            const state = c.ref.initialState ? rowsOf(c.ref.initialState, i) : new Float32Array(dim * cols);
            const dFinal = rowsOf(c.dFinalState!, i);
            if (t0 === t1) {
              // An empty sequence: its final state is its initial state, and the gradient passes through.
              expectBitsEqual(rowsOf(packed.finalState!, i), state, `finalState of empty sequence ${i}`);
              if (initialState)
                expectBitsEqual(rowsOf(packed.grads.dInitialState!, i), dFinal, `dInitialState of empty sequence ${i}`);
              continue;
            }
            const slice = (a: ArrayLike<number>) => {
              const r = new Float64Array(dim * (t1 - t0));
              for (let d = 0; d < dim; d++) for (let t = t0; t < t1; t++) r[d * (t1 - t0) + t - t0] = a[d * L + t]!;
              return r;
            };
            const alone: ConvCase = {
              spec,
              dtype,
              ref: {
                ...c.ref,
                batch: 1,
                L: t1 - t0,
                x: slice(c.ref.x),
                cuSeqlens: undefined,
                initialState: c.ref.initialState ? Float64Array.from(state) : undefined,
              },
              dout: slice(c.dout),
              dFinalState: Float64Array.from(dFinal),
            };
            const apart = runConv(alone);
            expectBitsEqual(Float32Array.from(slice(packed.out)), apart.out, `out of sequence ${i}`);
            expectBitsEqual(rowsOf(packed.finalState!, i), apart.finalState!, `finalState of sequence ${i}`);
            expectBitsEqual(Float32Array.from(slice(packed.grads.dx!)), apart.grads.dx!, `dx of sequence ${i}`);
            if (initialState)
              expectBitsEqual(
                rowsOf(packed.grads.dInitialState!, i),
                apart.grads.dInitialState!,
                `dInitialState of sequence ${i}`,
              );
            apart.grads.dweight!.forEach((v, k) => {
              sumWeight[k] += v;
            });
            apart.grads.dbias!.forEach((v, k) => {
              sumBias[k] += v;
            });
          }
          expect(relErr(packed.grads.dweight!, sumWeight)).toBeLessThan(1e-6);
          expect(relErr(packed.grads.dbias!, sumBias)).toBeLessThan(1e-6);
        });
      }

  it('an Inf in one sequence reaches no other', () => {
    const cuSeqlens = [0, 5, 9, 20];
    const c = makeConvCase({
      batch: 1,
      dim: 2,
      L: 20,
      W: 4,
      bias: true,
      silu: true,
      initialState: true,
      finalState: true,
      cuSeqlens,
      seed: 4400,
    });
    c.ref.x[6] = Number.POSITIVE_INFINITY; // channel 0, sequence 1
    c.dout[13] = Number.NaN; // channel 0, sequence 2
    const run = runConv(c);
    const finite = (a: ArrayLike<number>, from: number, to: number) =>
      Array.from(a).slice(from, to).every(Number.isFinite);
    expect(finite(run.out, 0, 5) && finite(run.out, 9, 20)).toBe(true);
    expect(finite(run.out, 5, 9)).toBe(false);
    expect(finite(run.grads.dx!, 0, 5)).toBe(true); // sequence 0; sequences 1 and 2 hold the Inf and the NaN
    expect(finite(run.grads.dx!, 9, 20)).toBe(false);
    expect(Array.from(run.grads.dInitialState!).slice(0, 3).every(Number.isFinite)).toBe(true);
    expect(finite(run.grads.dx!, 20, 40)).toBe(true); // channel 1
  });
});

describe('causalConv1d with a NaN input', () => {
  it('reaches out[t .. t + W - 1] of its row and nothing else', () => {
    const [batch, dim, L, W, t0] = [2, 3, 20, 4, 7];
    const rng = new Rng(4500);
    const xv = randn(rng, batch * dim * L);
    const weight = tensor(randn(rng, dim * W), [dim, W]);
    const run = (values: Float64Array) =>
      causalConv1d(tensor(values, [batch, dim, L]), weight, { activation: 'silu' }).out.dataSync();
    const clean = run(xv);
    const row = dim + 1; // (b 1, d 1)
    const poisoned = Float64Array.from(xv);
    poisoned[row * L + t0] = Number.NaN;
    const got = run(poisoned);
    for (let i = 0; i < got.length; i++) {
      const t = i % L;
      const hit = Math.floor(i / L) === row && t >= t0 && t < t0 + W;
      if (hit) expect(got[i], `out[${i}]`).toBeNaN();
      else expect(got[i], `out[${i}]`).toBe(clean[i]);
    }
  });
});

describe('causalConv1d then L decoding steps', () => {
  for (const dtype of DTYPES)
    for (const W of [1, 2, 4, 8]) {
      it(`${dtype} W ${W}: causalConv1dUpdate from the initial state gives the forward's out and finalState`, () => {
        const c = makeConvCase({
          dtype,
          batch: 2,
          dim: 6,
          L: 13,
          W,
          bias: true,
          silu: true,
          initialState: true,
          seed: 5000 + W,
        });
        const { batch, dim, L } = c.ref;
        const weight = tensor(c.ref.weight, [dim, W]);
        const bias = tensor(c.ref.bias!, [dim]);
        const { out, finalState } = causalConv1d(tensor(c.ref.x, [batch, dim, L], dtype), weight, {
          bias,
          activation: 'silu',
          initialState: tensor(c.ref.initialState!, [batch, dim, W - 1], dtype),
          returnFinalState: true,
        });
        const state = tensor(c.ref.initialState!, [batch, dim, W - 1], dtype);
        const stepped = new Float64Array(batch * dim * L);
        for (let t = 0; t < L; t++) {
          const xt = new Float64Array(batch * dim);
          for (let r = 0; r < batch * dim; r++) xt[r] = c.ref.x[r * L + t]!;
          const y = causalConv1dUpdate(state, tensor(xt, [batch, dim], dtype), weight, {
            bias,
            activation: 'silu',
          }).dataSync();
          for (let r = 0; r < batch * dim; r++) stepped[r * L + t] = y[r]!;
        }
        // The step and the forward round the same float32 sums; only the order of the additions (and
        // silu's exponential) may differ.
        expectRelClose(out.dataSync(), stepped, dtype === 'float32' ? 1e-6 : 1e-2, 'out vs steps');
        expect(Array.from(finalState!.dataSync())).toEqual(Array.from(state.dataSync()));
      });
    }
});

describe('causalConv1d determinism', () => {
  let initial = 0;
  beforeAll(() => {
    initial = buildInfo().cpuThreads;
  });
  afterAll(() => setNumThreads(initial));

  const specs: ConvSpec[] = [
    { batch: 3, dim: 70, L: 700, W: 4, bias: true, silu: true, initialState: true, finalState: true, seed: 6001 },
    { dtype: 'bfloat16', batch: 5, dim: 33, L: 90, W: 8, bias: true, initialState: true, finalState: true, seed: 6002 },
    {
      batch: 1,
      dim: 9,
      L: 1300,
      W: 3,
      bias: true,
      silu: true,
      initialState: true,
      finalState: true,
      cuSeqlens: [0, 100, 100, 1250, 1300],
      seed: 6003,
    },
  ];
  for (const spec of specs) {
    it(`${label(spec)}: 1, 2 and 3 threads, and deterministic: true, bit-identical`, () => {
      const c = makeConvCase(spec);
      const runs = [1, 2, 3].map((n) => {
        setNumThreads(n);
        return runConv(c, { deterministic: n === 3 });
      });
      for (const k of [1, 2]) {
        expectBitsEqual(runs[k]!.out, runs[0]!.out, `out, ${k + 1} threads vs 1`);
        expectBitsEqual(runs[k]!.finalState!, runs[0]!.finalState!, `finalState, ${k + 1} threads vs 1`);
        for (const g of Object.keys(runs[0]!.grads))
          expectBitsEqual(runs[k]!.grads[g]!, runs[0]!.grads[g]!, `${g}, ${k + 1} threads vs 1`);
      }
      expectMatchesReference(c, runs[0]!);
    }, 30000);
  }
});

describe('ConvContext', () => {
  const setup = () => {
    const x = tensor(randn(new Rng(7000), 2 * 3 * 10), [2, 3, 10]);
    const weight = tensor(randn(new Rng(7001), 12), [3, 4]);
    const bias = tensor([0.1, 0.2, 0.3], [3]);
    const { ctx } = causalConv1d(x, weight, { bias, activation: 'silu', saveForBackward: true });
    return { x, weight, bias, ctx: ctx!, dout: tensor(randn(new Rng(7002), 60), [2, 3, 10]) };
  };

  it('backward may run twice with the same result; dispose ends it', () => {
    const { ctx, dout } = setup();
    expect(ctx.isDisposed).toBe(false);
    const a = causalConv1dBackward(ctx, dout);
    const b = causalConv1dBackward(ctx, dout);
    expectBitsEqual(a.dx.dataSync(), b.dx.dataSync(), 'dx twice');
    expectBitsEqual(a.dweight.dataSync(), b.dweight.dataSync(), 'dweight twice');
    ctx.dispose();
    expect(ctx.isDisposed).toBe(true);
    expectCode(() => causalConv1dBackward(ctx, dout), 'ERR_DISPOSED', /causalConv1dBackward: ctx was disposed/);
    ctx.dispose(); // twice is fine
  });

  it('a disposed input makes backward throw ERR_DISPOSED', () => {
    const { ctx, dout, bias } = setup();
    bias.dispose();
    expectCode(() => causalConv1dBackward(ctx, dout), 'ERR_DISPOSED', /bias \(an input of the forward\)/);
  });

  it('decoding from the saved initialState (updated in place) makes its backward throw ERR_MODIFIED', () => {
    const rng = new Rng(7003);
    const x = tensor(randn(rng, 1 * 3 * 6), [1, 3, 6]);
    const weight = tensor(randn(rng, 12), [3, 4]);
    const state = tensor(randn(rng, 9), [1, 3, 3]);
    const { ctx } = causalConv1d(x, weight, { initialState: state, saveForBackward: true });
    const dout = tensor(randn(rng, 18), [1, 3, 6]);
    expect(causalConv1dBackward(ctx!, dout).dx.shape).toEqual([1, 3, 6]);
    causalConv1dUpdate(state, tensor([1, 2, 3], [1, 3]), weight).dispose();
    expectCode(() => causalConv1dBackward(ctx!, dout), 'ERR_MODIFIED', /initialState \(an input of the forward\)/);
  });

  it('anything but a ConvContext is a TypeError', () => {
    const { dout } = setup();
    expect(() => causalConv1dBackward({} as ConvContext, dout)).toThrow(TypeError);
  });
});

describe('causalConv1d errors', () => {
  const make = () => ({
    x: tensor(new Float32Array(2 * 3 * 5).fill(1), [2, 3, 5]),
    weight: tensor(new Float32Array(12).fill(1), [3, 4]),
  });
  type Args = ReturnType<typeof make>;
  const cases: [string, (a: Args) => unknown, ErrorConstructor, RegExp][] = [
    [
      'x rank',
      (a) => causalConv1d(tensor([1, 2], [1, 2]), a.weight),
      RangeError,
      /causalConv1d: x must have shape \[batch, dim, L\].*got \[1, 2\]/,
    ],
    ['x not a tensor', (a) => causalConv1d([1, 2] as never, a.weight), TypeError, /causalConv1d: x/],
    [
      'weight dtype',
      (a) => causalConv1d(a.x, tensor(new Float32Array(12), [3, 4], 'float16')),
      TypeError,
      /weight must be float32, got float16/,
    ],
    [
      'weight W',
      (a) => causalConv1d(a.x, tensor(new Float32Array(27), [3, 9])),
      RangeError,
      /weight must have shape \[dim=3, W\] with 1 <= W <= 8, got \[3, 9\]/,
    ],
    [
      'bias shape',
      (a) => causalConv1d(a.x, a.weight, { bias: tensor([1, 2], [2]) }),
      RangeError,
      /bias must have shape \[dim=3\], got \[2\]/,
    ],
    [
      'activation',
      (a) => causalConv1d(a.x, a.weight, { activation: 'relu' as 'silu' }),
      TypeError,
      /activation must be 'silu'/,
    ],
    [
      'initialState shape',
      (a) => causalConv1d(a.x, a.weight, { initialState: tensor(new Float32Array(12), [2, 3, 2]) }),
      RangeError,
      /initialState must have shape \[batch=2, dim=3, W - 1=3\], got \[2, 3, 2\]/,
    ],
    [
      'initialState dtype',
      (a) => causalConv1d(a.x, a.weight, { initialState: tensor(new Float32Array(18), [2, 3, 3], 'bfloat16') }),
      TypeError,
      /initialState must be float32 \(the dtype of x\), got bfloat16/,
    ],
    [
      'returnFinalState',
      (a) => causalConv1d(a.x, a.weight, { returnFinalState: 1 as never }),
      TypeError,
      /returnFinalState must be a boolean/,
    ],
    [
      'saveForBackward',
      (a) => causalConv1d(a.x, a.weight, { saveForBackward: 'yes' as never }),
      TypeError,
      /saveForBackward must be a boolean/,
    ],
    [
      'cuSeqlens with batch 2',
      (a) => causalConv1d(a.x, a.weight, { cuSeqlens: Int32Array.from([0, 5]) }),
      RangeError,
      /cuSeqlens needs batch=1/,
    ],
    [
      'cuSeqlens type',
      (a) => causalConv1d(a.x, a.weight, { cuSeqlens: [0, 5] as never }),
      TypeError,
      /cuSeqlens must be an Int32Array/,
    ],
    [
      'cuSeqlens end',
      () =>
        causalConv1d(tensor(new Float32Array(15), [1, 3, 5]), tensor(new Float32Array(12), [3, 4]), {
          cuSeqlens: Int32Array.from([0, 2, 4]),
        }),
      RangeError,
      /cuSeqlens must end at L=5, got 4/,
    ],
    [
      'cuSeqlens decreasing',
      () =>
        causalConv1d(tensor(new Float32Array(15), [1, 3, 5]), tensor(new Float32Array(12), [3, 4]), {
          cuSeqlens: Int32Array.from([0, 3, 2, 5]),
        }),
      RangeError,
      /never decrease/,
    ],
    [
      'initialState rows with cuSeqlens',
      () =>
        causalConv1d(tensor(new Float32Array(15), [1, 3, 5]), tensor(new Float32Array(12), [3, 4]), {
          cuSeqlens: Int32Array.from([0, 2, 5]),
          initialState: tensor(new Float32Array(9), [1, 3, 3]),
        }),
      RangeError,
      /initialState must have shape \[nseq=2, dim=3, W - 1=3\]/,
    ],
    ['unknown option', (a) => causalConv1d(a.x, a.weight, { foo: 1 } as never), TypeError, /foo/],
  ];
  for (const [name, call, cls, re] of cases) {
    it(`${name}: throws ${cls.name} naming the argument`, () => {
      const a = make();
      let thrown: unknown;
      try {
        call(a);
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBeInstanceOf(cls);
      expect((thrown as Error).message).toMatch(re);
      expect(Array.from(a.x.dataSync())).toEqual(new Array(30).fill(1));
    });
  }

  const backwardSetup = () => {
    const x = tensor(new Float32Array(30).fill(0.5), [2, 3, 5], 'float16');
    const { ctx } = causalConv1d(x, tensor(new Float32Array(12).fill(1), [3, 4]), { saveForBackward: true });
    return { ctx: ctx!, dout: tensor(new Float32Array(30), [2, 3, 5], 'float16') };
  };
  const backwardCases: [string, (a: ReturnType<typeof backwardSetup>) => unknown, ErrorConstructor, RegExp][] = [
    [
      'dout shape',
      (a) => causalConv1dBackward(a.ctx, tensor(new Float32Array(20), [2, 2, 5], 'float16')),
      RangeError,
      /causalConv1dBackward: dout must have shape \[batch=2, dim=3, L=5\], got \[2, 2, 5\]/,
    ],
    [
      'dout dtype',
      (a) => causalConv1dBackward(a.ctx, tensor(new Float32Array(30), [2, 3, 5])),
      TypeError,
      /dout must be float16 \(the dtype of x\), got float32/,
    ],
    [
      'dFinalState shape',
      (a) => causalConv1dBackward(a.ctx, a.dout, { dFinalState: tensor(new Float32Array(18), [3, 3, 2], 'float16') }),
      RangeError,
      /dFinalState must have shape \[batch=2, dim=3, W - 1=3\], got \[3, 3, 2\]/,
    ],
    [
      'dFinalState dtype',
      (a) => causalConv1dBackward(a.ctx, a.dout, { dFinalState: tensor(new Float32Array(18), [2, 3, 3]) }),
      TypeError,
      /dFinalState must be float16/,
    ],
    [
      'deterministic',
      (a) => causalConv1dBackward(a.ctx, a.dout, { deterministic: 1 as never }),
      TypeError,
      /deterministic must be a boolean/,
    ],
    [
      'unknown option',
      (a) => causalConv1dBackward(a.ctx, a.dout, { dLastState: a.dout } as never),
      TypeError,
      /dLastState/,
    ],
  ];
  for (const [name, call, cls, re] of backwardCases) {
    it(`backward ${name}: throws ${cls.name}, and the context still works`, () => {
      const a = backwardSetup();
      expect(() => call(a)).toThrow(cls);
      expect(() => call(a)).toThrow(re);
      expect(causalConv1dBackward(a.ctx, a.dout).dx.shape).toEqual([2, 3, 5]);
    });
  }
});

describe('causalConv1dUpdate equals the reference', () => {
  for (const dtype of DTYPES)
    for (const W of [1, 2, 3, 4, 8])
      for (const opt of [0, 1, 2, 3]) {
        const bias = (opt & 1) !== 0;
        const silu = (opt & 2) !== 0;
        const withIndices = opt >= 2;
        it(`${dtype} W ${W}${bias ? ' bias' : ''}${silu ? ' silu' : ''}${withIndices ? ' stateBatchIndices' : ''}`, () => {
          const rng = new Rng(1000 + W * 10 + opt);
          const [batch, dim] = [3, 37];
          const slots = withIndices ? 5 : batch;
          const indices = withIndices ? Int32Array.from([4, -1, 1]) : undefined;
          const state0 = roundArray(randn(rng, slots * dim * (W - 1)), dtype);
          const weight = roundArray(randn(rng, dim * W), 'float32');
          const b = bias ? roundArray(randn(rng, dim), 'float32') : undefined;
          const stateT = tensor(state0, [slots, dim, W - 1], dtype);
          const refState = Float64Array.from(state0);
          for (let step = 0; step < 3; step++) {
            const x = roundArray(randn(rng, batch * dim), dtype);
            const out = causalConv1dUpdate(stateT, tensor(x, [batch, dim], dtype), tensor(weight, [dim, W]), {
              bias: b ? tensor(b, [dim]) : undefined,
              activation: silu ? 'silu' : undefined,
              stateBatchIndices: indices,
            });
            expect(out.shape).toEqual([batch, dim]);
            expect(out.dtype).toBe(dtype);
            const ref = convUpdateRef(refState, x, weight, batch, dim, W, {
              bias: b,
              silu,
              stateBatchIndices: indices,
            });
            const got = out.dataSync();
            expectRelClose(got, ref, tolerances(dtype).fwd, 'out');
            if (indices) for (let d = 0; d < dim; d++) expect(got[dim + d]).toBe(0); // padding row
            // The state holds inputs, exactly representable in its dtype: equal bit for bit.
            expect(Array.from(stateT.dataSync())).toEqual(Array.from(refState));
          }
        });
      }
});

describe('causalConv1dUpdate errors', () => {
  const make = () => ({
    state: tensor(new Float32Array(2 * 3 * 3).fill(7), [2, 3, 3]),
    x: tensor([1, 2, 3, 4, 5, 6], [2, 3]),
    weight: tensor(new Float32Array(12).fill(1), [3, 4]),
  });

  const cases: [string, (a: ReturnType<typeof make>) => unknown, RegExp][] = [
    ['x rank', (a) => causalConv1dUpdate(a.state, tensor([1, 2, 3], [3]), a.weight), /x must have shape/],
    [
      'weight W',
      (a) => causalConv1dUpdate(a.state, a.x, tensor(new Float32Array(27), [3, 9])),
      /weight must have shape.*W <= 8/,
    ],
    [
      'weight dim',
      (a) => causalConv1dUpdate(a.state, a.x, tensor(new Float32Array(8), [2, 4])),
      /weight must have shape/,
    ],
    [
      'convState width',
      (a) => causalConv1dUpdate(tensor(new Float32Array(12), [2, 3, 2]), a.x, a.weight),
      /convState must have shape/,
    ],
    [
      'convState dtype',
      (a) => causalConv1dUpdate(tensor(new Float32Array(18), [2, 3, 3], 'float16'), a.x, a.weight),
      /convState/,
    ],
    [
      'batch mismatch',
      (a) => causalConv1dUpdate(tensor(new Float32Array(27), [3, 3, 3]), a.x, a.weight),
      /convState has 3/,
    ],
    ['bias shape', (a) => causalConv1dUpdate(a.state, a.x, a.weight, { bias: tensor([1, 2], [2]) }), /bias/],
    [
      'activation',
      (a) => causalConv1dUpdate(a.state, a.x, a.weight, { activation: 'relu' as 'silu' }),
      /activation must be 'silu'/,
    ],
    [
      'indices type',
      (a) =>
        causalConv1dUpdate(a.state, a.x, a.weight, { stateBatchIndices: new Uint32Array(2) as unknown as Int32Array }),
      /stateBatchIndices must be an Int32Array/,
    ],
    [
      'indices range',
      (a) => causalConv1dUpdate(a.state, a.x, a.weight, { stateBatchIndices: Int32Array.from([0, 2]) }),
      /stateBatchIndices\[1\]=2/,
    ],
    [
      'indices repeated',
      (a) => causalConv1dUpdate(a.state, a.x, a.weight, { stateBatchIndices: Int32Array.from([1, 1]) }),
      /distinct/,
    ],
    ['unknown option', (a) => causalConv1dUpdate(a.state, a.x, a.weight, { foo: 1 } as never), /foo/],
  ];
  for (const [name, call, re] of cases) {
    it(`${name}: throws and leaves convState untouched`, () => {
      const a = make();
      expect(() => call(a)).toThrow(re);
      expect(Array.from(a.state.dataSync())).toEqual(new Array(18).fill(7));
    });
  }
});
