// PyTorch beside the package: the CPU baseline script (one process per shape) and the sequential
// reference on the GPU (inputs through files, one process for all of a run's cases).
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildInfo } from 'selective-scan';
import { agreementCheck } from './agreement.mjs';
import { benchDir, repoRoot } from './env.mjs';

export const TORCH_GPU_SCRIPT = path.join(benchDir, 'torch_gpu_reference.py');

export function sha1(file) {
  return crypto.createHash('sha1').update(fs.readFileSync(file)).digest('hex');
}

const lastLines = (text, n) => text.trim().split('\n').slice(-n).join(' / ');

/** torch_cpu_baseline.py with args: its JSON line, or { error } with the last line of its stderr. */
export function runCpuBaseline(python, script, args) {
  const r = spawnSync(python, [script, ...args.map(String)], { encoding: 'utf8', timeout: 30 * 60 * 1000 });
  try {
    return JSON.parse(r.stdout?.trim().split('\n').pop());
  } catch {
    return { error: (r.stderr || r.error?.message || '').trim().split('\n').pop() };
  }
}

/** torch_cpu_baseline.py with args at our thread count, for a run: its JSON, or null (the failure noted). */
export function torchBaseline(run, label, args) {
  const { python, baselineScript } = run.torch;
  run.progress.status(`${label}: PyTorch`);
  const out = runCpuBaseline(python, baselineScript, ['--threads', buildInfo().cpuThreads, ...args]);
  if (out.error === undefined) return out;
  run.res.notes.push(`PyTorch CPU baseline failed at ${label}: ${out.error}`);
  run.progress.done(`${label} PyTorch FAILED`);
  return null;
}

/**
 * Our CPU backend's float32 outputs `got` against a check mode of torch_cpu_baseline.py on the same
 * inputs, through raw float32 files in a temporary folder: `inputs` (name → Float32Array) are written
 * there, args(dir) runs the mode, which writes each of `keys` back; the agreement check (1e-5 / 1e-4)
 * goes into the run's checks.
 */
export function torchFileCheck(run, { label, name, shape, inputs, got, keys, args }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'selective-scan-check-'));
  try {
    for (const [k, values] of Object.entries(inputs)) fs.writeFileSync(path.join(dir, `${k}.f32`), values);
    if (!torchBaseline(run, label, args(dir))) return;
    const ref = {};
    for (const k of keys) {
      const buf = fs.readFileSync(path.join(dir, `${k}.f32`));
      ref[k] = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    }
    const check = agreementCheck(name, 'float32', shape, got, ref, keys, [1e-5, 1e-4]);
    run.res.checks.push(check);
    if (!check.pass) run.progress.note(`WARNING: agreement check failed: ${name}: ${JSON.stringify(check.relErr)}`);
    run.progress.done(label);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * torch_cpu_baseline.py at one scan shape. Returns { fwdMs, fwdBwdMs, threads, reps }, or
 * { error } with the last line of its stderr.
 */
export function torchCpuBaseline(python, script, shape, reps) {
  const out = runCpuBaseline(python, script, [shape.batch, shape.dim, shape.L, shape.N, reps]);
  if (out.error !== undefined) return out;
  return { fwdMs: out.fwd_ms, fwdBwdMs: out.fwdbwd_ms, threads: out.threads, reps };
}

/** The cases of one run for torch_gpu_reference.py (its docstring has the manifest's format). */
export class TorchGpuReference {
  constructor() {
    this.cases = [];
    this.dir = null;
  }

  /** Writes a scan case's inputs (bfloat16 bits; A and D float32) and queues it; returns the case. */
  addScanCase(id, s, bits, ops) {
    this.dir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'selective-scan-bench-'));
    const files = {};
    for (const k of ['u', 'delta', 'z', 'dout', 'B', 'C', 'A', 'D']) {
      files[k] = path.join(this.dir, `${id}.${k}.${k === 'A' || k === 'D' ? 'f32' : 'bf16'}`);
      const typed = bits[k];
      fs.writeFileSync(files[k], new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength));
    }
    const c = {
      id,
      batch: s.batch,
      dim: s.dim,
      L: s.L,
      N: s.N,
      dtype: 'float32',
      files,
      ops,
      check_out: path.join(this.dir, `${id}.out.f32`),
    };
    this.cases.push(c);
    return c;
  }

  /**
   * Queues a Mamba-2 scan case (shape { batch, L, H, P, G, N, dtype, seed }): the script draws its
   * inputs and times ssd_minimal, and mamba_ssm's Triton kernels where they import.
   */
  addSsdCase(id, shape) {
    this.dir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'selective-scan-bench-'));
    const c = { kind: 'ssd', id, ...shape, ops: ['fwd', 'fwdbwd'], impls: ['ssd_minimal', 'triton'] };
    this.cases.push(c);
    return c;
  }

  /**
   * Runs every case in one process on device ('cpu' when the GPU is simulated). Returns the
   * script's result with each case's reference output (Float32Array or null) as `out`, or { error }.
   */
  run(python, device, reps) {
    const manifest = path.join(this.dir, 'manifest.json');
    const resultFile = path.join(this.dir, 'result.json');
    fs.writeFileSync(manifest, JSON.stringify({ device, reps, budget_s: 20, cases: this.cases }));
    const r = spawnSync(python, [TORCH_GPU_SCRIPT, manifest, '--out', resultFile], {
      encoding: 'utf8',
      timeout: 30 * 60 * 1000,
      env: { ...process.env, PYTHONUNBUFFERED: '1' },
    });
    let result;
    try {
      result = JSON.parse(fs.readFileSync(resultFile, 'utf8'));
    } catch {
      return { error: lastLines(r.stderr || r.error?.message || `exit ${r.status}`, 3) };
    }
    for (const c of result.cases) {
      const file = c.check_out;
      if (!file || !fs.existsSync(file)) continue;
      const buf = fs.readFileSync(file);
      c.out = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    }
    return result;
  }

  /** Deletes the case files. */
  dispose() {
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
    this.dir = null;
  }
}

/** The PyTorch fields of a result: which Python and torch, and the baseline script's hash. */
export function torchInfo(torchPy, baselineScript) {
  return {
    python: torchPy.python,
    version: torchPy.torchVersion ?? null,
    pythonVersion: torchPy.pythonVersion ?? null,
    notFound: torchPy.python ? undefined : torchPy.tried,
    cpuBaselineScript: baselineScript
      ? { path: path.relative(repoRoot, baselineScript), sha1: sha1(baselineScript) }
      : null,
  };
}
