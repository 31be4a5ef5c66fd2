#!/usr/bin/env node
// selective-scan benchmarks: forward, backward (default and deterministic) and the stepwise update
// over the standard shapes, on the CPU and the GPU, with a roofline per row, comparisons (a plain JS
// loop, the PyTorch CPU baseline, the PyTorch sequential reference on the GPU), time against L (SVG),
// peak GPU memory, and agreement checks. `npm run bench -- --help` lists the options.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  Tensor,
  buildInfo,
  cuda,
  selectiveScan,
  selectiveScanBackward,
  selectiveStateUpdate,
  setNumThreads,
} from 'selective-scan';
import { resultHeader } from './lib/device.mjs';
import { benchDir, findBaselineScript, findTorchPython, repoRoot } from './lib/env.mjs';
import { jsForward, jsForwardBackward } from './lib/jsref.mjs';
import { scanChunkLength } from 'selective-scan/internal';
import { copyBandwidth, exp2Rate, makeTarget, measure, sync } from './lib/measure.mjs';
import { InputFactory, bitsToFloat32 } from './lib/random.mjs';
import { markdownReport } from './lib/report.mjs';
import { DTYPE_BYTES, roofline, scanTraffic, stepTraffic } from './lib/roofline.mjs';
import * as S from './lib/shapes.mjs';
import { timeVsLengthSvg } from './lib/svg.mjs';

const HELP = `Usage: npm run bench -- [options]     (or: node bench/bench.mjs [options])

  --device LIST        cpu, cuda, cuda:N or all (default: all = the GPU when cuda.isAvailable(), and the CPU)
  --quick              a short run: S1 (and S3 on a GPU), two step batches, a short L sweep
  --shapes LIST        S1,S2,S3,S4,step,sweep and/or BxDxLxN shapes (default: all of the named)
  --dtypes LIST        bfloat16,float32 (default both; float16 allowed)
  --ops LIST           fwd,fwd-save,bwd,bwd-det,fwd+bwd (default all; fwd-save = with saveForBackward)
  --reps N             timed repetitions per case (default: GPU 20 (10 at S2/S4), CPU 7; --quick 10 / 5)
  --warmup N           untimed calls first (default 2)
  --target-ms MS       calls per repetition are batched to take about MS (default GPU 10, CPU 20)
  --max-case-ms MS     fewer repetitions (at least 3) where a case would take longer (default 4000)
  --full-cpu           run S1-S4 at full size on the CPU too (default: the smaller -cpu variants)
  --threads N          CPU backend threads (setNumThreads)
  --no-js              skip the plain JavaScript loop (CPU comparison)
  --no-torch           skip PyTorch (CPU baseline and GPU reference)
  --torch-all          also run the PyTorch CPU baseline where it is slow (S2-cpu: ~35 s a repetition on 2 cores)
  --torch-reps N       repetitions of the PyTorch runs (default per shape: 5, 3 or 1)
  --torch-gpu-max-gb G skip the PyTorch GPU reference where it would need more (default 40)
  --torch-max-l L      longest L for PyTorch (its loop is sequential; default GPU 16384, CPU sweep 2048)
  --python PATH        a python3 with torch (default: $BENCH_PYTHON, /usr/bin/python3, python3)
  --json PATH          write the JSON there (default bench/results/YYYY-MM-DD-<device>-bench.json;
                       with several devices, -<device> is added before .json)
  --out-dir DIR        directory for the default result names (default bench/results)
  --no-save            print only; write no files
  --no-plot            no SVG
  --no-checks          skip the agreement checks
  --deadline-s S       stop starting new cases S seconds after the start (what ran is written; the
                       skipped cases are listed in the notes)
  --seed N             input seed (default 0)
  --simulate-gpu       (tests of this harness) run the GPU code path on the CPU with tiny shapes
                       (with --device cpu: the CPU run too, as on a GPU host)
  -h, --help

Writes <name>.json, <name>.md and <name>.svg (time against L) per device; prints the markdown.
Exit status 3 when an agreement check failed, 4 when a case threw (the results are written anyway).`;

const START = performance.now();

// ---- options --------------------------------------------------------------------------------------

function parseOptions(argv) {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      device: { type: 'string' },
      quick: { type: 'boolean' },
      shapes: { type: 'string' },
      dtypes: { type: 'string' },
      ops: { type: 'string' },
      reps: { type: 'string' },
      warmup: { type: 'string' },
      'target-ms': { type: 'string' },
      'max-case-ms': { type: 'string' },
      'full-cpu': { type: 'boolean' },
      threads: { type: 'string' },
      'no-js': { type: 'boolean' },
      'no-torch': { type: 'boolean' },
      'torch-all': { type: 'boolean' },
      'torch-reps': { type: 'string' },
      'torch-gpu-max-gb': { type: 'string' },
      'torch-max-l': { type: 'string' },
      python: { type: 'string' },
      json: { type: 'string' },
      'out-dir': { type: 'string' },
      'no-save': { type: 'boolean' },
      'no-plot': { type: 'boolean' },
      'no-checks': { type: 'boolean' },
      'deadline-s': { type: 'string' },
      seed: { type: 'string' },
      'simulate-gpu': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const num = (name, min, integer = true) => {
    if (v[name] === undefined) return undefined;
    const x = Number(v[name]);
    if (!Number.isFinite(x) || x < min || (integer && !Number.isInteger(x))) {
      throw new Error(`--${name} must be ${integer ? 'an integer' : 'a number'} >= ${min}, got ${v[name]}`);
    }
    return x;
  };
  const list = (name) =>
    v[name]
      ? v[name]
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : undefined;
  const o = {
    help: !!v.help,
    quick: !!v.quick,
    devices: list('device') ?? (v['simulate-gpu'] ? [] : ['all']),
    shapes: list('shapes'),
    dtypes: list('dtypes') ?? ['bfloat16', 'float32'],
    ops: list('ops') ?? ['fwd', 'fwd-save', 'bwd', 'bwd-det', 'fwd+bwd'],
    reps: num('reps', 1),
    warmup: num('warmup', 0),
    targetMs: num('target-ms', 0, false),
    maxCaseMs: num('max-case-ms', 0, false),
    fullCpu: !!v['full-cpu'],
    threads: num('threads', 1),
    js: !v['no-js'],
    torch: !v['no-torch'],
    torchAll: !!v['torch-all'],
    torchReps: num('torch-reps', 1),
    torchGpuMaxGB: num('torch-gpu-max-gb', 0, false) ?? 40,
    torchMaxL: num('torch-max-l', 1),
    python: v.python,
    json: v.json,
    outDir: v['out-dir'] ?? path.join(benchDir, 'results'),
    save: !v['no-save'],
    plot: !v['no-plot'],
    checks: !v['no-checks'],
    seed: num('seed', 0) ?? 0,
    deadlineS: num('deadline-s', 1, false),
    simulate: !!v['simulate-gpu'],
  };
  for (const d of o.dtypes) if (!DTYPE_BYTES[d]) throw new Error(`unknown dtype ${d}`);
  for (const op of o.ops) {
    if (!['fwd', 'fwd-save', 'bwd', 'bwd-det', 'fwd+bwd'].includes(op)) throw new Error(`unknown op ${op}`);
  }
  for (const s of o.shapes ?? []) {
    if (!['S1', 'S2', 'S3', 'S4', 'step', 'sweep'].includes(s) && !S.parseShapeToken(s)) {
      throw new Error(`unknown shape ${s} (S1..S4, step, sweep or BxDxLxN)`);
    }
  }
  return o;
}

// ---- progress on stderr: one line per case, rewritten in place on a terminal ---------------------

class Progress {
  constructor(total) {
    this.total = total;
    this.i = 0;
    this.tty = !!process.stderr.isTTY;
    this.t0 = performance.now();
    this.prefix = '';
  }
  #write(text, final) {
    const elapsed = ((performance.now() - this.t0) / 1000).toFixed(0).padStart(4);
    const line = `${elapsed}s [${this.i}/${this.total}] ${this.prefix}${text}`;
    if (this.tty) {
      const width = process.stderr.columns || 120;
      process.stderr.write(`\r\x1b[2K${line.slice(0, width - 1)}`);
    } else if (final) {
      process.stderr.write(`${line}\n`);
    }
  }
  /** What is running now (shown on a terminal only). */
  status(text) {
    this.#write(`${text} …`, false);
  }
  /** A finished case. */
  done(text) {
    this.i++;
    this.#write(text, true);
  }
  /** A message kept on screen. */
  note(text) {
    if (this.tty) process.stderr.write('\r\x1b[2K');
    process.stderr.write(`${text}\n`);
  }
  end() {
    if (this.tty) process.stderr.write('\n');
  }
}

// ---- the plan: what runs on one device ------------------------------------------------------------

function planFor(target, o) {
  const cpu = target.kind === 'cpu';
  const sim = target.simulated;
  const want = new Set(o.shapes ?? ['S1', 'S2', 'S3', 'S4', 'step', 'sweep']);
  const base = sim ? S.SIM_SCAN : cpu && !o.fullCpu ? S.CPU_SCAN : S.GPU_SCAN;
  let scans = base.filter((s) => want.has(s.of ?? s.name));
  if (o.quick) scans = scans.filter((s) => (s.of ?? s.name) === 'S1' || (!cpu && (s.of ?? s.name) === 'S3'));
  scans = scans.map((s) => ({ ...s, G: 1 }));
  for (const tok of o.shapes ?? []) {
    const c = S.parseShapeToken(tok);
    if (c) scans.push({ ...c, G: 1 });
  }
  for (const s of scans) {
    s.torchRepsCpu = 0;
    s.torchGpu = [];
    if (!o.torch || !o.dtypes.includes('float32')) continue;
    if (cpu) {
      const reps = s.torchReps || (o.torchAll ? 1 : 0);
      s.torchRepsCpu = reps ? (o.torchReps ?? (o.quick ? Math.min(reps, 3) : reps)) : 0;
      if (o.quick && !s.ratio) s.torchRepsCpu = 0;
      if (!reps)
        s.torchSkip = `PyTorch CPU baseline skipped (slow: about 35 s a repetition on 2 cores; --torch-all runs it)`;
    } else {
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
  }
  const steps = want.has('step') ? S.stepCases(o.quick ? [1, 64] : S.STEP_BATCHES) : [];
  let sweep = null;
  if (want.has('sweep') && o.dtypes.includes('float32')) {
    const key = sim ? 'sim' : cpu ? (o.quick ? 'cpuQuick' : 'cpu') : o.quick ? 'cudaQuick' : 'cuda';
    sweep = { ...S.SWEEP[key] };
    // PyTorch in the sweep: on the CPU up to L=2048 (its loop is slow), on a GPU up to 16K (memory, time).
    sweep.torchMaxL = !o.torch ? 0 : cpu ? (o.quick ? 0 : (o.torchMaxL ?? 2048)) : (o.torchMaxL ?? 16384);
  }
  const ops = o.ops;
  let total = 2; // machine ceilings
  if (o.checks) total += 1;
  for (const s of scans) {
    total += o.dtypes.length * ops.length;
    if (cpu && o.js && o.dtypes.includes('float32')) total += 1;
    if (s.torchRepsCpu) total += s.ratio && ops.includes('fwd') && ops.includes('fwd+bwd') ? 2 : 1;
  }
  total += steps.length * o.dtypes.length;
  if (sweep) {
    total += sweep.Ls.length;
    if (cpu) total += sweep.Ls.filter((L) => L <= sweep.torchMaxL).length;
  }
  const torchGpuCases =
    scans.filter((s) => s.torchGpu.length).length +
    (sweep && !cpu ? sweep.Ls.filter((L) => L <= sweep.torchMaxL).length : 0);
  if (!cpu && torchGpuCases) total += 1;
  return { scans, steps, sweep, total };
}

// ---- inputs -----------------------------------------------------------------------------------------

function tensorFromBits(bits, shape, dtype, device) {
  const t16 = Tensor.fromBits(bits, shape, { dtype: 'bfloat16', device });
  if (dtype === 'bfloat16') return t16;
  const t = t16.to({ dtype });
  t16.dispose();
  return t;
}

function scanBits(factory, s) {
  const E = s.batch * s.dim * s.L;
  const P = s.batch * s.G * s.N * s.L;
  return {
    u: factory.bits(E, 'normal'),
    delta: factory.bits(E, 'delta'),
    z: factory.bits(E, 'normal'),
    dout: factory.bits(E, 'normal'),
    B: factory.bits(P, 'normal'),
    C: factory.bits(P, 'normal'),
    A: factory.floats(s.dim * s.N, (r) => -Math.exp(r.uniform())),
    D: factory.floats(s.dim, (r) => r.normal()),
  };
}

function scanTensors(bits, s, dtype, device) {
  const row = [s.batch, s.dim, s.L];
  const proj = s.G === 1 ? [s.batch, s.N, s.L] : [s.batch, s.G, s.N, s.L];
  return {
    u: tensorFromBits(bits.u, row, dtype, device),
    delta: tensorFromBits(bits.delta, row, dtype, device),
    z: tensorFromBits(bits.z, row, dtype, device),
    dout: tensorFromBits(bits.dout, row, dtype, device),
    B: tensorFromBits(bits.B, proj, dtype, device),
    C: tensorFromBits(bits.C, proj, dtype, device),
    A: Tensor.from(bits.A, [s.dim, s.N], { device }),
    D: Tensor.from(bits.D, [s.dim], { device }),
  };
}

const disposeAll = (obj) => {
  for (const t of Object.values(obj)) if (t instanceof Tensor) t.dispose();
};
const tensorBytes = (t) => t.numel * DTYPE_BYTES[t.dtype];

/** One call of each op, disposing what it makes. bwd/bwd-det reuse one ctx (made on first use). */
function scanOps(t) {
  const opts = { D: t.D, z: t.z, deltaSoftplus: true };
  let ctx = null;
  const theCtx = () => {
    if (!ctx) {
      const r = selectiveScan(t.u, t.delta, t.A, t.B, t.C, { ...opts, saveForBackward: true });
      r.out.dispose();
      ctx = r.ctx;
    }
    return ctx;
  };
  return {
    fwd: () => selectiveScan(t.u, t.delta, t.A, t.B, t.C, opts).out.dispose(),
    'fwd-save': () => {
      const r = selectiveScan(t.u, t.delta, t.A, t.B, t.C, { ...opts, saveForBackward: true });
      r.out.dispose();
      r.ctx.dispose();
    },
    bwd: () => disposeAll(selectiveScanBackward(theCtx(), t.dout)),
    'bwd-det': () => disposeAll(selectiveScanBackward(theCtx(), t.dout, { deterministic: true })),
    'fwd+bwd': () => {
      const r = selectiveScan(t.u, t.delta, t.A, t.B, t.C, { ...opts, saveForBackward: true });
      r.out.dispose();
      disposeAll(selectiveScanBackward(r.ctx, t.dout));
      r.ctx.dispose();
    },
    dispose: () => ctx?.dispose(),
  };
}

function stepInputs(factory, st, dtype, device) {
  const bits = (n, kind, shape) => tensorFromBits(factory.bits(n, kind), shape, dtype, device);
  const f32 = (n, fn, shape) => Tensor.from(factory.floats(n, fn), shape, { device });
  const { batch, N } = st;
  if (st.form === 'channels') {
    const dim = st.dim;
    return {
      state: Tensor.zeros([batch, dim, N], { device }),
      x: bits(batch * dim, 'normal', [batch, dim]),
      dt: bits(batch * dim, 'delta', [batch, dim]),
      z: bits(batch * dim, 'normal', [batch, dim]),
      A: f32(dim * N, (r) => -Math.exp(r.uniform()), [dim, N]),
      B: bits(batch * N, 'normal', [batch, N]),
      C: bits(batch * N, 'normal', [batch, N]),
      D: f32(dim, (r) => r.normal(), [dim]),
    };
  }
  const { H, P } = st;
  return {
    state: Tensor.zeros([batch, H, P, N], { device }),
    x: bits(batch * H * P, 'normal', [batch, H, P]),
    dt: bits(batch * H, 'delta', [batch, H]),
    z: bits(batch * H * P, 'normal', [batch, H, P]),
    A: f32(H, (r) => -Math.exp(r.uniform()), [H]),
    B: bits(batch * N, 'normal', [batch, 1, N]),
    C: bits(batch * N, 'normal', [batch, 1, N]),
    D: f32(H, (r) => r.normal(), [H]),
    dtBias: f32(H, (r) => -r.uniform(), [H]),
  };
}

// ---- helpers ---------------------------------------------------------------------------------------

function relErr(got, ref) {
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = got[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

function timeJs(fn, { reps, maxTotalMs }) {
  let t0 = performance.now();
  fn(); // warm-up (and the JIT)
  const first = performance.now() - t0;
  const n = Math.max(1, Math.min(reps, Math.floor(maxTotalMs / first)));
  const ms = [];
  for (let i = 0; i < n; i++) {
    t0 = performance.now();
    fn();
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  return { medianMs: n % 2 ? ms[n >> 1] : (ms[n / 2 - 1] + ms[n / 2]) / 2, minMs: ms[0], reps: n };
}

function sha1(file) {
  return crypto.createHash('sha1').update(fs.readFileSync(file)).digest('hex');
}

function writeRaw(file, typed) {
  fs.writeFileSync(file, new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength));
}

const fmt = (ms) => (ms >= 100 ? ms.toFixed(0) : ms >= 1 ? ms.toFixed(2) : ms.toPrecision(3));

// ---- one device --------------------------------------------------------------------------------------

class DeviceRun {
  constructor(target, o, command, torchPy, baselineScript) {
    this.target = target;
    this.o = o;
    this.torchPy = torchPy;
    this.baselineScript = baselineScript;
    this.cpu = target.kind === 'cpu';
    this.plan = planFor(target, o);
    this.progress = new Progress(this.plan.total);
    this.progress.prefix = `${target.id} `;
    this.factory = new InputFactory(o.seed);
    this.res = {
      ...resultHeader('bench', target, command),
      argv: process.argv.slice(2),
      settings: {},
      machine: null,
      cases: [],
      comparisons: [],
      ratio: null,
      sweep: null,
      memory: [],
      checks: [],
      errors: [],
      torch: null,
      notes: [],
    };
    this.torchGpu = { cases: [], outs: new Map(), dir: null };
    this.skipped = [];
  }

  /** fn's result, or null after recording its error (a failing case must not lose the others). */
  async guarded(label, fn) {
    try {
      return await fn();
    } catch (error) {
      const message = `${error?.code ? `${error.code}: ` : ''}${error?.message ?? error}`.split('\n')[0].slice(0, 400);
      this.res.errors.push({ case: label, message });
      this.progress.done(`${label}: FAILED: ${message}`);
      return null;
    }
  }

  /** True once --deadline-s has passed (noting what is skipped). */
  late(what) {
    if (!this.o.deadlineS || (performance.now() - START) / 1000 < this.o.deadlineS) return false;
    this.skipped.push(what);
    return true;
  }

  timing(shape) {
    const o = this.o;
    const gpu = !this.cpu && !this.target.simulated;
    const reps = o.reps ?? (o.quick ? (gpu ? 10 : 5) : gpu ? (shape?.heavy ? 10 : 20) : 7);
    return {
      warmup: o.warmup ?? 2,
      reps,
      targetMs: o.targetMs ?? (gpu ? 10 : 20),
      maxTotalMs: o.maxCaseMs ?? 4000,
      maxCalls: 1000,
    };
  }

  async run() {
    const { target, o, res, plan, progress } = this;
    if (o.threads) setNumThreads(o.threads);
    this.loadAtStart = os.loadavg();
    const gpu = !this.cpu && !target.simulated;
    res.settings = {
      quick: o.quick,
      dtypes: o.dtypes,
      ops: o.ops,
      seed: o.seed,
      timing: gpu
        ? 'CUDA events around a batch of calls (recordEvent/elapsedMs), median over repetitions'
        : 'wall clock (performance.now) around a batch of calls, median over repetitions',
      defaults: this.timing(null),
      inputs:
        'bfloat16-exact values (both dtypes see the same data): pools of 2^22 randn / U[-2,0) values, tiled in 4096-value windows at random offsets; A, D drawn per element',
      cpuThreads: buildInfo().cpuThreads,
    };
    res.plan = {
      scans: plan.scans.map((s) => ({
        name: s.name,
        shape: S.shapeText(s),
        torchRepsCpu: s.torchRepsCpu,
        torchGpu: s.torchGpu,
      })),
      steps: plan.steps.map((s) => s.name),
      sweep: plan.sweep,
    };

    // Ceilings of this device.
    progress.status('copy bandwidth');
    // CPU: 256 MiB, past glibc's threshold for non-temporal stores (smaller copies read the destination too).
    const copyBytes = target.simulated ? 256 * 2 ** 20 : gpu ? 2 ** 30 : 256 * 2 ** 20;
    this.machine = { copyBandwidthGBps: NaN, exp2Rate: NaN };
    const copy = (await this.guarded('copy bandwidth', () => copyBandwidth(target, { bytes: copyBytes }))) ?? {
      copyBandwidthGBps: NaN,
      method: 'failed',
    };
    if (copy.method !== 'failed') progress.done(`copy bandwidth ${copy.copyBandwidthGBps.toFixed(1)} GB/s`);
    progress.status('exp2 rate');
    const rate = (await this.guarded('exp2 rate', () => exp2Rate(target))) ?? NaN;
    if (Number.isFinite(rate)) progress.done(`exp2 rate ${(rate / 1e9).toFixed(2)} G/s`);
    this.machine = { copyBandwidthGBps: copy.copyBandwidthGBps, exp2Rate: rate, copy };
    res.machine = {
      copyBandwidthGBps: copy.copyBandwidthGBps,
      copyMethod: copy.method,
      copy,
      exp2Rate: rate,
      exp2Method: `measureExp2Rate(${target.device}): exp2 evaluations per second (${this.cpu || target.simulated ? 'all CPU threads' : 'the whole GPU'}), best of 3`,
    };

    if (o.checks) await this.guarded('agreement checks', () => this.checks());
    for (const s of plan.scans) await this.guarded(`${s.name} inputs`, () => this.scanShape(s));
    for (const st of plan.steps) await this.guarded(`${st.name} inputs`, () => this.step(st));
    if (plan.sweep) await this.guarded('sweep', () => this.sweep(plan.sweep));
    if (this.torchGpu.cases.length) {
      if (!this.late('the PyTorch GPU reference')) this.runTorchGpu();
      else if (this.torchGpu.dir) fs.rmSync(this.torchGpu.dir, { recursive: true, force: true });
    }
    this.finishComparisons();
    if (this.skipped.length) res.notes.push(`--deadline-s ${o.deadlineS} passed: skipped ${this.skipped.join('; ')}.`);
    // The machine may have changed under the run (shared or throttled cores): measure again.
    res.machine.exp2RateAtEnd = (await this.guarded('exp2 rate at the end', () => exp2Rate(target))) ?? null;
    res.loadAverage = { start: this.loadAtStart, end: os.loadavg() };
    progress.end();
    return res;
  }

  // Agreement: the plain JS loop against the CPU backend (CPU run), this device against the CPU
  // backend (GPU run), on the same inputs; L=300 is not a multiple of any chunk length.
  async checks() {
    const { target, res, progress } = this;
    progress.status('agreement checks');
    const s = { name: 'check', batch: 2, dim: 64, L: 300, N: 16, G: 1 };
    const bits = scanBits(new InputFactory(12345), s);
    const keys = ['du', 'ddelta', 'dz', 'dA', 'dB', 'dC', 'dD'];
    const runOn = (dtype, device, deterministic = false) => {
      const t = scanTensors(bits, s, dtype, device);
      const r = selectiveScan(t.u, t.delta, t.A, t.B, t.C, {
        D: t.D,
        z: t.z,
        deltaSoftplus: true,
        saveForBackward: true,
      });
      const g = selectiveScanBackward(r.ctx, t.dout, { deterministic });
      const vals = { out: r.out.dataSync() };
      for (const k of keys) vals[k] = g[k].dataSync();
      r.out.dispose();
      r.ctx.dispose();
      disposeAll(g);
      disposeAll(t);
      return vals;
    };
    const compare = (name, dtype, got, ref, tolerance) => {
      const rel = {};
      for (const k of ['out', ...keys]) rel[k] = relErr(got[k], ref[k]);
      const pass = Object.entries(rel).every(([k, e]) => e <= (k === 'out' ? tolerance[0] : tolerance[1]));
      res.checks.push({ name, dtype, shape: s, relErr: rel, tolerance, pass });
      if (!pass) progress.note(`WARNING: agreement check failed: ${name} (${dtype}): ${JSON.stringify(rel)}`);
    };
    const cpuRef = runOn('float32', 'cpu');
    if (this.cpu) {
      const x = Object.fromEntries(['u', 'delta', 'z', 'dout', 'B', 'C'].map((k) => [k, bitsToFloat32(bits[k])]));
      const js = jsForwardBackward(s, { ...x, A: bits.A, D: bits.D });
      compare('CPU backend vs the JS loop (float64 arithmetic)', 'float32', cpuRef, js, [1e-5, 1e-4]);
    } else {
      compare(`${target.id} vs CPU backend`, 'float32', runOn('float32', target.device), cpuRef, [1e-5, 1e-4]);
      if (this.o.dtypes.includes('bfloat16')) {
        compare(
          `${target.id} vs CPU backend`,
          'bfloat16',
          runOn('bfloat16', target.device),
          runOn('bfloat16', 'cpu'),
          [1e-2, 1e-2],
        );
      }
    }
    // deterministic: true gives bit-identical gradients run to run.
    const a = runOn('float32', target.device, true);
    const b = runOn('float32', target.device, true);
    const identical = keys.every((k) => Buffer.compare(Buffer.from(a[k].buffer), Buffer.from(b[k].buffer)) === 0);
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

  record(kind, shapeName, shape, dtype, op, m, traffic, extra = {}) {
    const rec = {
      kind,
      shapeName,
      shape,
      dtype,
      op,
      medianMs: m.medianMs,
      minMs: m.minMs,
      maxMs: m.maxMs,
      reps: m.reps,
      callsPerRep: m.callsPerRep,
      hostMsPerCall: m.hostMsPerCall,
      samplesMs: m.samplesMs.map((x) => +x.toPrecision(4)),
      ...extra,
      roofline: roofline(traffic, m.medianMs, this.machine),
      bytesBreakdown: traffic.parts,
    };
    this.res.cases.push(rec);
    return rec;
  }

  async scanShape(s) {
    const { target, o, res, progress } = this;
    const shape = { batch: s.batch, dim: s.dim, L: s.L, N: s.N, G: s.G };
    if (this.late(`${s.name} (all of it)`)) return;
    progress.status(`${s.name}: making inputs`);
    const bits = scanBits(this.factory, s);
    const chunk = scanChunkLength(target.device, { batch: s.batch, dim: s.dim, seqlen: s.L, dstate: s.N });
    const cmp = { shapeName: s.name, shape, ours: {}, notes: [] };
    if (s.torchSkip) cmp.notes.push(s.torchSkip);
    let torchCase = null;
    if (s.torchGpu.length) torchCase = this.addTorchGpuCase(`${s.name}`, s, bits, s.torchGpu);
    for (const dtype of o.dtypes) {
      progress.status(`${s.name} ${dtype}: uploading inputs`);
      const t = scanTensors(bits, s, dtype, target.device);
      const ops = scanOps(t);
      for (const op of o.ops) {
        if (this.late(`${s.name} ${dtype} ${op}`)) continue;
        progress.status(`${s.name} ${S.shapeText(s)} ${dtype} ${op}`);
        const m = await this.guarded(`${s.name} ${dtype} ${op}`, () => measure(target, ops[op], this.timing(s)));
        if (!m) continue;
        const rec = this.record('scan', s.name, shape, dtype, op, m, scanTraffic(shape, dtype, op, chunk), {
          chunkLength: chunk,
          checkpointBytes: op === 'fwd' ? 0 : s.batch * s.dim * Math.ceil(s.L / chunk) * s.N * 4,
        });
        progress.done(
          `${s.name} ${dtype} ${op}: ${fmt(m.medianMs)} ms, ${rec.roofline.gbps.toFixed(1)} GB/s, ${(rec.roofline.fractionOfFloor * 100).toFixed(0)} % of floor`,
        );
      }
      if (!this.cpu && !target.simulated && (s.of ?? s.name) === 'S1') {
        const mem = await this.guarded(`${s.name} ${dtype} peak memory`, () => this.peakMemory(s, shape, dtype, t));
        if (mem) res.memory.push(mem);
      }
      if (dtype === 'float32') {
        const find = (op) =>
          res.cases.find((c) => c.shapeName === s.name && c.dtype === dtype && c.op === op)?.medianMs;
        cmp.ours.fwdMs = find('fwd') ?? null;
        const fwdSave = find('fwd-save') ?? find('fwd');
        cmp.ours.fwdBwdMs = find('fwd+bwd') ?? (fwdSave && find('bwd') ? fwdSave + find('bwd') : null);
        if (!find('fwd+bwd') && cmp.ours.fwdBwdMs)
          cmp.notes.push('ours fwd+bwd = the sum of the measured forward and backward');
        if (torchCase) {
          await this.guarded(`${s.name} output for the PyTorch check`, async () => {
            const r = selectiveScan(t.u, t.delta, t.A, t.B, t.C, { D: t.D, z: t.z, deltaSoftplus: true });
            this.torchGpu.outs.set(torchCase.id, await r.out.data());
            r.out.dispose();
          });
        }
      }
      ops.dispose();
      disposeAll(t);
    }
    if (this.cpu && o.dtypes.includes('float32')) {
      const x = { s, bits };
      if (o.js && !this.late(`${s.name} JS loop`)) this.jsLoop(x, cmp);
      if (s.torchRepsCpu && !this.late(`${s.name} PyTorch CPU baseline`)) {
        this.torchCpu(s, s.torchRepsCpu, cmp);
        // The ratio shape: ours again right after PyTorch, so that a machine whose speed drifts
        // (shared or throttled cores) cannot flatter the ratio: it uses the slower of the two.
        if (s.ratio && cmp.torch && o.ops.includes('fwd') && o.ops.includes('fwd+bwd')) {
          await this.guarded(`${s.name} ours again after PyTorch`, async () => {
            const t = scanTensors(bits, s, 'float32', target.device);
            const ops = scanOps(t);
            const f = await measure(target, ops.fwd, this.timing(s));
            const fb = await measure(target, ops['fwd+bwd'], this.timing(s));
            ops.dispose();
            disposeAll(t);
            cmp.oursAfterTorch = { fwdMs: f.medianMs, fwdBwdMs: fb.medianMs };
            progress.done(`${s.name} float32 ours again: fwd ${fmt(f.medianMs)} ms, fwd+bwd ${fmt(fb.medianMs)} ms`);
          });
        }
      }
    }
    if (o.dtypes.includes('float32')) res.comparisons.push(cmp);
  }

  jsLoop({ s, bits }, cmp) {
    const { progress } = this;
    progress.status(`${s.name}: plain JS loop (one thread)`);
    const x = Object.fromEntries(['u', 'delta', 'z', 'dout', 'B', 'C'].map((k) => [k, bitsToFloat32(bits[k])]));
    Object.assign(x, { A: bits.A, D: bits.D });
    const budget = { reps: Math.min(this.timing(s).reps, 3), maxTotalMs: 3000 };
    const f = timeJs(() => jsForward(s, x), budget);
    const fb = timeJs(() => jsForwardBackward(s, x), budget);
    cmp.js = { fwdMs: f.medianMs, fwdBwdMs: fb.medianMs, fwdReps: f.reps, fwdBwdReps: fb.reps, threads: 1 };
    progress.done(`${s.name} float32 JS loop: fwd ${fmt(f.medianMs)} ms, fwd+bwd ${fmt(fb.medianMs)} ms`);
  }

  /** The PyTorch CPU baseline script at one shape; returns { fwdMs, fwdBwdMs, threads } or null. */
  torchCpuRun(shape, reps, label) {
    const { progress } = this;
    if (!this.torchPy?.python || !this.baselineScript) return null;
    progress.status(`${label}: PyTorch CPU baseline (${reps} reps)`);
    const args = [this.baselineScript, shape.batch, shape.dim, shape.L, shape.N, reps].map(String);
    const r = spawnSync(this.torchPy.python, args, { encoding: 'utf8', timeout: 30 * 60 * 1000 });
    const line = r.stdout?.trim().split('\n').pop();
    let out = null;
    try {
      out = JSON.parse(line);
    } catch {
      this.res.notes.push(
        `PyTorch CPU baseline failed at ${label}: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`,
      );
      progress.done(`${label} PyTorch CPU baseline FAILED`);
      return null;
    }
    const res = { fwdMs: out.fwd_ms, fwdBwdMs: out.fwdbwd_ms, threads: out.threads, reps };
    progress.done(
      `${label} PyTorch CPU baseline: fwd ${fmt(res.fwdMs)} ms, fwd+bwd ${fmt(res.fwdBwdMs)} ms (${res.threads} threads)`,
    );
    return res;
  }

  torchCpu(s, reps, cmp) {
    const r = this.torchCpuRun(s, reps, s.name);
    if (r) cmp.torch = { ...r, kind: 'PyTorch CPU baseline (torch_cpu_baseline.py)' };
  }

  async peakMemory(s, shape, dtype, t) {
    const { target } = this;
    await sync(target);
    cuda.resetPeakMemory(target.device);
    const before = cuda.memoryInfo(target.device).allocatedBytes;
    const r = selectiveScan(t.u, t.delta, t.A, t.B, t.C, {
      D: t.D,
      z: t.z,
      deltaSoftplus: true,
      saveForBackward: true,
    });
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

  async step(st) {
    const { target, o, progress } = this;
    const shape = { ...st };
    delete shape.name;
    for (const dtype of o.dtypes) {
      if (this.late(`${st.name} ${dtype}`)) continue;
      progress.status(`${st.name} ${dtype}`);
      const t = stepInputs(this.factory, st, dtype, target.device);
      const opts = { D: t.D, z: t.z, dtSoftplus: true, ...(t.dtBias ? { dtBias: t.dtBias } : {}) };
      const fn = () => selectiveStateUpdate(t.state, t.x, t.dt, t.A, t.B, t.C, opts).dispose();
      const m = await this.guarded(`${st.name} ${dtype}`, () =>
        measure(target, fn, { ...this.timing(null), targetMs: this.cpu ? 20 : 5 }),
      );
      if (!m) {
        disposeAll(t);
        continue;
      }
      const rec = this.record('step', st.name, shape, dtype, 'step', m, stepTraffic(st, dtype));
      progress.done(
        `${st.name} ${dtype}: ${fmt(m.medianMs)} ms, ${rec.roofline.gbps.toFixed(1)} GB/s, ${(rec.roofline.fractionOfFloor * 100).toFixed(0)} % of floor`,
      );
      disposeAll(t);
    }
  }

  async sweep(sw) {
    const { target, o, res, progress } = this;
    const points = [];
    for (const L of sw.Ls) {
      if (this.late(`sweep L=${L}`)) continue;
      const s = { name: `sweep-L${L}`, batch: sw.batch, dim: sw.dim, L, N: sw.N, G: 1 };
      progress.status(`sweep L=${L}: inputs`);
      const bits = scanBits(this.factory, s);
      const chunk = scanChunkLength(target.device, { batch: s.batch, dim: s.dim, seqlen: L, dstate: s.N });
      const t = scanTensors(bits, s, 'float32', target.device);
      const ops = scanOps(t);
      const timing = {
        ...this.timing(null),
        reps: Math.min(this.timing(null).reps, this.cpu ? 5 : 10),
        maxTotalMs: 2000,
      };
      const point = { L, chunkLength: chunk };
      for (const [key, op] of [
        ['fwdMs', 'fwd'],
        ['bwdMs', 'bwd'],
        ['fwdBwdMs', 'fwd+bwd'],
      ]) {
        progress.status(`sweep (${s.batch}, ${s.dim}, ${L}, ${s.N}) ${op}`);
        const m = await this.guarded(`sweep L=${L} ${op}`, () => measure(target, ops[op], timing));
        if (!m) continue;
        point[key] = m.medianMs;
        point[`${key.slice(0, -2)}FractionOfFloor`] = roofline(
          scanTraffic(s, 'float32', op, chunk),
          m.medianMs,
          this.machine,
        ).fractionOfFloor;
      }
      progress.done(
        `sweep L=${L}: fwd ${point.fwdMs ? fmt(point.fwdMs) : '–'} ms, bwd ${point.bwdMs ? fmt(point.bwdMs) : '–'} ms`,
      );
      if (L <= sw.torchMaxL) {
        if (this.cpu) {
          const r = this.torchCpuRun(s, o.torchReps ?? 3, `sweep L=${L}`);
          if (r) point.torch = r;
        } else {
          const c = this.addTorchGpuCase(s.name, s, bits, ['fwd', 'fwdbwd']);
          if (c) {
            point.torchCaseId = c.id;
            await this.guarded(`sweep L=${L} output for the PyTorch check`, async () => {
              const r = selectiveScan(t.u, t.delta, t.A, t.B, t.C, { D: t.D, z: t.z, deltaSoftplus: true });
              this.torchGpu.outs.set(c.id, await r.out.data());
              r.out.dispose();
            });
          }
        }
      }
      ops.dispose();
      disposeAll(t);
      points.push(point);
    }
    res.sweep = { batch: sw.batch, dim: sw.dim, N: sw.N, dtype: 'float32', points, torchMaxL: sw.torchMaxL };
  }

  // ---- the PyTorch reference on the GPU: inputs through files, one Python run for all cases ----

  addTorchGpuCase(id, s, bits, ops) {
    if (!this.torchPy?.python) return null;
    if (!this.torchGpu.dir) this.torchGpu.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'selective-scan-bench-'));
    const dir = this.torchGpu.dir;
    const files = {};
    for (const k of ['u', 'delta', 'z', 'dout', 'B', 'C', 'A', 'D']) {
      files[k] = path.join(dir, `${id}.${k}.${k === 'A' || k === 'D' ? 'f32' : 'bf16'}`);
      writeRaw(files[k], bits[k]);
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
      check_out: path.join(dir, `${id}.out.f32`),
    };
    this.torchGpu.cases.push(c);
    return c;
  }

  runTorchGpu() {
    const { target, res, progress } = this;
    const dir = this.torchGpu.dir;
    const manifest = path.join(dir, 'manifest.json');
    const resultFile = path.join(dir, 'result.json');
    fs.writeFileSync(
      manifest,
      JSON.stringify({
        device: target.simulated ? 'cpu' : target.device,
        reps: this.o.torchReps ?? 3,
        budget_s: 20,
        cases: this.torchGpu.cases,
      }),
    );
    progress.status(
      `PyTorch reference on ${target.simulated ? 'the CPU (simulated GPU)' : 'the GPU'}: ${this.torchGpu.cases.length} cases`,
    );
    const script = path.join(benchDir, 'torch_gpu_reference.py');
    const r = spawnSync(this.torchPy.python, [script, manifest, '--out', resultFile], {
      encoding: 'utf8',
      timeout: 30 * 60 * 1000,
      env: { ...process.env, PYTHONUNBUFFERED: '1' },
    });
    let out = null;
    try {
      out = JSON.parse(fs.readFileSync(resultFile, 'utf8'));
    } catch {
      const why = (r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n').slice(-3).join(' / ');
      res.notes.push(`PyTorch GPU reference failed: ${why}`);
      progress.done('PyTorch GPU reference FAILED');
    }
    if (out) {
      res.torch = {
        ...res.torch,
        gpuReference: {
          torch: out.torch,
          cuda: out.cuda,
          device: out.device_name,
          script: 'bench/torch_gpu_reference.py',
          sha1: sha1(script),
        },
      };
      for (const c of out.cases) {
        const ours = this.torchGpu.outs.get(c.id);
        let check = null;
        if (ours && c.check_out && fs.existsSync(c.check_out)) {
          const buf = fs.readFileSync(c.check_out);
          const ref = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
          check = relErr(ours, ref);
        }
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
          if (!pass)
            progress.note(`WARNING: ${c.id}: output differs from the PyTorch reference (relative error ${check})`);
        }
      }
      progress.done(`PyTorch GPU reference: ${out.cases.length} cases`);
    }
    fs.rmSync(dir, { recursive: true, force: true });
    this.torchGpu.dir = null;
  }

  finishComparisons() {
    const { res } = this;
    for (const c of res.comparisons) {
      const q = (a, b) => (a && b ? a / b : null);
      c.speedup = {
        jsFwd: q(c.js?.fwdMs, c.ours.fwdMs),
        jsFwdBwd: q(c.js?.fwdBwdMs, c.ours.fwdBwdMs),
        torchFwd: q(c.torch?.fwdMs, c.ours.fwdMs),
        torchFwdBwd: q(c.torch?.fwdBwdMs, c.ours.fwdBwdMs),
      };
    }
    if (this.cpu) {
      const r = res.comparisons.find(
        (c) =>
          c.torch &&
          c.shape.batch === S.RATIO_SHAPE.batch &&
          c.shape.dim === S.RATIO_SHAPE.dim &&
          c.shape.L === S.RATIO_SHAPE.L &&
          c.shape.N === S.RATIO_SHAPE.N,
      );
      if (r?.speedup.torchFwd && r.speedup.torchFwdBwd) {
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
    }
  }
}

// ---- results ----------------------------------------------------------------------------------------

function plotSeries(res, extra = null) {
  const sw = res.sweep;
  if (!sw?.points.length) return null;
  const where = res.device.kind === 'cpu' ? 'CPU' : res.device.kind === 'simulated-gpu' ? 'sim. GPU' : 'GPU';
  const tname = res.device.kind === 'cpu' ? 'PyTorch CPU' : 'PyTorch ref';
  const series = (r, w, t, colors, dashOurs, dim) => {
    const pts = (f) => r.sweep.points.filter((p) => f(p)).map((p) => [p.L, f(p)]);
    return [
      { label: `ours fwd (${w}${dim})`, points: pts((p) => p.fwdMs), color: colors[0], dash: dashOurs },
      { label: `ours bwd (${w}${dim})`, points: pts((p) => p.bwdMs), color: colors[1], dash: dashOurs },
      {
        label: `${t} fwd${dim ? ` (${dim.slice(2)})` : ''}`,
        points: pts((p) => p.torch?.fwdMs),
        color: colors[0],
        dash: 'dashed',
      },
      {
        label: `${t} fwd+bwd${dim ? ` (${dim.slice(2)})` : ''}`,
        points: pts((p) => p.torch?.fwdBwdMs),
        color: colors[2],
        dash: 'dashed',
      },
    ];
  };
  const out = series(res, where, tname, ['#1f77b4', '#d62728', '#9467bd'], 'solid', '');
  // A CPU sweep of the same invocation joins a GPU's plot (its dim is named where it differs).
  if (extra?.sweep?.points.length && extra !== res) {
    const dim =
      extra.sweep.dim !== sw.dim || extra.sweep.batch !== sw.batch ? `, ${extra.sweep.batch}×${extra.sweep.dim}` : '';
    out.push(
      ...series(extra, 'CPU', 'PyTorch CPU', ['#2ca02c', '#ff7f0e', '#8c564b'], 'dotted', dim).map((x) => ({
        ...x,
        dash: x.dash === 'dashed' ? 'dashed' : 'dotted',
      })),
    );
  }
  return out;
}

function writePlot(res, _paths, extra) {
  const series = plotSeries(res, extra);
  if (!series) return null;
  const sw = res.sweep;
  return timeVsLengthSvg({
    title: 'selective-scan: time per call against sequence length',
    subtitle: `${res.device.name}; batch ${sw.batch}, dim ${sw.dim}, N ${sw.N}, float32, z, D, softplus; ${res.date} ${res.commit.hash?.slice(0, 10) ?? ''}`,
    series,
  });
}

function outputPaths(res, o, multi) {
  const base = `${res.date}-${res.device.slug}-bench`;
  let json = path.join(o.outDir, `${base}.json`);
  if (o.json) json = multi ? o.json.replace(/(\.json)?$/, `-${res.device.slug}.json`) : o.json;
  const stem = json.replace(/\.json$/, '');
  return { json, md: `${stem}.md`, svg: `${stem}.svg` };
}

async function main() {
  let o;
  try {
    o = parseOptions(process.argv.slice(2));
  } catch (e) {
    console.error(`bench: ${e.message}\n\n${HELP}`);
    process.exit(2);
  }
  if (o.help) {
    console.log(HELP);
    return;
  }
  const argText = process.argv.slice(2).join(' ');
  const command =
    process.env.npm_lifecycle_event === 'bench'
      ? `npm run bench${argText ? ` -- ${argText}` : ''}`
      : `node bench/bench.mjs${argText ? ` ${argText}` : ''}`;

  const targets = [];
  if (o.simulate) targets.push(makeTarget('cuda', { simulated: true }));
  for (const d of o.devices) {
    if (d === 'all') {
      if (cuda.isAvailable())
        for (let i = 0; i < Math.min(1, cuda.deviceCount()); i++) targets.push(makeTarget(`cuda:${i}`));
      targets.push(makeTarget('cpu'));
    } else if (d === 'cpu') targets.push(makeTarget('cpu'));
    else if (/^cuda(:\d+)?$/.test(d)) {
      if (!cuda.isAvailable()) {
        console.error(`bench: ${d} requested but CUDA is not available: ${cuda.unavailableReason}`);
        process.exit(2);
      }
      targets.push(makeTarget(d));
    } else {
      console.error(`bench: unknown device ${d}`);
      process.exit(2);
    }
  }

  const torchPy = o.torch ? findTorchPython(o.python) : { python: null, tried: [] };
  const baselineScript = findBaselineScript();
  const torchWanted = o.torch;
  if (o.torch && !torchPy.python) {
    console.error(
      `bench: no python3 with torch found (tried ${torchPy.tried.map((t) => t.python).join(', ')}): the PyTorch columns are skipped`,
    );
    o.torch = false;
  }

  let failedChecks = 0;
  let errors = 0;
  const written = [];
  const results = [];
  for (const target of targets) {
    const run = new DeviceRun(target, o, command, torchPy, baselineScript);
    const res = await run.run();
    res.torch = {
      ...res.torch,
      python: torchPy.python,
      version: torchPy.torchVersion ?? null,
      pythonVersion: torchPy.pythonVersion ?? null,
      notFound: torchPy.python ? undefined : torchPy.tried,
      cpuBaselineScript: baselineScript
        ? { path: path.relative(repoRoot, baselineScript), sha1: sha1(baselineScript) }
        : null,
    };
    if (torchWanted && !torchPy.python)
      res.notes.push(
        `No python3 that can import torch was found (tried ${torchPy.tried.map((t) => t.python).join(', ')}): PyTorch columns skipped.`,
      );
    if (target.kind === 'cpu') {
      res.notes.push(
        'CPU times are wall clock; the JS loop is one thread, float32 arrays, double arithmetic (bench/lib/jsref.mjs).',
      );
      res.notes.push(
        "The CPU copy bandwidth is one thread (the addon's host copy is a memmove), which understates a many-core machine's bandwidth and so overstates the fraction of the memory floor there.",
      );
    }
    if (target.simulated)
      res.notes.push(
        'Simulated GPU: the GPU code path of this harness run on the CPU with tiny shapes; the numbers are CPU numbers.',
      );
    failedChecks += res.checks.filter((c) => !c.pass).length;
    errors += res.errors.length;

    const paths = outputPaths(res, o, targets.length > 1);
    const svg = o.plot ? writePlot(res, paths, null) : null;
    if (svg && o.save) res.sweep.plot = path.basename(paths.svg);
    const md = markdownReport(res);
    process.stdout.write(`\n${md}\n`);
    if (o.save) {
      fs.mkdirSync(path.dirname(paths.json), { recursive: true });
      fs.writeFileSync(paths.json, `${JSON.stringify(res, null, 1)}\n`);
      fs.writeFileSync(paths.md, md);
      if (svg) fs.writeFileSync(paths.svg, svg);
      written.push(paths.json, paths.md, ...(svg ? [paths.svg] : []));
    }
    results.push({ res, paths });
  }
  // The GPU's plot also shows the CPU's sweep when both ran in this invocation.
  const cpuRes = results.find((r) => r.res.device.kind === 'cpu')?.res;
  if (o.plot && o.save && cpuRes) {
    for (const { res, paths } of results) {
      if (res.device.kind === 'cpu' || !res.sweep?.plot) continue;
      const svg = writePlot(res, paths, cpuRes);
      if (svg) fs.writeFileSync(paths.svg, svg);
    }
  }
  if (written.length) console.error(`bench: wrote ${written.map((p) => path.relative(process.cwd(), p)).join(', ')}`);
  if (failedChecks) {
    console.error(`bench: ${failedChecks} agreement check(s) FAILED (see the tables)`);
    process.exitCode = 3;
  }
  if (errors) {
    console.error(`bench: ${errors} case(s) threw (see "Errors" in the report)`);
    process.exitCode = 4;
  }
}

await main();
