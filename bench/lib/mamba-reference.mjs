// mamba_ssm's selective-scan CUDA kernels, the peer our kernels are measured against, as recorded
// (not measured by kernel-stats, which has no copy of them). Quoted from issue #11 and from the
// peer build the project keeps outside the repository:
//  - Source: state-spaces/mamba at commit e9594ce1c732d97440f0332fdc43170a2294dbfa (2026-07-23),
//    csrc/selective_scan/, compiled unchanged for sm_90 with nvcc 13.0.88 and the flags a torch
//    extension build gives them (torch's COMMON_NVCC_FLAGS, then mamba's setup.py: -O3
//    --use_fast_math --expt-relaxed-constexpr --expt-extended-lambda -lineinfo), real (float32)
//    weights, input-dependent B and C, z, softplus, as our benchmark calls them.
//  - Registers / stack / spills: ptxas -v of those builds, for the kernel specialisations the
//    benchmark shapes select (mamba picks threads x items by L: 128 x 16 for L > 1024, 32 x 4 for
//    L <= 128; "even" when L is a multiple of threads x items).
//  - Launches: mamba's own launcher, run on the host (grid (batch, dim), dynamic shared memory).
//  - Instructions per element·state: issue #11's table, counted in the sm_90 PTX of those kernels
//    (the state loop along the full-chunk path; the static count of the innermost exp2 loop body
//    per ex2), by the session that filed the issue.
// mamba_ssm's selective_state_update (the step) is a Triton kernel, not part of that build: no
// figures for the step.

export const MAMBA_SOURCE =
  'state-spaces/mamba e9594ce (2026-07-23), csrc/selective_scan, nvcc 13.0.88 -O3 --use_fast_math, sm_90';

/** Issue #11's mamba_ssm column (per element·state; sm_90, bf16). */
export const MAMBA_COUNTS = {
  forward: { executed: 20, executedShort: 112, staticPerEx2: 19.9, note: '128 threads x 16 items' },
  backward: { executed: 72, staticPerEx2: 71.8 },
  shortNote: 'at L = 64 (S3): 32 threads x 4 items = 128 steps for 64, half the lanes idle',
  float16: 'hardware conversion (cuda_fp16), same loop as bf16',
};

/** Issue #11's "ours" column, the counts this tool reproduces (or explains). */
export const ISSUE_OURS = {
  forward: { executed: 31, executedShort: 74, staticPerEx2: 54.6 },
  backward: { executed: 106, staticPerEx2: 167.5 },
  perIteration: { float16: 689, bfloat16: 249 },
};

// ptxas -v (sm_90) of the specialisations used at the benchmark shapes, bf16, and their launches.
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

/**
 * mamba_ssm's kernel for a scan shape (bf16) and direction ('forward' | 'backward'): its
 * resources, launch (grid = batch x dim blocks) and instructions per element·state, or null where
 * the record has none (the step; L between 128 and 1024, which the benchmark does not use).
 */
export function mambaKernel(shape, direction) {
  const { L } = shape;
  const spec = L > 1024 ? LONG : L <= 128 ? SHORT : null;
  if (!spec) return null;
  const k = spec[direction];
  const executed =
    direction === 'forward'
      ? L <= 128
        ? MAMBA_COUNTS.forward.executedShort
        : MAMBA_COUNTS.forward.executed
      : L <= 128
        ? null // not in the issue's table
        : MAMBA_COUNTS.backward.executed;
  return { ...k, grid: shape.batch * shape.dim, staticShared: 0, executedPerElementState: executed };
}
