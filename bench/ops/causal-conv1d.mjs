// The causal depthwise convolution's rows: causalConv1d forward, backward and both, with bias and
// SiLU at W = 4 (the convolution a Mamba block runs before the scan), at S1's and S3's (batch, dim,
// L) (smaller variants on the CPU); causalConv1dUpdate at the step's batches and dim 5120. On a GPU
// an agreement check against the CPU backend comes first.
import { causalConv1d, causalConv1dBackward, causalConv1dUpdate, Tensor } from 'selective-scan';
import { agreementCheck } from '../lib/agreement.mjs';
import { measure } from '../lib/measure.mjs';
import { fmtMs } from '../lib/progress.mjs';
import { InputFactory } from '../lib/random.mjs';
import { convStepTraffic, convTraffic } from '../lib/roofline.mjs';
import { STEP_BATCHES, STEP_DIM } from '../lib/shapes.mjs';
import { disposeAll, tensorFromBits } from '../lib/tensors.mjs';

const VARIANTS = ['fwd', 'bwd', 'fwd+bwd'];
const W = 4;
const CONV = {
  gpu: [
    { name: 'conv-S1', batch: 8, dim: 4096, L: 2048, W },
    { name: 'conv-S3', batch: 64, dim: 2048, L: 64, W },
  ],
  cpu: [
    { name: 'conv-S1-cpu', batch: 2, dim: 256, L: 1024, W },
    { name: 'conv-S3-cpu', batch: 16, dim: 256, L: 64, W },
  ],
  sim: [
    { name: 'conv-S1-sim', batch: 2, dim: 64, L: 512, W },
    { name: 'conv-S3-sim', batch: 8, dim: 64, L: 64, W },
  ],
};
const GRADS = ['dx', 'dweight', 'dbias'];

const sizeText = (s) =>
  s.L === undefined ? `(${s.batch}, ${s.dim}, W=${s.W})` : `(${s.batch}, ${s.dim}, ${s.L}, W=${s.W})`;

/** @type {import('./index.mjs').BenchOp} */
export const causalConv1dRows = {
  kind: 'conv',
  shapes: ['conv', 'conv-step'],
  variants: VARIANTS,
  sizeText,
  plan(run) {
    const { o, cpu, target } = run;
    const want = new Set(o.shapes ?? ['conv', 'conv-step']);
    const ops = o.ops.filter((op) => VARIANTS.includes(op));
    const shapes = !want.has('conv') ? [] : target.simulated ? CONV.sim : cpu ? CONV.cpu : CONV.gpu;
    const convs = o.quick ? shapes.slice(0, 1) : shapes;
    const steps = !want.has('conv-step')
      ? []
      : (o.quick ? [1, 64] : STEP_BATCHES).map((batch) => ({ name: `conv-step-b${batch}`, batch, dim: STEP_DIM, W }));
    const check = o.checks && !cpu && convs.length > 0;
    const units = (check ? 1 : 0) + (convs.length * ops.length + steps.length) * o.dtypes.length;
    // Nothing in the result's plan when nothing runs (so that other ops' plans read as before).
    const summary = convs.length + steps.length ? { convs: [...convs, ...steps].map((s) => s.name) } : {};
    return { units, summary, convs, steps, ops, check };
  },
  async checks(run, p) {
    if (p.check) await run.guarded('conv agreement check', () => agreementCheckConv(run));
  },
  async rows(run, p) {
    for (const s of p.convs) await run.guarded(`${s.name} inputs`, () => convRows(run, p, s));
    for (const s of p.steps) await run.guarded(`${s.name} inputs`, () => stepRows(run, s));
  },
};

function convInputs(factory, s, dtype, device) {
  const { batch, dim, L } = s;
  return {
    x: tensorFromBits(factory.bits(batch * dim * L, 'normal'), [batch, dim, L], dtype, device),
    dout: tensorFromBits(factory.bits(batch * dim * L, 'normal'), [batch, dim, L], dtype, device),
    weight: Tensor.from(
      factory.floats(dim * s.W, (r) => r.normal() / 2),
      [dim, s.W],
      { device },
    ),
    bias: Tensor.from(
      factory.floats(dim, (r) => r.normal()),
      [dim],
      { device },
    ),
  };
}

/** The timed calls; each disposes what it makes. `dispose()` frees the saved forward. */
function convCalls(t) {
  const opts = { bias: t.bias, activation: /** @type {const} */ ('silu') };
  const saved = causalConv1d(t.x, t.weight, { ...opts, saveForBackward: true });
  return {
    fwd: () => causalConv1d(t.x, t.weight, opts).out.dispose(),
    bwd: () => disposeAll(causalConv1dBackward(saved.ctx, t.dout)),
    'fwd+bwd': () => {
      const r = causalConv1d(t.x, t.weight, { ...opts, saveForBackward: true });
      disposeAll(causalConv1dBackward(r.ctx, t.dout));
      r.out.dispose();
      r.ctx.dispose();
    },
    dispose() {
      saved.out.dispose();
      saved.ctx.dispose();
    },
  };
}

// This device against the CPU backend on the same inputs (L = 300: partial tiles, odd length).
async function agreementCheckConv(run) {
  const { target, res, progress } = run;
  progress.status('conv agreement check');
  const s = { name: 'conv-check', batch: 2, dim: 64, L: 300, W };
  const runOn = (dtype, device) => {
    const t = convInputs(new InputFactory(4321), s, dtype, device);
    const r = causalConv1d(t.x, t.weight, { bias: t.bias, activation: 'silu', saveForBackward: true });
    const g = causalConv1dBackward(r.ctx, t.dout);
    const vals = { out: r.out.dataSync() };
    for (const k of GRADS) vals[k] = g[k].dataSync();
    r.out.dispose();
    r.ctx.dispose();
    disposeAll(g);
    disposeAll(t);
    return vals;
  };
  for (const dtype of ['float32', ...(run.o.dtypes.includes('bfloat16') ? ['bfloat16'] : [])]) {
    const tol = dtype === 'float32' ? [1e-5, 1e-4] : [1e-2, 1e-2];
    const check = agreementCheck(
      `causalConv1d + backward, ${target.id} vs CPU backend`,
      dtype,
      s,
      runOn(dtype, target.device),
      runOn(dtype, 'cpu'),
      ['out', ...GRADS],
      tol,
    );
    res.checks.push(check);
    if (!check.pass) progress.note(`WARNING: conv agreement check failed (${dtype}): ${JSON.stringify(check.relErr)}`);
  }
  progress.done('conv agreement check');
}

async function convRows(run, p, s) {
  const { target, o, progress } = run;
  const { name, ...shape } = s;
  for (const dtype of o.dtypes) {
    if (run.late(`${name} ${dtype}`)) continue;
    progress.status(`${name} ${dtype}: uploading inputs`);
    const t = convInputs(run.factory, s, dtype, target.device);
    const calls = convCalls(t);
    for (const op of p.ops) {
      if (run.late(`${name} ${dtype} ${op}`)) continue;
      progress.status(`${name} ${sizeText(s)} ${dtype} ${op}`);
      const m = await run.guarded(`${name} ${dtype} ${op}`, () => measure(target, calls[op], run.timing(s)));
      if (!m) continue;
      const rec = run.record('conv', name, shape, dtype, op, m, convTraffic(shape, dtype, op));
      progress.done(
        `${name} ${dtype} ${op}: ${fmtMs(m.medianMs)} ms, ${rec.roofline.gbps.toFixed(1)} GB/s, ${(rec.roofline.fractionOfFloor * 100).toFixed(0)} % of floor`,
      );
    }
    calls.dispose();
    disposeAll(t);
  }
}

async function stepRows(run, s) {
  const { target, o, progress } = run;
  const { name, ...shape } = s;
  const { batch, dim } = s;
  for (const dtype of o.dtypes) {
    if (run.late(`${name} ${dtype}`)) continue;
    progress.status(`${name} ${dtype}`);
    const t = {
      state: Tensor.zeros([batch, dim, W - 1], { dtype, device: target.device }),
      x: tensorFromBits(run.factory.bits(batch * dim, 'normal'), [batch, dim], dtype, target.device),
      weight: Tensor.from(
        run.factory.floats(dim * W, (r) => r.normal() / 2),
        [dim, W],
        { device: target.device },
      ),
      bias: Tensor.from(
        run.factory.floats(dim, (r) => r.normal()),
        [dim],
        { device: target.device },
      ),
    };
    const fn = () => causalConv1dUpdate(t.state, t.x, t.weight, { bias: t.bias, activation: 'silu' }).dispose();
    const m = await run.guarded(`${name} ${dtype}`, () =>
      measure(target, fn, { ...run.timing(null), targetMs: run.cpu ? 20 : 5 }),
    );
    if (m) {
      const rec = run.record('conv', name, shape, dtype, 'step', m, convStepTraffic(s, dtype));
      progress.done(
        `${name} ${dtype}: ${fmtMs(m.medianMs)} ms, ${rec.roofline.gbps.toFixed(1)} GB/s, ${(rec.roofline.fractionOfFloor * 100).toFixed(0)} % of floor`,
      );
    }
    disposeAll(t);
  }
}
