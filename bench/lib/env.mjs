// Where a benchmark ran: device names and versions, the commit, the Python with PyTorch.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const benchDir = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
export const repoRoot = path.dirname(benchDir);

function run(cmd, args, opts = {}) {
  try {
    return execFileSync(cmd, args, {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 20000,
      ...opts,
    }).trim();
  } catch {
    return null;
  }
}

/** A file-name-safe lower-case slug: 'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'. */
export function slugify(text) {
  return (
    String(text)
      .toLowerCase()
      .replace(/\(r\)|\(tm\)|cpu @.*$|\bprocessor\b|\d+-core/g, ' ')
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 48) || 'unknown'
  );
}

export function cpuInfo() {
  let model = null;
  try {
    const text = fs.readFileSync('/proc/cpuinfo', 'utf8');
    model = /^model name\s*:\s*(.+)$/m.exec(text)?.[1]?.trim() ?? null;
  } catch {}
  model ??= os.cpus()[0]?.model ?? 'unknown CPU';
  const cores = os.availableParallelism?.() ?? os.cpus().length;
  return { name: model, logicalCpus: cores, memoryBytes: os.totalmem() };
}

/** nvidia-smi's view of one GPU, or null where nvidia-smi is missing. */
export function nvidiaSmi(index = 0) {
  const query = (fields) =>
    run('nvidia-smi', [`--id=${index}`, `--query-gpu=${fields}`, '--format=csv,noheader,nounits']);
  const basic = query('name,driver_version,memory.total');
  if (!basic) return null;
  const [name, driver, memMiB] = basic.split(',').map((x) => x.trim());
  // Optional fields, asked separately: an unknown field makes nvidia-smi fail the whole query.
  const [smMHz, memMHz, bus, powerW] = (query('clocks.max.sm,clocks.max.memory,pci.bus_id,power.limit') ?? '')
    .split(',')
    .map((x) => x.trim());
  const header = run('nvidia-smi', []) ?? '';
  const cudaDriver = /CUDA Version:\s*([\d.]+)/.exec(header)?.[1] ?? null;
  const num = (x) => (x && Number.isFinite(Number(x)) ? Number(x) : null);
  return {
    name,
    driver,
    cudaDriverVersion: cudaDriver,
    memoryMiB: num(memMiB),
    maxSmClockMHz: num(smMHz),
    maxMemClockMHz: num(memMHz),
    pciBusId: bus || null,
    powerLimitW: num(powerW),
  };
}

/** The commit: git where the checkout has it, else the bundle's BUNDLE_COMMIT (…+dirty). */
export function commitInfo() {
  const hash = run('git', ['rev-parse', 'HEAD'], { cwd: repoRoot });
  const bundle = process.env.BUNDLE_COMMIT || undefined;
  if (hash) {
    const status = run('git', ['status', '--porcelain'], { cwd: repoRoot }) ?? '';
    const lines = status.split('\n').filter(Boolean);
    const modified = lines.filter((l) => !l.startsWith('??'));
    return {
      hash,
      source: 'git',
      clean: modified.length === 0,
      modifiedFiles: modified.map((l) => l.slice(3)),
      untrackedFiles: lines.length - modified.length,
      bundleCommit: bundle,
    };
  }
  if (bundle) {
    const dirty = bundle.endsWith('+dirty');
    return { hash: bundle.replace(/\+dirty$/, ''), source: 'BUNDLE_COMMIT', clean: !dirty };
  }
  return { hash: null, source: null, clean: null };
}

/** The first Python that can import torch: the option, $BENCH_PYTHON, /usr/bin/python3, python3. */
export function findTorchPython(preferred) {
  const tried = [];
  for (const py of [preferred, process.env.BENCH_PYTHON, '/usr/bin/python3', 'python3'].filter(Boolean)) {
    if (tried.some((t) => t.python === py)) continue;
    const r = spawnSync(py, ['-c', 'import torch, sys; print(torch.__version__); print(sys.version.split()[0])'], {
      encoding: 'utf8',
      timeout: 120000,
    });
    if (r.status === 0) {
      const [torch, python] = r.stdout.trim().split('\n');
      return { python: py, torchVersion: torch, pythonVersion: python, tried };
    }
    tried.push({
      python: py,
      error: (r.error?.code ?? r.stderr?.trim().split('\n').pop() ?? `exit ${r.status}`).slice(0, 200),
    });
  }
  return { python: null, tried };
}

/** The PyTorch CPU baseline script: $TORCH_CPU_BASELINE, else the repository's bench/torch_cpu_baseline.py. */
export function findBaselineScript() {
  const script = process.env.TORCH_CPU_BASELINE || path.join(benchDir, 'torch_cpu_baseline.py');
  return fs.existsSync(script) ? path.resolve(script) : null;
}

export function today() {
  return new Date().toISOString().slice(0, 10);
}
