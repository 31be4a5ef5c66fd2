// Properties of the CPU scan: splitting a sequence in two equals one scan (outputs and gradients),
// results do not depend on the thread count, deterministic mode repeats bit for bit, the context's
// lifecycle, NaN stays in its row.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Tensor, buildInfo, selectiveScan, selectiveScanBackward, setNumThreads } from './helpers/api.js';
import { FIXED, VARYING, grouped, makeScanCase, type ScanCase, type ScanCaseSpec } from './helpers/cases.js';
import { expectCode } from './helpers/expect-code.js';
import { bcShape, scanRef, scanRefBackward } from './helpers/reference.js';
import {
  caseTensors,
  concatLast,
  expectBitsEqual,
  expectRelClose,
  runAddon,
  scanOpts,
  sliceLast,
  tensor,
} from './helpers/run.js';

const ALL = {
  D: true,
  z: true,
  deltaBias: true,
  softplus: true,
  initialState: true,
  lastState: true,
  dLastState: true,
};

describe('a sequence split in two equals one scan', () => {
  const specs: [ScanCaseSpec, number][] = [
    [{ batch: 2, dim: 4, L: 300, N: 16, B: grouped(2), C: FIXED, ...ALL, seed: 501 }, 123],
    [{ batch: 2, dim: 4, L: 600, N: 8, B: FIXED, C: VARYING, ...ALL, seed: 502 }, 256],
    [
      {
        batch: 1,
        dim: 2,
        L: 40,
        N: 3,
        B: VARYING,
        C: grouped(2),
        D: true,
        initialState: true,
        lastState: true,
        seed: 503,
      },
      1,
    ],
  ];
  for (const [spec, L1] of specs) {
    const Bk = spec.B!.kind,
      Ck = spec.C!.kind;
    it(`L ${spec.L} split at ${L1}, B ${Bk}, C ${Ck}: outputs, lastState and every gradient`, () => {
      const c = makeScanCase(spec);
      const { batch, dim, L, N } = c.ref;
      const L2 = L - L1;
      const r = c.ref;
      const full = runAddon(c);

      const half = (t0: number, t1: number) => {
        const Lh = t1 - t0;
        const bc = (which: 'B' | 'C') => {
          const layout = which === 'B' ? r.Blayout : r.Clayout;
          const data = which === 'B' ? r.B : r.C;
          return layout.kind === 'fixed'
            ? tensor(data, [dim, N])
            : tensor(sliceLast(data, L, t0, t1), bcShape(layout, batch, dim, Lh, N), c.dtype);
        };
        return {
          u: tensor(sliceLast(r.u, L, t0, t1), [batch, dim, Lh]),
          delta: tensor(sliceLast(r.delta, L, t0, t1), [batch, dim, Lh]),
          B: bc('B'),
          C: bc('C'),
          z: r.z ? tensor(sliceLast(r.z, L, t0, t1), [batch, dim, Lh]) : undefined,
          dout: tensor(sliceLast(c.dout, L, t0, t1), [batch, dim, Lh]),
        };
      };
      const A = tensor(r.A, [dim, N]);
      const common: Record<string, unknown> = { returnLastState: true, saveForBackward: true };
      if (r.D) common.D = tensor(r.D, [dim]);
      if (r.deltaBias) common.deltaBias = tensor(r.deltaBias, [dim]);
      if (r.deltaSoftplus) common.deltaSoftplus = true;
      const h1 = half(0, L1),
        h2 = half(L1, L);
      const f1 = selectiveScan(h1.u, h1.delta, A, h1.B, h1.C, {
        ...common,
        z: h1.z,
        initialState: r.initialState ? tensor(r.initialState, [batch, dim, N]) : undefined,
      } as never);
      const f2 = selectiveScan(h2.u, h2.delta, A, h2.B, h2.C, {
        ...common,
        z: h2.z,
        initialState: f1.lastState,
      } as never);
      expectRelClose(concatLast(f1.out.dataSync(), L1, f2.out.dataSync(), L2), full.out, 1e-5, 'out');
      expectRelClose(f2.lastState!.dataSync(), full.lastState!, 1e-5, 'lastState');

      const g2 = selectiveScanBackward(
        f2.ctx!,
        h2.dout,
        (c.dLastState ? { dLastState: tensor(c.dLastState, [batch, dim, N]) } : {}) as never,
      );
      expect(g2.dInitialState, 'the second half returns dInitialState').toBeDefined();
      const g1 = selectiveScanBackward(f1.ctx!, h1.dout, { dLastState: g2.dInitialState });
      const cat = (a?: Tensor, b?: Tensor) => concatLast(a!.dataSync(), L1, b!.dataSync(), L2);
      const sum = (a?: Tensor, b?: Tensor) => {
        const x = a!.dataSync(),
          y = b!.dataSync();
        return Float64Array.from(x, (v, i) => v + y[i]);
      };
      const tol = 1e-4;
      expectRelClose(cat(g1.du, g2.du), full.grads.du, tol, 'du');
      expectRelClose(cat(g1.ddelta, g2.ddelta), full.grads.ddelta, tol, 'ddelta');
      expectRelClose(sum(g1.dA, g2.dA), full.grads.dA, tol, 'dA');
      expectRelClose(r.Blayout.kind === 'fixed' ? sum(g1.dB, g2.dB) : cat(g1.dB, g2.dB), full.grads.dB, tol, 'dB');
      expectRelClose(r.Clayout.kind === 'fixed' ? sum(g1.dC, g2.dC) : cat(g1.dC, g2.dC), full.grads.dC, tol, 'dC');
      if (r.D) expectRelClose(sum(g1.dD, g2.dD), full.grads.dD, tol, 'dD');
      if (r.z) expectRelClose(cat(g1.dz, g2.dz), full.grads.dz, tol, 'dz');
      if (r.deltaBias) expectRelClose(sum(g1.ddeltaBias, g2.ddeltaBias), full.grads.ddeltaBias, tol, 'ddeltaBias');
      expectRelClose(g1.dInitialState!.dataSync(), full.grads.dInitialState, tol, 'dInitialState');
    });
  }
});

describe('results do not depend on the CPU thread count', () => {
  let initial = 0;
  beforeAll(() => {
    initial = buildInfo().cpuThreads;
  });
  afterAll(() => setNumThreads(initial));

  const specs: ScanCaseSpec[] = [
    { batch: 2, dim: 48, L: 300, N: 16, B: grouped(3), C: FIXED, ...ALL, seed: 511 },
    { batch: 3, dim: 20, L: 129, N: 33, B: FIXED, C: VARYING, D: true, z: true, initialState: true, seed: 512 },
    { batch: 2, dim: 16, L: 50, N: 8, dtype: 'bfloat16', B: grouped(2), C: grouped(4), ...ALL, seed: 513 },
  ];
  for (const spec of specs) {
    it(`${spec.dtype ?? 'float32'} batch ${spec.batch} dim ${spec.dim} L ${spec.L}: 1, 2 and 3 threads bit-identical`, () => {
      const c = makeScanCase(spec);
      const runs = [1, 2, 3].map((n) => {
        setNumThreads(n);
        return runAddon(c);
      });
      for (const k of [1, 2]) {
        expectBitsEqual(runs[k].out, runs[0].out, `out, ${k + 1} threads vs 1`);
        if (runs[0].lastState) expectBitsEqual(runs[k].lastState!, runs[0].lastState, `lastState, ${k + 1} threads`);
        expect(Object.keys(runs[k].grads).sort()).toEqual(Object.keys(runs[0].grads).sort());
        for (const g of Object.keys(runs[0].grads))
          expectBitsEqual(runs[k].grads[g], runs[0].grads[g], `${g}, ${k + 1} threads vs 1`);
      }
      // and they are right
      expectRelClose(runs[0].out, scanRef(c.ref).out, spec.dtype ? 1e-2 : 1e-5, 'out vs reference');
    }, 30000);
  }
});

describe('deterministic backward', () => {
  it('deterministic: true repeated gives identical bits for every gradient', () => {
    const c = makeScanCase({ batch: 2, dim: 16, L: 200, N: 16, B: grouped(2), C: VARYING, ...ALL, seed: 521 });
    const runs = [0, 1, 2].map(() => runAddon(c, 'cpu', { deterministic: true }));
    for (const k of [1, 2]) {
      for (const g of Object.keys(runs[0].grads)) expectBitsEqual(runs[k].grads[g], runs[0].grads[g], `${g} run ${k}`);
    }
    const ref = scanRefBackward(c.ref, c.dout, c.dLastState);
    expectRelClose(runs[0].grads.dB, ref.dB, 1e-4, 'dB vs reference');
  });
});

describe('ScanContext lifecycle', () => {
  function setup(): { c: ScanCase; t: ReturnType<typeof caseTensors>; res: ReturnType<typeof selectiveScan> } {
    const c = makeScanCase({ batch: 2, dim: 4, L: 30, N: 8, B: VARYING, C: grouped(2), ...ALL, seed: 531 });
    const t = caseTensors(c);
    const res = selectiveScan(t.u, t.delta, t.A, t.B, t.C, scanOpts(c, t) as never);
    return { c, t, res };
  }

  it('backward may be called twice on the same ctx with the same result', () => {
    const { t, res } = setup();
    const a = selectiveScanBackward(res.ctx!, t.dout, { dLastState: t.dLastState });
    const b = selectiveScanBackward(res.ctx!, t.dout, { dLastState: t.dLastState });
    const keys = Object.keys(a).filter((k) => (a as unknown as Record<string, unknown>)[k] !== undefined);
    expect(keys.length).toBe(9);
    for (const k of keys) {
      expectBitsEqual(
        (b as unknown as Record<string, Tensor>)[k].dataSync(),
        (a as unknown as Record<string, Tensor>)[k].dataSync(),
        k,
      );
    }
  });

  it('ctx.dispose() frees the checkpoints, not the inputs; backward then throws ERR_DISPOSED', () => {
    const { t, res } = setup();
    res.ctx!.dispose();
    expectCode(() => selectiveScanBackward(res.ctx!, t.dout, { dLastState: t.dLastState }), 'ERR_DISPOSED');
    for (const [k, v] of Object.entries(t)) expect((v as Tensor).isDisposed, k).toBe(false);
    expect(t.u.dataSync().length).toBe(2 * 4 * 30);
    expect(res.out.isDisposed).toBe(false);
    expect(res.out.dataSync().length).toBe(2 * 4 * 30);
  });

  for (const input of ['u', 'B', 'z', 'initialState'] as const) {
    it(`disposing ${input} before backward makes backward throw ERR_DISPOSED`, () => {
      const { t, res } = setup();
      t[input]!.dispose();
      expectCode(() => selectiveScanBackward(res.ctx!, t.dout, { dLastState: t.dLastState }), 'ERR_DISPOSED');
    });
  }

  it('a disposed dout or dLastState throws ERR_DISPOSED', () => {
    const { t, res } = setup();
    t.dLastState!.dispose();
    expectCode(() => selectiveScanBackward(res.ctx!, t.dout, { dLastState: t.dLastState }), 'ERR_DISPOSED');
    t.dout.dispose();
    expectCode(() => selectiveScanBackward(res.ctx!, t.dout), 'ERR_DISPOSED');
  });
});

describe('NaN stays in its row', () => {
  it('NaN in u[1, 2, 3] makes row (1, 2) NaN from t = 3 on and leaves every other row exact', () => {
    const c = makeScanCase({
      batch: 2,
      dim: 4,
      L: 12,
      N: 8,
      B: grouped(2),
      C: VARYING,
      D: true,
      z: true,
      initialState: true,
      lastState: true,
      dLastState: true,
      seed: 541,
    });
    const { dim, L, N } = c.ref;
    c.ref.u[(1 * dim + 2) * L + 3] = NaN;
    const got = runAddon(c);
    const ref = scanRef(c.ref);
    const refG = scanRefBackward(c.ref, c.dout, c.dLastState);
    for (let b = 0; b < 2; b++)
      for (let d = 0; d < dim; d++) {
        const row = (b * dim + d) * L;
        const isNaNRow = b === 1 && d === 2;
        for (let t = 0; t < L; t++) {
          const v = got.out[row + t];
          if (isNaNRow && t >= 3) expect(Number.isNaN(v), `out[${b},${d},${t}] is NaN`).toBe(true);
          else
            expect(Math.abs(v - ref.out[row + t]), `out[${b},${d},${t}] = ${v}`).toBeLessThan(
              1e-4 * (1 + Math.abs(ref.out[row + t])),
            );
        }
        const ls = got.lastState!.subarray((b * dim + d) * N, (b * dim + d + 1) * N);
        const lsRef = ref.lastState.subarray((b * dim + d) * N, (b * dim + d + 1) * N);
        if (isNaNRow) expect(Array.from(ls).every(Number.isNaN), 'lastState of the NaN row').toBe(true);
        else expectRelClose(ls, lsRef, 1e-5, `lastState[${b},${d}]`);
        if (!isNaNRow) {
          expectRelClose(got.grads.du.subarray(row, row + L), refG.du.subarray(row, row + L), 1e-4, `du[${b},${d}]`);
          expectRelClose(
            got.grads.ddelta.subarray(row, row + L),
            refG.ddelta.subarray(row, row + L),
            1e-4,
            `ddelta[${b},${d}]`,
          );
          expectRelClose(got.grads.dz.subarray(row, row + L), refG.dz!.subarray(row, row + L), 1e-4, `dz[${b},${d}]`);
          const dis = (b * dim + d) * N;
          expectRelClose(
            got.grads.dInitialState.subarray(dis, dis + N),
            refG.dInitialState!.subarray(dis, dis + N),
            1e-4,
            `dInitialState[${b},${d}]`,
          );
        }
      }
    // dA of the other channels stays finite and right
    for (let d = 0; d < dim; d++) {
      const s = got.grads.dA.subarray(d * N, (d + 1) * N);
      if (d === 2) continue;
      expectRelClose(s, refG.dA.subarray(d * N, (d + 1) * N), 1e-4, `dA[${d}]`);
    }
  });

  it('NaN in an input-dependent B row reaches only the channels of its group in its batch', () => {
    const c = makeScanCase({ batch: 2, dim: 4, L: 10, N: 4, B: grouped(2), C: FIXED, seed: 542 });
    const { dim, L, N } = c.ref;
    // B[b=0, g=1, n=2, t=5]
    c.ref.B[((0 * 2 + 1) * N + 2) * L + 5] = NaN;
    const got = runAddon(c, 'cpu', { noBackward: true });
    const ref = scanRef(c.ref);
    for (let b = 0; b < 2; b++)
      for (let d = 0; d < dim; d++)
        for (let t = 0; t < L; t++) {
          const i = (b * dim + d) * L + t;
          const hit = b === 0 && d >= 2 && t >= 5;
          if (hit) expect(Number.isNaN(got.out[i]), `out[${b},${d},${t}] is NaN`).toBe(true);
          else
            expect(Math.abs(got.out[i] - ref.out[i]), `out[${b},${d},${t}]`).toBeLessThan(
              1e-4 * (1 + Math.abs(ref.out[i])),
            );
        }
  });
});
