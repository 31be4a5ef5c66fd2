// The standard benchmark shapes (issue: "Benchmarks with a roofline"). All scans: input-dependent
// B and C of shape (batch, N, L), z, D, deltaSoftplus. The CPU runs smaller variants of S1-S4 by
// default (2 cores take minutes over the full shapes); --full-cpu runs the GPU shapes on the CPU.

export const GPU_SCAN = [
  { name: 'S1', batch: 8, dim: 4096, L: 2048, N: 16 },
  { name: 'S2', batch: 1, dim: 4096, L: 65536, N: 16, heavy: true, note: 'long' },
  { name: 'S3', batch: 64, dim: 2048, L: 64, N: 16, note: 'short' },
  { name: 'S4', batch: 4, dim: 2048, L: 4096, N: 128, heavy: true, note: 'large state' },
];

// torchReps: repetitions of the PyTorch CPU baseline (0: skipped unless --torch-all; S2-cpu takes
// ~35 s per repetition on 2 cores).
export const CPU_SCAN = [
  { name: 'S1-cpu', of: 'S1', batch: 2, dim: 256, L: 1024, N: 16, ratio: true, torchReps: 5 },
  { name: 'S2-cpu', of: 'S2', batch: 1, dim: 256, L: 16384, N: 16, note: 'long', torchReps: 0 },
  { name: 'S3-cpu', of: 'S3', batch: 16, dim: 256, L: 64, N: 16, note: 'short', torchReps: 5 },
  { name: 'S4-cpu', of: 'S4', batch: 1, dim: 256, L: 1024, N: 128, note: 'large state', torchReps: 1 },
];

// Tiny shapes for --simulate-gpu (runs the GPU code path on the CPU, to test the harness).
export const SIM_SCAN = [
  { name: 'S1-sim', of: 'S1', batch: 2, dim: 64, L: 512, N: 16 },
  { name: 'S3-sim', of: 'S3', batch: 8, dim: 64, L: 64, N: 16 },
  { name: 'S4-sim', of: 'S4', batch: 1, dim: 32, L: 512, N: 128, heavy: true },
];

/** The ratio shape of the issue: CPU backend vs the PyTorch float32 sequential loop. */
export const RATIO_SHAPE = { batch: 2, dim: 256, L: 1024, N: 16 };

export const STEP_BATCHES = [1, 64, 256];
export const STEP_DIM = 5120;
export const STEP_N = 16;
export const STEP_HEADS = { H: 80, P: 64 }; // dim 5120 as 80 heads of 64 (Mamba-2's head size)

export function stepCases(batches) {
  const out = [];
  for (const batch of batches) {
    out.push({ name: `step-b${batch}-channels`, form: 'channels', batch, dim: STEP_DIM, N: STEP_N, G: 1 });
    out.push({ name: `step-b${batch}-heads`, form: 'heads', batch, ...STEP_HEADS, N: STEP_N, G: 1 });
  }
  return out;
}

// Time against L (the plot): float32, fixed batch, dim, N.
export const SWEEP = {
  cuda: { batch: 1, dim: 2048, N: 16, Ls: [256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536] },
  cudaQuick: { batch: 1, dim: 2048, N: 16, Ls: [512, 2048, 8192, 32768] },
  cpu: { batch: 1, dim: 256, N: 16, Ls: [256, 512, 1024, 2048, 4096, 8192, 16384] },
  cpuQuick: { batch: 1, dim: 256, N: 16, Ls: [256, 1024, 4096] },
  sim: { batch: 1, dim: 64, N: 16, Ls: [128, 256, 512, 1024] },
};

/** Parses 'BxDxLxN' (e.g. 2x256x1024x16) into a custom scan shape. */
export function parseShapeToken(token) {
  const m = /^(\d+)x(\d+)x(\d+)x(\d+)$/.exec(token);
  if (!m) return null;
  const [batch, dim, L, N] = m.slice(1).map(Number);
  return { name: token, batch, dim, L, N, torchReps: 3 };
}

export const shapeText = (s) => `(${s.batch}, ${s.dim}, ${s.L}, ${s.N})`;
export const stepShapeText = (s) =>
  s.form === 'channels' ? `(${s.batch}, ${s.dim}, N=${s.N})` : `(${s.batch}, ${s.H}x${s.P}, N=${s.N})`;
