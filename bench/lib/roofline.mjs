// Bytes and exp2 evaluations per op, as docs/ARCHITECTURE.md counts them: each tensor read or
// written once (the backward re-reads the inputs and writes each gradient once), checkpoints when
// saved (the scan's batch*dim*ceil(L/chunk)*N float32), one exp2 per (batch, dim, L, N) element
// per pass of the scan. One function per op; an op's bench module (bench/ops/) passes its rows'
// traffic to run.record(), which adds the roofline.

export const DTYPE_BYTES = { float32: 4, float16: 2, bfloat16: 2 };

const sum = (parts) => Object.values(parts).reduce((a, b) => a + b, 0);

/**
 * A scan case: { batch, dim, L, N, G } (G: groups of the input-dependent B and C; 1 for (batch, N, L)),
 * dtype, chunk (the backend's checkpoint interval), with z and D (the standard set).
 * Returns { bytes, exps, parts } for op fwd | fwd-save | bwd | bwd-det | fwd+bwd.
 */
export function scanTraffic(shape, dtype, op, chunk) {
  const { batch, dim, L, N } = shape;
  const G = shape.G ?? 1;
  const s = DTYPE_BYTES[dtype];
  const rowElems = batch * dim * L; // u, delta, z, out, dout, du, ddelta, dz
  const projElems = batch * G * N * L; // each of B, C, dB, dC
  const checkpoints = batch * dim * Math.ceil(L / chunk) * N * 4;
  const params = (dim * N + dim) * 4; // A, D (float32); likewise dA, dD
  const fwd = {
    'u, delta, z, out': 4 * rowElems * s,
    'B, C': 2 * projElems * s,
    'A, D': params,
  };
  const bwd = {
    'u, delta, z, dout (read)': 4 * rowElems * s,
    'du, ddelta, dz (written)': 3 * rowElems * s,
    'B, C (read), dB, dC (written)': 4 * projElems * s,
    checkpoints,
    'A, D, dA, dD': 2 * params,
  };
  return phases('scanTraffic', op, { fwd, bwd, exps: rowElems * N, extra: checkpoints });
}

/**
 * One selectiveStateUpdate: the state read and written (float32), x, dt, z, y, B, C in the dtype,
 * the float32 parameters. form 'channels': state (batch, dim, N), A (dim, N), one exp per state
 * element; form 'heads' (one scalar A and dt per head): state (batch, H, P, N), one exp per head.
 */
export function stepTraffic(step, dtype) {
  const s = DTYPE_BYTES[dtype];
  const { batch, N } = step;
  const G = step.G ?? 1;
  if (step.form === 'channels') {
    const dim = step.dim;
    const parts = {
      'state (read + written)': 2 * batch * dim * N * 4,
      'x, dt, z, y': 4 * batch * dim * s,
      'B, C': 2 * batch * G * N * s,
      'A, D': (dim * N + dim) * 4,
    };
    return { bytes: sum(parts), exps: batch * dim * N, parts };
  }
  const { H, P } = step;
  const parts = {
    'state (read + written)': 2 * batch * H * P * N * 4,
    'x, z, y': 3 * batch * H * P * s,
    dt: batch * H * s,
    'B, C': 2 * batch * G * N * s,
    'A, D, dtBias': 3 * H * 4,
  };
  return { bytes: sum(parts), exps: batch * H, parts };
}

/**
 * A causal depthwise convolution (causalConv1d) as a Mamba block runs it: x (batch, dim, L) in the
 * dtype, weight (dim, W) and bias (dim) float32, SiLU. Forward: x read, out written, one exp per
 * output (the SiLU). Backward: x and dout read, dx written, weight read, dweight and dbias written
 * (float32), the SiLU recomputed (one exp per element). op: fwd | bwd | fwd+bwd.
 */
export function convTraffic(shape, dtype, op) {
  const { batch, dim, L, W } = shape;
  const s = DTYPE_BYTES[dtype];
  const elems = batch * dim * L;
  const params = (dim * W + dim) * 4; // weight, bias; likewise dweight, dbias
  const fwd = { 'x, out': 2 * elems * s, 'weight, bias': params };
  const bwd = { 'x, dout (read), dx (written)': 3 * elems * s, 'weight, bias, dweight, dbias': 2 * params };
  return phases('convTraffic', op, { fwd, bwd, exps: elems, extra: 0 });
}

/**
 * One causalConv1dUpdate: the state (batch, dim, W - 1) in the dtype read and written (shifted in
 * place), x read, out written, weight and bias; one exp per output (the SiLU).
 */
export function convStepTraffic(step, dtype) {
  const { batch, dim, W } = step;
  const s = DTYPE_BYTES[dtype];
  const parts = {
    'state (read + written)': 2 * batch * dim * (W - 1) * s,
    'x, out': 2 * batch * dim * s,
    'weight, bias': (dim * W + dim) * 4,
  };
  return { bytes: sum(parts), exps: batch * dim, parts };
}

/**
 * A Mamba-2 scan (ssdScan) case { batch, L, H, P, G, N } with z, D, dtBias and softplus: x, z, out
 * (batch, L, H, P), dt (batch, L, H), B, C (batch, L, G, N) in the dtype; A, D, dtBias (H) float32;
 * chunk: the backend's checkpoint interval (batch·H·ceil(L/chunk)·P·N float32 when saved). One exp
 * per (batch, L, H), the fewest there are (the chunked matrix form evaluates more).
 * op: fwd | fwd-save | bwd | fwd+bwd.
 */
export function ssdTraffic(shape, dtype, op, chunk) {
  const { batch, L, H, P, N } = shape;
  const G = shape.G ?? 1;
  const s = DTYPE_BYTES[dtype];
  const elems = batch * L * H * P; // each of x, z, out, dout, dx, dz
  const dtElems = batch * L * H; // dt, ddt
  const projElems = batch * L * G * N; // each of B, C, dB, dC
  const params = 3 * H * 4; // A, D, dtBias; likewise dA, dD, ddtBias
  const checkpoints = batch * H * Math.ceil(L / chunk) * P * N * 4;
  const fwd = { 'x, z, out': 3 * elems * s, dt: dtElems * s, 'B, C': 2 * projElems * s, 'A, D, dtBias': params };
  const bwd = {
    'x, z, dout (read), dx, dz (written)': 5 * elems * s,
    'dt (read), ddt (written)': 2 * dtElems * s,
    'B, C (read), dB, dC (written)': 4 * projElems * s,
    checkpoints,
    'A, D, dtBias, dA, dD, ddtBias': 2 * params,
  };
  return phases('ssdTraffic', op, { fwd, bwd, exps: dtElems, extra: checkpoints });
}

/**
 * The matrix FLOPs of the chunked ("state space dual") form of a Mamba-2 scan case { batch, L, H, P,
 * G, N }, with chunks of Q steps (mamba_ssm's ssd_minimal and Triton kernels, our tensor-core
 * forward: Q = 64; Q = L when L is shorter). Per chunk, 2 FLOPs per multiply-add:
 *   C Bᵀ            (Q × Q, K = N)  once per group: the heads of a group share it (mamba_ssm's
 *                                   _bmm_chunk_fwd computes it per group; our kernel per head and
 *                                   16-column tile of P, so this is the algorithm's least)
 *   (L ∘ C Bᵀ) X    (Q × P, K = Q)  per head: the masked, decayed scores times the chunk's inputs
 *   Xᵀ B            (P × N, K = Q)  per head: the chunk's contribution to the state
 *   C hᵀ            (Q × P, K = N)  per head: the state before the chunk to the outputs
 * so the forward is 2·batch·L·(G·Q·N + H·(Q·P + 2·P·N)) (L/Q chunks of Q rows each). The backward
 * takes the gradient of each product with respect to both operands, two products of the same size
 * each: twice the forward; fwd+bwd three times. Not counted: the elementwise work (exp, the decay
 * mask, D x, the gate) and the chunk-to-chunk state passing (P·N per chunk and head, not a matrix
 * product). op: fwd | fwd-save | bwd | fwd+bwd.
 */
export function ssdFlops(shape, op, Q = 64) {
  const { batch, L, H, P, N } = shape;
  const G = shape.G ?? 1;
  const q = Math.min(Q, L);
  const fwd = 2 * batch * L * (G * q * N + H * (q * P + 2 * P * N));
  const factor = { fwd: 1, 'fwd-save': 1, bwd: 2, 'fwd+bwd': 3 }[op];
  if (factor === undefined) throw new Error(`ssdFlops: unknown op ${op}`);
  return factor * fwd;
}

// Dense (no sparsity) float16/bfloat16 tensor-core FLOP/s by GPU name (nvidia-smi's), first match:
// NVIDIA's spec sheets (their sparse figures halved), at the boost clock. mma.sync, which our kernels
// use, reaches only part of it on Hopper (the full rate needs wgmma). Unknown GPU: no FLOP floor.
const TENSOR_FLOPS_16BIT = [
  [/H200 NVL/i, 835e12, 'H200 NVL'],
  [/H100 NVL/i, 835e12, 'H100 NVL'],
  [/H100 PCIe/i, 756e12, 'H100 PCIe'],
  [/H100|H200/i, 989e12, 'H100/H200 SXM'], // nvidia-smi: "NVIDIA H100 80GB HBM3", "NVIDIA H200"
  [/A100/i, 312e12, 'A100'],
];

/** { float16, bfloat16, source } dense tensor-core FLOP/s of the GPU named name, or null when unknown. */
export function tensorCoreRate(name) {
  const hit = TENSOR_FLOPS_16BIT.find(([re]) => re.test(name ?? ''));
  return hit ? { float16: hit[1], bfloat16: hit[1], source: `${hit[2]} spec sheet, dense` } : null;
}

/**
 * { bytes, exps, parts } of op from the parts of a forward and a backward pass and the exps of one
 * pass: fwd-save adds extra (the checkpoints) to the forward; fwd+bwd is both passes.
 */
function phases(name, op, { fwd, bwd, exps, extra }) {
  switch (op) {
    case 'fwd':
      return { bytes: sum(fwd), exps, parts: fwd };
    case 'fwd-save':
      return { bytes: sum(fwd) + extra, exps, parts: { ...fwd, checkpoints: extra } };
    case 'bwd':
    case 'bwd-det':
      return { bytes: sum(bwd), exps, parts: bwd };
    case 'fwd+bwd':
      return {
        bytes: sum(fwd) + extra + sum(bwd),
        exps: 2 * exps,
        parts: { forward: sum(fwd) + extra, backward: sum(bwd) },
      };
    default:
      throw new Error(`${name}: unknown op ${op}`);
  }
}

/**
 * Floors and the achieved fraction of the largest: bytes / copy bandwidth, exps / exp2 rate, and
 * where the traffic counts matrix FLOPs (flops) and the machine has a tensor-core rate for dtype
 * (machine.tensorFlops, from tensorCoreRate), flops / that rate.
 * @param {{ bytes: number, exps: number, flops?: number }} traffic
 * @param {number} ms
 * @param {{ copyBandwidthGBps: number, exp2Rate: number, tensorFlops?: object | null }} machine
 * @param {string} [dtype]
 */
export function roofline({ bytes, exps, flops }, ms, machine, dtype) {
  const memFloorMs = (bytes / (machine.copyBandwidthGBps * 1e9)) * 1e3;
  const expFloorMs = (exps / machine.exp2Rate) * 1e3;
  const rate = machine.tensorFlops?.[dtype] ?? null;
  const flopFloorMs = flops && rate ? (flops / rate) * 1e3 : null;
  const floorMs = Math.max(memFloorMs, expFloorMs, flopFloorMs ?? 0);
  const bound =
    flopFloorMs !== null && flopFloorMs >= Math.max(memFloorMs, expFloorMs)
      ? 'tensor FLOPs'
      : memFloorMs >= expFloorMs
        ? 'memory'
        : 'exp2';
  return {
    bytes,
    exps,
    gbps: bytes / (ms * 1e-3) / 1e9,
    copyBandwidthGBps: machine.copyBandwidthGBps,
    exp2Rate: machine.exp2Rate,
    memFloorMs,
    expFloorMs,
    ...(flops ? { flops, tensorFlopsPerS: rate, flopFloorMs } : {}),
    floorMs,
    bound,
    fractionOfFloor: floorMs / ms,
  };
}
