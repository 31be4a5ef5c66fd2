// ssdScan (Mamba-2's state space dual scan) on tf.Tensors: the forward and ssdScanBackward as tfjs
// kernels, in the way of the selective scan's adapter (selective-scan.ts).
import type * as tf from '@tensorflow/tfjs-core';
import { describe } from '../errors.js';
import { type SsdOptions as OpsSsdOptions, SsdContext, ssdScan as scan, ssdScanBackward } from '../ops/ssd-scan.js';
import type { Tensor } from '../tensor.js';
import { checkBoolean, perCallObject, registerTensorOp } from './kernel.js';

export interface SsdOptions {
  /** (H) or (H, P): y += D * x. */
  D?: tf.Tensor;
  /** (batch, L, H, P): the output is multiplied by silu(z). */
  z?: tf.Tensor;
  /** (H), added to dt before softplus. */
  dtBias?: tf.Tensor;
  /** Apply softplus to dt (+ dtBias); default false. */
  dtSoftplus?: boolean;
  /** Clamp of dt after bias and softplus; default [0, Infinity]. */
  dtLimit?: [number, number];
  /** (batch, H, P, N) (nseq rows with cuSeqlens); default zeros. */
  initialState?: tf.Tensor;
  /** Also return the state after the last step; default false. */
  returnLastState?: boolean;
  /** Packed sequences along L of a batch-1 call. */
  cuSeqlens?: Int32Array;
}

export interface SsdResult {
  out: tf.Tensor;
  lastState?: tf.Tensor;
}

interface SsdSettings {
  [key: string]: boolean | number[];
  dtSoftplus: boolean;
  returnLastState: boolean;
  /** [] for the default, else [lo, hi]. */
  dtLimit: number[];
}

type Five = [Tensor, Tensor, Tensor, Tensor, Tensor];

const runSsd = registerTensorOp<SsdSettings, Omit<OpsSsdOptions, 'returnLastState' | 'saveForBackward'>>({
  name: 'SsdScan',
  required: ['x', 'dt', 'A', 'B', 'C'],
  optional: ['D', 'z', 'dtBias', 'initialState'],
  settingNames: ['dtSoftplus', 'dtLimit', 'returnLastState'],
  settings(fn, o) {
    const limit = o.dtLimit;
    if (limit !== undefined && !Array.isArray(limit)) {
      throw new TypeError(`${fn}: dtLimit must be an array of two numbers [lo, hi], got ${describe(limit)}`);
    }
    return {
      dtSoftplus: checkBoolean(fn, 'dtSoftplus', o.dtSoftplus),
      returnLastState: checkBoolean(fn, 'returnLastState', o.returnLastState),
      dtLimit: limit === undefined ? [] : [...(limit as number[])],
    };
  },
  options: ({ dtSoftplus, dtLimit }) =>
    dtLimit.length ? { dtSoftplus, dtLimit: [dtLimit[0]!, dtLimit[1]!] } : { dtSoftplus },
  savedCount: 1, // the checkpoints
  forward(args, opts, { returnLastState }) {
    const result = scan(...(args as Five), perCallObject(opts, { returnLastState, saveForBackward: true }));
    // The checkpoints leave the context: the caller disposes them with the outputs.
    const checkpoints = SsdContext.checkpointsOf(result.ctx!);
    return { outputs: result.lastState ? [result.out, result.lastState] : [result.out], saved: [checkpoints] };
  },
  backward(args, opts, [checkpoints], [dout, dLastState]) {
    const ctx = SsdContext.restore(...(args as Five), opts, checkpoints!);
    const g = ssdScanBackward(ctx, dout!, dLastState ? { dLastState } : undefined);
    return {
      x: g.dx,
      dt: g.ddt,
      A: g.dA,
      B: g.dB,
      C: g.dC,
      D: g.dD,
      z: g.dz,
      dtBias: g.ddtBias,
      initialState: g.dInitialState,
    };
  },
});

/**
 * Mamba-2's state space dual scan on float32 tf.Tensors, differentiable: the arguments, shapes and
 * meaning of the package's ssdScan, less saveForBackward (tfjs keeps what the gradient needs while
 * one is being recorded). dtLimit and cuSeqlens are checked by ssdScan itself. Runs on the tfjs
 * 'cpu' and 'wasm' backends.
 */
export function ssdScan(
  x: tf.Tensor,
  dt: tf.Tensor,
  A: tf.Tensor,
  B: tf.Tensor,
  C: tf.Tensor,
  opts?: SsdOptions,
): SsdResult {
  const [out, lastState] = runSsd('ssdScan', [x, dt, A, B, C], opts) as [tf.Tensor, tf.Tensor?];
  return lastState ? { out, lastState } : { out };
}
