// The state space dual scan's rows (Mamba-2): ssdScan forward and forward+backward with z, D,
// dtBias and softplus, and on the CPU its decoding step (the heads form of selectiveStateUpdate, one
// A and dt per head) at 80 heads of 64, N 128.
//
// On the CPU (float32): M2-cpu (1, 1024, 24 × 64, G 1, N 128), M2-quick with --quick. Beside
// mamba_ssm's chunked reference in plain PyTorch (ssd_minimal.py through torch_cpu_baseline.py ssd,
// at our thread count) as `PyTorch ssd_minimal fwd` / `fwd+bwd`, and our output and every gradient
// checked against it first. Beside llama.cpp's ggml `ssm_scan` (its Mamba-2 path): when
// SELECTIVE_SCAN_GGML_SSM names a harness binary built outside this repository against a ggml
// checkout (usage `<bin> batch L H P G N threads reps`, one JSON line { samplesMs, minMs, medianMs }
// out; see bench/README.md), each shape gets a `ggml ssm_scan` row at the same thread count, and our
// forward with ggml's arguments (initial and last state, softplus, no z, D or dtBias) as
// `fwd-as-ggml`; the step gets ggml's one-token ssm_scan (which also skips z, D and dtBias).
//
// On a GPU (the run's dtypes: bfloat16 takes the chunked tensor-core forward, float32 the recurrent
// one; the backward is recurrent): issue #14's Mamba-2 shapes M2-S1 (8, 4096, 64 × 64, G 1, N 128)
// and M2-S2 (1, 32768, 32 × 64, G 1, N 128) (M2-S1 only with --quick; tiny -sim variants on the
// simulated GPU), after an agreement check against the CPU backend; a roofline with the chunked
// form's matrix FLOPs at the tensor-core rate (lib/roofline.mjs ssdFlops, tensorCoreRate), the peak
// memory of one forward+backward, and last, in one process (torch_gpu_reference.py), ssd_minimal in
// the run's dtype and mamba_ssm's Triton kernels where they import.
import { execFileSync } from 'node:child_process';
import { Tensor, buildInfo, cuda, selectiveStateUpdate, ssdScan, ssdScanBackward } from 'selective-scan';
import { wantsTorch } from '../lib/cli.mjs';
import { agreementCheck } from '../lib/agreement.mjs';
import { measure, sync } from '../lib/measure.mjs';
import { fmtMs } from '../lib/progress.mjs';
import { InputFactory } from '../lib/random.mjs';
import { mdTable } from '../lib/report.mjs';
import { ssdFlops, ssdTraffic, stepTraffic } from '../lib/roofline.mjs';
import { disposeAll, tensorBytes, tensorFromBits } from '../lib/tensors.mjs';
import { TORCH_GPU_SCRIPT, TorchGpuReference, sha1, torchBaseline, torchFileCheck } from '../lib/torch.mjs';

const VARIANTS = ['fwd', 'fwd+bwd'];
// The CPU shape of the comparison with ggml (issue #14), and the tiny one of --quick.
const SSD_CPU = [{ name: 'M2-cpu', batch: 1, L: 1024, H: 24, P: 64, G: 1, N: 128 }];
const SSD_QUICK = [{ name: 'M2-quick', batch: 1, L: 128, H: 4, P: 64, G: 1, N: 128 }];
// Issue #14's Mamba-2 shapes on a GPU, and tiny ones for the simulated GPU path (harness tests).
const SSD_GPU = [
  { name: 'M2-S1', batch: 8, L: 4096, H: 64, P: 64, G: 1, N: 128 },
  { name: 'M2-S2', batch: 1, L: 32768, H: 32, P: 64, G: 1, N: 128, heavy: true },
];
const SSD_SIM = [
  { name: 'M2-S1-sim', batch: 2, L: 256, H: 4, P: 64, G: 1, N: 128 },
  { name: 'M2-S2-sim', batch: 1, L: 1024, H: 2, P: 64, G: 1, N: 128 },
];
const SSD_STEP = { name: 'ssd-step-b1', form: 'heads', batch: 1, H: 80, P: 64, G: 1, N: 128 };
// The chunk of the chunked form (ssd_minimal's block_len, our tensor-core forward's Q) for the FLOPs.
const Q = 64;
const GRADS = ['dx', 'ddt', 'dA', 'dB', 'dC', 'dD', 'dz', 'ddtBias'];
// The agreement checks' shape: L = 200 ends in a partial chunk, two groups of two heads.
const CHECK_SHAPE = { batch: 2, L: 200, H: 4, P: 64, G: 2, N: 128 };
// Our row each PyTorch row stands beside, and the field of torch_cpu_baseline.py / the GPU reference.
const PEER_OPS = { fwd: 'fwd', 'fwd+bwd': 'fwdbwd' };
const PEERS = {
  ssd_minimal: { op: 'PyTorch ssd_minimal', peer: 'PyTorch ssd_minimal (chunked, bench/ssd_minimal.py)' },
  triton: { op: 'Triton', peer: 'mamba_ssm mamba_chunk_scan_combined (Triton, chunk 256)' },
};

export const GGML_ENV = 'SELECTIVE_SCAN_GGML_SSM';

const isStep = (s) => s.form === 'heads';
const shapeOf = ({ batch, L, H, P, G, N }) => ({ batch, L, H, P, G, N });
const sizeText = (s) =>
  isStep(s) ? `(${s.batch}, ${s.H}x${s.P}, N=${s.N})` : `(${s.batch}, ${s.L}, ${s.H}x${s.P}, G=${s.G}, N=${s.N})`;

/** @type {import('./index.mjs').BenchOp} */
export const ssdScanRows = {
  kind: 'ssd',
  shapes: ['ssd', 'ssd-step'],
  variants: VARIANTS,
  sizeText,
  plan(run) {
    return run.cpu ? cpuPlan(run) : gpuPlan(run);
  },
  async checks(run, p) {
    if (p.check) await run.guarded('ssd agreement check', () => gpuCheck(run, p));
    if (p.torchCheck) await run.guarded('ssd PyTorch check', () => torchCheck(run));
  },
  async rows(run, p) {
    for (const s of p.scans) await run.guarded(`${s.name} inputs`, () => scanRows(run, p, s));
    for (const st of p.steps) await run.guarded(`${st.name} inputs`, () => stepRows(run, p, st));
  },
  async finish(run, p) {
    if (!p.torchGpu) return;
    if (!run.late('the PyTorch ssd_minimal reference')) await run.guarded('ssd PyTorch', () => torchGpuRows(run, p));
    p.torchGpu.dispose();
  },
  reportSection,
};

function cpuPlan(run) {
  const { o } = run;
  const want = new Set(o.shapes ?? ['ssd', 'ssd-step']);
  if (!o.dtypes.includes('float32')) return { units: 0, summary: {}, scans: [], steps: [] };
  const scans = want.has('ssd') ? (o.quick ? SSD_QUICK : SSD_CPU) : [];
  const steps = want.has('ssd-step') ? [SSD_STEP] : [];
  const ops = o.ops.filter((op) => VARIANTS.includes(op));
  const ggml = process.env[GGML_ENV] || null;
  const torch = wantsTorch(o, 'ssd') && !!run.torch.python && !!run.torch.baselineScript && ops.length > 0;
  const torchCheck = torch && o.checks && scans.length > 0;
  const perScan = ops.length + (ggml ? 2 : 0) + (torch ? 1 : 0);
  return {
    units: scans.length * perScan + steps.length * (ggml ? 2 : 1) + (torchCheck ? 1 : 0),
    summary: scans.length + steps.length ? { ssd: [...scans, ...steps].map((s) => s.name), ggml } : {},
    scans,
    steps,
    ops,
    dtypes: ['float32'],
    ggml,
    torch,
    torchCheck,
  };
}

function gpuPlan(run) {
  const { o, target } = run;
  const want = new Set(o.shapes ?? ['ssd']);
  const ops = o.ops.filter((op) => VARIANTS.includes(op));
  const scans = !want.has('ssd') || !ops.length ? [] : target.simulated ? SSD_SIM : o.quick ? [SSD_GPU[0]] : SSD_GPU;
  const check = o.checks && scans.length > 0;
  // ssd_minimal (and Triton) in the run's dtypes, one process for all of them (the finish phase).
  const torchGpu = wantsTorch(o, 'ssd') && run.torch.python && scans.length > 0 ? new TorchGpuReference() : null;
  return {
    units: (check ? 1 : 0) + scans.length * o.dtypes.length * ops.length + (torchGpu ? 1 : 0),
    summary: scans.length ? { ssd: scans.map((s) => s.name) } : {},
    scans,
    steps: [],
    ops,
    dtypes: o.dtypes,
    check,
    torchGpu,
  };
}

// ---- inputs ----------------------------------------------------------------------------------------

/** The inputs' values, drawn once (bfloat16 bits; A, D, dtBias float32) for every dtype. */
function ssdBits(factory, s) {
  const { batch, L, H, P, G, N } = s;
  const rows = batch * L * H * P;
  return {
    x: factory.bits(rows, 'normal'),
    z: factory.bits(rows, 'normal'),
    dt: factory.bits(batch * L * H, 'delta'),
    B: factory.bits(batch * L * G * N, 'normal'),
    C: factory.bits(batch * L * G * N, 'normal'),
    dout: factory.bits(rows, 'normal'),
    A: factory.floats(H, (r) => -Math.exp(r.uniform())),
    D: factory.floats(H, (r) => r.normal()),
    dtBias: factory.floats(H, (r) => -r.uniform()),
  };
}

function ssdTensors(bits, s, dtype, device) {
  const { batch, L, H, P, G, N } = s;
  const t = (k, shape) => tensorFromBits(bits[k], shape, dtype, device);
  const f32 = (k) => Tensor.from(bits[k], [H], { device });
  return {
    x: t('x', [batch, L, H, P]),
    z: t('z', [batch, L, H, P]),
    dt: t('dt', [batch, L, H]),
    B: t('B', [batch, L, G, N]),
    C: t('C', [batch, L, G, N]),
    dout: t('dout', [batch, L, H, P]),
    A: f32('A'),
    D: f32('D'),
    dtBias: f32('dtBias'),
  };
}

const options = (t) => ({ D: t.D, z: t.z, dtBias: t.dtBias, dtSoftplus: true });

/** One forward (saved) and backward: the output and every gradient as Float32Arrays. */
function forwardBackward(t) {
  const r = ssdScan(t.x, t.dt, t.A, t.B, t.C, { ...options(t), saveForBackward: true });
  const g = ssdScanBackward(r.ctx, t.dout);
  const vals = { out: r.out.dataSync() };
  for (const k of GRADS) vals[k] = g[k].dataSync();
  r.out.dispose();
  r.ctx.dispose();
  disposeAll(g);
  return vals;
}

// ---- agreement ---------------------------------------------------------------------------------------

// This device against the CPU backend on the same inputs: float32 (the recurrent forward) and each
// 16-bit dtype of the run (the chunked tensor-core forward), every gradient (the recurrent backward).
async function gpuCheck(run, p) {
  const { target, res, progress } = run;
  progress.status('ssd agreement check');
  const bits = ssdBits(new InputFactory(2468), CHECK_SHAPE);
  const on = (dtype, device) => {
    const t = ssdTensors(bits, CHECK_SHAPE, dtype, device);
    try {
      return forwardBackward(t);
    } finally {
      disposeAll(t);
    }
  };
  for (const dtype of ['float32', ...p.dtypes.filter((d) => d !== 'float32')]) {
    const name = `ssdScan + backward, ${target.id} vs CPU backend`;
    const tolerance = dtype === 'float32' ? [1e-5, 1e-4] : [1e-2, 1e-2];
    const check = agreementCheck(
      name,
      dtype,
      CHECK_SHAPE,
      on(dtype, target.device),
      on(dtype, 'cpu'),
      ['out', ...GRADS],
      tolerance,
    );
    res.checks.push(check);
    if (!check.pass)
      progress.note(`WARNING: agreement check failed: ${name} (${dtype}): ${JSON.stringify(check.relErr)}`);
  }
  progress.done('ssd agreement check');
}

// Our CPU backend against ssd_minimal (autograd, float64) on the same inputs.
async function torchCheck(run) {
  const t = ssdTensors(ssdBits(new InputFactory(2468), CHECK_SHAPE), CHECK_SHAPE, 'float32', 'cpu');
  const inputs = {};
  for (const k of ['x', 'dt', 'A', 'B', 'C', 'D', 'z', 'dtBias', 'dout']) inputs[k] = t[k].dataSync();
  const got = forwardBackward(t);
  disposeAll(t);
  const { batch, L, H, P, G, N } = CHECK_SHAPE;
  torchFileCheck(run, {
    label: 'ssd PyTorch check',
    name: 'ssdScan + backward, CPU backend vs PyTorch ssd_minimal (chunked, autograd, float64)',
    shape: CHECK_SHAPE,
    inputs,
    got,
    keys: ['out', ...GRADS],
    args: (dir) => ['ssd-check', dir, batch, L, H, P, G, N],
  });
}

// ---- the rows of one shape -----------------------------------------------------------------------------

/** The checkpoint interval of the backend for these inputs (from a saved forward's checkpoints). */
function chunkOf(t, s) {
  const r = ssdScan(t.x, t.dt, t.A, t.B, t.C, { ...options(t), saveForBackward: true });
  const chunks = r.ctx.checkpointBytes / (s.batch * s.H * s.P * s.N * 4);
  r.out.dispose();
  r.ctx.dispose();
  return Math.ceil(s.L / chunks);
}

const trafficOf = (shape, dtype, op, chunk) => ({
  ...ssdTraffic(shape, dtype, op, chunk),
  flops: ssdFlops(shape, op, Q),
});

async function scanRows(run, p, s) {
  const { target, progress } = run;
  const { name } = s;
  const shape = shapeOf(s);
  if (run.late(`${name} (all of it)`)) return;
  progress.status(`${name}: making inputs`);
  const bits = ssdBits(run.factory, s);
  const ours = {};
  for (const dtype of p.dtypes) {
    progress.status(`${name} ${dtype}: uploading inputs`);
    const t = ssdTensors(bits, s, dtype, target.device);
    if (p.ggml) t.h0 = Tensor.zeros([s.batch, s.H, s.P, s.N], { device: target.device });
    const chunk = chunkOf(t, s);
    const opts = options(t);
    const calls = {
      fwd: () => ssdScan(t.x, t.dt, t.A, t.B, t.C, opts).out.dispose(),
      'fwd+bwd': () => {
        const r = ssdScan(t.x, t.dt, t.A, t.B, t.C, { ...opts, saveForBackward: true });
        disposeAll(ssdScanBackward(r.ctx, t.dout));
        r.out.dispose();
        r.ctx.dispose();
      },
      // What ggml's ssm_scan computes: softplus(dt), the state read and the last state written.
      'fwd-as-ggml': () => {
        const r = ssdScan(t.x, t.dt, t.A, t.B, t.C, { dtSoftplus: true, initialState: t.h0, returnLastState: true });
        r.out.dispose();
        r.lastState.dispose();
      },
    };
    const ops = p.ggml ? [...p.ops, 'fwd-as-ggml'] : p.ops;
    for (const op of ops) {
      if (run.late(`${name} ${dtype} ${op}`)) continue;
      progress.status(`${name} ${dtype} ${op}`);
      const m = await run.guarded(`${name} ${dtype} ${op}`, () => measure(target, calls[op], run.timing(s)));
      if (!m) continue;
      const traffic = trafficOf(shape, dtype, op === 'fwd-as-ggml' ? 'fwd' : op, chunk);
      const extra = run.cpu ? { threads: buildInfo().cpuThreads, chunkLength: chunk } : { chunkLength: chunk };
      const rec = run.record('ssd', name, shape, dtype, op, m, traffic, extra);
      ours[`${dtype} ${op}`] = rec;
      progress.done(
        `${name} ${dtype} ${op}: ${fmtMs(m.medianMs)} ms, ${rec.roofline.gbps.toFixed(1)} GB/s, ${(rec.roofline.fractionOfFloor * 100).toFixed(0)} % of floor (${rec.roofline.bound})`,
      );
    }
    if (run.gpu && ours[`${dtype} fwd+bwd`]) {
      const mem = await run.guarded(`${name} ${dtype} peak memory`, () => peakMemory(run, s, dtype, t));
      if (mem) run.res.memory.push(mem);
    }
    if (p.torchGpu) p.torchGpu.addSsdCase(`${name} ${dtype}`, { ...shape, dtype, seed: run.o.seed });
    disposeAll(t);
  }
  if (p.ggml) await ggmlRow(run, p, name, s, trafficOf(shape, 'float32', 'fwd', Q));
  if (p.torch && !run.late(`${name} PyTorch`)) {
    const { batch, L, H, P, G, N } = shape;
    const reps = run.o.torchReps ?? 3;
    const out = torchBaseline(run, name, ['ssd', batch, L, H, P, G, N, reps]);
    if (out) {
      const peer = `${PEERS.ssd_minimal.peer}, BLAS ${out.blas ?? '?'}`;
      const done = [];
      for (const op of p.ops) {
        const ms = out[`${PEER_OPS[op]}_ms`];
        const m = { medianMs: ms, minMs: null, maxMs: null, reps: out.reps, samplesMs: [] };
        const rec = peerRecord(run, name, shape, 'float32', op, m, ours[`float32 ${op}`], 'ssd_minimal', {
          threads: out.threads,
          peer,
        });
        done.push(`${op} ${fmtMs(ms)} ms${rec.speedup ? ` (${rec.speedup.toFixed(1)}× our time)` : ''}`);
      }
      run.res.notes.push(
        `PyTorch ssd_minimal on the CPU: torch ${run.torch.torchVersion ?? '?'} built with BLAS ${out.blas ?? '?'}, ` +
          `which ran a 512³ float32 matrix product at ${out.matmul_gflops?.toFixed(1) ?? '?'} GFLOP/s (${out.threads} threads): ` +
          'ssd_minimal is matrix products, so its time follows that rate (an MKL or OpenBLAS build of torch reaches tens of GFLOP/s per core).',
      );
      run.progress.done(`${name} PyTorch ssd_minimal (${out.threads} threads): ${done.join(', ')}`);
    }
  }
}

/** Another implementation's row beside ours (ourRec: our row of that op and dtype, or undefined). */
function peerRecord(run, name, shape, dtype, op, m, ourRec, impl, extra) {
  return run.record('ssd', name, shape, dtype, `${PEERS[impl].op} ${op}`, m, trafficOf(shape, dtype, op, Q), {
    peer: PEERS[impl].peer,
    ...extra,
    beside: op,
    oursMs: ourRec?.medianMs ?? null,
    speedup: ourRec ? m.medianMs / ourRec.medianMs : null,
  });
}

/** Peak device memory of one forward (saved) + backward, as the selective scan's rows record it. */
async function peakMemory(run, s, dtype, t) {
  const { target } = run;
  await sync(target);
  cuda.resetPeakMemory(target.device);
  const before = cuda.memoryInfo(target.device).allocatedBytes;
  const r = ssdScan(t.x, t.dt, t.A, t.B, t.C, { ...options(t), saveForBackward: true });
  const g = ssdScanBackward(r.ctx, t.dout);
  await sync(target);
  const info = cuda.memoryInfo(target.device);
  const checkpointBytes = r.ctx.checkpointBytes;
  const outputBytes = tensorBytes(r.out) + checkpointBytes;
  const gradientBytes = Object.values(g).reduce((a, x) => a + tensorBytes(x), 0);
  r.out.dispose();
  r.ctx.dispose();
  disposeAll(g);
  return {
    kind: 'ssd',
    shapeName: s.name,
    shape: shapeOf(s),
    size: sizeText(s),
    dtype,
    inputBytes: Object.values(t).reduce((a, x) => a + tensorBytes(x), 0),
    outputBytes,
    checkpointBytes,
    gradientBytes,
    allocatedBeforeBytes: before,
    peakAllocatedBytes: info.peakAllocatedBytes,
    reservedBytes: info.reservedBytes,
    method:
      'cuda.resetPeakMemory(), then one ssdScan (saveForBackward) + ssdScanBackward, then cuda.memoryInfo().peakAllocatedBytes; inputs were live before',
  };
}

/** ssd_minimal (and Triton where mamba_ssm imports) on this device, one process, rows beside ours. */
async function torchGpuRows(run, p) {
  const { target, res, progress } = run;
  if (!p.torchGpu.cases.length) return;
  progress.status(`PyTorch ssd_minimal on ${target.simulated ? 'the CPU (simulated GPU)' : 'the GPU'}`);
  const out = p.torchGpu.run(run.torch.python, target.simulated ? 'cpu' : target.device, run.o.torchReps ?? 3);
  if (out.error !== undefined) {
    res.notes.push(`PyTorch ssd_minimal / Triton on the GPU failed: ${out.error}`);
    progress.done('ssd PyTorch GPU reference FAILED');
    return;
  }
  res.torch = {
    ...res.torch,
    ssdGpuReference: {
      torch: out.torch,
      cuda: out.cuda,
      device: out.device_name,
      mambaSsm: out.mamba_ssm ?? null,
      script: 'bench/torch_gpu_reference.py',
      sha1: sha1(TORCH_GPU_SCRIPT),
    },
  };
  if (out.mamba_ssm_error) res.notes.push(`No Triton rows: ${out.mamba_ssm_error}.`);
  let rows = 0;
  for (const c of out.cases) {
    const q = p.torchGpu.cases.find((x) => x.id === c.id);
    if (!q) continue;
    const shape = shapeOf(q);
    const name = c.id.slice(0, c.id.lastIndexOf(' '));
    for (const [impl, r] of Object.entries(c.impls ?? {})) {
      for (const op of p.ops) {
        const key = PEER_OPS[op];
        const ms = r[`${key}_ms`];
        if (ms === undefined) continue;
        const ourRec = res.cases.find(
          (x) => x.kind === 'ssd' && x.shapeName === name && x.dtype === q.dtype && x.op === op,
        );
        const m = { medianMs: ms, minMs: null, maxMs: null, reps: r[`${key}_reps`], samplesMs: [] };
        peerRecord(run, name, shape, q.dtype, op, m, ourRec, impl, { peakBytes: r[`${key}_peak_bytes`] ?? null });
        rows++;
      }
      const skipped = Object.entries(r.skipped ?? {}).filter(([k]) => k !== 'all' || impl !== 'triton');
      for (const [op, why] of skipped) res.notes.push(`${c.id}: ${PEERS[impl].op} ${op} skipped: ${why}`);
    }
    if (c.skipped?.all) res.notes.push(`${c.id}: PyTorch ssd reference failed: ${c.skipped.all}`);
  }
  progress.done(`ssd PyTorch GPU reference: ${rows} rows`);
}

// ---- ggml and the step (CPU) -----------------------------------------------------------------------------

/** ggml's row beside ours: its harness at shape s (L = 1 for the step). */
async function ggmlRow(run, p, name, s, traffic) {
  if (run.late(`${name} ggml`)) return;
  const shape = isStep(s) ? (({ name: _, ...rest }) => rest)(s) : shapeOf(s);
  const reps = run.o.reps ?? (isStep(s) ? 200 : 20);
  const m = await run.guarded(`${name} ggml ssm_scan`, () => ggmlTiming(p.ggml, { L: 1, ...s }, reps));
  if (m) {
    const extra = { threads: m.threads, peer: `ggml ssm_scan (${p.ggml})` };
    const rec = run.record('ssd', name, shape, 'float32', 'ggml ssm_scan', m, traffic, extra);
    run.progress.done(`${name} ggml ssm_scan: ${fmtMs(rec.medianMs)} ms`);
  }
}

/**
 * ggml's harness at the shape, with our thread count: { medianMs, minMs, ... } as measure() gives.
 * The best of three processes (by median): on a loaded machine ggml's OpenMP team sometimes waits
 * a whole time slice for a descheduled thread at every call (0.07 ms or 20 ms for the step, from
 * one process to the next), which would measure the machine rather than ggml.
 */
export function ggmlTiming(bin, s, reps) {
  const threads = buildInfo().cpuThreads;
  const args = [s.batch, s.L, s.H, s.P, s.G, s.N, threads, Math.max(5, reps)].map(String);
  const runs = [0, 1, 2].map(() => JSON.parse(execFileSync(bin, args, { encoding: 'utf8', timeout: 600_000 }).trim()));
  const r = runs.reduce((best, x) => (x.medianMs < best.medianMs ? x : best));
  const samples = r.samplesMs;
  return {
    medianMs: r.medianMs,
    minMs: r.minMs,
    maxMs: Math.max(...samples),
    reps: samples.length,
    callsPerRep: 1,
    hostMsPerCall: r.medianMs,
    samplesMs: samples,
    threads: r.threads,
  };
}

async function stepRows(run, p, st) {
  const { target, progress } = run;
  const { name, ...shape } = st;
  if (run.late(name)) return;
  const { device } = target;
  const { batch, H, P, G, N } = st;
  const bits = (n, kind, sh) => tensorFromBits(run.factory.bits(n, kind), sh, 'float32', device);
  const f32 = (n, fn, sh) => Tensor.from(run.factory.floats(n, fn), sh, { device });
  const t = {
    state: Tensor.zeros([batch, H, P, N], { device }),
    x: bits(batch * H * P, 'normal', [batch, H, P]),
    dt: bits(batch * H, 'delta', [batch, H]),
    z: bits(batch * H * P, 'normal', [batch, H, P]),
    A: f32(H, (r) => -Math.exp(r.uniform()), [H]),
    B: bits(batch * G * N, 'normal', [batch, G, N]),
    C: bits(batch * G * N, 'normal', [batch, G, N]),
    D: f32(H, (r) => r.normal(), [H]),
    dtBias: f32(H, (r) => -r.uniform(), [H]),
  };
  const opts = { D: t.D, z: t.z, dtBias: t.dtBias, dtSoftplus: true };
  progress.status(`${name} float32 step`);
  const fn = () => selectiveStateUpdate(t.state, t.x, t.dt, t.A, t.B, t.C, opts).dispose();
  const m = await run.guarded(`${name} step`, () => measure(target, fn, { ...run.timing(null), targetMs: 20 }));
  if (m) {
    const rec = run.record('ssd', name, shape, 'float32', 'step', m, stepTraffic(st, 'float32'));
    progress.done(
      `${name} float32 step: ${fmtMs(m.medianMs)} ms, ${rec.roofline.gbps.toFixed(1)} GB/s, ${(rec.roofline.fractionOfFloor * 100).toFixed(0)} % of floor`,
    );
  }
  disposeAll(t);
  if (p.ggml) await ggmlRow(run, p, name, st, stepTraffic(st, 'float32'));
}

// ---- the report ----------------------------------------------------------------------------------------

const fmt = (v, digits = 3) =>
  v === null || v === undefined || !Number.isFinite(v) ? '–' : `${+v.toPrecision(digits)}`;

/** Our scan rows' roofline with the matrix-FLOP floor, when any row has one. */
function reportSection(res) {
  const rows = res.cases.filter((c) => c.kind === 'ssd' && !c.peer && c.roofline.flops);
  if (!rows.length || res.device.kind === 'cpu') return null;
  const rate = res.machine?.tensorFlops;
  const head = [
    "### Mamba-2 scan (ssdScan): bytes, and the chunked form's matrix FLOPs",
    '',
    'FLOPs: the chunked (state space dual) form with chunks of 64, 2 per multiply-add (lib/roofline.mjs ssdFlops; ' +
      'the backward twice the forward). ' +
      (rate
        ? `FLOP floor: at ${fmt(rate.bfloat16 / 1e12)} TFLOP/s (${rate.source}; mma.sync reaches only part of it), 16-bit rows only: float32 runs the recurrent form.`
        : 'No FLOP floor: no tensor-core rate for this device (lib/roofline.mjs tensorCoreRate).'),
    '',
  ];
  const table = mdTable(
    ['shape', 'dtype', 'op', 'median ms', 'GB', 'mem floor ms', 'GFLOP', 'FLOP floor ms', 'bound', '% of floor'],
    rows.map((c) => [
      c.shapeName,
      c.dtype,
      c.op,
      fmt(c.medianMs),
      fmt(c.roofline.bytes / 1e9),
      fmt(c.roofline.memFloorMs),
      fmt(c.roofline.flops / 1e9),
      fmt(c.roofline.flopFloorMs),
      c.roofline.bound,
      `${(c.roofline.fractionOfFloor * 100).toFixed(1)} %`,
    ]),
    ['l', 'l', 'l'],
  );
  // Peak device memory of one call: ours (fwd+bwd, the table of peak memory above has its parts)
  // and the PyTorch / Triton rows' torch.cuda.max_memory_allocated (their inputs included).
  const gib = (b) => `${(b / 2 ** 30).toFixed(2)} GiB`;
  const peaks = [
    ...(res.memory ?? [])
      .filter((m) => m.kind === 'ssd')
      .map((m) => [m.shapeName, m.dtype, 'ours fwd+bwd', gib(m.peakAllocatedBytes)]),
    ...res.cases
      .filter((c) => c.kind === 'ssd' && c.peakBytes)
      .map((c) => [c.shapeName, c.dtype, c.op, gib(c.peakBytes)]),
  ];
  const mem = peaks.length
    ? [
        '',
        'Peak device memory (inputs included):',
        '',
        mdTable(['shape', 'dtype', 'call', 'peak'], peaks, ['l', 'l', 'l']),
      ]
    : [];
  return [...head, table, ...mem].join('\n');
}
