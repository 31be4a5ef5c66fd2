// A paper model of the GPUs the kernels are written for, for kernel-stats (no GPU needed):
// datasheet figures, the occupancy a launch gets, and three time floors per launch.
//
// Sources of the figures:
//  - SMs, boost clock, memory bandwidth: NVIDIA's H100 and H200 product briefs / datasheets
//    (H100 SXM5: 132 SMs, 1.98 GHz boost, HBM3 3.35 TB/s; H200 SXM: 132 SMs, 1.98 GHz, HBM3e
//    4.8 TB/s) and the A100 datasheet (A100 SXM4 80 GB: 108 SMs, 1.41 GHz boost, HBM2e 2.039 TB/s).
//  - Per-SM limits (registers, threads, blocks, shared memory, allocation granularities): the CUDA
//    C++ Programming Guide, "Compute Capabilities" (8.0 and 9.0), and cuda_occupancy.h of the CUDA
//    toolkit, whose block-limit arithmetic occupancy() follows.
//  - Throughputs per SM per clock: the Programming Guide's "Arithmetic Instructions" table:
//    16 results of exp2 / log2 / reciprocal (the special-function unit, MUFU) for 8.0 and 9.0;
//    instruction issue: 4 schedulers, one warp instruction each per clock = 128 thread-instructions.

const SM80 = {
  arch: 'sm_80',
  regsPerSM: 65536,
  regsPerBlock: 65536,
  maxRegsPerThread: 255,
  regAllocationUnit: 256, // registers, per warp
  subPartitions: 4,
  maxThreadsPerSM: 2048,
  maxThreadsPerBlock: 1024,
  maxBlocksPerSM: 32,
  sharedPerSM: 164 * 1024,
  sharedPerBlockOptIn: 163 * 1024,
  sharedReservedPerBlock: 1024, // the driver's per-block reservation (cudaDevAttrReservedSharedMemoryPerBlock)
  sharedAllocationUnit: 128,
  barriersPerBlockSlot: 2, // named barriers available = 2 per resident block slot (cuda_occupancy.h)
  mufuPerClock: 16,
  issuePerClock: 128,
};
const SM90 = { ...SM80, arch: 'sm_90', sharedPerSM: 228 * 1024, sharedPerBlockOptIn: 227 * 1024 };

export const GPUS = {
  H100: { name: 'H100 SXM5', sm: SM90, sms: 132, clockGHz: 1.98, bandwidthTBps: 3.35 },
  H200: { name: 'H200 SXM', sm: SM90, sms: 132, clockGHz: 1.98, bandwidthTBps: 4.8 },
  A100: { name: 'A100 SXM4 80 GB', sm: SM80, sms: 108, clockGHz: 1.41, bandwidthTBps: 2.039 },
};

const roundUp = (x, unit) => Math.ceil(x / unit) * unit;

/**
 * Resident blocks and warps per SM for a launch, as cudaOccupancyMaxActiveBlocksPerMultiprocessor
 * computes them (default carveout: all the SM's shared memory available).
 *   kernel: { registers, staticShared (bytes), barriers }   launch: { threads, dynamicShared }
 * Returns { blocks, warps, occupancy (resident warps / 64), limitedBy: 'warps' | 'registers' |
 * 'shared memory' | 'blocks' | 'barriers', limits: {...} }; blocks 0 when the launch cannot run.
 */
export function occupancy(sm, kernel, launch) {
  const warpsPerBlock = Math.ceil(launch.threads / 32);
  const limits = {};
  limits.blocks = sm.maxBlocksPerSM;
  limits.warps = launch.threads > sm.maxThreadsPerBlock ? 0 : Math.floor(sm.maxThreadsPerSM / 32 / warpsPerBlock);
  const regsPerWarp = roundUp(kernel.registers * 32, sm.regAllocationUnit);
  const assumedPerBlock = regsPerWarp * roundUp(warpsPerBlock, sm.subPartitions);
  if (kernel.registers > sm.maxRegsPerThread || assumedPerBlock > sm.regsPerBlock) limits.registers = 0;
  else if (regsPerWarp === 0) limits.registers = Number.POSITIVE_INFINITY;
  else {
    const warpsPerSubPartition = Math.floor(sm.regsPerSM / sm.subPartitions / regsPerWarp);
    limits.registers = Math.floor((warpsPerSubPartition * sm.subPartitions) / warpsPerBlock);
  }
  const sharedPerBlock = roundUp(
    (kernel.staticShared ?? 0) + sm.sharedReservedPerBlock + (launch.dynamicShared ?? 0),
    sm.sharedAllocationUnit,
  );
  limits['shared memory'] =
    sharedPerBlock > sm.sharedPerBlockOptIn + sm.sharedReservedPerBlock
      ? 0
      : Math.floor(sm.sharedPerSM / sharedPerBlock);
  limits.barriers = kernel.barriers
    ? Math.floor((sm.barriersPerBlockSlot * sm.maxBlocksPerSM) / kernel.barriers)
    : Number.POSITIVE_INFINITY;
  let limitedBy = 'blocks';
  for (const [k, v] of Object.entries(limits)) if (v < limits[limitedBy]) limitedBy = k;
  const blocks = limits[limitedBy];
  const warps = blocks * warpsPerBlock;
  return { blocks, warps, occupancy: warps / (sm.maxThreadsPerSM / 32), limitedBy, sharedPerBlock, limits };
}

/** Peak rates of a GPU: bytes/s, exp2/s (MUFU), thread-instructions/s. */
export function peakRates(gpu) {
  const clock = gpu.clockGHz * 1e9;
  return {
    bytesPerSecond: gpu.bandwidthTBps * 1e12,
    exp2PerSecond: gpu.sm.mufuPerClock * gpu.sms * clock,
    instructionsPerSecond: gpu.sm.issuePerClock * gpu.sms * clock,
  };
}

/**
 * The three floors of a piece of work on a GPU, in milliseconds: bytes / bandwidth, exp2
 * evaluations / the MUFU rate, executed thread-instructions / the issue rate; the largest binds
 * and is the predicted time (a floor: perfect overlap, full occupancy, no latency).
 *   work: { bytes, exps, instructions }
 */
export function floors(work, gpu) {
  const rates = peakRates(gpu);
  const ms = {
    memory: (work.bytes / rates.bytesPerSecond) * 1e3,
    exp2: (work.exps / rates.exp2PerSecond) * 1e3,
    issue:
      work.instructions === null || work.instructions === undefined
        ? null
        : (work.instructions / rates.instructionsPerSecond) * 1e3,
  };
  let bound = 'memory';
  for (const k of ['exp2', 'issue']) if (ms[k] !== null && ms[k] > ms[bound]) bound = k;
  return { ...ms, bound, predictedMs: ms[bound] };
}
