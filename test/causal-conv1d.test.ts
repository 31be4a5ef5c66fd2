// causalConv1dUpdate on the CPU backend against the float64 reference (test/helpers/
// conv-reference.ts): every dtype, W = 1..8, bias, silu, stateBatchIndices with permuted slots and
// padding rows; errors name the argument and a failed call changes nothing.
import { describe, expect, it } from 'vitest';
import { causalConv1dUpdate } from './helpers/api.js';
import { convUpdateRef } from './helpers/conv-reference.js';
import { Rng } from './helpers/random.js';
import { type AnyDType, roundArray } from './helpers/reference.js';
import { expectRelClose, tensor, tolerances } from './helpers/run.js';

function randn(rng: Rng, n: number): Float64Array {
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal();
  return a;
}

const DTYPES: AnyDType[] = ['float32', 'float16', 'bfloat16'];

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
