// Benchmark inputs as tensors, and their disposal.
import { Tensor } from 'selective-scan';
import { DTYPE_BYTES } from './roofline.mjs';

/** A tensor of dtype on device holding bfloat16 bit patterns' values (widened for float32). */
export function tensorFromBits(bits, shape, dtype, device) {
  const t16 = Tensor.fromBits(bits, shape, { dtype: 'bfloat16', device });
  if (dtype === 'bfloat16') return t16;
  const t = t16.to({ dtype });
  t16.dispose();
  return t;
}

/** Disposes every tensor among the values of obj. */
export function disposeAll(obj) {
  for (const t of Object.values(obj)) if (t instanceof Tensor) t.dispose();
}

export const tensorBytes = (t) => t.numel * DTYPE_BYTES[t.dtype];
