// mamba_ssm's selective-scan CUDA kernels, the peer our kernels are measured against, as recorded
// (kernel-stats has no copy of them in the repository):
//  - Source: state-spaces/mamba at commit e9594ce1c732d97440f0332fdc43170a2294dbfa (2026-07-23),
//    csrc/selective_scan/, compiled unchanged for sm_90 with nvcc 13.0.88 and the flags a torch
//    extension build gives them (torch's COMMON_NVCC_FLAGS, then mamba's setup.py: -O3
//    --use_fast_math --expt-relaxed-constexpr --expt-extended-lambda -lineinfo), real (float32)
//    weights, input-dependent B and C, z, softplus, as our benchmark calls them; bf16.
//  - Registers / stack / spills: ptxas -v of that build, for the kernel specialisations the
//    benchmark shapes select (mamba picks threads x items by L: 128 x 16 for L > 1024, 32 x 4 for
//    L <= 128; "even" when L is a multiple of threads x items).
//  - Launches (grid (batch, dim), dynamic shared memory): mamba's own launcher, run on the host.
//  - MEASURED: kernel-stats' own counts, made outside the repository (the project's peer build of
//    the sources above, to PTX, with the same flags; the launch its harness makes at each shape,
//    captured with kernel-stats/cudart-stub.cc; block 0 in lib/ptx-sim.mjs, counted by
//    lib/kernel-sim.mjs exactly as ours are; inputs zero, which its state loop does not branch on:
//    its options are template parameters). At L = 64 its 32 threads x 4 items cover 128 steps and
//    the exp2 runs on the 64 padding steps too, so per real element·state the count is twice the
//    count per exp2.
//  - ISSUE: issue #11's mamba_ssm column, counted by the session that filed it (most likely one
//    thread's walk through the PTX: it lies within the measured per-lane range, 311 to 334 per
//    iteration of 16 steps in the forward).
// mamba_ssm's selective_state_update (the step) is a Triton kernel, not part of that build: no
// figures for the step.

export const MAMBA_SOURCE =
  'state-spaces/mamba e9594ce (2026-07-23), csrc/selective_scan, nvcc 13.0.88 -O3 --use_fast_math, sm_90';

/** Issue #11's mamba_ssm column (per element·state; sm_90, bf16). */
export const MAMBA_ISSUE_COUNTS = {
  forward: { executed: 20, executedShort: 112, staticPerEx2: 19.9 },
  backward: { executed: 72, staticPerEx2: 71.8 },
  float16: 'hardware conversion (cuda_fp16), same loop as bf16',
};

/** Issue #11's "ours" column, the counts this tool reproduces (or explains). */
export const ISSUE_OURS = {
  forward: { executed: 31, executedShort: 74, staticPerEx2: 54.6 },
  backward: { executed: 106, staticPerEx2: 167.5 },
  perIteration: { float16: 689, bfloat16: 249 },
};

// The two specialisations the benchmark shapes use: ptxas -v (sm_90) and the launch.
const LONG = {
  forward: {
    threads: 128,
    items: 16,
    even: true,
    registers: 128,
    stack: 0,
    spillStores: 0,
    spillLoads: 0,
    dynamicShared: 10560,
  },
  backward: {
    threads: 128,
    items: 16,
    even: true,
    registers: 168,
    stack: 128,
    spillStores: 204,
    spillLoads: 240,
    dynamicShared: 34640,
  },
};
const SHORT = {
  forward: {
    threads: 32,
    items: 4,
    even: false,
    registers: 76,
    stack: 0,
    spillStores: 0,
    spillLoads: 0,
    dynamicShared: 2592,
  },
  backward: {
    threads: 32,
    items: 4,
    even: false,
    registers: 140,
    stack: 0,
    spillStores: 0,
    spillLoads: 0,
    dynamicShared: 8376,
  },
};

// kernel-stats' counts of its state loop at each benchmark shape: executed per real element·state,
// issues per iteration (one state), static per ex2, executed per chunk (the chunk's other work
// included) per real element·state.
const MEASURED = {
  S1: {
    forward: { perElementState: 21.2, perIteration: 339, staticPerEx2: 21.9, perChunk: 25.5 },
    backward: { perElementState: 73.0, perIteration: 1168, staticPerEx2: 74.7, perChunk: 78.7 },
  },
  S2: {
    forward: { perElementState: 21.2, perIteration: 339, staticPerEx2: 21.9, perChunk: 25.5 },
    backward: { perElementState: 73.4, perIteration: 1174, staticPerEx2: 74.7, perChunk: 79.1 },
  },
  S3: {
    forward: { perElementState: 117.5, perIteration: 235, staticPerEx2: 60, perChunk: 131.3 },
    backward: { perElementState: 236, perIteration: 472, staticPerEx2: 124.8, perChunk: 257 },
  },
  S4: {
    forward: { perElementState: 21.2, perIteration: 339, staticPerEx2: 21.9, perChunk: 21.7 },
    backward: { perElementState: 73.4, perIteration: 1174, staticPerEx2: 74.7, perChunk: 74.1 },
  },
};

/**
 * mamba_ssm's kernel at a benchmark shape (bench/lib/shapes.mjs GPU_SCAN, bf16) and direction
 * ('forward' | 'backward'): resources, launch (grid = batch x dim blocks) and measured counts, or
 * null for a shape without a record.
 */
export function mambaKernel(shape, direction) {
  const measured = MEASURED[shape.name]?.[direction];
  if (!measured) return null;
  const spec = shape.L > 1024 ? LONG : SHORT;
  return { ...spec[direction], grid: shape.batch * shape.dim, staticShared: 0, measured };
}
