// The state space dual scan's rows (Mamba-2): ssdScan forward and forward+backward with z, D,
// dtBias and softplus, and its decoding step (the heads form of selectiveStateUpdate, one A and dt
// per head) at 80 heads of 64, N 128. CPU only: the CUDA kernels are not written yet.
//
// Beside llama.cpp's ggml `ssm_scan` (its Mamba-2 path): when SELECTIVE_SCAN_GGML_SSM names a
// harness binary built outside this repository against a ggml checkout (usage
// `<bin> batch L H P G N threads reps`, one JSON line { samplesMs, minMs, medianMs } out; see
// bench/README.md), each shape gets a `ggml ssm_scan` row at the same thread count, and our forward
// with ggml's arguments (initial and last state, softplus, no z, D or dtBias) as `fwd-as-ggml`; the
// step gets ggml's one-token ssm_scan (which also skips z, D and dtBias) as `ggml ssm_scan`.
import { execFileSync } from 'node:child_process';
import { Tensor, buildInfo, selectiveStateUpdate, ssdScan, ssdScanBackward } from 'selective-scan';
import { measure } from '../lib/measure.mjs';
import { fmtMs } from '../lib/progress.mjs';
import { ssdTraffic, stepTraffic } from '../lib/roofline.mjs';
import { disposeAll, tensorFromBits } from '../lib/tensors.mjs';

const VARIANTS = ['fwd', 'fwd+bwd'];
// The CPU shape of the comparison with ggml (issue #14), and the tiny one of --quick.
const SSD_CPU = [{ name: 'M2-cpu', batch: 1, L: 1024, H: 24, P: 64, G: 1, N: 128 }];
const SSD_QUICK = [{ name: 'M2-quick', batch: 1, L: 128, H: 4, P: 64, G: 1, N: 128 }];
const SSD_STEP = { name: 'ssd-step-b1', form: 'heads', batch: 1, H: 80, P: 64, G: 1, N: 128 };
// The backend's checkpoint interval (csrc/ops/ssd_scan/ssd_scan.h), for the roofline's bytes.
const CHUNK = 64;

export const GGML_ENV = 'SELECTIVE_SCAN_GGML_SSM';

const isStep = (s) => s.form === 'heads';

/** @type {import('./index.mjs').BenchOp} */
export const ssdScanRows = {
  kind: 'ssd',
  shapes: ['ssd', 'ssd-step'],
  variants: VARIANTS,
  sizeText: (s) =>
    isStep(s) ? `(${s.batch}, ${s.H}x${s.P}, N=${s.N})` : `(${s.batch}, ${s.L}, ${s.H}x${s.P}, G=${s.G}, N=${s.N})`,
  plan(run) {
    const { o } = run;
    const want = new Set(o.shapes ?? ['ssd', 'ssd-step']);
    if (!run.cpu || !o.dtypes.includes('float32')) {
      // Nothing here yet (no CUDA kernels): nothing in the plan either.
      return { units: 0, summary: {}, scans: [], steps: [] };
    }
    const scans = want.has('ssd') ? (o.quick ? SSD_QUICK : SSD_CPU) : [];
    const steps = want.has('ssd-step') ? [SSD_STEP] : [];
    const ops = o.ops.filter((op) => VARIANTS.includes(op));
    const ggml = process.env[GGML_ENV] || null;
    const perScan = ops.length + (ggml ? 2 : 0);
    return {
      units: scans.length * perScan + steps.length * (ggml ? 2 : 1),
      summary: scans.length + steps.length ? { ssd: [...scans, ...steps].map((s) => s.name), ggml } : {},
      scans,
      steps,
      ops,
      ggml,
    };
  },
  async rows(run, p) {
    for (const s of p.scans) await run.guarded(`${s.name} inputs`, () => scanRows(run, p, s));
    for (const st of p.steps) await run.guarded(`${st.name} inputs`, () => stepRows(run, p, st));
  },
};

function inputs(run, s) {
  const { device } = run.target;
  const { batch, L, H, P, G, N } = s;
  const bits = (n, kind, shape) => tensorFromBits(run.factory.bits(n, kind), shape, 'float32', device);
  const f32 = (n, fn, shape) => Tensor.from(run.factory.floats(n, fn), shape, { device });
  return {
    x: bits(batch * L * H * P, 'normal', [batch, L, H, P]),
    z: bits(batch * L * H * P, 'normal', [batch, L, H, P]),
    dt: bits(batch * L * H, 'delta', [batch, L, H]),
    A: f32(H, (r) => -Math.exp(r.uniform()), [H]),
    B: bits(batch * L * G * N, 'normal', [batch, L, G, N]),
    C: bits(batch * L * G * N, 'normal', [batch, L, G, N]),
    D: f32(H, (r) => r.normal(), [H]),
    dtBias: f32(H, (r) => -r.uniform(), [H]),
    h0: Tensor.zeros([batch, H, P, N], { device }),
    dout: bits(batch * L * H * P, 'normal', [batch, L, H, P]),
  };
}

async function scanRows(run, p, s) {
  const { target, progress } = run;
  const { name, ...shape } = s;
  const t = inputs(run, s);
  const opts = { D: t.D, z: t.z, dtBias: t.dtBias, dtSoftplus: true };
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
    if (run.late(`${name} ${op}`)) continue;
    progress.status(`${name} float32 ${op}`);
    const m = await run.guarded(`${name} ${op}`, () => measure(target, calls[op], run.timing(null)));
    if (!m) continue;
    const traffic = ssdTraffic(shape, 'float32', op === 'fwd-as-ggml' ? 'fwd' : op, CHUNK);
    const rec = run.record('ssd', name, shape, 'float32', op, m, traffic, { threads: buildInfo().cpuThreads });
    progress.done(
      `${name} float32 ${op}: ${fmtMs(m.medianMs)} ms, ${(rec.roofline.fractionOfFloor * 100).toFixed(0)} % of floor`,
    );
  }
  if (p.ggml) await ggmlRow(run, p, name, s, ssdTraffic(shape, 'float32', 'fwd', CHUNK));
  disposeAll(t);
}

/** ggml's row beside ours: its harness at shape s (L = 1 for the step). */
async function ggmlRow(run, p, name, s, traffic) {
  if (run.late(`${name} ggml`)) return;
  const { name: _, ...shape } = s;
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
