// The causal convolution's rows: causalConv1d forward, backward (from a saved context) and both,
// with bias and SiLU, W = 4, at S1's and S3's (batch, dim, L) (the convolution a Mamba block runs
// before its scan; on the CPU the -cpu variants, S1 only with --quick). Floor: x and out read or
// written once (lib/roofline.mjs, convTraffic). --shapes conv-step: causalConv1dUpdate at the
// step's batches and dim 5120 (convStepTraffic). On a GPU an agreement check against the CPU
// backend comes first. On the CPU, float32, PyTorch beside each shape (what users without the
// causal_conv1d extension run: torch_cpu_baseline.py conv / conv-step, at our thread count) as
// `PyTorch fwd`, `PyTorch fwd+bwd` and `PyTorch step` rows, and our output checked against its own.
import { Tensor, causalConv1d, causalConv1dBackward, causalConv1dUpdate } from 'selective-scan';
import { wantsTorch } from '../lib/cli.mjs';
import { agreementCheck } from '../lib/agreement.mjs';
import { measure } from '../lib/measure.mjs';
import { fmtMs } from '../lib/progress.mjs';
import { InputFactory } from '../lib/random.mjs';
import { convStepTraffic, convTraffic } from '../lib/roofline.mjs';
import * as S from '../lib/shapes.mjs';
import { disposeAll, tensorFromBits } from '../lib/tensors.mjs';
import { torchBaseline, torchFileCheck } from '../lib/torch.mjs';

const VARIANTS = ['fwd', 'bwd', 'fwd+bwd'];
const WIDTH = 4;
const OF = ['S1', 'S3'];
const GRADS = ['dx', 'dweight', 'dbias'];
// PyTorch's rows: which of ours each stands beside, and the baseline's field with its time.
const TORCH_OPS = { fwd: 'fwd_ms', 'fwd+bwd': 'fwdbwd_ms', step: 'step_ms' };
// The agreement check's shape: L = 300 ends in a partial tile.
const CHECK_SHAPE = { batch: 2, dim: 64, L: 300, W: WIDTH };

/** @type {import('./index.mjs').BenchOp} */
export const causalConv1dRows = {
  kind: 'conv',
  shapes: ['conv', 'conv-step'],
  variants: VARIANTS,
  sizeText: (s) =>
    s.L === undefined ? `(${s.batch}, ${s.dim}), W=${s.W}` : `(${s.batch}, ${s.dim}, ${s.L}), W=${s.W}`,
  plan(run) {
    const { target, o, cpu } = run;
    const base = target.simulated ? S.SIM_SCAN : cpu && !o.fullCpu ? S.CPU_SCAN : S.GPU_SCAN;
    const of = o.quick ? ['S1'] : OF;
    const convs = (o.shapes ?? ['conv']).includes('conv')
      ? base
          .filter((s) => of.includes(s.of ?? s.name))
          .map((s) => ({ name: `conv-${s.name}`, batch: s.batch, dim: s.dim, L: s.L, W: WIDTH }))
      : [];
    const steps = (o.shapes ?? ['conv-step']).includes('conv-step')
      ? (o.quick ? [1, 64] : S.STEP_BATCHES).map((batch) => ({
          name: `conv-step-b${batch}`,
          batch,
          dim: S.STEP_DIM,
          W: WIDTH,
        }))
      : [];
    const ops = o.ops.filter((op) => VARIANTS.includes(op));
    const check = o.checks && !cpu && convs.length > 0;
    // PyTorch: one process per shape (its fwd and fwd+bwd together), and one for the check.
    const torch =
      cpu && wantsTorch(o, 'conv') && o.dtypes.includes('float32') && !!run.torch.python && !!run.torch.baselineScript;
    const torchCheck = torch && o.checks && convs.length > 0;
    const torchUnits = torch ? convs.length + steps.length + (torchCheck ? 1 : 0) : 0;
    const units = (check ? 1 : 0) + (convs.length * ops.length + steps.length) * o.dtypes.length + torchUnits;
    const summary = {};
    if (convs.length) summary.convs = convs.map((c) => c.name);
    if (steps.length) summary.convSteps = steps.map((c) => c.name);
    return { units, summary, convs, steps, ops, check, torch, torchCheck };
  },
  async checks(run, p) {
    if (p.check) await run.guarded('conv agreement check', () => agreementChecks(run));
    if (p.torchCheck) await run.guarded('conv PyTorch check', () => torchCheck(run));
  },
  async rows(run, p) {
    for (const c of p.convs) await run.guarded(`${c.name} inputs`, () => convRows(run, p, c));
    for (const c of p.steps) await run.guarded(`${c.name} inputs`, () => stepRows(run, p, c));
  },
};

/** PyTorch's rows beside ours (ours: op → its record at this shape), with the speed-up. */
function torchRows(run, name, shape, out, ours, traffic) {
  if (!out) return;
  const done = [];
  for (const [op, key] of Object.entries(TORCH_OPS)) {
    const ms = out[key];
    if (ms === undefined) continue;
    const m = { medianMs: ms, minMs: null, maxMs: null, reps: out.reps ?? null, samplesMs: [] };
    const extra = {
      threads: out.threads,
      peer: `PyTorch ${op === 'step' ? 'roll + sum' : 'F.conv1d + F.silu'} (torch_cpu_baseline.py)`,
      beside: op,
      oursMs: ours[op]?.medianMs ?? null,
      speedup: ours[op] ? ms / ours[op].medianMs : null,
    };
    run.record('conv', name, shape, 'float32', `PyTorch ${op}`, m, traffic(op), extra);
    done.push(`${op} ${fmtMs(ms)} ms${extra.speedup ? ` (${extra.speedup.toFixed(1)}× our time)` : ''}`);
  }
  run.progress.done(`${name} PyTorch (${out.threads} threads): ${done.join(', ')}`);
}

// Our CPU backend against PyTorch's autograd on the same inputs.
async function torchCheck(run) {
  const t = convInputs(new InputFactory(4321), CHECK_SHAPE, 'float32', 'cpu');
  const inputs = {};
  for (const k of ['x', 'weight', 'bias', 'dout']) inputs[k] = t[k].dataSync();
  const r = causalConv1d(t.x, t.weight, { bias: t.bias, activation: 'silu', saveForBackward: true });
  const g = causalConv1dBackward(r.ctx, t.dout);
  const got = { out: r.out.dataSync() };
  for (const k of GRADS) got[k] = g[k].dataSync();
  r.out.dispose();
  r.ctx.dispose();
  disposeAll(g);
  disposeAll(t);
  const { batch, dim, L, W } = CHECK_SHAPE;
  torchFileCheck(run, {
    label: 'conv PyTorch check',
    name: 'causalConv1d + backward, CPU backend vs PyTorch (F.conv1d + F.silu, autograd)',
    shape: CHECK_SHAPE,
    inputs,
    got,
    keys: ['out', ...GRADS],
    args: (dir) => ['conv-check', dir, batch, dim, L, W],
  });
}

function convInputs(factory, shape, dtype, device) {
  const { batch, dim, L, W } = shape;
  return {
    x: tensorFromBits(factory.bits(batch * dim * L, 'normal'), [batch, dim, L], dtype, device),
    dout: tensorFromBits(factory.bits(batch * dim * L, 'normal'), [batch, dim, L], dtype, device),
    weight: Tensor.from(
      factory.floats(dim * W, (r) => r.normal() * 0.5),
      [dim, W],
      { device },
    ),
    bias: Tensor.from(
      factory.floats(dim, (r) => r.normal() * 0.1),
      [dim],
      { device },
    ),
  };
}

// This device against the CPU backend on the same inputs; L = 300 ends in a partial tile.
async function agreementChecks(run) {
  const { target, res, progress } = run;
  progress.status('conv agreement check');
  const shape = { batch: 2, dim: 64, L: 300, W: WIDTH };
  const runOn = (dtype, device) => {
    const t = convInputs(new InputFactory(4321), shape, dtype, device);
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
  const dtypes = ['float32', ...(run.o.dtypes.includes('bfloat16') ? ['bfloat16'] : [])];
  for (const dtype of dtypes) {
    const name = `causalConv1d + backward, ${target.id} vs CPU backend`;
    const tolerance = dtype === 'float32' ? [1e-5, 1e-4] : [1e-2, 1e-2];
    const got = runOn(dtype, target.device);
    const check = agreementCheck(name, dtype, shape, got, runOn(dtype, 'cpu'), ['out', ...GRADS], tolerance);
    res.checks.push(check);
    if (!check.pass)
      progress.note(`WARNING: agreement check failed: ${name} (${dtype}): ${JSON.stringify(check.relErr)}`);
  }
  progress.done('conv agreement check');
}

async function stepRows(run, p, c) {
  const { target, o, progress, factory } = run;
  const { name, ...shape } = c;
  const { batch, dim, W } = shape;
  const device = target.device;
  for (const dtype of o.dtypes) {
    if (run.late(`${name} ${dtype}`)) continue;
    progress.status(`${name} ${dtype}`);
    const t = {
      state: Tensor.zeros([batch, dim, W - 1], { dtype, device }),
      x: tensorFromBits(factory.bits(batch * dim, 'normal'), [batch, dim], dtype, device),
      weight: Tensor.from(
        factory.floats(dim * W, (r) => r.normal() * 0.5),
        [dim, W],
        { device },
      ),
      bias: Tensor.from(
        factory.floats(dim, (r) => r.normal() * 0.1),
        [dim],
        { device },
      ),
    };
    const fn = () => causalConv1dUpdate(t.state, t.x, t.weight, { bias: t.bias, activation: 'silu' }).dispose();
    const m = await run.guarded(`${name} ${dtype}`, () =>
      measure(target, fn, { ...run.timing(null), targetMs: run.cpu ? 20 : 5 }),
    );
    let rec = null;
    if (m) {
      rec = run.record('conv', name, shape, dtype, 'step', m, convStepTraffic(shape, dtype));
      progress.done(
        `${name} ${dtype}: ${fmtMs(m.medianMs)} ms, ${rec.roofline.gbps.toFixed(1)} GB/s, ${(rec.roofline.fractionOfFloor * 100).toFixed(0)} % of floor`,
      );
    }
    disposeAll(t);
    if (p.torch && dtype === 'float32' && !run.late(`${name} PyTorch`)) {
      const out = torchBaseline(run, name, ['conv-step', batch, dim, W, torchReps(run)]);
      torchRows(run, name, shape, out, { step: rec }, () => convStepTraffic(shape, 'float32'));
    }
  }
}

const torchReps = (run) => run.o.torchReps ?? (run.o.quick ? 3 : 10);

async function convRows(run, p, c) {
  const { target, o, progress, factory } = run;
  const { name, ...shape } = c;
  for (const dtype of o.dtypes) {
    if (run.late(`${name} ${dtype}`)) continue;
    progress.status(`${name} ${dtype}`);
    const t = convInputs(factory, shape, dtype, target.device);
    const opts = { bias: t.bias, activation: 'silu' };
    const saved = causalConv1d(t.x, t.weight, { ...opts, saveForBackward: true });
    const backward = (ctx) => {
      const g = causalConv1dBackward(ctx, t.dout);
      disposeAll(g);
    };
    const calls = {
      fwd: () => causalConv1d(t.x, t.weight, opts).out.dispose(),
      bwd: () => backward(saved.ctx),
      'fwd+bwd': () => {
        const r = causalConv1d(t.x, t.weight, { ...opts, saveForBackward: true });
        backward(r.ctx);
        r.out.dispose();
        r.ctx.dispose();
      },
    };
    const ours = {};
    for (const op of p.ops) {
      const m = await run.guarded(`${name} ${dtype} ${op}`, () => measure(target, calls[op], run.timing(shape)));
      if (!m) continue;
      const rec = run.record('conv', name, shape, dtype, op, m, convTraffic(shape, dtype, op));
      ours[op] = rec;
      progress.done(
        `${name} ${dtype} ${op}: ${fmtMs(m.medianMs)} ms, ${rec.roofline.gbps.toFixed(1)} GB/s, ${(rec.roofline.fractionOfFloor * 100).toFixed(0)} % of floor`,
      );
    }
    saved.out.dispose();
    saved.ctx.dispose();
    disposeAll(t);
    if (p.torch && dtype === 'float32' && !run.late(`${name} PyTorch`)) {
      const { batch, dim, L, W } = shape;
      const out = torchBaseline(run, name, ['conv', batch, dim, L, W, torchReps(run)]);
      torchRows(run, name, shape, out, ours, (op) => convTraffic(shape, 'float32', op));
    }
  }
}
