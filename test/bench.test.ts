// The harness of `npm run bench` (bench/): the bytes and exp2 counts of each op's roofline, counted
// by hand here; the op modules' interface and the options checked against it; a whole run on the
// CPU and on the simulated GPU path at tiny shapes (the machine's ceilings fixed, not measured),
// whose progress must add up to the plan; and what the GPU session (bench/gpu-session.sh) makes of
// sanitizer logs and of mamba_ssm's peer binary's output.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseOptions, wantsTorch } from '../bench/lib/cli.mjs';
import { DeviceRun } from '../bench/lib/device-run.mjs';
import { findBaselineScript, findTorchPython } from '../bench/lib/env.mjs';
import { markdownReport } from '../bench/lib/report.mjs';
import {
  convStepTraffic,
  convTraffic,
  roofline,
  scanTraffic,
  ssdFlops,
  ssdTraffic,
  tensorCoreRate,
} from '../bench/lib/roofline.mjs';
import {
  peerComparison,
  preflightProblems,
  readPeerLines,
  readSanitizerRun,
  sessionGoals,
} from '../bench/lib/session.mjs';
import { makeTarget } from '../bench/lib/targets.mjs';
import { BENCH_OPS } from '../bench/ops/index.mjs';
import { packedLayouts, packedLengths, paddedTensors, reportSection } from '../bench/ops/packed-scan.mjs';
import { scanBits, scanTensors } from '../bench/ops/selective-scan-inputs.mjs';
import { GGML_ENV } from '../bench/ops/ssd-scan.mjs';
import { InputFactory } from '../bench/lib/random.mjs';
import { buildInfo, selectiveScan } from './helpers/api.js';

describe('roofline bytes and exp2 counts', () => {
  it('the scan: each tensor once, checkpoints when saved, one exp2 per element·state', () => {
    // rows 2·3·10 = 60, B/C 2·4·10 = 80 each, A/D (12 + 3)·4 = 60 B, checkpoints 2·3·ceil(10/4)·4·4 = 288 B.
    const shape = { batch: 2, dim: 3, L: 10, N: 4, G: 1 };
    expect(scanTraffic(shape, 'float32', 'fwd', 4)).toMatchObject({ bytes: 4 * 60 * 4 + 2 * 80 * 4 + 60, exps: 240 });
    expect(scanTraffic(shape, 'float32', 'fwd-save', 4).bytes).toBe(1660 + 288);
    expect(scanTraffic(shape, 'bfloat16', 'bwd', 4).bytes).toBe(7 * 60 * 2 + 4 * 80 * 2 + 288 + 120);
    expect(scanTraffic(shape, 'bfloat16', 'fwd+bwd', 4)).toMatchObject({ bytes: 860 + 288 + 1888, exps: 480 });
  });

  it('the causal convolution: x and out, the weights; its SiLU one exp per element', () => {
    // 2·3·5 = 30 elements, weight and bias (3·4 + 3)·4 = 60 B.
    const shape = { batch: 2, dim: 3, L: 5, W: 4 };
    expect(convTraffic(shape, 'bfloat16', 'fwd')).toMatchObject({ bytes: 2 * 30 * 2 + 60, exps: 30 });
    expect(convTraffic(shape, 'bfloat16', 'bwd')).toMatchObject({ bytes: 3 * 30 * 2 + 120, exps: 30 });
    expect(convTraffic(shape, 'bfloat16', 'fwd+bwd')).toMatchObject({ bytes: 180 + 300, exps: 60 });
    // The step: a (2, 3, W - 1) state read and written, x and out, the weights.
    expect(convStepTraffic({ batch: 2, dim: 3, W: 4 }, 'float32')).toMatchObject({ bytes: 144 + 48 + 60, exps: 6 });
    expect(() => convTraffic(shape, 'float32', 'step')).toThrow('convTraffic: unknown op step');
  });

  it('the Mamba-2 scan: x, z, out per head and position, dt per head, one exp per (batch, L, head)', () => {
    // x 2·10·3·4 = 240, dt 60, B/C 2·10·1·5 = 100 each, A/D/dtBias 36 B, checkpoints 2·3·3·4·5·4 = 1440 B.
    const shape = { batch: 2, L: 10, H: 3, P: 4, G: 1, N: 5 };
    const fwd = 3 * 240 * 2 + 60 * 2 + 2 * 100 * 2 + 36;
    const bwd = 5 * 240 * 2 + 2 * 60 * 2 + 4 * 100 * 2 + 1440 + 72;
    expect(ssdTraffic(shape, 'bfloat16', 'fwd', 4)).toMatchObject({ bytes: fwd, exps: 60 });
    expect(ssdTraffic(shape, 'bfloat16', 'fwd-save', 4).bytes).toBe(fwd + 1440);
    expect(ssdTraffic(shape, 'bfloat16', 'bwd', 4).bytes).toBe(bwd);
    expect(ssdTraffic(shape, 'bfloat16', 'fwd+bwd', 4)).toMatchObject({ bytes: fwd + 1440 + bwd, exps: 120 });
    expect(ssdTraffic({ ...shape, G: 3 }, 'float32', 'fwd', 4).bytes).toBe(3 * 240 * 4 + 60 * 4 + 2 * 300 * 4 + 36);
  });

  it("the Mamba-2 scan's chunked-form matrix FLOPs: C B^T per group, three products per head; backward twice", () => {
    // Q = 4: per step C B^T 4·N per group, (L o C B^T) X 4·P, X^T B and C h^T P·N each per head.
    const shape = { batch: 2, L: 8, H: 3, P: 5, G: 1, N: 6 };
    const fwd = 2 * 2 * 8 * (1 * 4 * 6 + 3 * (4 * 5 + 2 * 5 * 6));
    expect(ssdFlops(shape, 'fwd', 4)).toBe(fwd);
    expect(ssdFlops(shape, 'bwd', 4)).toBe(2 * fwd);
    expect(ssdFlops(shape, 'fwd+bwd', 4)).toBe(3 * fwd);
    expect(ssdFlops({ ...shape, G: 3 }, 'fwd', 4)).toBe(fwd + 2 * 2 * 8 * 2 * 4 * 6);
    // A sequence shorter than the chunk: Q x Q tiles of L x L.
    expect(ssdFlops({ ...shape, L: 2 }, 'fwd', 4)).toBe(2 * 2 * 2 * (2 * 6 + 3 * (2 * 5 + 2 * 5 * 6)));
    expect(() => ssdFlops(shape, 'step', 4)).toThrow('ssdFlops: unknown op step');
    // The spec sheets' dense 16-bit rates by name; an unknown GPU has none.
    expect(tensorCoreRate('NVIDIA H200')).toEqual({
      float16: 989e12,
      bfloat16: 989e12,
      source: 'H100/H200 SXM spec sheet, dense',
    });
    expect(tensorCoreRate('NVIDIA H100 80GB HBM3')?.float16).toBe(989e12);
    expect(tensorCoreRate('NVIDIA H100 PCIe')?.bfloat16).toBe(756e12);
    expect(tensorCoreRate('NVIDIA H200 NVL')?.bfloat16).toBe(835e12);
    expect(tensorCoreRate('NVIDIA A100-SXM4-80GB')?.bfloat16).toBe(312e12);
    expect(tensorCoreRate('NVIDIA GeForce RTX 4090')).toBeNull();
  });

  it('the FLOP floor: flops / the tensor-core rate of the dtype, the third floor; none without a rate', () => {
    const machine = { copyBandwidthGBps: 4, exp2Rate: 2e9, tensorFlops: { bfloat16: 1e12 } };
    const r = roofline({ bytes: 1e9, exps: 1e9, flops: 1e12 }, 2000, machine, 'bfloat16');
    expect(r).toMatchObject({ flopFloorMs: 1000, floorMs: 1000, bound: 'tensor FLOPs', fractionOfFloor: 0.5 });
    const f32 = roofline({ bytes: 1e9, exps: 1e9, flops: 1e12 }, 2000, machine, 'float32');
    expect(f32).toMatchObject({ flops: 1e12, tensorFlopsPerS: null, flopFloorMs: null, floorMs: 500, bound: 'exp2' });
  });

  it('the floors: bytes / bandwidth and exps / rate, the larger binds', () => {
    const r = roofline({ bytes: 1e9, exps: 1e9 }, 500, { copyBandwidthGBps: 4, exp2Rate: 2e9 });
    expect(r).toMatchObject({
      memFloorMs: 250,
      expFloorMs: 500,
      floorMs: 500,
      bound: 'exp2',
      fractionOfFloor: 1,
      gbps: 2,
    });
  });
});

// The agreement checks against PyTorch need the real thing: the distribution's python3-torch, when
// installed.
const torchPy = findTorchPython(undefined);

/** A quick CPU run of `shapes` (forward only, float32) with the real PyTorch baseline beside it. */
async function runWithTorch(shapes: string) {
  const argv = ['--quick', '--shapes', shapes, '--ops', 'fwd', '--dtypes', 'float32', '--torch-reps', '1'];
  const timing = ['--reps', '1', '--warmup', '0', '--target-ms', '1', '--max-case-ms', '20', '--no-save'];
  const o = parseOptions([...argv, ...timing], BENCH_OPS);
  const run = new RunWithoutCeilings(makeTarget('cpu'), o, 'test', BENCH_OPS, {
    ...torchPy,
    baselineScript: findBaselineScript(),
  });
  const res = (await run.run()) as unknown as BenchResult;
  expect(res.errors).toEqual([]);
  expect(run.progress.i).toBe(run.progress.total);
  return res;
}

describe('op modules and options', () => {
  it('every module names its rows, shapes and phases; kinds and shape names are unique', () => {
    for (const op of BENCH_OPS) {
      expect(typeof op.kind).toBe('string');
      expect(op.shapes.length).toBeGreaterThan(0);
      expect(typeof op.sizeText).toBe('function');
      expect(typeof op.plan).toBe('function');
      expect(typeof op.rows).toBe('function');
    }
    const kinds = BENCH_OPS.map((op) => op.kind);
    expect(new Set(kinds).size).toBe(kinds.length);
    const shapes = BENCH_OPS.flatMap((op) => op.shapes);
    expect(new Set(shapes).size).toBe(shapes.length);
  });

  it('--ops defaults to every variant; unknown ops and shapes are errors that list the known ones', () => {
    expect(parseOptions([], BENCH_OPS).ops).toEqual(['fwd', 'fwd-save', 'bwd', 'bwd-det', 'fwd+bwd']);
    expect(parseOptions(['--shapes', 'S1,step,2x8x64x4'], BENCH_OPS).shapes).toEqual(['S1', 'step', '2x8x64x4']);
    expect(() => parseOptions(['--ops', 'fwd,back'], BENCH_OPS)).toThrow('unknown op back');
    expect(() => parseOptions(['--shapes', 'S9'], BENCH_OPS)).toThrow(
      'unknown shape S9 (S1, S2, S3, S4, sweep, step, host-cache, conv, conv-step, ssd, ssd-step, packed or BxDxLxN)',
    );
    expect(() => parseOptions(['--reps', '0'], BENCH_OPS)).toThrow('--reps must be an integer >= 1, got 0');
  });

  it('--torch-only limits PyTorch to the named kinds of op (the GPU session: ssd); --no-torch to none', () => {
    const only = parseOptions(['--torch-only', 'ssd'], BENCH_OPS);
    expect(['scan', 'conv', 'ssd'].map((k) => wantsTorch(only, k))).toEqual([false, false, true]);
    const all = parseOptions([], BENCH_OPS);
    expect(['scan', 'conv', 'ssd'].map((k) => wantsTorch(all, k))).toEqual([true, true, true]);
    const none = parseOptions(['--no-torch', '--torch-only', 'ssd'], BENCH_OPS);
    expect(['scan', 'conv', 'ssd'].map((k) => wantsTorch(none, k))).toEqual([false, false, false]);
    expect(() => parseOptions(['--torch-only', 'ssd,mamba'], BENCH_OPS)).toThrow(
      '--torch-only: unknown kind mamba (scan, conv, ssd)',
    );
  });
});

/** What the test reads of a run's result. */
interface BenchResult {
  machine: unknown;
  errors: unknown[];
  cases: { kind: string; shapeName: string; op: string }[];
  checks: { name: string; pass: boolean; relErr: Record<string, number> }[];
  notes: string[];
  comparisons: { js?: { fwdMs: number } }[];
  plan: unknown;
}

/** A run with fixed ceilings: measuring them copies 256 MiB several times, seconds on a small machine. */
class RunWithoutCeilings extends DeviceRun {
  async ceilings() {
    this.machine = { copyBandwidthGBps: 10, exp2Rate: 1e9, tensorFlops: null };
    (this.res as unknown as BenchResult).machine = {
      ...this.machine,
      copyMethod: 'fixed by the test',
      exp2Method: 'fixed by the test',
    };
    this.progress.done('copy bandwidth (fixed)');
    this.progress.done('exp2 rate (fixed)');
  }
}

describe('a run at tiny shapes', () => {
  const argv = ['--quick', '--shapes', '1x8x70x4,step,conv', '--dtypes', 'float32', '--no-torch'];
  const timing = ['--reps', '1', '--warmup', '0', '--target-ms', '1', '--max-case-ms', '20', '--no-save'];
  for (const target of [makeTarget('cpu'), makeTarget('cuda', { simulated: true })]) {
    it(`${target.id}: every planned unit is reported, every row recorded, the checks pass`, async () => {
      const o = parseOptions([...argv, ...timing], BENCH_OPS);
      const run = new RunWithoutCeilings(target, o, 'test', BENCH_OPS, {
        python: null,
        tried: [],
        baselineScript: null,
      });
      const res = (await run.run()) as unknown as BenchResult;
      const conv = target.simulated ? 'conv-S1-sim' : 'conv-S1-cpu';
      expect(res.errors).toEqual([]);
      expect(run.progress.i).toBe(run.progress.total);
      const rows = res.cases.map(
        (c: { kind: string; shapeName: string; op: string }) => `${c.kind} ${c.shapeName} ${c.op}`,
      );
      expect(rows).toEqual([
        ...['fwd', 'fwd-save', 'bwd', 'bwd-det', 'fwd+bwd'].map((op) => `scan 1x8x70x4 ${op}`),
        ...['b1-channels', 'b1-heads', 'b64-channels', 'b64-heads'].map((s) => `step step-${s} step`),
        ...['fwd', 'bwd', 'fwd+bwd'].map((op) => `conv ${conv} ${op}`),
      ]);
      expect(res.checks.length).toBeGreaterThanOrEqual(2);
      for (const c of res.checks) expect(c.pass, c.name).toBe(true);
      expect(res.comparisons).toHaveLength(1);
      if (target.kind === 'cpu') expect(res.comparisons[0].js?.fwdMs).toBeGreaterThan(0);
      expect(res.plan).toEqual({
        scans: [{ name: '1x8x70x4', shape: '(1, 8, 70, 4)', torchRepsCpu: 0, torchGpu: [] }],
        sweep: null,
        steps: ['step-b1-channels', 'step-b1-heads', 'step-b64-channels', 'step-b64-heads'],
        convs: [conv],
      });
      const md = markdownReport(res, BENCH_OPS);
      expect(md).toContain('| 1x8x70x4 | (1, 8, 70, 4) | float32 | fwd |');
      expect(md).toContain('| step-b1-heads | (1, 80x64, N=16) | float32 | step |');
      expect(md).toContain(
        `| ${conv} | ${target.simulated ? '(2, 64, 512)' : '(2, 256, 1024)'}, W=4 | float32 | fwd+bwd |`,
      );
    }, 60_000);
  }
});

describe('the causal convolution beside PyTorch', () => {
  // A stand-in for python3 + torch_cpu_baseline.py: fixed times per mode, and its arguments logged.
  it('cpu: PyTorch rows beside ours at our thread count, with the speed-up in the report', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'conv-bench-'));
    const py = join(dir, 'python3');
    const log = join(dir, 'args');
    writeFileSync(
      py,
      `#!/bin/sh\necho "$@" >> ${log}\ncase "$4" in\n` +
        `conv) echo '{"fwd_ms": 2.5, "fwdbwd_ms": 7.5, "threads": 2}' ;;\n` +
        `conv-step) echo '{"step_ms": 0.25, "threads": 2}' ;;\nesac\n`,
    );
    chmodSync(py, 0o755);
    try {
      const argv = ['--quick', '--shapes', 'conv,conv-step', '--ops', 'fwd,fwd+bwd', '--dtypes', 'float32'];
      const timing = ['--reps', '1', '--warmup', '0', '--target-ms', '1', '--max-case-ms', '20', '--no-save'];
      const o = parseOptions([...argv, ...timing, '--no-checks'], BENCH_OPS);
      const run = new RunWithoutCeilings(makeTarget('cpu'), o, 'test', BENCH_OPS, {
        python: py,
        tried: [],
        baselineScript: 'torch_cpu_baseline.py',
      });
      const res = (await run.run()) as unknown as BenchResult;
      const cases = res.cases as unknown as {
        shapeName: string;
        op: string;
        medianMs: number;
        oursMs: number;
        speedup: number;
        threads: number;
      }[];
      expect(res.errors).toEqual([]);
      expect(run.progress.i).toBe(run.progress.total);
      expect(cases.map((c) => `${c.shapeName} ${c.op}`)).toEqual([
        ...['fwd', 'fwd+bwd', 'PyTorch fwd', 'PyTorch fwd+bwd'].map((op) => `conv-S1-cpu ${op}`),
        'conv-step-b1 step',
        'conv-step-b1 PyTorch step',
        'conv-step-b64 step',
        'conv-step-b64 PyTorch step',
      ]);
      const find = (name: string, op: string) => cases.find((c) => c.shapeName === name && c.op === op);
      const fb = find('conv-S1-cpu', 'PyTorch fwd+bwd');
      expect(fb?.medianMs).toBe(7.5);
      expect(fb?.oursMs).toBe(find('conv-S1-cpu', 'fwd+bwd')?.medianMs);
      expect(fb?.speedup).toBeCloseTo(7.5 / (fb?.oursMs ?? 0), 12);
      expect(find('conv-step-b64', 'PyTorch step')?.medianMs).toBe(0.25);
      // Our thread count handed over, the shapes and W = 4 as ours.
      const threads = buildInfo().cpuThreads;
      expect(readFileSync(log, 'utf8').trim().split('\n')).toEqual([
        `torch_cpu_baseline.py --threads ${threads} conv 2 256 1024 4 3`,
        `torch_cpu_baseline.py --threads ${threads} conv-step 1 5120 4 3`,
        `torch_cpu_baseline.py --threads ${threads} conv-step 64 5120 4 3`,
      ]);
      const md = markdownReport(res, BENCH_OPS);
      const ours = (find('conv-S1-cpu', 'fwd')?.medianMs ?? 0).toPrecision(3);
      expect(md).toContain(
        `| conv-S1-cpu | (2, 256, 1024), W=4 | float32 | fwd | ${+ours} | PyTorch F.conv1d + F.silu (torch_cpu_baseline.py) | 2.5 | 2 |`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it.skipIf(!torchPy.python)(
    'cpu: our output and gradients agree with PyTorch autograd (1e-5 / 1e-4)',
    async () => {
      const res = await runWithTorch('conv');
      expect(res.notes.filter((n) => n.includes('PyTorch'))).toEqual([]);
      const check = res.checks.find((c) => c.name.includes('vs PyTorch'));
      expect(Object.keys(check?.relErr ?? {})).toEqual(['out', 'dx', 'dweight', 'dbias']);
      expect(check?.pass).toBe(true);
    },
    120_000,
  );
});

describe('the ssdScan rows', () => {
  it('cpu: forward, forward+backward and the step; a ggml harness named by the environment joins them', async () => {
    // A stand-in for the ggml harness: it prints what the real one prints, whatever the shape.
    const dir = mkdtempSync(join(tmpdir(), 'ssd-bench-'));
    const bin = join(dir, 'ssm_bench');
    writeFileSync(bin, `#!/bin/sh\necho '{"samplesMs":[3,1,2],"minMs":1,"medianMs":2,"threads":2,"reps":3}'\n`);
    chmodSync(bin, 0o755);
    process.env[GGML_ENV] = bin;
    try {
      const argv = ['--quick', '--shapes', 'ssd,ssd-step', '--ops', 'fwd,fwd+bwd', '--dtypes', 'float32', '--no-torch'];
      const timing = ['--reps', '1', '--warmup', '0', '--target-ms', '1', '--max-case-ms', '20', '--no-save'];
      const o = parseOptions([...argv, ...timing], BENCH_OPS);
      const run = new RunWithoutCeilings(makeTarget('cpu'), o, 'test', BENCH_OPS, {
        python: null,
        tried: [],
        baselineScript: null,
      });
      const res = (await run.run()) as unknown as BenchResult;
      const cases = res.cases as unknown as { op: string; medianMs: number }[];
      expect(res.errors).toEqual([]);
      expect(run.progress.i).toBe(run.progress.total);
      expect(res.cases.map((c) => `${c.kind} ${c.shapeName} ${c.op}`)).toEqual([
        ...['fwd', 'fwd+bwd', 'fwd-as-ggml', 'ggml ssm_scan'].map((op) => `ssd M2-quick ${op}`),
        'ssd ssd-step-b1 step',
        'ssd ssd-step-b1 ggml ssm_scan',
      ]);
      expect(cases.filter((c) => c.op === 'ggml ssm_scan').map((c) => c.medianMs)).toEqual([2, 2]);
      const md = markdownReport(res, BENCH_OPS);
      expect(md).toContain('| M2-quick | (1, 128, 4x64, G=1, N=128) | float32 | fwd |');
      expect(md).toContain('| ssd-step-b1 | (1, 80x64, N=128) | float32 | step |');
    } finally {
      delete process.env[GGML_ENV];
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  // A stand-in for python3 + torch_cpu_baseline.py ssd: fixed times, its arguments logged.
  it('cpu: PyTorch ssd_minimal rows beside ours at our thread count, with the speed-up and its BLAS', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ssd-bench-'));
    const py = join(dir, 'python3');
    const log = join(dir, 'args');
    writeFileSync(
      py,
      `#!/bin/sh\necho "$@" >> ${log}\n` +
        `echo '{"fwd_ms": 40, "fwdbwd_ms": 120, "reps": 3, "blas": "generic", "matmul_gflops": 1.5, "threads": 2}'\n`,
    );
    chmodSync(py, 0o755);
    try {
      const argv = ['--quick', '--shapes', 'ssd', '--ops', 'fwd,fwd+bwd', '--dtypes', 'float32', '--no-checks'];
      const timing = ['--reps', '1', '--warmup', '0', '--target-ms', '1', '--max-case-ms', '20', '--no-save'];
      const o = parseOptions([...argv, ...timing], BENCH_OPS);
      const run = new RunWithoutCeilings(makeTarget('cpu'), o, 'test', BENCH_OPS, {
        python: py,
        tried: [],
        baselineScript: 'torch_cpu_baseline.py',
      });
      const res = (await run.run()) as unknown as BenchResult;
      const cases = res.cases as unknown as { op: string; medianMs: number; oursMs: number; speedup: number }[];
      expect(res.errors).toEqual([]);
      expect(run.progress.i).toBe(run.progress.total);
      expect(res.cases.map((c) => `${c.shapeName} ${c.op}`)).toEqual(
        ['fwd', 'fwd+bwd', 'PyTorch ssd_minimal fwd', 'PyTorch ssd_minimal fwd+bwd'].map((op) => `M2-quick ${op}`),
      );
      const fb = cases[3];
      expect(fb.medianMs).toBe(120);
      expect(fb.oursMs).toBe(cases[1].medianMs);
      expect(fb.speedup).toBeCloseTo(120 / cases[1].medianMs, 12);
      expect(readFileSync(log, 'utf8').trim()).toBe(
        `torch_cpu_baseline.py --threads ${buildInfo().cpuThreads} ssd 1 128 4 64 1 128 3`,
      );
      expect(res.notes.some((n) => n.includes('BLAS generic') && n.includes('1.5 GFLOP/s'))).toBe(true);
      const md = markdownReport(res, BENCH_OPS);
      expect(md).toContain('| M2-quick | (1, 128, 4x64, G=1, N=128) | float32 | fwd+bwd |');
      expect(md).toContain('PyTorch ssd_minimal (chunked, bench/ssd_minimal.py), BLAS generic | 120 | 2 |');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('cuda:sim: forward and forward+backward per dtype after the check; bytes, FLOPs and their floors', async () => {
    const argv = ['--shapes', 'ssd', '--dtypes', 'float32,bfloat16', '--no-torch'];
    const timing = ['--reps', '1', '--warmup', '0', '--target-ms', '1', '--max-case-ms', '20', '--no-save'];
    const o = parseOptions([...argv, ...timing], BENCH_OPS);
    // The simulated GPU has no tensor-core rate: the test gives it one (1 TFLOP/s).
    class WithTensorRate extends RunWithoutCeilings {
      async ceilings() {
        await super.ceilings();
        this.machine.tensorFlops = { bfloat16: 1e12, source: 'the test' };
        (this.res as unknown as { machine: Record<string, unknown> }).machine.tensorFlops = this.machine.tensorFlops;
      }
    }
    const target = makeTarget('cuda', { simulated: true });
    const run = new WithTensorRate(target, o, 'test', BENCH_OPS, { python: null, tried: [], baselineScript: null });
    const res = (await run.run()) as unknown as BenchResult;
    expect(res.errors).toEqual([]);
    expect(run.progress.i).toBe(run.progress.total);
    const cases = res.cases as unknown as {
      shapeName: string;
      dtype: string;
      op: string;
      medianMs: number;
      shape: { batch: number; L: number; H: number; P: number; G: number; N: number };
      roofline: { bytes: number; flops: number; flopFloorMs: number | null; memFloorMs: number; bound: string };
    }[];
    expect(cases.map((c) => `${c.shapeName} ${c.dtype} ${c.op}`)).toEqual(
      ['M2-S1-sim', 'M2-S2-sim'].flatMap((n) =>
        ['float32', 'bfloat16'].flatMap((d) => ['fwd', 'fwd+bwd'].map((op) => `${n} ${d} ${op}`)),
      ),
    );
    for (const c of cases) {
      expect(c.medianMs).toBeGreaterThan(0);
      expect(c.roofline.bytes).toBe(ssdTraffic(c.shape, c.dtype, c.op, 64).bytes);
      expect(c.roofline.flops).toBe(ssdFlops(c.shape, c.op, 64));
      // The FLOP floor only where the dtype has a tensor-core rate (16-bit: the chunked form).
      if (c.dtype === 'bfloat16') expect(c.roofline.flopFloorMs).toBeCloseTo(c.roofline.flops / 1e9, 9);
      else expect(c.roofline.flopFloorMs).toBeNull();
    }
    expect(cases[0].shape).toEqual({ batch: 2, L: 256, H: 4, P: 64, G: 1, N: 128 });
    // The check against the CPU backend, float32 and bfloat16, every output and gradient.
    const checks = res.checks.filter((c) => c.name.startsWith('ssdScan'));
    expect(checks.map((c) => c.name)).toEqual(Array(2).fill('ssdScan + backward, cuda:sim vs CPU backend'));
    expect(Object.keys(checks[0].relErr)).toEqual(['out', 'dx', 'ddt', 'dA', 'dB', 'dC', 'dD', 'dz', 'ddtBias']);
    for (const c of checks) expect(c.pass, c.name).toBe(true);
    const md = markdownReport(res, BENCH_OPS);
    expect(md).toContain("### Mamba-2 scan (ssdScan): bytes, and the chunked form's matrix FLOPs");
    expect(md).toContain('FLOP floor: at 1 TFLOP/s (the test;');
    // 2·2·256·(64·128 + 4·(64·64 + 2·64·128)) = 92.3 MFLOP, 1.05 MB: at 1 TFLOP/s a 0.0923 ms floor.
    expect(md).toMatch(/\| M2-S1-sim \| bfloat16 \| fwd \| [\d.]+ \| 0\.00105 \| [\d.]+ \| 0\.0923 \| 0\.0923 \| /);
  }, 60_000);

  it.skipIf(!torchPy.python)(
    'cpu: our output and every gradient agree with ssd_minimal under autograd (1e-5 / 1e-4)',
    async () => {
      const res = await runWithTorch('ssd');
      expect(res.notes.filter((n) => n.includes('failed'))).toEqual([]);
      const check = res.checks.find((c) => c.name.includes('ssd_minimal'));
      expect(Object.keys(check?.relErr ?? {})).toEqual(['out', 'dx', 'ddt', 'dA', 'dB', 'dC', 'dD', 'dz', 'ddtBias']);
      expect(check?.pass).toBe(true);
      expect(res.cases.map((c) => c.op)).toEqual(['fwd', 'PyTorch ssd_minimal fwd']);
    },
    180_000,
  );

  // The GPU reference's ssd cases, run on the CPU as the simulated GPU runs them: ssd_minimal in the
  // run's dtype beside each of our rows; Triton needs a GPU, and a note says so.
  it.skipIf(!torchPy.python)(
    'cuda:sim: torch_gpu_reference.py times ssd_minimal beside our rows; no Triton without a GPU',
    async () => {
      const argv = ['--shapes', 'ssd', '--ops', 'fwd', '--dtypes', 'bfloat16', '--torch-reps', '1', '--no-checks'];
      const timing = ['--reps', '1', '--warmup', '0', '--target-ms', '1', '--max-case-ms', '20', '--no-save'];
      const o = parseOptions([...argv, ...timing], BENCH_OPS);
      const target = makeTarget('cuda', { simulated: true });
      const run = new RunWithoutCeilings(target, o, 'test', BENCH_OPS, { ...torchPy, baselineScript: null });
      const res = (await run.run()) as unknown as BenchResult;
      expect(res.errors).toEqual([]);
      expect(run.progress.i).toBe(run.progress.total);
      const cases = res.cases as unknown as {
        shapeName: string;
        op: string;
        dtype: string;
        medianMs: number;
        oursMs: number;
        speedup: number;
      }[];
      expect(cases.map((c) => `${c.shapeName} ${c.dtype} ${c.op}`)).toEqual([
        'M2-S1-sim bfloat16 fwd',
        'M2-S2-sim bfloat16 fwd',
        'M2-S1-sim bfloat16 PyTorch ssd_minimal fwd',
        'M2-S2-sim bfloat16 PyTorch ssd_minimal fwd',
      ]);
      for (const [ours, theirs] of [
        [cases[0], cases[2]],
        [cases[1], cases[3]],
      ]) {
        expect(theirs.medianMs).toBeGreaterThan(0);
        expect(theirs.oursMs).toBe(ours.medianMs);
        expect(theirs.speedup).toBeCloseTo(theirs.medianMs / ours.medianMs, 12);
      }
      expect(res.notes).toContain('No Triton rows: Triton needs a GPU.');
    },
    180_000,
  );
});

describe('the packed-sequence rows (cuSeqlens beside plain and padded)', () => {
  it('the lengths: a fixed seed, log-uniform in [64, 2048], 37,475 tokens; cuSeqlens and the padded shape follow', () => {
    const lengths = packedLengths(64, 64, 2048);
    expect(packedLengths(64, 64, 2048)).toEqual(lengths);
    expect(lengths.slice(0, 6)).toEqual([262, 358, 1525, 1689, 218, 189]);
    expect(Math.min(...lengths)).toBe(71);
    expect(Math.max(...lengths)).toBe(1982);
    // Log-uniform: about half (31 of 64) below the geometric mean of the ends (362).
    expect(lengths.filter((l) => l < 362).length).toBe(31);
    const lay = packedLayouts({ nseq: 64, minL: 64, maxL: 2048, dim: 2048, N: 16 });
    expect(lay.tokens).toBe(37475);
    expect(lay.cuSeqlens.length).toBe(65);
    expect(lay.cuSeqlens[0]).toBe(0);
    expect(lay.cuSeqlens[64]).toBe(37475);
    expect([...lay.cuSeqlens.slice(1)].map((c, i) => c - lay.cuSeqlens[i])).toEqual(lengths);
    expect(lay.packed).toMatchObject({ batch: 1, L: 37475, dim: 2048, N: 16 });
    expect(lay.padded).toMatchObject({ batch: 64, L: 1982, tokens: 37475 });
  });

  it('padded inputs hold the packed values with zeros after each sequence: its output is the packed one', () => {
    const lay = packedLayouts({ nseq: 5, minL: 2, maxL: 40, dim: 3, N: 4 });
    expect(lay.lengths).toEqual([7, 9, 31, 34, 6]);
    const bits = scanBits(new InputFactory(3), lay.packed);
    const t = scanTensors(bits, lay.packed, 'float32', 'cpu');
    const tp = paddedTensors(bits, lay, 'float32', 'cpu');
    const opts = { D: t.D, z: t.z, deltaSoftplus: true };
    const packed = selectiveScan(t.u, t.delta, t.A, t.B, t.C, { ...opts, cuSeqlens: lay.cuSeqlens }).out.dataSync();
    const padded = selectiveScan(tp.u, tp.delta, tp.A, tp.B, tp.C, { ...opts, D: tp.D, z: tp.z }).out.dataSync();
    const u = tp.u.dataSync();
    const T = lay.tokens;
    const Lp = lay.padded.L;
    expect(Lp).toBe(34);
    lay.lengths.forEach((len, i) => {
      for (let d = 0; d < 3; d++) {
        const at = (i * 3 + d) * Lp;
        const from = d * T + lay.cuSeqlens[i];
        expect(padded.subarray(at, at + len)).toEqual(packed.subarray(from, from + len));
        expect([...u.subarray(at + len, at + Lp)].every((x) => x === 0)).toBe(true);
      }
    });
    for (const x of [...Object.values(t), ...Object.values(tp)]) x.dispose();
  });

  it("cuda:sim: packed, plain and padded side by side; real tokens per second; the tensors' bytes", async () => {
    const argv = ['--shapes', 'packed', '--dtypes', 'float32', '--no-torch', '--no-checks'];
    const timing = ['--reps', '1', '--warmup', '0', '--target-ms', '1', '--max-case-ms', '20', '--no-save'];
    const o = parseOptions([...argv, ...timing], BENCH_OPS);
    const target = makeTarget('cuda', { simulated: true });
    const run = new RunWithoutCeilings(target, o, 'test', BENCH_OPS, { python: null, tried: [], baselineScript: null });
    const res = (await run.run()) as unknown as BenchResult & { plan: { packed: { tokens: number } } };
    expect(res.errors).toEqual([]);
    expect(run.progress.i).toBe(run.progress.total);
    const cases = res.cases as unknown as {
      kind: string;
      op: string;
      layout: string;
      medianMs: number;
      tokensPerS: number;
      shape: { batch: number; L: number };
      memory: { tensorBytes: number; inputBytes: number; madeBytes: number; heldBytes: number };
    }[];
    expect(cases.map((c) => `${c.kind} ${c.op}`)).toEqual(
      ['fwd', 'fwd+bwd']
        .flatMap((op) => ['packed', 'plain'].map((l) => `packed ${op} ${l}`))
        .concat(['fwd', 'fwd+bwd'].map((op) => `packed ${op} padded`)),
    );
    // Sim: 8 sequences in [4, 128], dim 16, N 4: 284 tokens, the longest 106.
    const T = 284;
    expect(res.plan.packed.tokens).toBe(T);
    const [dim, N] = [16, 4];
    const params = (dim * N + dim) * 4;
    for (const c of cases) {
      expect(c.tokensPerS).toBeCloseTo(T / (c.medianMs / 1e3), 6);
      expect(c.shape).toMatchObject(c.layout === 'padded' ? { batch: 8, L: 106 } : { batch: 1, L: T });
      expect(c.memory.heldBytes).toBeGreaterThanOrEqual(c.memory.madeBytes);
    }
    const find = (op: string, layout: string) => cases.find((c) => c.op === `${op} ${layout}`);
    // fwd: u, delta, z, B, C, A, D read and out made: 4 rows of dim·L, 2 of N·L, float32.
    expect(find('fwd', 'packed')?.memory.tensorBytes).toBe(4 * dim * T * 4 + 2 * N * T * 4 + params);
    expect(find('fwd', 'plain')?.memory.tensorBytes).toBe(find('fwd', 'packed')?.memory.tensorBytes);
    expect(find('fwd', 'padded')?.memory.tensorBytes).toBe(4 * 8 * dim * 106 * 4 + 2 * 8 * N * 106 * 4 + params);
    const md = markdownReport(res, BENCH_OPS);
    expect(md).toContain(
      '### Packed sequences (cuSeqlens): 8 sequences, lengths log-uniform in [4, 128] (seed 1): 6 to 106, 284 tokens; dim 16',
    );
    expect(md).toContain('| float32 | fwd+bwd | padded |');
    // The simulated GPU's tensors are host tensors: the host allocator counts them, and no GPU peak.
    expect(md).toContain('allocator (hostMemoryInfo().allocatedBytes)');
    expect(md).not.toContain('peak MiB');
    const ratio = (find('fwd', 'packed')?.tokensPerS ?? 0) / (find('fwd', 'plain')?.tokensPerS ?? 1);
    expect(reportSection(res)).toContain(
      `| float32 | fwd | ${(ratio * 100).toFixed(1)} % | ${ratio >= 0.9 ? 'yes' : '**no**'} |`,
    );
  }, 60_000);
});

describe('the GPU session: preflight, sanitizer logs, mamba_ssm beside ours, the goals', () => {
  it('stops a session whose addon has no CUDA, no sm_90 code, or no GPU', () => {
    const build = { cuda: true, cudaArchitectures: ['sm_90', 'compute_90'] };
    expect(preflightProblems(build, { available: true, reason: null })).toEqual([]);
    expect(preflightProblems({ cuda: false, cudaArchitectures: [] }, { available: false, reason: 'x' })).toEqual([
      'the addon was built without CUDA (buildInfo().cuda is false): build it with nvcc',
    ]);
    expect(preflightProblems({ cuda: true, cudaArchitectures: ['sm_80'] }, { available: true, reason: null })).toEqual([
      'the addon has CUDA code for sm_80 only, not sm_90 (H100, H200)',
    ]);
    expect(preflightProblems(build, { available: false, reason: 'no NVIDIA driver found' })).toEqual([
      'CUDA is not usable here: no NVIDIA driver found',
    ]);
  });

  it('reads a sanitizer log as passed, failed, timed out, or refused by the device (neither)', () => {
    const ok = '{"ok":true,"calls":12}';
    const read = (exit: number, log: string) => readSanitizerRun({ tool: 'memcheck', exit, seconds: 3, log });
    expect(read(0, `========= COMPUTE-SANITIZER\n${ok}\n========= ERROR SUMMARY: 0 errors\n`)).toMatchObject({
      ran: true,
      pass: true,
      errors: 0,
    });
    const bad = read(
      99,
      `========= Invalid __global__ read of size 4 bytes\n${ok}\n========= ERROR SUMMARY: 2 errors\n`,
    );
    expect(bad).toMatchObject({ ran: true, pass: false, errors: 2 });
    expect(bad.firstReports).toEqual(['========= Invalid __global__ read of size 4 bytes']);
    expect(read(124, `========= COMPUTE-SANITIZER\n`)).toMatchObject({ ran: true, pass: false, timedOut: true });
    const race = '========= RACECHECK SUMMARY: 3 hazards displayed (1 error, 2 warnings)\n';
    expect(read(0, `${ok}\n${race}`)).toMatchObject({ pass: false, racecheck: { hazards: 3, errors: 1, warnings: 2 } });
    expect(read(1, '========= COMPUTE-SANITIZER\n========= Error: Device not supported\n')).toEqual({
      tool: 'memcheck',
      command: undefined,
      exitCode: 1,
      timedOut: false,
      seconds: 3,
      ran: false,
      pass: null,
      skipped: 'the device refused it: Error: Device not supported',
    });
  });

  // A line as mamba-peer --op both prints it (harness.cu), and our bench rows of the same shape.
  const peerLine = (name: string, shape: number[], fwd: number, bwd: number, extra = {}) =>
    JSON.stringify({
      shape,
      shape_name: name,
      dtype: 'bf16',
      op: 'both',
      l2_flush: false,
      median_ms: fwd + bwd,
      peak_mem_bytes: 1000,
      fwd: { median_ms: fwd },
      bwd: { median_ms: bwd },
      check: { pass: true },
      ...extra,
    });
  const row = (shapeName: string, shape: object, op: string, medianMs: number) => ({
    kind: 'scan',
    shapeName,
    shape,
    dtype: 'bfloat16',
    op,
    medianMs,
  });
  const S1 = { batch: 8, dim: 4096, L: 2048, N: 16, G: 1 };
  const S3 = { batch: 64, dim: 2048, L: 64, N: 16, G: 1 };
  const bench = {
    cases: [
      row('S1', S1, 'fwd', 2),
      row('S1', S1, 'bwd', 5),
      row('S1', S1, 'bwd-det', 6),
      row('S1', S1, 'fwd+bwd', 8),
      row('S3', S3, 'fwd', 0.5),
      {
        kind: 'step',
        shapeName: 'step-b256-channels',
        dtype: 'bfloat16',
        roofline: { gbps: 3600, copyBandwidthGBps: 4000 },
      },
    ],
    memory: [{ peakAllocatedBytes: 1200, inputBytes: 500, outputBytes: 300, gradientBytes: 300 }],
  };
  const lines = readPeerLines(
    [
      '{"mamba_commit":"e9594ce"}',
      peerLine('S1', [8, 4096, 2048, 16], 3, 5),
      peerLine('S3', [64, 2048, 64, 16], 0.6, 1),
      peerLine('S3', [64, 2048, 64, 16], 0.9, 1.2, { l2_flush: true, check: undefined }),
      '{"shape":[1,4096,65536,16],"shape_name":"S2","error":"no CUDA device"}',
      'Segmentation fault',
    ].join('\n'),
  );

  it("puts mamba_ssm's times beside our rows of the same shape: their time over ours", () => {
    expect(lines[5]).toEqual({ unparsed: 'Segmentation fault' });
    const cmp = peerComparison(bench, lines);
    expect(cmp.map((c: { shapeName: string }) => c.shapeName)).toEqual(['S1', 'S3']);
    expect(cmp[0]).toMatchObject({
      ours: { fwd: 2, bwd: 5, bwdDet: 6, fwdBwd: 8 },
      mamba: { fwd: 3, bwd: 5, fwdBwd: 8, check: true },
      speedup: { fwd: 1.5, bwd: 1, fwdBwd: 1 },
      mambaWithL2Flush: null,
    });
    expect(cmp[1].speedup.fwd).toBeCloseTo(1.2);
    expect(cmp[1].speedup.bwd).toBeNull();
    expect(cmp[1].mambaWithL2Flush).toEqual({ fwd: 0.9, fwdBwd: 2.1 });
  });

  it('measures the goals of the first GPU run, and says which were not measured', () => {
    const goals = sessionGoals(bench, peerComparison(bench, lines));
    expect(goals.map((g) => [g.measured === null ? null : +g.measured.toFixed(3), g.met])).toEqual([
      [1.5, true], // forward S1 ≥ 1.3
      [1.2, false], // forward S3 ≥ 2
      [1, false], // backward S1 ≥ 1.2
      [1.2, true], // deterministic ≤ 1.25 of the default
      [0.9, true], // step ≥ 80 % of the copy bandwidth
      [1.091, true], // peak memory ≤ 1.1 of inputs, outputs and gradients
    ]);
    expect(sessionGoals(null, []).every((g) => g.met === null)).toBe(true);
  });
});
