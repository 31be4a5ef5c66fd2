#!/usr/bin/env node
// Kernel statistics without a GPU (issue #11): what a reviewer reads before any GPU run.
//
//  1. Compiles every CUDA kernel source under csrc/ (found by glob; not microbench.cu) with nvcc
//     and CMakeLists.txt's CUDA flags for sm_90 and sm_80: PTX, ptxas -v (registers, spills, stack,
//     static shared memory per kernel instantiation) and the host code.
//  2. Runs the ops' host code for the benchmark cases against a stand-in CUDA runtime
//     (kernel-stats/launch-capture.cc, cudart-stub.cc): the launches as the library makes them —
//     grid, block, dynamic shared memory, argument bytes — hence the occupancy of each launch on
//     H100/H200 and A100.
//  3. Runs block 0 of each launch in a PTX interpreter (lib/ptx-sim.mjs) over inputs drawn like
//     the benchmark's, and counts the instructions the state loop issues per element·state along the
//     path a full chunk takes (lib/kernel-sim.mjs says exactly how); with the static count of that
//     loop's body per ex2 (lib/ptx-cfg.mjs).
//  4. A roofline with three floors per benchmark shape (bytes / bandwidth, exp2 / MUFU rate,
//     executed instructions / issue rate; lib/gpu-model.mjs), for ours and for mamba_ssm (its
//     figures as recorded in lib/mamba-reference.mjs).
// Prints a markdown report; writes bench/results/YYYY-MM-DD-<host>-kernel-stats.{json,md}.
import { availableParallelism } from 'node:os';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { commitInfo, cpuInfo, slugify, today } from './lib/env.mjs';
import { GPUS, floors, occupancy, peakRates } from './lib/gpu-model.mjs';
import { ISSUE_OURS, MAMBA_ISSUE_COUNTS, MAMBA_SOURCE, mambaKernel } from './lib/mamba-reference.mjs';
import { jsForwardBackward } from './lib/jsref.mjs';
import { measureBlock, measureLoadsInFlight, measureStateLoop, runCase } from './lib/kernel-sim.mjs';
import { buildCfg, hotLoops } from './lib/ptx-cfg.mjs';
import {
  NVCC_FLAGS,
  buildLaunchCapture,
  captureLaunches,
  compileSources,
  cudaSources,
  demangle,
  dtypeNames,
  findNvcc,
  kernelLabel,
  parsePtxasLog,
  repoRoot,
  stepsPerLane,
} from './lib/ptx-build.mjs';
import { parsePtx } from './lib/ptx-parse.mjs';
import { mdTable } from './lib/report.mjs';
import { scanTraffic, stepTraffic } from './lib/roofline.mjs';
import { GPU_SCAN, STEP_DIM, STEP_N, shapeText } from './lib/shapes.mjs';

const HELP = `Usage: npm run kernel-stats -- [options]     (or: node bench/kernel-stats.mjs [options])

  --archs LIST     architectures to compile (default sm_90,sm_80; the interpreter runs the first)
  --no-sim         skip the launch capture and the interpreter (ptxas and static counts only)
  --jobs N         parallel nvcc processes (default: min(2, CPUs); $KERNEL_STATS_JOBS)
  --json PATH      write the JSON there (default bench/results/YYYY-MM-DD-<host>-kernel-stats.json)
  --out-dir DIR    directory for the default result names (default bench/results)
  --no-save        print only, writing nothing to bench/results (a --json PATH given is still written)
  -h, --help

Needs nvcc (CUDA 12 or later) and c++filt; no GPU. The builds are cached in build/kernel-stats/.`;

const START = performance.now();
const log = (m) => process.stderr.write(`[kernel-stats ${((performance.now() - START) / 1000).toFixed(0)} s] ${m}\n`);

// ---- what is measured --------------------------------------------------------------------------

const STEP_BATCH = 256;
const STEP_HEADS = { H: 80, P: 64, N: 128 };
// The benchmark cases (bench/lib/shapes.mjs), bfloat16 as issue #11 reads them.
const BENCH_CASES = [
  ...GPU_SCAN.flatMap((s) =>
    ['fwd', 'bwd'].map((op) => ({
      name: `${s.name} ${op}`,
      op,
      shape: s,
      spec: `${op}:bf16:${s.batch}x${s.dim}x${s.L}x${s.N}`,
    })),
  ),
  {
    name: `step b${STEP_BATCH}`,
    op: 'step',
    shape: { batch: STEP_BATCH, dim: STEP_DIM, N: STEP_N },
    spec: `step-channels:bf16:${STEP_BATCH}x${STEP_DIM}x${STEP_N}`,
  },
  // The Mamba-2 decoding step (issue #11: 80 heads of 64, N = 128, one scalar per head), at the
  // largest and the smallest batch.
  ...[STEP_BATCH, 1].map((batch) => ({
    name: `step heads b${batch}`,
    op: 'step',
    shape: { form: 'heads', batch, H: STEP_HEADS.H, P: STEP_HEADS.P, N: STEP_HEADS.N },
    spec: `step-heads:bf16:${batch}x${STEP_HEADS.H}x${STEP_HEADS.P}x${STEP_HEADS.N}`,
  })),
];
// Loaded DRAM latency assumed for the bytes-in-flight estimate of the step (not measured here; a
// GPU run measures the real one): H100/H200 global loads take about 0.5-0.6 us unloaded and more
// near full bandwidth.
const DRAM_LATENCY_US = 0.8;
// One small case per kernel instantiation of the scans and the step: L picks the steps per lane
// (forward: L <= 32 -> 1, <= 64 -> 2, <= 128 -> 4, <= 256 -> 8, else 16 for 16-bit inputs and 8
// for float32; backward: the forward's checkpoint interval, at most 4), two chunks or more where
// the chunk is shorter than L.
const FWD_LONG_L = 1024;
const INSTANCE_CASES = ['f32', 'f16', 'bf16'].flatMap((dt) => [
  ...[32, 64, 128, 256, FWD_LONG_L].map((L) => `fwd:${dt}:2x64x${L}x16`),
  ...[32, 64, 256].map((L) => `bwd:${dt}:2x64x${L}x16`),
  `step-channels:${dt}:4x64x16`,
]);

// The interpreter's check: this case runs whole (forward with checkpoints, then the backward)
// and must match the plain JS loop of lib/jsref.mjs.
const CHECK_SHAPE = { batch: 2, dim: 8, L: 300, N: 16 };
const CHECK_CASE = `train:f32:${CHECK_SHAPE.batch}x${CHECK_SHAPE.dim}x${CHECK_SHAPE.L}x${CHECK_SHAPE.N}`;
const CHECK_TOLERANCE = 1e-5;

// ---- options -------------------------------------------------------------------------------------

function parseOptions(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      archs: { type: 'string', default: 'sm_90,sm_80' },
      'no-sim': { type: 'boolean' },
      jobs: { type: 'string' },
      json: { type: 'string' },
      'out-dir': { type: 'string' },
      'no-save': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const archs = values.archs.split(',').map((a) => a.trim());
  for (const a of archs)
    if (!/^sm_\d{2,3}a?$/.test(a)) throw new RangeError(`kernel-stats: --archs expects names like sm_90, got '${a}'`);
  const jobsText = values.jobs ?? process.env.KERNEL_STATS_JOBS;
  const jobs = jobsText === undefined ? Math.min(2, availableParallelism()) : Number(jobsText);
  if (!Number.isInteger(jobs) || jobs < 1)
    throw new RangeError(`kernel-stats: --jobs (or KERNEL_STATS_JOBS) expects a positive integer, got '${jobsText}'`);
  return { ...values, archs, jobs, sim: !values['no-sim'], save: !values['no-save'] };
}

// ---- 1. compile and read every kernel ------------------------------------------------------------

async function analyseKernels(o, nvcc) {
  const sources = cudaSources();
  const units = await compileSources({ sources, archs: o.archs, nvcc, jobs: o.jobs, log });
  const dtypes = dtypeNames();
  const kernels = [];
  for (const unit of units) {
    const module = parsePtx(readFileSync(unit.ptx, 'utf8'));
    const resources = parsePtxasLog(unit.ptxasLog);
    for (const fn of module.functions.filter((f) => f.kind === 'entry')) {
      const cfg = buildCfg(fn);
      const loops = hotLoops(fn, cfg).map((h) => ({
        label: h.label,
        instructions: h.instructions,
        ex2: h.ex2,
        staticPerEx2: h.staticPerEx2,
      }));
      kernels.push({
        arch: unit.arch,
        source: unit.source,
        ptx: relative(repoRoot, unit.ptx),
        mangled: fn.name,
        params: fn.params.map((p) => p.size),
        launchBounds: {
          maxThreads: fn.directives.maxntid?.[0] ?? null,
          minBlocksPerSM: fn.directives.minnctapersm?.[0] ?? null,
        },
        ...(resources.get(fn.name) ?? {}),
        stateLoops: loops,
        fn,
        module,
      });
    }
  }
  const names = demangle([...new Set(kernels.map((k) => k.mangled))]);
  for (const k of kernels) {
    k.demangled = names.get(k.mangled);
    k.label = kernelLabel(k.demangled, dtypes);
  }
  return { sources, units, kernels };
}

// ---- 2 and 3. launches, occupancy and the interpreter ----------------------------------------------

const simArch = (o) => o.archs[0];

function occupancies(kernelsByArch, launch) {
  const out = {};
  for (const [gpuName, gpu] of Object.entries(GPUS)) {
    const k = kernelsByArch.get(gpu.sm.arch);
    if (!k || k.registers === null || k.registers === undefined) continue;
    const occ = occupancy(
      gpu.sm,
      { registers: k.registers, staticShared: k.sharedStatic, barriers: k.barriers },
      { threads: launch.block[0] * launch.block[1] * launch.block[2], dynamicShared: launch.sharedBytes },
    );
    out[gpuName] = {
      blocksPerSM: occ.blocks,
      warpsPerSM: occ.warps,
      occupancy: occ.occupancy,
      limitedBy: occ.limitedBy,
    };
  }
  return out;
}

function simulate(kernel, captured, launch) {
  const t0 = performance.now();
  try {
    const loop = measureStateLoop(kernel.module, kernel.fn, captured, launch);
    if (!loop.none) return { ...loop, seconds: (performance.now() - t0) / 1000 };
    const block = measureBlock(kernel.module, kernel.fn, captured, launch);
    return {
      stateLoopMissing: loop.none,
      block: block.none ? null : block,
      blockMissing: block.none ?? null,
      seconds: (performance.now() - t0) / 1000,
    };
  } catch (e) {
    return { error: e.message.split('\n')[0] };
  }
}

function simulateBlock(kernel, captured, launch) {
  const t0 = performance.now();
  try {
    const block = measureBlock(kernel.module, kernel.fn, captured, launch);
    return {
      block: block.none ? null : block,
      blockMissing: block.none ?? null,
      seconds: (performance.now() - t0) / 1000,
    };
  } catch (e) {
    return { error: e.message.split('\n')[0] };
  }
}

async function captureAndSimulate(o, nvcc, analysis) {
  const arch = simArch(o);
  const byName = new Map();
  for (const k of analysis.kernels) {
    if (!byName.has(k.mangled)) byName.set(k.mangled, new Map());
    byName.get(k.mangled).set(k.arch, k);
  }
  const paramSizes = new Map(analysis.kernels.filter((k) => k.arch === arch).map((k) => [k.mangled, k.params]));
  const binary = await buildLaunchCapture({ units: analysis.units.filter((u) => u.arch === arch), nvcc, log });
  const specs = [...BENCH_CASES.map((c) => c.spec), ...INSTANCE_CASES, CHECK_CASE];
  log(`capturing ${specs.length} cases`);
  const captured = await captureLaunches({ binary, cases: specs, paramSizes });
  log('checking the interpreter');
  const check = interpreterCheck(
    captured.find((c) => c.case === CHECK_CASE),
    (name) => byName.get(name)?.get(arch),
  );
  log('running the interpreter');
  const results = new Map();
  for (const c of captured) {
    const launches = c.launches.map((launch) => {
      const kernels = byName.get(launch.kernel) ?? new Map();
      const k = kernels.get(arch);
      const out = {
        kernel: k?.label ?? launch.kernel,
        grid: launch.grid,
        block: launch.block,
        sharedBytes: launch.sharedBytes,
        occupancy: occupancies(kernels, launch),
      };
      // The step: its whole block 0 (its "state loop", if the compiler leaves one, holds one exp2
      // per row with one scalar per head, not one per element·state).
      const step = /stateUpdateKernel/.test(k?.demangled ?? '');
      if (k?.stateLoops.length) out.sim = step ? simulateBlock(k, c, launch) : simulate(k, c, launch);
      if (k && /stateUpdateKernel/.test(k.demangled ?? '')) out.inFlight = loadsInFlight(k, c, launch, out.occupancy);
      return out;
    });
    results.set(c.case, { status: c.status, launches, buffers: c.buffers });
  }
  return { results, check };
}

/**
 * The step's bytes in flight (bench/lib/kernel-sim.mjs measureLoadsInFlight: the plain global
 * loads a warp has issued and not yet used, the largest sum along block 0) x the warps resident per
 * SM, against what Little's law asks for copy bandwidth: bandwidth per SM x DRAM_LATENCY_US.
 */
function loadsInFlight(k, captured, launch, occ) {
  try {
    const m = measureLoadsInFlight(k.module, k.fn, captured, launch);
    if (m.none) return { none: m.none };
    const perGpu = {};
    const gridWarps =
      (launch.grid[0] * launch.grid[1] * launch.grid[2] * launch.block[0] * launch.block[1] * launch.block[2]) / 32;
    for (const [name, gpu] of Object.entries(GPUS)) {
      const o = occ[name];
      if (!o) continue;
      // Resident warps: what occupancy allows, or fewer where the grid cannot fill the SMs.
      const warps = Math.min(o.warpsPerSM, Math.ceil(gridWarps / gpu.sms));
      const perSM = m.perWarp * warps;
      const needed = ((gpu.bandwidthTBps * 1e12) / gpu.sms) * DRAM_LATENCY_US * 1e-6;
      perGpu[name] = { warps, perSM, needed, fraction: Math.min(1, perSM / needed) };
    }
    return { perWarp: m.perWarp, loadsPerWarp: m.loads, latencyUs: DRAM_LATENCY_US, ...perGpu };
  } catch (e) {
    return { error: e.message.split('\n')[0] };
  }
}

/** Runs CHECK_CASE whole in the interpreter; the relative error of each result vs the JS loop. */
function interpreterCheck(captured, findKernel) {
  const t0 = performance.now();
  const { read, issues } = runCase(captured, findKernel);
  const inputs = Object.fromEntries(['u', 'delta', 'A', 'B', 'C', 'D', 'z', 'dout'].map((n) => [n, read(n)]));
  const ref = jsForwardBackward(CHECK_SHAPE, inputs);
  const relErr = {};
  for (const k of ['out', 'du', 'ddelta', 'dz', 'dA', 'dB', 'dC', 'dD']) {
    const got = read(k);
    let num = 0;
    let den = 0;
    for (let i = 0; i < ref[k].length; i += 1) {
      num += (got[i] - ref[k][i]) ** 2;
      den += ref[k][i] ** 2;
    }
    relErr[k] = Math.sqrt(num / den);
  }
  const worst = Math.max(...Object.values(relErr));
  return {
    case: CHECK_CASE,
    kernels: captured.launches.length,
    issues,
    relErr,
    worst,
    pass: worst <= CHECK_TOLERANCE,
    seconds: (performance.now() - t0) / 1000,
  };
}

// ---- 4. the roofline ---------------------------------------------------------------------------------

/** The element·states of a launch-capture case: scans b·d·L·N, the step b·d·N (or b·H·P·N). */
function caseElements(spec) {
  const [op, , sizes] = spec.split(':');
  const n = sizes.split('x').map(Number);
  return op.startsWith('step') ? n.reduce((a, b) => a * b, 1) : n[0] * n[1] * n[2] * n[3];
}

/** The launch of a case that has a state loop (the scan or the step kernel). */
const mainLaunch = (r) => r?.launches.find((l) => l.sim);

/** Executed thread-instructions per element·state of a launch: { stateLoop, chunk, whole }. */
function executedPerElement(launch, elements) {
  const sim = launch?.sim;
  if (!sim || sim.error) return null;
  if (sim.stateLoop) return { stateLoop: sim.stateLoop.perElementState, chunk: sim.chunk?.perElementState ?? null };
  if (sim.block) {
    const blocks = launch.grid[0] * launch.grid[1] * launch.grid[2];
    return { whole: (sim.block.issues * 32 * blocks) / elements };
  }
  return null;
}

function roofline(results) {
  const rows = [];
  for (const c of BENCH_CASES) {
    const r = results?.get(c.spec);
    const launch = mainLaunch(r);
    const elements = caseElements(c.spec);
    let traffic;
    let mamba = null;
    if (c.op === 'step') {
      traffic = stepTraffic(
        c.shape.form === 'heads'
          ? { ...c.shape, G: 1 }
          : { form: 'channels', batch: c.shape.batch, dim: c.shape.dim, N: c.shape.N, G: 1 },
        'bfloat16',
      );
    } else {
      // Our checkpoint interval, from the checkpoints the backward reads (the forward writes none).
      const checkpoints = r?.buffers.find((b) => b.name === 'checkpoints');
      const chunks = checkpoints ? checkpoints.bytes / (4 * c.shape.batch * c.shape.dim * c.shape.N) : 1;
      traffic = scanTraffic(c.shape, 'bfloat16', c.op, c.shape.L / chunks);
      const mk = mambaKernel(c.shape, c.op === 'fwd' ? 'forward' : 'backward');
      if (mk) {
        // mamba keeps (a, b) pairs, 2N floats, per 2048 steps, also in the forward.
        const m = scanTraffic(c.shape, 'bfloat16', c.op === 'fwd' ? 'fwd-save' : 'bwd', 2048);
        const work = {
          bytes: m.bytes + m.parts.checkpoints,
          exps: m.exps,
          instructions: mk.measured.perElementState * elements,
        };
        const chunkWork = { ...work, instructions: mk.measured.perChunk * elements };
        mamba = {
          perElementState: mk.measured.perElementState,
          perChunk: mk.measured.perChunk,
          bytes: work.bytes,
          H200: floors(work, GPUS.H200),
          H100: floors(work, GPUS.H100),
          chunk: { H200: floors(chunkWork, GPUS.H200), H100: floors(chunkWork, GPUS.H100) },
        };
      }
    }
    const per = executedPerElement(launch, elements);
    const ours = (perElement) => {
      const work = {
        bytes: traffic.bytes,
        exps: traffic.exps,
        instructions: perElement === null || perElement === undefined ? null : perElement * elements,
      };
      return { H200: floors(work, GPUS.H200), H100: floors(work, GPUS.H100) };
    };
    const primary = per?.stateLoop ?? per?.whole ?? null;
    rows.push({
      case: c.name,
      spec: c.spec,
      shape: c.shape,
      bytes: traffic.bytes,
      exps: traffic.exps,
      elements,
      executed: per,
      ours: ours(primary),
      oursChunk: per?.chunk ? ours(per.chunk) : null,
      mamba,
    });
  }
  return rows;
}

// ---- the report --------------------------------------------------------------------------------------

const f1 = (v) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : `${+v.toFixed(1)}`);
const f3 = (v) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : `${+v.toPrecision(3)}`);
const pct = (v) => (v === null || v === undefined ? '–' : `${Math.round(v * 100)} %`);
const kb = (b) => (b === null || b === undefined ? '–' : b >= 1024 ? `${+(b / 1024).toFixed(1)} KiB` : `${b} B`);
const occText = (o) => (o ? `${pct(o.occupancy)} (${o.limitedBy})` : '–');

const METHOD = [
  '**Static per ex2**: all PTX instructions in the blocks of the state loop (the innermost natural loop, found from the CFG’s back edges, that contains an `ex2.approx`), every side of every branch once, predicated instructions and branches included; labels, directives (`.reg`, `.loc`, `.pragma`) and inline-asm braces excluded; divided by the number of `ex2.approx` in those blocks.',
  '**Executed per element·state**: the library’s host code makes the launch (a stand-in CUDA runtime records grid, block, shared memory and argument bytes), and a PTX interpreter runs block 0 of it over inputs drawn like the benchmark’s (u, z, B, C, D normal; delta uniform in [−2, 0), softplus; A = −exp(U[0, 1))). Counted: warp 0, its first visit of the state loop (header to exit), which at these shapes is a full chunk (every `ex2` runs on all 32 lanes). Every instruction the warp reaches is one issue, predicated off or not, branches included; where lanes take different sides of a branch, the warp issues both sides and both are counted (reconverging at the immediate post-dominator). Per element·state = issues × 32 / the lane-executions of `ex2` in the loop (one exp2 per time step and state): thread-instruction slots, idle lanes included. “Blocks issued” below lists the loop’s blocks the warp ran and those it skipped.',
  '**Per chunk**: the same over the whole first iteration of the loop around the state loop (the chunk: loads, dt, the gate, checkpoints, stores), per element·state of its state loop. **The step**: block 0 is run whole and its issues × the grid are divided by the state elements (batch·dim·N, or batch·H·P·N): a loop of the step holds a row’s work, not one element·state’s (in the heads form one exp2 per row).',
  '**Occupancy**: cudaOccupancyMaxActiveBlocksPerMultiprocessor’s arithmetic (cuda_occupancy.h) from ptxas’s registers and static shared memory, the launch’s threads and dynamic shared memory; H100/H200 use the sm_90 build, A100 the sm_80 build.',
  '**Floors** (H200: 4.8 TB/s, 132 SMs at 1.98 GHz; H100: 3.35 TB/s): bytes (bench/lib/roofline.mjs: each tensor once) / bandwidth; exp2 count (one per element·state) / (16 per clock per SM); executed thread-instructions (per element·state × batch·dim·L·N) / (4 warp-instructions = 128 per clock per SM). The largest binds; the prediction is that floor (perfect overlap and latency hiding).',
];

function issueTable(loop, stepsOf) {
  const s1f = loop(BENCH_CASES.find((c) => c.name === 'S1 fwd').spec);
  const s3f = loop(BENCH_CASES.find((c) => c.name === 'S3 fwd').spec);
  const s1b = loop(BENCH_CASES.find((c) => c.name === 'S1 bwd').spec);
  const f16 = loop(`fwd:f16:2x64x${FWD_LONG_L}x16`);
  const bf16 = loop(`fwd:bf16:2x64x${FWD_LONG_L}x16`);
  const executed = (l) => (l ? `${f1(l.perElementState)} (${f1(l.issuesPerIteration)} per iteration)` : '–');
  const mamba = (shape, direction) =>
    mambaKernel(
      GPU_SCAN.find((x) => x.name === shape),
      direction,
    ).measured;
  const mambaExecuted = (m) => `${f1(m.perElementState)} (${f1(m.perIteration)} per iteration)`;
  const [mf, ms, mb] = [mamba('S1', 'forward'), mamba('S3', 'forward'), mamba('S1', 'backward')];
  const issue = MAMBA_ISSUE_COUNTS;
  return mdTable(
    ['measure', 'ours (this tool)', 'ours (issue #11)', 'mamba_ssm (this tool)', 'mamba_ssm (issue #11)'],
    [
      [
        `executed, forward, S1 (ours ${stepsOf(BENCH_CASES.find((c) => c.name === 'S1 fwd').spec)} steps per lane; mamba 128 threads × 16)`,
        executed(s1f),
        ISSUE_OURS.forward.executed,
        mambaExecuted(mf),
        issue.forward.executed,
      ],
      [
        `executed, forward at L = 64 (S3; ours ${stepsOf(BENCH_CASES.find((c) => c.name === 'S3 fwd').spec)} steps per lane; mamba 32 × 4, half of them padding)`,
        executed(s3f),
        ISSUE_OURS.forward.executedShort,
        mambaExecuted(ms),
        issue.forward.executedShort,
      ],
      [
        `executed, backward, S1 (ours ${stepsOf(BENCH_CASES.find((c) => c.name === 'S1 bwd').spec)} steps per lane)`,
        executed(s1b),
        ISSUE_OURS.backward.executed,
        mambaExecuted(mb),
        issue.backward.executed,
      ],
      [
        'static per ex2, forward',
        f1(s1f?.staticPerEx2),
        ISSUE_OURS.forward.staticPerEx2,
        f1(mf.staticPerEx2),
        issue.forward.staticPerEx2,
      ],
      [
        'static per ex2, backward',
        f1(s1b?.staticPerEx2),
        ISSUE_OURS.backward.staticPerEx2,
        f1(mb.staticPerEx2),
        issue.backward.staticPerEx2,
      ],
      [
        'forward state loop per iteration, f16 vs bf16',
        `${f1(f16?.issuesPerIteration)} vs ${f1(bf16?.issuesPerIteration)}`,
        `${ISSUE_OURS.perIteration.float16} vs ${ISSUE_OURS.perIteration.bfloat16}`,
        '–',
        issue.float16,
      ],
    ],
    ['l', 'r', 'r', 'r', 'r'],
  );
}

function launchTable(res) {
  const rows = [];
  for (const c of res.cases) {
    for (const l of c.launches ?? []) {
      const sim = l.sim;
      const per = sim ? executedPerElement(l, caseElements(c.spec)) : null;
      rows.push([
        c.name,
        `\`${l.kernel}\``,
        `${l.grid.filter((x, i) => i === 0 || x > 1).join('×')} × ${l.block[0]}`,
        kb(l.sharedBytes),
        occText(l.occupancy.H200),
        occText(l.occupancy.A100),
        f1(per?.stateLoop),
        f1(sim?.stateLoop?.issuesPerIteration),
        pct(sim?.stateLoop?.laneUtilization),
        per?.whole ? `${f1(per.whole)} (whole block)` : f1(per?.chunk),
        sim?.error ? `interpreter: ${sim.error}` : sim?.stateLoop && !sim.stateLoop.fullChunk ? 'not a full chunk' : '',
      ]);
    }
  }
  return mdTable(
    [
      'case',
      'kernel',
      'grid × block',
      'dyn. smem',
      'occupancy H100/H200',
      'A100',
      'executed / el·state',
      'per iteration',
      'lanes busy',
      'per chunk / el·state',
      'note',
    ],
    rows,
    ['l', 'l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
  );
}

function rooflineTable(res) {
  return mdTable(
    [
      'case',
      'bytes',
      'memory',
      'exp2',
      'issue (state loop)',
      'issue (per chunk)',
      'binds',
      'predicted',
      'H100 predicted',
      'mamba_ssm issue',
      'mamba_ssm binds',
      'mamba_ssm predicted',
      'ours / mamba_ssm',
      'the same, per chunk',
    ],
    res.roofline.map((r) => {
      const m = r.mamba;
      return [
        r.case,
        `${f3(r.bytes / 1e9)} GB`,
        f3(r.ours.H200.memory),
        f3(r.ours.H200.exp2),
        `${f3(r.ours.H200.issue)}${r.executed?.whole ? ' (whole)' : ''}`,
        f3(r.oursChunk?.H200.issue),
        r.ours.H200.bound,
        f3(r.ours.H200.predictedMs),
        f3(r.ours.H100.predictedMs),
        f3(m?.H200.issue),
        m ? m.H200.bound : '–',
        f3(m?.H200.predictedMs),
        m ? `${f3(r.ours.H200.predictedMs / m.H200.predictedMs)}×` : '–',
        m && r.oursChunk ? `${f3(r.oursChunk.H200.predictedMs / m.chunk.H200.predictedMs)}×` : '–',
      ];
    }),
    ['l'],
  );
}

function kernelTable(res) {
  // One row per kernel: resources per architecture, counts from the simulated architecture.
  const sim = res.toolchain.simArch;
  const instance = new Map();
  for (const c of res.instances) {
    for (const l of c.launches ?? [])
      if (l.sim && !instance.has(l.kernel)) instance.set(l.kernel, { ...l, spec: c.case });
  }
  const byLabel = new Map();
  for (const k of res.kernels) {
    if (!byLabel.has(k.label)) byLabel.set(k.label, {});
    byLabel.get(k.label)[k.arch] = k;
  }
  const archs = res.toolchain.archs;
  // By name, whatever order the compiler instantiated them in.
  const byName = [...byLabel].sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }));
  const rows = byName.map(([label, perArch]) => {
    const k = perArch[sim] ?? Object.values(perArch)[0];
    const l = instance.get(label);
    const per = l ? executedPerElement(l, caseElements(l.spec)) : null;
    const each = (f) => archs.map((a) => (perArch[a] ? f(perArch[a]) : '–')).join(' / ');
    const loop = k.stateLoops[0];
    return [
      `\`${label}\``,
      each((x) => x.registers ?? '–'),
      each((x) => (x.spillStores || x.spillLoads || x.stack ? `${x.stack}, ${x.spillStores}/${x.spillLoads}` : '0')),
      k.sharedStatic,
      k.launchBounds.maxThreads
        ? `${k.launchBounds.maxThreads}${k.launchBounds.minBlocksPerSM ? `, ${k.launchBounds.minBlocksPerSM}` : ''}`
        : '–',
      l ? `${occText(l.occupancy.H200)} / ${pct(l.occupancy.A100?.occupancy)}` : '–',
      loop ? `${f1(loop.staticPerEx2)} (${loop.instructions}/${loop.ex2})` : '–',
      f1(per?.stateLoop ?? per?.whole),
      f1(l?.sim?.stateLoop?.issuesPerIteration),
      f1(per?.chunk),
    ];
  });
  return mdTable(
    [
      'kernel',
      `registers (${archs.join(' / ')})`,
      `stack, spill st/ld B (${archs.join(' / ')})`,
      'static smem B',
      'launch bounds',
      'occupancy H100/H200 / A100',
      'static per ex2',
      'executed / el·state',
      'per iteration',
      'per chunk',
    ],
    rows,
    ['l'],
  );
}

function blocksSection(res, loop) {
  const out = [];
  for (const name of ['S1 fwd', 'S3 fwd', 'S1 bwd']) {
    const c = BENCH_CASES.find((x) => x.name === name);
    const l = loop(c.spec);
    if (!l) continue;
    const label = mainLaunch(res.cases.find((x) => x.spec === c.spec))?.kernel;
    const kernel = res.kernels.find((k) => k.label === label && k.arch === res.toolchain.simArch);
    const issued = l.issuedBlocks.map((b) => `${b.label} ${f1(b.perIteration)}`).join(', ');
    out.push(
      `- ${name}, \`${label}\` in \`${kernel?.ptx}\`, state loop \`${l.label}\` (${l.issuedBlocks.length + l.skippedBlocks.length} blocks, ${l.staticInstructions} instructions): ` +
        `issued per iteration (instructions): ${issued}. Skipped: ${l.skippedBlocks.join(', ') || 'none'}.`,
    );
  }
  return out.join('\n');
}

function markdown(res) {
  const out = [];
  out.push('## selective-scan kernel statistics (no GPU: ptxas, PTX and a PTX interpreter)');
  out.push('');
  out.push(
    [
      `date ${res.date}, commit ${res.commit.hash?.slice(0, 12) ?? 'unknown'}${res.commit.clean === false ? ' (tree modified)' : res.commit.clean ? ' (clean)' : ''}`,
      `nvcc ${res.toolchain.nvcc}, \`${res.toolchain.flags.join(' ')}\`, ${res.toolchain.archs.join(', ')}; the interpreter runs the ${res.toolchain.simArch} PTX`,
      `sources: ${res.sources.map((x) => `\`${x}\``).join(', ')}`,
      `host ${res.host.cpu}, ${res.host.logicalCpus} CPUs; ${res.seconds.toFixed(0)} s, ${res.compiled} of ${res.sources.length * res.toolchain.archs.length} nvcc compiles (the others cached)`,
      ...(res.interpreterCheck
        ? [
            `interpreter check: the forward and backward at ${shapeText(CHECK_SHAPE)}, float32, run whole in the interpreter (${res.interpreterCheck.kernels} launches, ${res.interpreterCheck.issues} warp instructions) ` +
              `${res.interpreterCheck.pass ? 'match' : '**do not match**'} the plain JS loop (bench/lib/jsref.mjs): worst relative error ${res.interpreterCheck.worst.toExponential(1)} over out, du, ddelta, dz, dA, dB, dC, dD`,
          ]
        : []),
    ]
      .map((l) => `- ${l}`)
      .join('\n'),
  );
  out.push('', '### How the counts are made', '', METHOD.map((m) => `- ${m}`).join('\n'));
  const launchOf = (spec) =>
    mainLaunch([...res.cases, ...res.instances].find((c) => c.spec === spec || c.case === spec));
  const loop = (spec) => launchOf(spec)?.sim?.stateLoop ?? null;
  const stepsOf = (spec) => stepsPerLane(launchOf(spec)?.kernel);
  if (res.cases.some((c) => c.launches)) {
    out.push(
      '',
      '### The state loop: issue #11’s table (sm_90, bf16, per element·state)',
      '',
      issueTable(loop, stepsOf),
      '',
      res.issueTableNote,
    );
    out.push(
      '',
      '### Benchmark shapes: launches and occupancy (bf16, input-dependent B/C, z, D, softplus)',
      '',
      launchTable(res),
    );
  }
  out.push('', '### Roofline: three floors per shape (H200; ms)', '', rooflineTable(res));
  const rates = peakRates(GPUS.H200);
  out.push(
    '',
    `H200 peaks: ${f3(rates.bytesPerSecond / 1e12)} TB/s, ${f3(rates.exp2PerSecond / 1e12)} T exp2/s, ${f3(rates.instructionsPerSecond / 1e12)} T thread-instructions/s: ` +
      `the issue floor passes the exp2 floor above ${rates.instructionsPerSecond / rates.exp2PerSecond} instructions per element·state. ` +
      '“issue (state loop)” is what issue #11’s model counts (the step: its whole kernel); “per chunk” adds the rest of each chunk, for both (the last column compares the predictions with it). ' +
      `mamba_ssm: ${MAMBA_SOURCE}; its instruction counts are this tool’s, measured on its PTX outside the repository (bench/lib/mamba-reference.mjs says how), its bytes the same model plus its (a, b) checkpoints (2N floats per 2048 steps, written in the forward too).`,
  );
  if (res.cases.some((c) => c.launches)) out.push('', '### The step: bytes in flight per SM', '', inFlightSection(res));
  out.push(
    '',
    `### Kernels (every instantiation; executed counts from the ${res.toolchain.simArch} PTX at N = 16)`,
    '',
    kernelTable(res),
  );
  if (res.cases.some((c) => c.launches))
    out.push('', '### Blocks issued (state loop, per iteration)', '', blocksSection(res, loop));
  out.push('', '### mamba_ssm’s kernels at the benchmark shapes (recorded, sm_90, bf16)', '');
  out.push(
    mdTable(
      [
        'shape',
        'direction',
        'threads × items',
        'registers',
        'stack B',
        'spill st / ld B',
        'dyn. smem',
        'occupancy H100/H200',
        'static per ex2',
        'executed / el·state',
        'per iteration',
        'per chunk',
      ],
      res.mamba.map((m) => [
        m.shape,
        m.direction,
        `${m.threads} × ${m.items}${m.even ? '' : ' (not even)'}`,
        m.registers,
        m.stack,
        `${m.spillStores} / ${m.spillLoads}`,
        kb(m.dynamicShared),
        occText(m.occupancy),
        f1(m.measured.staticPerEx2),
        f1(m.measured.perElementState),
        f1(m.measured.perIteration),
        f1(m.measured.perChunk),
      ]),
      ['l', 'l'],
    ),
  );
  if (res.notes.length) out.push('', '### Notes', '', res.notes.map((n) => `- ${n}`).join('\n'));
  return `${out.join('\n')}\n`;
}

/** The step's loads in flight per SM at the benchmark shapes (loadsInFlight). */
function inFlightSection(res) {
  const rows = [];
  for (const c of res.cases) {
    if (!c.spec.startsWith('step')) continue;
    for (const l of c.launches ?? []) {
      const f = l.inFlight;
      if (!f) continue;
      const gpu = (name) =>
        f[name]
          ? `${kb(f[name].perSM)} of ${kb(f[name].needed)} (${pct(f[name].fraction)}; ${f[name].warps} warps)`
          : '–';
      rows.push([
        c.name,
        `\`${l.kernel}\``,
        f.none ?? f.error ?? `${f.perWarp} B`,
        f1(f.loadsPerWarp),
        occText(l.occupancy.H200),
        gpu('H200'),
        gpu('H100'),
      ]);
    }
  }
  return (
    `${mdTable(
      [
        'shape',
        'kernel',
        'in flight per warp',
        'plain loads per warp',
        'occupancy H200',
        'per SM, H200: in flight of needed',
        'H100',
      ],
      rows,
      ['l', 'l'],
    )}\n\n` +
    'How: block 0 of the launch runs in the PTX interpreter; a plain global load (the state, x, dt, z, the slot indices; read-only `ld.global.nc` loads of A, B, C are left out: many rows share them, L1/L2 serve them) is in flight from its issue until the first instruction that reads its destination (where the SM, issuing in order, stalls the warp); “in flight per warp” is the largest sum of such bytes (bytes per lane × executing lanes) at any issue, over the block’s warps. Per SM: × the resident warps (what occupancy allows, or the grid’s warps / SMs where fewer). Needed: Little’s law, bandwidth per SM × an assumed loaded DRAM latency of ' +
    `${DRAM_LATENCY_US} µs (not measured here). The percentage, capped at 100 %, is an estimate of the fraction of copy bandwidth the kernel can reach; it ignores the tail of the grid, L2 hits and DRAM efficiency, which only a GPU run measures.`
  );
}

/** The lines of a failed command's output that say what failed (the compiler's errors). */
function firstErrors(message) {
  const lines = message.split('\n');
  const errors = lines.filter((l) => /error/i.test(l)).slice(0, 3);
  return (errors.length ? errors : lines.slice(0, 3)).join(' ').slice(0, 600);
}

// ---- main --------------------------------------------------------------------------------------------

async function main() {
  let o;
  try {
    o = parseOptions(process.argv.slice(2));
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
  if (o.help) {
    console.log(HELP);
    return;
  }
  const nvcc = findNvcc();
  if (nvcc.missing) {
    console.error(`kernel-stats: ${nvcc.missing}`);
    process.exit(2);
  }
  const notes = [];
  const analysis = await analyseKernels(o, nvcc);
  let results = null;
  let check = null;
  let instances = [];
  // The report is still written when the launch capture or the interpreter fails (ptxas's figures
  // stand on their own), but the run fails: a report without its executed counts must not pass
  // for a complete one.
  let simFailure = null;
  if (o.sim) {
    try {
      ({ results, check } = await captureAndSimulate(o, nvcc, analysis));
      if (!check.pass) simFailure = 'the interpreter check failed';
      if (!check.pass)
        notes.push(
          `The interpreter’s check FAILED (relative error ${check.worst.toExponential(1)} > ${CHECK_TOLERANCE}): its counts are not to be trusted.`,
        );
      instances = INSTANCE_CASES.map((spec) => ({ case: spec, spec, ...results.get(spec) }));
    } catch (e) {
      simFailure = `launch capture failed: ${firstErrors(e.message)}`;
      notes.push(
        `Launch capture failed, so no launches, occupancy at the benchmark shapes or executed counts (bench/kernel-stats/launch-capture.cc follows the ops' entry points): ${firstErrors(e.message)}`,
      );
    }
  } else {
    notes.push('--no-sim: no launch capture, occupancy at the benchmark shapes or executed counts.');
  }
  for (const [spec, r] of results ?? []) {
    if (r.status !== 0) notes.push(`${spec}: the host code returned CUDA error ${r.status}`);
    for (const l of r.launches)
      if (l.sim?.error) notes.push(`${spec}, ${l.kernel}: the interpreter stopped: ${l.sim.error}`);
  }
  const mamba = [];
  for (const s of GPU_SCAN) {
    for (const direction of ['forward', 'backward']) {
      const m = mambaKernel(s, direction);
      if (!m) continue;
      const occ = occupancy(
        GPUS.H200.sm,
        { registers: m.registers, staticShared: 0 },
        { threads: m.threads, dynamicShared: m.dynamicShared },
      );
      mamba.push({
        shape: s.name,
        direction,
        ...m,
        occupancy: { occupancy: occ.occupancy, limitedBy: occ.limitedBy, blocksPerSM: occ.blocks },
      });
    }
  }
  const cpu = cpuInfo();
  const res = {
    schema: 'selective-scan-kernel-stats/1',
    what: 'kernel-stats',
    date: today(),
    timestamp: new Date().toISOString(),
    command: `node bench/kernel-stats.mjs ${process.argv.slice(2).join(' ')}`.trim(),
    commit: commitInfo(),
    package: { version: JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).version },
    node: process.version,
    host: { cpu: cpu.name, logicalCpus: cpu.logicalCpus, slug: `cpu-${slugify(cpu.name)}-${cpu.logicalCpus}t` },
    toolchain: { nvcc: nvcc.version, flags: NVCC_FLAGS, archs: o.archs, simArch: simArch(o) },
    gpus: GPUS,
    method: METHOD,
    sources: analysis.sources,
    compiled: analysis.units.filter((u) => u.compiled).length,
    kernels: analysis.kernels.map(({ fn, module, ...k }) => k),
    cases: BENCH_CASES.map((c) => ({
      name: c.name,
      spec: c.spec,
      ...(results?.get(c.spec) ?? {}),
      buffers: undefined,
    })),
    // The instances without their block lists (the benchmark cases keep theirs).
    instances: instances.map((c) => ({
      ...c,
      buffers: undefined,
      launches: c.launches?.map((l) =>
        l.sim?.stateLoop
          ? {
              ...l,
              sim: { ...l.sim, stateLoop: { ...l.sim.stateLoop, issuedBlocks: undefined, skippedBlocks: undefined } },
            }
          : l,
      ),
    })),
    roofline: roofline(results),
    interpreterCheck: check,
    mamba,
    issueTableNote: '',
    notes,
    seconds: 0,
  };
  const loop = (spec) => mainLaunch(results?.get(spec))?.sim?.stateLoop ?? null;
  res.issueTableNote = issueTableNote(loop(BENCH_CASES[0].spec), loop(`fwd:f16:2x64x${FWD_LONG_L}x16`));
  res.seconds = (performance.now() - START) / 1000;
  const md = markdown(res);
  process.stdout.write(md);
  // An explicit --json is written even with --no-save: that was the caller's request.
  if (o.save || o.json) {
    const dir = o['out-dir'] ?? join(repoRoot, 'bench', 'results');
    const json = o.json ?? join(dir, `${res.date}-${res.host.slug}-kernel-stats.json`);
    mkdirSync(join(json, '..'), { recursive: true });
    writeFileSync(json, `${JSON.stringify(res, null, 1)}\n`);
    writeFileSync(json.replace(/\.json$/, '.md'), md);
    log(`wrote ${json} and .md`);
  }
  if (simFailure) {
    console.error(`kernel-stats: ${simFailure} (the report says so in its notes)`);
    process.exitCode = 1;
  }
}

/** Why this tool's executed counts differ from the issue's (see bench/README.md). */
function issueTableNote(forward, f16) {
  if (!forward) return '';
  const p = forward.lanePath;
  const mamba = mambaKernel(GPU_SCAN[0], 'forward').measured;
  return (
    'The column “ours (issue #11)” is the kernels the issue reviewed; the report of 2026-12-01 (bench/results) measured them with this tool (forward S1 35.9 executed, 54.6 static per ex2; its static counts equal the issue’s, its executed ones are what the warp issues where the issue seems to have walked one thread’s path). ' +
    'The executed counts are what the warp issues: where lanes take different sides of a branch, the warp issues both sides. ' +
    `One lane’s own path through an iteration of the forward S1 loop is ${f1(p.min)} (lane ${p.minLane}) to ${f1(p.max)} (lane ${p.maxLane}) instructions; the warp issues ${f1(forward.issuesPerIteration)}` +
    (f16
      ? ` (f16: ${f1(f16.lanePath.min)} to ${f1(f16.lanePath.max)}; the warp ${f1(f16.issuesPerIteration)}). `
      : '. ') +
    `mamba_ssm’s lanes diverge less (one lane’s path 311 to 334 per iteration of its forward, ${f1(mamba.perIteration)} issued), so this tool’s counts of its kernels are within about 1 per element·state of the issue’s executed ones; its static counts come out 2 to 3 per ex2 above the issue’s, which this tool cannot explain without the PTX the issue counted.`
  );
}

main().catch((e) => {
  console.error(e.stack ?? e.message);
  process.exit(1);
});
