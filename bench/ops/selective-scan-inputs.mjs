// The selective scan's inputs: bfloat16-exact values drawn once per shape, as tensors of either
// dtype, as float32 arrays for the plain JS loop, and one call of each benchmarked variant.
import { Tensor, selectiveScan, selectiveScanBackward } from 'selective-scan';
import { scanChunkLength } from 'selective-scan/internal';
import { bitsToFloat32 } from '../lib/random.mjs';
import { disposeAll, tensorFromBits } from '../lib/tensors.mjs';

/** The benchmark's options: D, the z gate, softplus on delta. */
export const scanOptions = (t) => ({ D: t.D, z: t.z, deltaSoftplus: true });

export function scanBits(factory, s) {
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

export function scanTensors(bits, s, dtype, device) {
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

/** The JS loop's inputs: float32 arrays of the same values. */
export function jsInputs(bits) {
  const x = Object.fromEntries(['u', 'delta', 'z', 'dout', 'B', 'C'].map((k) => [k, bitsToFloat32(bits[k])]));
  return { ...x, A: bits.A, D: bits.D };
}

/** One call of each variant, disposing what it makes. bwd/bwd-det reuse one ctx (made on first use). */
export function scanCalls(t) {
  const opts = scanOptions(t);
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

export const chunkLengthOf = (target, s) =>
  scanChunkLength(target.device, { batch: s.batch, dim: s.dim, seqlen: s.L, dstate: s.N });
