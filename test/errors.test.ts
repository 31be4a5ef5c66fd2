// Bad input to the three ops (docs/API.md, Errors): the right error class or code, a message naming the
// function, the argument, what was expected and what was given; and a failed call leaves every
// input as it was (selectiveStateUpdate's state above all).
import { describe, expect, it } from 'vitest';
import { ArgumentChecker } from '../dist/checks.js';
import { Tensor, cuda, selectiveScan, selectiveScanBackward, selectiveStateUpdate } from './helpers/api.js';
import { expectCode, expectThrow } from './helpers/expect-code.js';
import { Rng } from './helpers/random.js';
import type { AnyDType } from './helpers/reference.js';
import { expectBitsEqual } from './helpers/run.js';

const rng = new Rng(901);
function rand(shape: number[], dtype: AnyDType = 'float32', lo = -1, hi = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return Tensor.from(rng.uniformArray(n, lo, hi), shape, { dtype });
}

/** An expected shape in a message, as [2, 4, 10] or with names, [batch=2, dim=4, L=10]. */
function shapeRe(dims: number[]): RegExp {
  return new RegExp(`\\[${dims.map((d) => `(\\w+=)?${d}`).join(', ')}\\]`);
}

type Ctor = new (...a: never[]) => Error;
interface Case {
  name: string;
  fn: () => unknown;
  cls?: Ctor;
  code?: string;
  res?: RegExp[];
}

function runCases(cases: Case[], inputs: () => Tensor[]) {
  for (const c of cases) {
    it(c.name, () => {
      const ins = inputs();
      const before = ins.map((t) => (t.isDisposed ? null : t.dataSync().slice()));
      let err: Error;
      if (c.code) err = expectCode(c.fn, c.code);
      else err = expectThrow(c.fn, c.cls!);
      for (const re of c.res ?? []) expect(err.message).toMatch(re);
      ins.forEach((t, i) => {
        if (before[i]) expectBitsEqual(t.dataSync(), before[i]!, `input ${i} unchanged after the failed call`);
      });
    });
  }
}

// ------------------------------------------------------------------------------------------------
// selectiveScan: batch 2, dim 4, L 10, N 16

const S = { batch: 2, dim: 4, L: 10, N: 16 };
let u = rand([2, 4, 10]);
let delta = rand([2, 4, 10], 'float32', 0, 0.5);
let A = rand([4, 16], 'float32', -2, -0.5);
let Bv = rand([2, 16, 10]);
let Cf = rand([4, 16]);
const scanInputs = () => [u, delta, A, Bv, Cf];
const fresh = () => {
  u = rand([2, 4, 10]);
  delta = rand([2, 4, 10], 'float32', 0, 0.5);
  A = rand([4, 16], 'float32', -2, -0.5);
  Bv = rand([2, 16, 10]);
  Cf = rand([4, 16]);
};
void S;

describe('selectiveScan: valid baseline works (so the failures below are about the one bad argument)', () => {
  it('baseline', () => {
    const r = selectiveScan(u, delta, A, Bv, Cf, {
      D: rand([4]),
      z: rand([2, 4, 10]),
      deltaBias: rand([4]),
      initialState: rand([2, 4, 16]),
      returnLastState: true,
    });
    expect([...r.out.shape]).toEqual([2, 4, 10]);
    expect(Number.isFinite(r.out.dataSync()[0])).toBe(true);
  });
});

describe('selectiveScan: wrong shapes are RangeErrors naming the function, argument, expected and given', () => {
  runCases(
    [
      {
        name: 'u of rank 2',
        fn: () => selectiveScan(rand([2, 40]), delta, A, Bv, Cf),
        cls: RangeError,
        res: [/selectiveScan: u\b/, /\[2, 40\]/],
      },
      {
        name: 'u of rank 4',
        fn: () => selectiveScan(rand([2, 4, 10, 1]), delta, A, Bv, Cf),
        cls: RangeError,
        res: [/selectiveScan: u\b/, /\[2, 4, 10, 1\]/],
      },
      {
        name: 'delta shape differs from u',
        fn: () => selectiveScan(u, rand([2, 4, 9]), A, Bv, Cf),
        cls: RangeError,
        res: [/selectiveScan: delta must have shape/, shapeRe([2, 4, 10]), /\[2, 4, 9\]/],
      },
      {
        name: 'A with the wrong dim',
        fn: () => selectiveScan(u, delta, rand([3, 16]), Bv, Cf),
        cls: RangeError,
        res: [/selectiveScan: A must have shape/, /\[3, 16\]/],
      },
      {
        name: 'A of rank 1',
        fn: () => selectiveScan(u, delta, rand([4]), Bv, Cf),
        cls: RangeError,
        res: [/selectiveScan: A\b/, /\[4\]/],
      },
      {
        name: 'input-dependent B with the wrong L (the docs/API.md example)',
        fn: () => selectiveScan(u, delta, A, rand([2, 16, 9]), Cf),
        cls: RangeError,
        res: [/selectiveScan: B must have shape/, /2/, /16/, /got \[2, 16, 9\]/],
      },
      {
        name: 'input-dependent B with the wrong batch',
        fn: () => selectiveScan(u, delta, A, rand([3, 16, 10]), Cf),
        cls: RangeError,
        res: [/selectiveScan: B must have shape/, /\[3, 16, 10\]/],
      },
      {
        name: 'input-dependent B with the wrong N',
        fn: () => selectiveScan(u, delta, A, rand([2, 8, 10]), Cf),
        cls: RangeError,
        res: [/selectiveScan: B must have shape/, /\[2, 8, 10\]/],
      },
      {
        name: 'fixed C with the wrong N',
        fn: () => selectiveScan(u, delta, A, Bv, rand([4, 8])),
        cls: RangeError,
        res: [/selectiveScan: C must have shape/, /\[4, 8\]/],
      },
      {
        name: 'grouped C of rank 5',
        fn: () => selectiveScan(u, delta, A, Bv, rand([2, 1, 1, 16, 10])),
        cls: RangeError,
        res: [/selectiveScan: C\b/],
      },
      {
        name: 'G = 3 does not divide dim = 4',
        fn: () => selectiveScan(u, delta, A, rand([2, 3, 16, 10]), Cf),
        cls: RangeError,
        res: [/selectiveScan: B\b/, /\b3\b/, /\b4\b/],
      },
      {
        name: 'G = 8 > dim = 4',
        fn: () => selectiveScan(u, delta, A, Bv, rand([2, 8, 16, 10])),
        cls: RangeError,
        res: [/selectiveScan: C\b/],
      },
      {
        name: 'D of the wrong length',
        fn: () => selectiveScan(u, delta, A, Bv, Cf, { D: rand([5]) }),
        cls: RangeError,
        res: [/selectiveScan: D\b/, /\[5\]/],
      },
      {
        name: 'z of the wrong shape',
        fn: () => selectiveScan(u, delta, A, Bv, Cf, { z: rand([2, 4, 11]) }),
        cls: RangeError,
        res: [/selectiveScan: z\b/, /\[2, 4, 11\]/],
      },
      {
        name: 'deltaBias of the wrong shape',
        fn: () => selectiveScan(u, delta, A, Bv, Cf, { deltaBias: rand([4, 1]) }),
        cls: RangeError,
        res: [/selectiveScan: deltaBias\b/, /\[4, 1\]/],
      },
      {
        name: 'initialState of the wrong shape',
        fn: () => selectiveScan(u, delta, A, Bv, Cf, { initialState: rand([2, 4, 15]) }),
        cls: RangeError,
        res: [/selectiveScan: initialState\b/, shapeRe([2, 4, 16]), /\[2, 4, 15\]/],
      },
    ],
    scanInputs,
  );

  it('N > 256 is a RangeError (N = 257), N = 256 is fine', () => {
    const A257 = rand([4, 257], 'float32', -2, -0.5);
    const err = expectThrow(() => selectiveScan(u, delta, A257, rand([4, 257]), rand([4, 257])), RangeError);
    expect(err.message).toMatch(/selectiveScan/);
    expect(err.message).toMatch(/256/);
    expect(err.message).toMatch(/257/);
    const ok = selectiveScan(u, delta, rand([4, 256], 'float32', -2, -0.5), rand([4, 256]), rand([4, 256]));
    expect(ok.out.dataSync().every(Number.isFinite)).toBe(true);
  });
});

describe('selectiveScan: wrong dtypes and types are TypeErrors', () => {
  runCases(
    [
      {
        name: 'A in float16',
        fn: () => selectiveScan(u, delta, rand([4, 16], 'float16'), Bv, Cf),
        cls: TypeError,
        res: [/selectiveScan: A\b/, /float32/, /float16/],
      },
      {
        name: 'delta dtype differs from u dtype',
        fn: () => selectiveScan(u, rand([2, 4, 10], 'bfloat16'), A, Bv, Cf),
        cls: TypeError,
        res: [/selectiveScan: delta\b/, /bfloat16/],
      },
      {
        name: 'input-dependent B dtype differs from u',
        fn: () => selectiveScan(u, delta, A, rand([2, 16, 10], 'float16'), Cf),
        cls: TypeError,
        res: [/selectiveScan: B\b/, /float16/],
      },
      {
        name: 'fixed B in bfloat16',
        fn: () => selectiveScan(u, delta, A, rand([4, 16], 'bfloat16'), Cf),
        cls: TypeError,
        res: [/selectiveScan: B\b/],
      },
      {
        name: 'fixed C in float16 with float16 u',
        fn: () =>
          selectiveScan(
            rand([2, 4, 10], 'float16'),
            rand([2, 4, 10], 'float16'),
            A,
            rand([2, 16, 10], 'float16'),
            rand([4, 16], 'float16'),
          ),
        cls: TypeError,
        res: [/selectiveScan: C\b/],
      },
      {
        name: 'D in float16',
        fn: () => selectiveScan(u, delta, A, Bv, Cf, { D: rand([4], 'float16') }),
        cls: TypeError,
        res: [/selectiveScan: D\b/],
      },
      {
        name: 'z dtype differs from u',
        fn: () => selectiveScan(u, delta, A, Bv, Cf, { z: rand([2, 4, 10], 'bfloat16') }),
        cls: TypeError,
        res: [/selectiveScan: z\b/],
      },
      {
        name: 'deltaBias in bfloat16',
        fn: () => selectiveScan(u, delta, A, Bv, Cf, { deltaBias: rand([4], 'bfloat16') }),
        cls: TypeError,
        res: [/selectiveScan: deltaBias\b/],
      },
      {
        name: 'initialState in float16',
        fn: () => selectiveScan(u, delta, A, Bv, Cf, { initialState: rand([2, 4, 16], 'float16') }),
        cls: TypeError,
        res: [/selectiveScan: initialState\b/],
      },
      {
        name: 'u is a Float32Array, not a Tensor',
        fn: () => selectiveScan(new Float32Array(80) as never, delta, A, Bv, Cf),
        cls: TypeError,
        res: [/selectiveScan: u\b/],
      },
      {
        name: 'A is null',
        fn: () => selectiveScan(u, delta, null as never, Bv, Cf),
        cls: TypeError,
        res: [/selectiveScan: A\b/],
      },
      {
        name: 'C is missing',
        fn: () => (selectiveScan as unknown as (...a: unknown[]) => unknown)(u, delta, A, Bv),
        cls: TypeError,
        res: [/selectiveScan: C\b/],
      },
      {
        name: 'B is a tensor-like plain object',
        fn: () => selectiveScan(u, delta, A, { shape: [2, 16, 10], dtype: 'float32' } as never, Cf),
        cls: TypeError,
        res: [/selectiveScan: B\b/],
      },
      {
        name: 'D is a number array',
        fn: () => selectiveScan(u, delta, A, Bv, Cf, { D: [1, 2, 3, 4] as never }),
        cls: TypeError,
        res: [/selectiveScan: D\b/],
      },
      {
        name: "deltaSoftplus is 'yes'",
        fn: () => selectiveScan(u, delta, A, Bv, Cf, { deltaSoftplus: 'yes' as never }),
        cls: TypeError,
        res: [/selectiveScan: deltaSoftplus\b/],
      },
      {
        name: 'returnLastState is 1',
        fn: () => selectiveScan(u, delta, A, Bv, Cf, { returnLastState: 1 as never }),
        cls: TypeError,
        res: [/selectiveScan: returnLastState\b/],
      },
      {
        name: 'saveForBackward is a string',
        fn: () => selectiveScan(u, delta, A, Bv, Cf, { saveForBackward: 'true' as never }),
        cls: TypeError,
        res: [/selectiveScan: saveForBackward\b/],
      },
      {
        name: 'options is a number',
        fn: () => selectiveScan(u, delta, A, Bv, Cf, 5 as never),
        cls: TypeError,
        res: [/selectiveScan/],
      },
    ],
    scanInputs,
  );
});

describe('selectiveScan: disposed inputs throw ERR_DISPOSED', () => {
  it('a disposed positional input', () => {
    fresh();
    Bv.dispose();
    expectCode(() => selectiveScan(u, delta, A, Bv, Cf), 'ERR_DISPOSED');
    fresh();
  });
  it('a disposed option tensor (z, initialState)', () => {
    const z = rand([2, 4, 10]);
    z.dispose();
    expectCode(() => selectiveScan(u, delta, A, Bv, Cf, { z }), 'ERR_DISPOSED');
    const s = rand([2, 4, 16]);
    s.dispose();
    expectCode(() => selectiveScan(u, delta, A, Bv, Cf, { initialState: s }), 'ERR_DISPOSED');
  });
});

// ------------------------------------------------------------------------------------------------
// selectiveScanBackward

describe('selectiveScanBackward: bad input', () => {
  const fwd = () =>
    selectiveScan(u, delta, A, Bv, Cf, { returnLastState: true, saveForBackward: true, z: rand([2, 4, 10]) });
  const dout = rand([2, 4, 10]);
  runCases(
    [
      {
        name: 'ctx is a plain object',
        fn: () => selectiveScanBackward({} as never, dout),
        cls: TypeError,
        res: [/selectiveScanBackward: ctx\b/],
      },
      {
        name: 'ctx is undefined (forward without saveForBackward)',
        fn: () => selectiveScanBackward(selectiveScan(u, delta, A, Bv, Cf).ctx as never, dout),
        cls: TypeError,
        res: [/selectiveScanBackward: ctx\b/],
      },
      {
        name: 'dout of the wrong shape',
        fn: () => selectiveScanBackward(fwd().ctx!, rand([2, 4, 9])),
        cls: RangeError,
        res: [/selectiveScanBackward: dout\b/, shapeRe([2, 4, 10]), /\[2, 4, 9\]/],
      },
      {
        name: 'dout in float16 for a float32 forward',
        fn: () => selectiveScanBackward(fwd().ctx!, rand([2, 4, 10], 'float16')),
        cls: TypeError,
        res: [/selectiveScanBackward: dout\b/],
      },
      {
        name: 'dout is a Float32Array',
        fn: () => selectiveScanBackward(fwd().ctx!, new Float32Array(80) as never),
        cls: TypeError,
        res: [/selectiveScanBackward: dout\b/],
      },
      {
        name: 'dLastState of the wrong shape',
        fn: () => selectiveScanBackward(fwd().ctx!, dout, { dLastState: rand([2, 4, 8]) }),
        cls: RangeError,
        res: [/selectiveScanBackward: dLastState\b/, shapeRe([2, 4, 16]), /\[2, 4, 8\]/],
      },
      {
        name: 'dLastState in bfloat16',
        fn: () => selectiveScanBackward(fwd().ctx!, dout, { dLastState: rand([2, 4, 16], 'bfloat16') }),
        cls: TypeError,
        res: [/selectiveScanBackward: dLastState\b/],
      },
      {
        name: "deterministic is 'yes'",
        fn: () => selectiveScanBackward(fwd().ctx!, dout, { deterministic: 'yes' as never }),
        cls: TypeError,
        res: [/selectiveScanBackward: deterministic\b/],
      },
    ],
    () => [u, delta, A, Bv, Cf, dout],
  );

  it('a bad call does not spoil the context: a correct backward afterwards works', () => {
    const r = fwd();
    expectThrow(() => selectiveScanBackward(r.ctx!, rand([2, 4, 9])), RangeError);
    const g = selectiveScanBackward(r.ctx!, dout);
    expect(g.du.dataSync().every(Number.isFinite)).toBe(true);
    expect(g.dz).toBeDefined();
  });
});

// ------------------------------------------------------------------------------------------------
// selectiveStateUpdate: channels form batch 2, dim 4, N 16; heads forms batch 2, H 2, P 2

describe('selectiveStateUpdate: bad input throws and leaves the state (and every input) unchanged', () => {
  const state = rand([2, 4, 16]);
  const x = rand([2, 4]);
  const dt = rand([2, 4], 'float32', 0, 0.5);
  const Ac = rand([4, 16], 'float32', -2, -0.5);
  const B = rand([2, 16]);
  const C = rand([2, 16]);
  const hstate = rand([2, 2, 2, 16]);
  const hx = rand([2, 2, 2]);
  const hdt = rand([2, 2, 2], 'float32', 0, 0.5);
  const hA = rand([2, 2, 16], 'float32', -2, -0.5);
  const hB = rand([2, 1, 16]);
  const sdt = rand([2, 2], 'float32', 0, 0.5);
  const sA = rand([2], 'float32', -2, -0.5);
  const slots = rand([5, 4, 16]);
  const all = () => [state, x, dt, Ac, B, C, hstate, hx, hdt, hA, hB, sdt, sA, slots];
  const fn = 'selectiveStateUpdate';

  it('baseline calls of all three forms work (and do change the state)', () => {
    const s = rand([2, 4, 16]);
    const b = s.dataSync().slice();
    selectiveStateUpdate(s, x, dt, Ac, B, C).dataSync();
    expect(s.dataSync().some((v, i) => v !== b[i])).toBe(true);
    const hs = rand([2, 2, 2, 16]);
    expect([...selectiveStateUpdate(hs, hx, hdt, hA, hB, hB).shape]).toEqual([2, 2, 2]);
    expect([...selectiveStateUpdate(hs, hx, sdt, sA, hB, hB, { D: rand([2]), dtBias: rand([2]) }).shape]).toEqual([
      2, 2, 2,
    ]);
  });

  runCases(
    [
      {
        name: 'state of rank 2',
        fn: () => selectiveStateUpdate(rand([2, 64]), x, dt, Ac, B, C),
        cls: RangeError,
        res: [new RegExp(`${fn}: state\\b`), /\[2, 64\]/],
      },
      {
        name: 'x of the wrong shape',
        fn: () => selectiveStateUpdate(state, rand([2, 5]), dt, Ac, B, C),
        cls: RangeError,
        res: [new RegExp(`${fn}: x\\b`), /\[2, 5\]/],
      },
      {
        name: 'dt of the wrong shape',
        fn: () => selectiveStateUpdate(state, x, rand([2, 3]), Ac, B, C),
        cls: RangeError,
        res: [new RegExp(`${fn}: dt\\b`), /\[2, 3\]/],
      },
      {
        name: 'A of the wrong shape',
        fn: () => selectiveStateUpdate(state, x, dt, rand([4, 15]), B, C),
        cls: RangeError,
        res: [new RegExp(`${fn}: A\\b`), /\[4, 15\]/],
      },
      {
        name: 'B of the wrong shape',
        fn: () => selectiveStateUpdate(state, x, dt, Ac, rand([2, 15]), C),
        cls: RangeError,
        res: [new RegExp(`${fn}: B\\b`), /\[2, 15\]/],
      },
      {
        name: 'C with G = 3 not dividing dim = 4',
        fn: () => selectiveStateUpdate(state, x, dt, Ac, B, rand([2, 3, 16])),
        cls: RangeError,
        res: [new RegExp(`${fn}: C\\b`)],
      },
      {
        name: 'D of the wrong shape',
        fn: () => selectiveStateUpdate(state, x, dt, Ac, B, C, { D: rand([3]) }),
        cls: RangeError,
        res: [new RegExp(`${fn}: D\\b`)],
      },
      {
        name: 'z of the wrong shape',
        fn: () => selectiveStateUpdate(state, x, dt, Ac, B, C, { z: rand([2, 3]) }),
        cls: RangeError,
        res: [new RegExp(`${fn}: z\\b`)],
      },
      {
        name: 'heads: A of the wrong shape',
        fn: () => selectiveStateUpdate(hstate, hx, hdt, rand([2, 2, 15]), hB, hB),
        cls: RangeError,
        res: [new RegExp(`${fn}: A\\b`)],
      },
      {
        name: 'heads: B with G = 3 not dividing H = 2',
        fn: () => selectiveStateUpdate(hstate, hx, hdt, hA, rand([2, 3, 16]), hB),
        cls: RangeError,
        res: [new RegExp(`${fn}: B\\b`)],
      },
      {
        name: 'heads, scalar per head: A of length 3 for H = 2',
        fn: () => selectiveStateUpdate(hstate, hx, sdt, rand([3]), hB, hB),
        cls: RangeError,
        res: [new RegExp(`${fn}: A\\b`)],
      },
      {
        name: 'heads, scalar per head: dtBias (H, P) where (H) is required',
        fn: () => selectiveStateUpdate(hstate, hx, sdt, sA, hB, hB, { dtBias: rand([2, 2]) }),
        cls: RangeError,
        res: [new RegExp(`${fn}: dtBias\\b`)],
      },
      {
        name: 'N > 256',
        fn: () => selectiveStateUpdate(rand([2, 4, 257]), x, dt, rand([4, 257]), rand([2, 257]), rand([2, 257])),
        cls: RangeError,
        res: [/256|257/],
      },
      {
        name: 'state in float16',
        fn: () => selectiveStateUpdate(rand([2, 4, 16], 'float16'), x, dt, Ac, B, C),
        cls: TypeError,
        res: [new RegExp(`${fn}: state\\b`)],
      },
      {
        name: 'x in float16 but dt in float32',
        fn: () => selectiveStateUpdate(state, rand([2, 4], 'float16'), dt, Ac, B, C),
        cls: TypeError,
        res: [new RegExp(`${fn}: (x|dt)\\b`)],
      },
      {
        name: 'B in bfloat16 with float32 x',
        fn: () => selectiveStateUpdate(state, x, dt, Ac, rand([2, 16], 'bfloat16'), C),
        cls: TypeError,
        res: [new RegExp(`${fn}: B\\b`)],
      },
      {
        name: 'A in float16',
        fn: () => selectiveStateUpdate(state, x, dt, rand([4, 16], 'float16'), B, C),
        cls: TypeError,
        res: [new RegExp(`${fn}: A\\b`)],
      },
      {
        name: 'dtBias in bfloat16',
        fn: () => selectiveStateUpdate(state, x, dt, Ac, B, C, { dtBias: rand([4], 'bfloat16') }),
        cls: TypeError,
        res: [new RegExp(`${fn}: dtBias\\b`)],
      },
      {
        name: 'x is a Float32Array',
        fn: () => selectiveStateUpdate(state, new Float32Array(8) as never, dt, Ac, B, C),
        cls: TypeError,
        res: [new RegExp(`${fn}: x\\b`)],
      },
      {
        name: "dtSoftplus is 'yes'",
        fn: () => selectiveStateUpdate(state, x, dt, Ac, B, C, { dtSoftplus: 'yes' as never }),
        cls: TypeError,
        res: [new RegExp(`${fn}: dtSoftplus\\b`)],
      },
      {
        name: 'stateBatchIndices is a plain array',
        fn: () => selectiveStateUpdate(slots, x, dt, Ac, B, C, { stateBatchIndices: [0, 1] as never }),
        cls: TypeError,
        res: [new RegExp(`${fn}: stateBatchIndices\\b`)],
      },
      {
        name: 'stateBatchIndices is a Uint32Array',
        fn: () =>
          selectiveStateUpdate(slots, x, dt, Ac, B, C, { stateBatchIndices: Uint32Array.from([0, 1]) as never }),
        cls: TypeError,
        res: [new RegExp(`${fn}: stateBatchIndices\\b`)],
      },
      {
        name: 'stateBatchIndices of the wrong length',
        fn: () => selectiveStateUpdate(slots, x, dt, Ac, B, C, { stateBatchIndices: Int32Array.from([0, 1, 2]) }),
        cls: RangeError,
        res: [new RegExp(`${fn}: stateBatchIndices\\b`)],
      },
      {
        name: 'stateBatchIndices with a duplicate',
        fn: () => selectiveStateUpdate(slots, x, dt, Ac, B, C, { stateBatchIndices: Int32Array.from([4, 4]) }),
        cls: RangeError,
        res: [new RegExp(`${fn}: stateBatchIndices\\b`)],
      },
      {
        name: 'stateBatchIndices out of range (in the last row)',
        fn: () => selectiveStateUpdate(slots, x, dt, Ac, B, C, { stateBatchIndices: Int32Array.from([0, 5]) }),
        cls: RangeError,
        res: [new RegExp(`${fn}: stateBatchIndices\\b`), /5/],
      },
      {
        name: 'more batch rows than state rows without indices',
        fn: () => selectiveStateUpdate(rand([1, 4, 16]), x, dt, Ac, B, C),
        cls: RangeError,
        res: [new RegExp(`${fn}: `)],
      },
    ],
    all,
  );

  it('a disposed state throws ERR_DISPOSED; a disposed option tensor too, and the state is unchanged', () => {
    const s = rand([2, 4, 16]);
    s.dispose();
    expectCode(() => selectiveStateUpdate(s, x, dt, Ac, B, C), 'ERR_DISPOSED');
    const s2 = rand([2, 4, 16]);
    const before = s2.dataSync().slice();
    const z = rand([2, 4]);
    z.dispose();
    expectCode(() => selectiveStateUpdate(s2, x, dt, Ac, B, C, { z }), 'ERR_DISPOSED');
    expectBitsEqual(s2.dataSync(), before, 'state');
  });
});

// ------------------------------------------------------------------------------------------------
// Devices

describe.skipIf(cuda.isAvailable())(
  `CUDA unavailable here (${cuda.unavailableReason}): 'cuda' tensors throw ERR_CUDA_UNAVAILABLE with the reason`,
  () => {
    it('Tensor.from / zeros / fromBits / to on cuda', () => {
      const reason = cuda.unavailableReason!;
      expect(typeof reason).toBe('string');
      expect(reason.length).toBeGreaterThan(0);
      const escaped = new RegExp(reason.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
      expectCode(() => Tensor.from([1, 2], [2], { device: 'cuda' }), 'ERR_CUDA_UNAVAILABLE', escaped);
      expectCode(() => Tensor.zeros([2], { device: 'cuda:0', dtype: 'bfloat16' }), 'ERR_CUDA_UNAVAILABLE', escaped);
      expectCode(
        () => Tensor.fromBits(new Uint16Array(2), [2], { dtype: 'float16', device: 'cuda' }),
        'ERR_CUDA_UNAVAILABLE',
        escaped,
      );
      expectCode(() => Tensor.zeros([2]).to('cuda'), 'ERR_CUDA_UNAVAILABLE', escaped);
      expectCode(
        () => Tensor.fromDevicePointer(4096n, [2], { dtype: 'float32', device: 'cuda' }),
        'ERR_CUDA_UNAVAILABLE',
        escaped,
      );
    });

    it('cuda.synchronize() rejects with ERR_CUDA_UNAVAILABLE', async () => {
      await expect((async () => cuda.synchronize())()).rejects.toMatchObject({ code: 'ERR_CUDA_UNAVAILABLE' });
    });
  },
);

// The three backwards share one check of their gradients' device (ArgumentChecker.forwardDevice);
// on a machine without a GPU it can still be given a forward that ran on one.
describe('a backward: the gradients on the device of the forward', () => {
  it('names the first gradient and both devices (the message docs/API.md shows)', () => {
    const check = new ArgumentChecker('selectiveScanBackward');
    check.tensor('dout', Tensor.zeros([2]));
    check.optionalTensor('dLastState', Tensor.zeros([1]));
    expect(check.forwardDevice('cpu')).toBe('cpu');
    expectCode(
      () => check.forwardDevice('cuda:0'),
      'ERR_DEVICE_MISMATCH',
      /^selectiveScanBackward: dout is on cpu but the forward ran on cuda:0$/,
    );
  });
});

describe.skipIf(!cuda.isAvailable())(`mixed devices (needs a GPU: ${cuda.unavailableReason ?? 'available'})`, () => {
  it('one CUDA argument among CPU ones throws ERR_DEVICE_MISMATCH, before any work', () => {
    const ug = u.to('cuda');
    expectCode(() => selectiveScan(ug, delta, A, Bv, Cf), 'ERR_DEVICE_MISMATCH');
    expectCode(() => selectiveScan(u, delta, A, Bv, Cf, { D: rand([4]).to('cuda') }), 'ERR_DEVICE_MISMATCH');
    const s = rand([2, 4, 16]);
    const before = s.dataSync().slice();
    expectCode(
      () => selectiveStateUpdate(s, rand([2, 4]).to('cuda'), rand([2, 4]), rand([4, 16]), rand([2, 16]), rand([2, 16])),
      'ERR_DEVICE_MISMATCH',
    );
    expectBitsEqual(s.dataSync(), before, 'state');
    const r = selectiveScan(u, delta, A, Bv, Cf, { saveForBackward: true });
    expectCode(() => selectiveScanBackward(r.ctx!, rand([2, 4, 10]).to('cuda')), 'ERR_DEVICE_MISMATCH');
  });
});
