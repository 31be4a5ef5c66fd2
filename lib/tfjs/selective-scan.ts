// selectiveScan on tf.Tensors: the forward and selectiveScanBackward as tfjs kernels.
import type * as tf from '@tensorflow/tfjs-core';
import {
  type ScanOptions as OpsScanOptions,
  ScanContext,
  selectiveScan as scan,
  selectiveScanBackward,
} from '../ops/selective-scan.js';
import type { Tensor } from '../tensor.js';
import { checkBoolean, perCallObject, registerTensorOp } from './kernel.js';

export interface ScanOptions {
  /** (dim): skip connection, y += D * u. */
  D?: tf.Tensor;
  /** (batch, dim, L): the output is multiplied by silu(z). */
  z?: tf.Tensor;
  /** (dim), added to delta before softplus. */
  deltaBias?: tf.Tensor;
  /** Apply softplus to delta (+ deltaBias); default false. */
  deltaSoftplus?: boolean;
  /** (batch, dim, N); default zeros. */
  initialState?: tf.Tensor;
  /** Also return the state after the last step; default false. */
  returnLastState?: boolean;
  /** Packed sequences along L of a batch-1 call (states then have nseq rows). */
  cuSeqlens?: Int32Array;
}

export interface ScanResult {
  out: tf.Tensor;
  lastState?: tf.Tensor;
}

interface ScanSettings {
  [key: string]: boolean;
  deltaSoftplus: boolean;
  returnLastState: boolean;
}

type Five = [Tensor, Tensor, Tensor, Tensor, Tensor];

const runScan = registerTensorOp<ScanSettings, Omit<OpsScanOptions, 'returnLastState' | 'saveForBackward'>>({
  name: 'SelectiveScan',
  required: ['u', 'delta', 'A', 'B', 'C'],
  optional: ['D', 'z', 'deltaBias', 'initialState'],
  settingNames: ['deltaSoftplus', 'returnLastState'],
  settings: (fn, o) => ({
    deltaSoftplus: checkBoolean(fn, 'deltaSoftplus', o.deltaSoftplus),
    returnLastState: checkBoolean(fn, 'returnLastState', o.returnLastState),
  }),
  options: ({ deltaSoftplus }) => ({ deltaSoftplus }),
  savedCount: 1, // the checkpoints
  forward(args, opts, { returnLastState }) {
    const result = scan(...(args as Five), perCallObject(opts, { returnLastState, saveForBackward: true }));
    // The checkpoints leave the context: the caller disposes them with the outputs.
    const checkpoints = ScanContext.checkpointsOf(result.ctx!);
    return { outputs: result.lastState ? [result.out, result.lastState] : [result.out], saved: [checkpoints] };
  },
  backward(args, opts, [checkpoints], [dout, dLastState]) {
    const ctx = ScanContext.restore(...(args as Five), opts, checkpoints!);
    const g = selectiveScanBackward(ctx, dout!, dLastState ? { dLastState } : undefined);
    return {
      u: g.du,
      delta: g.ddelta,
      A: g.dA,
      B: g.dB,
      C: g.dC,
      D: g.dD,
      z: g.dz,
      deltaBias: g.ddeltaBias,
      initialState: g.dInitialState,
    };
  },
});

/**
 * The selective scan on float32 tf.Tensors, differentiable: the arguments, shapes and meaning of
 * the package's selectiveScan, less saveForBackward (tfjs keeps what the gradient needs while one
 * is being recorded). Runs on the tfjs 'cpu' and 'wasm' backends.
 */
export function selectiveScan(
  u: tf.Tensor,
  delta: tf.Tensor,
  A: tf.Tensor,
  B: tf.Tensor,
  C: tf.Tensor,
  opts?: ScanOptions,
): ScanResult {
  const [out, lastState] = runScan('selectiveScan', [u, delta, A, B, C], opts) as [tf.Tensor, tf.Tensor?];
  return lastState ? { out, lastState } : { out };
}
