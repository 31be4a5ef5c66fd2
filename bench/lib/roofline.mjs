// Bytes and exp2 evaluations per op, as docs/ARCHITECTURE.md counts them: each tensor read or
// written once (the backward re-reads the inputs and writes each gradient once), checkpoints of
// batch*dim*ceil(L/chunk)*N float32 when saved, one exp2 per (batch, dim, L, N) element per pass.

export const DTYPE_BYTES = { float32: 4, float16: 2, bfloat16: 2 };

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
  const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);
  const exps = rowElems * N;
  switch (op) {
    case 'fwd':
      return { bytes: sum(fwd), exps, parts: fwd };
    case 'fwd-save':
      return { bytes: sum(fwd) + checkpoints, exps, parts: { ...fwd, checkpoints } };
    case 'bwd':
    case 'bwd-det':
      return { bytes: sum(bwd), exps, parts: bwd };
    case 'fwd+bwd':
      return {
        bytes: sum(fwd) + checkpoints + sum(bwd),
        exps: 2 * exps,
        parts: { forward: sum(fwd) + checkpoints, backward: sum(bwd) },
      };
    default:
      throw new Error(`scanTraffic: unknown op ${op}`);
  }
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
    return { bytes: Object.values(parts).reduce((a, b) => a + b, 0), exps: batch * dim * N, parts };
  }
  const { H, P } = step;
  const parts = {
    'state (read + written)': 2 * batch * H * P * N * 4,
    'x, z, y': 3 * batch * H * P * s,
    dt: batch * H * s,
    'B, C': 2 * batch * G * N * s,
    'A, D, dtBias': 3 * H * 4,
  };
  return { bytes: Object.values(parts).reduce((a, b) => a + b, 0), exps: batch * H, parts };
}

/** Floors and the achieved fraction of the larger one. */
export function roofline({ bytes, exps }, ms, machine) {
  const memFloorMs = (bytes / (machine.copyBandwidthGBps * 1e9)) * 1e3;
  const expFloorMs = (exps / machine.exp2Rate) * 1e3;
  const floorMs = Math.max(memFloorMs, expFloorMs);
  return {
    bytes,
    exps,
    gbps: bytes / (ms * 1e-3) / 1e9,
    copyBandwidthGBps: machine.copyBandwidthGBps,
    exp2Rate: machine.exp2Rate,
    memFloorMs,
    expFloorMs,
    floorMs,
    bound: memFloorMs >= expFloorMs ? 'memory' : 'exp2',
    fractionOfFloor: floorMs / ms,
  };
}
