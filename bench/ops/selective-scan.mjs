// The selective scan's rows: forward (with and without the checkpoints for the backward), backward
// (default and deterministic) and a training step over S1–S4; agreement checks; peak GPU memory at
// S1; time against L (the plot). Its inputs are in selective-scan-inputs.mjs, its comparisons with
// the JS loop and PyTorch in selective-scan-compare.mjs.
import { cuda, selectiveScan, selectiveScanBackward } from 'selective-scan';
import { wantsTorch } from '../lib/cli.mjs';
import { agreementCheck } from '../lib/agreement.mjs';
import { jsForwardBackward } from '../lib/jsref.mjs';
import { measure, sync } from '../lib/measure.mjs';
import { fmtMs } from '../lib/progress.mjs';
import { InputFactory } from '../lib/random.mjs';
import { DTYPE_BYTES, roofline, scanTraffic } from '../lib/roofline.mjs';
import * as S from '../lib/shapes.mjs';
import { disposeAll, tensorBytes } from '../lib/tensors.mjs';
import { TorchGpuReference } from '../lib/torch.mjs';
import {
  applyTorchGpu,
  finishComparisons,
  jsLoop,
  keepOutputForTorch,
  planTorch,
  torchCpu,
} from './selective-scan-compare.mjs';
import { chunkLengthOf, jsInputs, scanBits, scanCalls, scanOptions, scanTensors } from './selective-scan-inputs.mjs';

const VARIANTS = ['fwd', 'fwd-save', 'bwd', 'bwd-det', 'fwd+bwd'];
const SHAPES = ['S1', 'S2', 'S3', 'S4', 'sweep'];
const GRADS = ['du', 'ddelta', 'dz', 'dA', 'dB', 'dC', 'dD'];

/** @type {import('./index.mjs').BenchOp} */
export const selectiveScanRows = {
  kind: 'scan',
  shapes: SHAPES,
  variants: VARIANTS,
  customShape: { syntax: 'BxDxLxN', parse: S.parseShapeToken },
  sizeText: S.shapeText,
  plan,
  async checks(run) {
    if (run.o.checks) await run.guarded('agreement checks', () => agreementChecks(run));
  },
  async rows(run, p) {
    for (const s of p.scans) await run.guarded(`${s.name} inputs`, () => scanShape(run, p, s));
  },
  async sweep(run, p) {
    if (p.sweep) await run.guarded('sweep', () => sweep(run, p, p.sweep));
  },
  async finish(run, p) {
    if (p.torchGpu.cases.length) {
      if (!run.late('the PyTorch GPU reference')) applyTorchGpu(run, p);
      p.torchGpu.dispose();
    }
    finishComparisons(run);
  },
};

// ---- the plan --------------------------------------------------------------------------------------

function plan(run) {
  const { target, o, cpu } = run;
  const sim = target.simulated;
  const want = new Set(o.shapes ?? SHAPES);
  const base = sim ? S.SIM_SCAN : cpu && !o.fullCpu ? S.CPU_SCAN : S.GPU_SCAN;
  let scans = base.filter((s) => want.has(s.of ?? s.name));
  if (o.quick) scans = scans.filter((s) => (s.of ?? s.name) === 'S1' || (!cpu && (s.of ?? s.name) === 'S3'));
  scans = scans.map((s) => ({ ...s, G: 1 }));
  for (const tok of o.shapes ?? []) {
    const c = S.parseShapeToken(tok);
    if (c) scans.push({ ...c, G: 1 });
  }
  for (const s of scans) planTorch(s, run);
  let sweep = null;
  if (want.has('sweep') && o.dtypes.includes('float32')) {
    const key = sim ? 'sim' : cpu ? (o.quick ? 'cpuQuick' : 'cpu') : o.quick ? 'cudaQuick' : 'cuda';
    sweep = { ...S.SWEEP[key] };
    // PyTorch in the sweep: on the CPU up to L=2048 (its loop is slow), on a GPU up to 16K (memory, time).
    sweep.torchMaxL = !wantsTorch(o, 'scan') ? 0 : cpu ? (o.quick ? 0 : (o.torchMaxL ?? 2048)) : (o.torchMaxL ?? 16384);
  }
  const ops = o.ops.filter((op) => VARIANTS.includes(op));

  let units = o.checks ? 1 : 0;
  for (const s of scans) {
    units += o.dtypes.length * ops.length;
    if (cpu && o.js && o.dtypes.includes('float32')) units += 1;
    if (s.torchRepsCpu) units += s.ratio && ops.includes('fwd') && ops.includes('fwd+bwd') ? 2 : 1;
  }
  if (sweep) {
    units += sweep.Ls.length;
    if (cpu) units += sweep.Ls.filter((L) => L <= sweep.torchMaxL).length;
  }
  const torchGpuCases =
    scans.filter((s) => s.torchGpu.length).length +
    (sweep && !cpu ? sweep.Ls.filter((L) => L <= sweep.torchMaxL).length : 0);
  if (!cpu && torchGpuCases) units += 1;

  const summary = {
    scans: scans.map((s) => ({
      name: s.name,
      shape: S.shapeText(s),
      torchRepsCpu: s.torchRepsCpu,
      torchGpu: s.torchGpu,
    })),
    sweep,
  };
  // torchGpuOuts: our float32 output per PyTorch GPU case, to compare with its output.
  return { units, summary, scans, sweep, ops, torchGpu: new TorchGpuReference(), torchGpuOuts: new Map() };
}

// ---- agreement ---------------------------------------------------------------------------------------

// The plain JS loop against the CPU backend (CPU run), this device against the CPU backend (GPU
// run), on the same inputs; L=300 is not a multiple of any chunk length.
async function agreementChecks(run) {
  const { target, res, progress } = run;
  progress.status('agreement checks');
  const s = { name: 'check', batch: 2, dim: 64, L: 300, N: 16, G: 1 };
  const bits = scanBits(new InputFactory(12345), s);
  const keys = ['out', ...GRADS];
  const runOn = (dtype, device, deterministic = false) => {
    const t = scanTensors(bits, s, dtype, device);
    const r = selectiveScan(t.u, t.delta, t.A, t.B, t.C, { ...scanOptions(t), saveForBackward: true });
    const g = selectiveScanBackward(r.ctx, t.dout, { deterministic });
    const vals = { out: r.out.dataSync() };
    for (const k of GRADS) vals[k] = g[k].dataSync();
    r.out.dispose();
    r.ctx.dispose();
    disposeAll(g);
    disposeAll(t);
    return vals;
  };
  const compare = (name, dtype, got, ref, tolerance) => {
    const check = agreementCheck(name, dtype, s, got, ref, keys, tolerance);
    res.checks.push(check);
    if (!check.pass)
      progress.note(`WARNING: agreement check failed: ${name} (${dtype}): ${JSON.stringify(check.relErr)}`);
  };
  const cpuRef = runOn('float32', 'cpu');
  if (run.cpu) {
    const js = jsForwardBackward(s, jsInputs(bits));
    compare('CPU backend vs the JS loop (float64 arithmetic)', 'float32', cpuRef, js, [1e-5, 1e-4]);
  } else {
    compare(`${target.id} vs CPU backend`, 'float32', runOn('float32', target.device), cpuRef, [1e-5, 1e-4]);
    if (run.o.dtypes.includes('bfloat16')) {
      const got = runOn('bfloat16', target.device);
      compare(`${target.id} vs CPU backend`, 'bfloat16', got, runOn('bfloat16', 'cpu'), [1e-2, 1e-2]);
    }
  }
  // deterministic: true gives bit-identical gradients run to run.
  const a = runOn('float32', target.device, true);
  const b = runOn('float32', target.device, true);
  const identical = GRADS.every((k) => Buffer.compare(Buffer.from(a[k].buffer), Buffer.from(b[k].buffer)) === 0);
  res.checks.push({
    name: 'deterministic backward, two runs bit-identical',
    dtype: 'float32',
    shape: s,
    relErr: {},
    tolerance: ['0', '0'],
    pass: identical,
  });
  if (!identical) progress.note('WARNING: deterministic backward differs between two runs');
  const failed = res.checks.filter((c) => !c.pass).length;
  progress.done(`agreement checks: ${res.checks.length - failed} passed${failed ? `, ${failed} FAILED` : ''}`);
}

// ---- the rows of one shape -----------------------------------------------------------------------------

async function scanShape(run, p, s) {
  const { target, o, res, progress } = run;
  const shape = { batch: s.batch, dim: s.dim, L: s.L, N: s.N, G: s.G };
  if (run.late(`${s.name} (all of it)`)) return;
  progress.status(`${s.name}: making inputs`);
  const bits = scanBits(run.factory, s);
  const chunk = chunkLengthOf(target, s);
  const cmp = { shapeName: s.name, shape, ours: {}, notes: [] };
  if (s.torchSkip) cmp.notes.push(s.torchSkip);
  const torchCase = s.torchGpu.length && run.torch.python ? p.torchGpu.addScanCase(s.name, s, bits, s.torchGpu) : null;
  for (const dtype of o.dtypes) {
    progress.status(`${s.name} ${dtype}: uploading inputs`);
    const t = scanTensors(bits, s, dtype, target.device);
    const calls = scanCalls(t);
    for (const op of p.ops) {
      if (run.late(`${s.name} ${dtype} ${op}`)) continue;
      progress.status(`${s.name} ${S.shapeText(s)} ${dtype} ${op}`);
      const m = await run.guarded(`${s.name} ${dtype} ${op}`, () => measure(target, calls[op], run.timing(s)));
      if (!m) continue;
      const rec = run.record('scan', s.name, shape, dtype, op, m, scanTraffic(shape, dtype, op, chunk), {
        chunkLength: chunk,
        checkpointBytes: op === 'fwd' ? 0 : s.batch * s.dim * Math.ceil(s.L / chunk) * s.N * 4,
      });
      progress.done(
        `${s.name} ${dtype} ${op}: ${fmtMs(m.medianMs)} ms, ${rec.roofline.gbps.toFixed(1)} GB/s, ${(rec.roofline.fractionOfFloor * 100).toFixed(0)} % of floor`,
      );
    }
    if (run.gpu && (s.of ?? s.name) === 'S1') {
      const mem = await run.guarded(`${s.name} ${dtype} peak memory`, () => peakMemory(run, s, shape, dtype, t));
      if (mem) res.memory.push(mem);
    }
    if (dtype === 'float32') {
      const find = (op) => res.cases.find((c) => c.shapeName === s.name && c.dtype === dtype && c.op === op)?.medianMs;
      cmp.ours.fwdMs = find('fwd') ?? null;
      const fwdSave = find('fwd-save') ?? find('fwd');
      cmp.ours.fwdBwdMs = find('fwd+bwd') ?? (fwdSave && find('bwd') ? fwdSave + find('bwd') : null);
      if (!find('fwd+bwd') && cmp.ours.fwdBwdMs)
        cmp.notes.push('ours fwd+bwd = the sum of the measured forward and backward');
      if (torchCase) await keepOutputForTorch(run, p, torchCase.id, t, s.name);
    }
    calls.dispose();
    disposeAll(t);
  }
  if (run.cpu && o.dtypes.includes('float32')) {
    if (o.js && !run.late(`${s.name} JS loop`)) jsLoop(run, s, bits, cmp);
    if (s.torchRepsCpu && !run.late(`${s.name} PyTorch CPU baseline`)) {
      const r = torchCpu(run, s, s.torchRepsCpu, s.name);
      if (r) cmp.torch = { ...r, kind: 'PyTorch CPU baseline (torch_cpu_baseline.py)' };
      // The ratio shape: ours again right after PyTorch, so that a machine whose speed drifts
      // (shared or throttled cores) cannot flatter the ratio: it uses the slower of the two.
      if (s.ratio && cmp.torch && p.ops.includes('fwd') && p.ops.includes('fwd+bwd')) {
        await run.guarded(`${s.name} ours again after PyTorch`, async () => {
          const t = scanTensors(bits, s, 'float32', target.device);
          const calls = scanCalls(t);
          const f = await measure(target, calls.fwd, run.timing(s));
          const fb = await measure(target, calls['fwd+bwd'], run.timing(s));
          calls.dispose();
          disposeAll(t);
          cmp.oursAfterTorch = { fwdMs: f.medianMs, fwdBwdMs: fb.medianMs };
          progress.done(`${s.name} float32 ours again: fwd ${fmtMs(f.medianMs)} ms, fwd+bwd ${fmtMs(fb.medianMs)} ms`);
        });
      }
    }
  }
  if (o.dtypes.includes('float32')) res.comparisons.push(cmp);
}
async function peakMemory(run, s, shape, dtype, t) {
  const { target } = run;
  await sync(target);
  cuda.resetPeakMemory(target.device);
  const before = cuda.memoryInfo(target.device).allocatedBytes;
  const r = selectiveScan(t.u, t.delta, t.A, t.B, t.C, { ...scanOptions(t), saveForBackward: true });
  const g = selectiveScanBackward(r.ctx, t.dout);
  await sync(target);
  const info = cuda.memoryInfo(target.device);
  const outputBytes = tensorBytes(r.out) + r.ctx.checkpointBytes;
  const gradientBytes = Object.values(g).reduce((a, x) => a + tensorBytes(x), 0);
  r.out.dispose();
  r.ctx.dispose();
  disposeAll(g);
  return {
    shapeName: s.name,
    shape,
    dtype,
    inputBytes: Object.values(t).reduce((a, x) => a + tensorBytes(x), 0),
    outputBytes,
    checkpointBytes: outputBytes - s.batch * s.dim * s.L * DTYPE_BYTES[dtype],
    gradientBytes,
    allocatedBeforeBytes: before,
    peakAllocatedBytes: info.peakAllocatedBytes,
    reservedBytes: info.reservedBytes,
    method:
      'cuda.resetPeakMemory(), then one forward (saveForBackward) + backward, then cuda.memoryInfo().peakAllocatedBytes; inputs were live before',
  };
}

// ---- time against L ------------------------------------------------------------------------------------

async function sweep(run, p, sw) {
  const { target, res, progress } = run;
  const points = [];
  for (const L of sw.Ls) {
    if (run.late(`sweep L=${L}`)) continue;
    const s = { name: `sweep-L${L}`, batch: sw.batch, dim: sw.dim, L, N: sw.N, G: 1 };
    progress.status(`sweep L=${L}: inputs`);
    const bits = scanBits(run.factory, s);
    const chunk = chunkLengthOf(target, s);
    const t = scanTensors(bits, s, 'float32', target.device);
    const calls = scanCalls(t);
    const timing = { ...run.timing(null), reps: Math.min(run.timing(null).reps, run.cpu ? 5 : 10), maxTotalMs: 2000 };
    const point = { L, chunkLength: chunk };
    for (const [key, op] of [
      ['fwdMs', 'fwd'],
      ['bwdMs', 'bwd'],
      ['fwdBwdMs', 'fwd+bwd'],
    ]) {
      progress.status(`sweep (${s.batch}, ${s.dim}, ${L}, ${s.N}) ${op}`);
      const m = await run.guarded(`sweep L=${L} ${op}`, () => measure(target, calls[op], timing));
      if (!m) continue;
      point[key] = m.medianMs;
      const traffic = scanTraffic(s, 'float32', op, chunk);
      point[`${key.slice(0, -2)}FractionOfFloor`] = roofline(traffic, m.medianMs, run.machine).fractionOfFloor;
    }
    progress.done(
      `sweep L=${L}: fwd ${point.fwdMs ? fmtMs(point.fwdMs) : '–'} ms, bwd ${point.bwdMs ? fmtMs(point.bwdMs) : '–'} ms`,
    );
    if (L <= sw.torchMaxL) {
      if (run.cpu) {
        const r = torchCpu(run, s, run.o.torchReps ?? 3, `sweep L=${L}`);
        if (r) point.torch = r;
      } else if (run.torch.python) {
        const c = p.torchGpu.addScanCase(s.name, s, bits, ['fwd', 'fwdbwd']);
        point.torchCaseId = c.id;
        await keepOutputForTorch(run, p, c.id, t, `sweep L=${L}`);
      }
    }
    calls.dispose();
    disposeAll(t);
    points.push(point);
  }
  res.sweep = { batch: sw.batch, dim: sw.dim, N: sw.N, dtype: 'float32', points, torchMaxL: sw.torchMaxL };
}
