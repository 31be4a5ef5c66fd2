#!/usr/bin/env node
// A reduced workload for compute-sanitizer: every op once on small shapes, on the GPU (or the device
// named as the first argument), with L values that are not multiples of the chunk length, all three
// dtypes, fixed / input-dependent / grouped B and C, every option of the forward and the backward,
// and every form of the stepwise update. Each result is read back (so that any fault surfaces) and
// checked to be finite. Prints one JSON line: { ok, calls, device, chunkLength, seconds }.
//
//   compute-sanitizer --tool memcheck node bench/sanitizer-case.mjs
//   compute-sanitizer --tool racecheck node bench/sanitizer-case.mjs
//   node bench/sanitizer-case.mjs cpu          (the same calls on the CPU backend)
//   node bench/sanitizer-case.mjs --quick      (float32 and bfloat16, two lengths: for racecheck)
import { Tensor, cuda, selectiveScan, selectiveScanBackward, selectiveStateUpdate } from 'selective-scan';
import { scanChunkLength } from 'selective-scan/internal';

const args = process.argv.slice(2);
const quick = args.includes('--quick'); // float32 and bfloat16 only, two lengths
const device = args.find((a) => !a.startsWith('--')) ?? (cuda.isAvailable() ? 'cuda' : 'cpu');
const t0 = performance.now();

let seed = 7;
const rnd = () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed / 4294967296;
};
const randn = (n) =>
  Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(6.283185307179586 * rnd()));
const unif = (n, lo, hi) => Float32Array.from({ length: n }, () => lo + (hi - lo) * rnd());
const T = (values, shape, dtype = 'float32') => Tensor.from(values, shape, { dtype, device });
const numel = (shape) => shape.reduce((a, b) => a * b, 1);

let calls = 0;
const problems = [];
async function check(name, tensors) {
  for (const [k, t] of Object.entries(tensors)) {
    if (!t) continue;
    const v = await t.data();
    for (let i = 0; i < v.length; i++) {
      if (!Number.isFinite(v[i])) {
        problems.push(`${name}: ${k}[${i}] = ${v[i]}`);
        break;
      }
    }
    t.dispose();
  }
}

// The chunk length of a long row, to place L just past a chunk boundary.
const chunk = scanChunkLength(device, { batch: 1, dim: 4, seqlen: 1 << 16, dstate: 16 });
const Ls = quick ? [37, 2 * chunk + 37] : [1, 37, chunk + 5, 2 * chunk + 37];
const N = 16;

try {
  for (const dtype of quick ? ['float32', 'bfloat16'] : ['float32', 'bfloat16', 'float16']) {
    for (const L of Ls) {
      for (const kind of ['varying', 'grouped', 'fixed']) {
        if (dtype !== 'float32' && kind === 'fixed' && L > 37) continue;
        const batch = 2;
        const dim = 8;
        const G = kind === 'grouped' ? 2 : 1;
        const row = [batch, dim, L];
        const proj = kind === 'fixed' ? [dim, N] : kind === 'grouped' ? [batch, G, N, L] : [batch, N, L];
        const projDtype = kind === 'fixed' ? 'float32' : dtype;
        const x = {
          u: T(randn(numel(row)), row, dtype),
          delta: T(unif(numel(row), -2, 0), row, dtype),
          A: T(
            unif(dim * N, 0, 1).map((v) => -Math.exp(v)),
            [dim, N],
          ),
          B: T(randn(numel(proj)), proj, projDtype),
          C: T(randn(numel(proj)), proj, projDtype),
          D: T(randn(dim), [dim]),
          z: T(randn(numel(row)), row, dtype),
          deltaBias: T(unif(dim, -0.5, 0.5), [dim]),
          initialState: T(randn(batch * dim * N), [batch, dim, N]),
          dout: T(randn(numel(row)), row, dtype),
          dLast: T(randn(batch * dim * N), [batch, dim, N]),
        };
        const full = {
          D: x.D,
          z: x.z,
          deltaBias: x.deltaBias,
          deltaSoftplus: true,
          initialState: x.initialState,
          returnLastState: true,
        };
        const name = `${dtype} L=${L} ${kind}`;
        // A plain forward (softplus only: delta is negative), then the full one with a ctx, then backwards.
        await check(`${name} fwd plain`, {
          out: selectiveScan(x.u, x.delta, x.A, x.B, x.C, { deltaSoftplus: true }).out,
        });
        const r = selectiveScan(x.u, x.delta, x.A, x.B, x.C, { ...full, saveForBackward: true });
        calls += 2;
        for (const deterministic of [false, true]) {
          const g = selectiveScanBackward(r.ctx, x.dout, { dLastState: x.dLast, deterministic });
          calls++;
          await check(`${name} bwd det=${deterministic}`, g);
        }
        const gPlain = selectiveScanBackward(r.ctx, x.dout); // no dLastState
        calls++;
        await check(`${name} bwd plain`, gPlain);
        await check(`${name} fwd full`, { out: r.out, lastState: r.lastState });
        r.ctx.dispose();
        for (const t of Object.values(x)) t.dispose();
      }
    }
  }

  // Stepwise update: channels, heads, heads with one scalar per head; continuous batching with padding.
  for (const dtype of ['float32', 'bfloat16']) {
    const batch = 3;
    const dim = 16;
    {
      const state = T(randn(batch * dim * N), [batch, dim, N]);
      const y = selectiveStateUpdate(
        state,
        T(randn(batch * dim), [batch, dim], dtype),
        T(unif(batch * dim, -2, 0), [batch, dim], dtype),
        T(
          unif(dim * N, 0, 1).map((v) => -Math.exp(v)),
          [dim, N],
        ),
        T(randn(batch * 2 * N), [batch, 2, N], dtype),
        T(randn(batch * 2 * N), [batch, 2, N], dtype),
        {
          D: T(randn(dim), [dim]),
          z: T(randn(batch * dim), [batch, dim], dtype),
          dtBias: T(randn(dim), [dim]),
          dtSoftplus: true,
        },
      );
      calls++;
      await check(`${dtype} step channels`, { y, state });
    }
    const H = 4;
    const P = 4;
    {
      const state = T(randn(batch * H * P * N), [batch, H, P, N]);
      const y = selectiveStateUpdate(
        state,
        T(randn(batch * H * P), [batch, H, P], dtype),
        T(unif(batch * H * P, -2, 0), [batch, H, P], dtype),
        T(
          unif(H * P * N, 0, 1).map((v) => -Math.exp(v)),
          [H, P, N],
        ),
        T(randn(batch * 2 * N), [batch, 2, N], dtype),
        T(randn(batch * 2 * N), [batch, 2, N], dtype),
        {
          D: T(randn(H * P), [H, P]),
          z: T(randn(batch * H * P), [batch, H, P], dtype),
          dtBias: T(randn(H * P), [H, P]),
          dtSoftplus: true,
        },
      );
      calls++;
      await check(`${dtype} step heads`, { y, state });
    }
    {
      const slots = 5;
      const state = T(randn(slots * H * P * N), [slots, H, P, N]);
      const y = selectiveStateUpdate(
        state,
        T(randn(batch * H * P), [batch, H, P], dtype),
        T(unif(batch * H, -2, 0), [batch, H], dtype),
        T(
          unif(H, 0, 1).map((v) => -Math.exp(v)),
          [H],
        ),
        T(randn(batch * N), [batch, 1, N], dtype),
        T(randn(batch * N), [batch, 1, N], dtype),
        {
          D: T(randn(H), [H]),
          z: T(randn(batch * H * P), [batch, H, P], dtype),
          dtBias: T(randn(H), [H]),
          dtSoftplus: true,
          stateBatchIndices: Int32Array.from([4, -1, 1]),
        },
      );
      calls++;
      await check(`${dtype} step heads scalar, indices`, { y, state });
    }
  }
  await cuda.synchronize(device === 'cpu' ? 'cpu' : device);
} catch (error) {
  // A fault (ERR_CUDA) or anything else: reported, and the sanitizer's log says where.
  problems.push(`exception after ${calls} calls: ${error?.code ?? ''} ${error?.message ?? error}`);
}
const ok = problems.length === 0;
console.log(
  JSON.stringify({
    ok,
    calls,
    device,
    chunkLength: chunk,
    Ls,
    seconds: (performance.now() - t0) / 1000,
    problems: problems.slice(0, 20),
  }),
);
process.exitCode = ok ? 0 : 1;
