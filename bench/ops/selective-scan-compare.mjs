// The selective scan beside what users have today: the plain JS loop and PyTorch's CPU baseline on
// the CPU, PyTorch's sequential reference on a GPU (its output checked against ours), the speed-ups,
// and on the CPU the ratio against PyTorch at the ratio shape (target ≥ 20×).
import { buildInfo, selectiveScan } from 'selective-scan';
import { wantsTorch } from '../lib/cli.mjs';
import { relErr } from '../lib/agreement.mjs';
import { jsForward, jsForwardBackward } from '../lib/jsref.mjs';
import { measureJs } from '../lib/measure.mjs';
import { fmtMs } from '../lib/progress.mjs';
import * as S from '../lib/shapes.mjs';
import { TORCH_GPU_SCRIPT, sha1, torchCpuBaseline } from '../lib/torch.mjs';
import { jsInputs, scanOptions } from './selective-scan-inputs.mjs';

/** Which PyTorch runs a shape gets: repetitions of the CPU baseline, or the GPU reference's ops. */
export function planTorch(s, { o, cpu }) {
  s.torchRepsCpu = 0;
  s.torchGpu = [];
  if (!wantsTorch(o, 'scan') || !o.dtypes.includes('float32')) return;
  if (cpu) {
    const reps = s.torchReps || (o.torchAll ? 1 : 0);
    s.torchRepsCpu = reps ? (o.torchReps ?? (o.quick ? Math.min(reps, 3) : reps)) : 0;
    if (o.quick && !s.ratio) s.torchRepsCpu = 0;
    if (!reps)
      s.torchSkip = `PyTorch CPU baseline skipped (slow: about 35 s a repetition on 2 cores; --torch-all runs it)`;
    return;
  }
  const T = s.batch * s.dim * s.L * s.N * 4;
  const max = o.torchGpuMaxGB * 1e9;
  const maxL = o.torchMaxL ?? 16384;
  if (3 * T <= max && s.L <= maxL) s.torchGpu.push('fwd');
  if (8 * T <= max && s.L <= maxL) s.torchGpu.push('fwdbwd');
  if (s.torchGpu.length < 2) {
    const why = [];
    if (8 * T > max) {
      why.push(
        `its forward needs ~${((3 * T) / 1e9).toFixed(0)} GB and fwd+bwd ~${((8 * T) / 1e9).toFixed(0)} GB ` +
          `(tensors of batch·dim·L·N float32; limit ${o.torchGpuMaxGB} GB, --torch-gpu-max-gb)`,
      );
    }
    if (s.L > maxL) why.push(`L=${s.L} sequential steps (limit ${maxL}, --torch-max-l)`);
    s.torchSkip = `PyTorch GPU reference ${s.torchGpu.length ? 'fwd+bwd ' : ''}skipped: ${why.join('; ')}`;
  }
}

/** Our float32 forward's output, kept to compare with the PyTorch GPU reference's. */
export async function keepOutputForTorch(run, p, id, t, label) {
  await run.guarded(`${label} output for the PyTorch check`, async () => {
    const r = selectiveScan(t.u, t.delta, t.A, t.B, t.C, scanOptions(t));
    p.torchGpuOuts.set(id, await r.out.data());
    r.out.dispose();
  });
}

export function jsLoop(run, s, bits, cmp) {
  const { progress } = run;
  progress.status(`${s.name}: plain JS loop (one thread)`);
  const x = jsInputs(bits);
  const budget = { reps: Math.min(run.timing(s).reps, 3), maxTotalMs: 3000 };
  const f = measureJs(() => jsForward(s, x), budget);
  const fb = measureJs(() => jsForwardBackward(s, x), budget);
  cmp.js = { fwdMs: f.medianMs, fwdBwdMs: fb.medianMs, fwdReps: f.reps, fwdBwdReps: fb.reps, threads: 1 };
  progress.done(`${s.name} float32 JS loop: fwd ${fmtMs(f.medianMs)} ms, fwd+bwd ${fmtMs(fb.medianMs)} ms`);
}

/** The PyTorch CPU baseline at one shape: { fwdMs, fwdBwdMs, threads, reps }, or null (noted). */
export function torchCpu(run, shape, reps, label) {
  const { progress } = run;
  if (!run.torch.python || !run.torch.baselineScript) return null;
  progress.status(`${label}: PyTorch CPU baseline (${reps} reps)`);
  const r = torchCpuBaseline(run.torch.python, run.torch.baselineScript, shape, reps);
  if (r.error !== undefined) {
    run.res.notes.push(`PyTorch CPU baseline failed at ${label}: ${r.error}`);
    progress.done(`${label} PyTorch CPU baseline FAILED`);
    return null;
  }
  progress.done(
    `${label} PyTorch CPU baseline: fwd ${fmtMs(r.fwdMs)} ms, fwd+bwd ${fmtMs(r.fwdBwdMs)} ms (${r.threads} threads)`,
  );
  return r;
}

/** Runs the PyTorch GPU reference over the queued cases; its times and outputs join the comparisons. */
export function applyTorchGpu(run, p) {
  const { target, res, progress } = run;
  progress.status(
    `PyTorch reference on ${target.simulated ? 'the CPU (simulated GPU)' : 'the GPU'}: ${p.torchGpu.cases.length} cases`,
  );
  const out = p.torchGpu.run(run.torch.python, target.simulated ? 'cpu' : target.device, run.o.torchReps ?? 3);
  if (out.error !== undefined) {
    res.notes.push(`PyTorch GPU reference failed: ${out.error}`);
    progress.done('PyTorch GPU reference FAILED');
    return;
  }
  res.torch = {
    ...res.torch,
    gpuReference: {
      torch: out.torch,
      cuda: out.cuda,
      device: out.device_name,
      script: 'bench/torch_gpu_reference.py',
      sha1: sha1(TORCH_GPU_SCRIPT),
    },
  };
  for (const c of out.cases) {
    const ours = p.torchGpuOuts.get(c.id);
    const check = ours && c.out ? relErr(ours, c.out) : null;
    const entry = {
      fwdMs: c.fwd_ms ?? null,
      fwdBwdMs: c.fwdbwd_ms ?? null,
      fwdPeakBytes: c.fwd_peak_bytes ?? null,
      fwdBwdPeakBytes: c.fwdbwd_peak_bytes ?? null,
      reps: { fwd: c.fwd_reps ?? null, fwdBwd: c.fwdbwd_reps ?? null },
      skipped: c.skipped,
      outRelErrVsOurs: check,
      kind: 'PyTorch sequential reference on the GPU (bench/torch_gpu_reference.py)',
    };
    const cmp = res.comparisons.find((x) => x.shapeName === c.id);
    if (cmp) {
      cmp.torch = entry;
      if (Object.keys(c.skipped ?? {}).length)
        cmp.notes.push(`PyTorch reference skipped: ${JSON.stringify(c.skipped)}`);
      if (check !== null)
        cmp.notes.push(`our float32 output vs the PyTorch reference: relative error ${check.toExponential(2)}`);
    }
    const pt = res.sweep?.points.find((q) => q.torchCaseId === c.id);
    if (pt) pt.torch = entry;
    if (check !== null) {
      // Two float32 computations, each within ~1e-5 of the exact result (docs/ARCHITECTURE.md): 1e-4 apart at most.
      const pass = check <= 1e-4;
      res.checks.push({
        name: `${target.id} vs the PyTorch reference, ${c.id}`,
        dtype: 'float32',
        relErr: { out: check },
        tolerance: [1e-4, '–'],
        pass,
      });
      if (!pass) progress.note(`WARNING: ${c.id}: output differs from the PyTorch reference (relative error ${check})`);
    }
  }
  progress.done(`PyTorch GPU reference: ${out.cases.length} cases`);
}

/** Speed-ups per comparison, and on the CPU the ratio against PyTorch at the ratio shape. */
export function finishComparisons(run) {
  const { res } = run;
  for (const c of res.comparisons) {
    const q = (a, b) => (a && b ? a / b : null);
    c.speedup = {
      jsFwd: q(c.js?.fwdMs, c.ours.fwdMs),
      jsFwdBwd: q(c.js?.fwdBwdMs, c.ours.fwdBwdMs),
      torchFwd: q(c.torch?.fwdMs, c.ours.fwdMs),
      torchFwdBwd: q(c.torch?.fwdBwdMs, c.ours.fwdBwdMs),
    };
  }
  if (!run.cpu) return;
  const R = S.RATIO_SHAPE;
  const r = res.comparisons.find(
    (c) => c.torch && c.shape.batch === R.batch && c.shape.dim === R.dim && c.shape.L === R.L && c.shape.N === R.N,
  );
  if (!r?.speedup.torchFwd || !r.speedup.torchFwdBwd) return;
  const after = r.oursAfterTorch ?? {};
  const fwdMs = Math.max(r.ours.fwdMs, after.fwdMs ?? 0);
  const fwdBwdMs = Math.max(r.ours.fwdBwdMs, after.fwdBwdMs ?? 0);
  const fwd = r.torch.fwdMs / fwdMs;
  const fwdBwd = r.torch.fwdBwdMs / fwdBwdMs;
  res.ratio = {
    shape: r.shape,
    dtype: 'float32',
    oursFwdMs: fwdMs,
    oursFwdBwdMs: fwdBwdMs,
    oursBeforeTorch: { fwdMs: r.ours.fwdMs, fwdBwdMs: r.ours.fwdBwdMs },
    oursAfterTorch: r.oursAfterTorch ?? null,
    torchFwdMs: r.torch.fwdMs,
    torchFwdBwdMs: r.torch.fwdBwdMs,
    torchThreads: r.torch.threads,
    oursThreads: buildInfo().cpuThreads,
    fwd,
    fwdBwd,
    target: 20,
    pass: fwd >= 20 && fwdBwd >= 20,
    method:
      'PyTorch median / ours median; ours measured before and after PyTorch in this run, the slower of the two used',
  };
}
