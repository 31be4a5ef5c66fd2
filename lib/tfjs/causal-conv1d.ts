// causalConv1d on tf.Tensors: the forward and causalConv1dBackward as tfjs kernels. The backward
// recomputes what it needs from the inputs, so the forward saves nothing.
import type * as tf from '@tensorflow/tfjs-core';
import { describe } from '../errors.js';
import {
  type CausalConv1dOptions as OpsConvOptions,
  ConvContext,
  causalConv1d as conv,
  causalConv1dBackward,
} from '../ops/causal-conv1d.js';
import { checkBoolean, perCallObject, registerTensorOp } from './kernel.js';

export interface CausalConv1dOptions {
  /** (dim), added before the activation. */
  bias?: tf.Tensor;
  /** 'silu' applies silu to the output; default none. */
  activation?: 'silu';
  /** (batch, dim, W - 1) (nseq rows with cuSeqlens): the W - 1 inputs before t = 0; default zeros. */
  initialState?: tf.Tensor;
  /** Also return the last W - 1 inputs; default false. */
  returnFinalState?: boolean;
  /** Packed sequences along L of a batch-1 call. */
  cuSeqlens?: Int32Array;
}

export interface CausalConv1dResult {
  out: tf.Tensor;
  finalState?: tf.Tensor;
}

interface ConvSettings {
  [key: string]: boolean;
  silu: boolean;
  returnFinalState: boolean;
}

const runConv = registerTensorOp<ConvSettings, Omit<OpsConvOptions, 'returnFinalState' | 'saveForBackward'>>({
  name: 'CausalConv1d',
  required: ['x', 'weight'],
  optional: ['bias', 'initialState'],
  settingNames: ['activation', 'returnFinalState'],
  settings(fn, o) {
    if (o.activation !== undefined && o.activation !== 'silu') {
      throw new TypeError(`${fn}: activation must be 'silu' or undefined, got ${describe(o.activation)}`);
    }
    return {
      silu: o.activation === 'silu',
      returnFinalState: checkBoolean(fn, 'returnFinalState', o.returnFinalState),
    };
  },
  options: ({ silu }) => (silu ? { activation: 'silu' } : {}),
  savedCount: 0,
  forward([x, weight], opts, { returnFinalState }) {
    const r = conv(x!, weight!, perCallObject(opts, { returnFinalState }));
    return { outputs: r.finalState ? [r.out, r.finalState] : [r.out], saved: [] };
  },
  backward([x, weight], opts, _saved, [dout, dFinalState]) {
    const ctx = ConvContext.restore(x!, weight!, opts);
    try {
      const g = causalConv1dBackward(ctx, dout!, dFinalState ? { dFinalState } : undefined);
      return { x: g.dx, weight: g.dweight, bias: g.dbias, initialState: g.dInitialState };
    } finally {
      ctx.dispose();
    }
  },
});

/**
 * The causal depthwise convolution on float32 tf.Tensors, differentiable (x, weight, bias,
 * initialState and through finalState): the arguments, shapes and meaning of the package's
 * causalConv1d, less saveForBackward. Runs on the tfjs 'cpu' and 'wasm' backends.
 */
export function causalConv1d(x: tf.Tensor, weight: tf.Tensor, opts?: CausalConv1dOptions): CausalConv1dResult {
  const [out, finalState] = runConv('causalConv1d', [x, weight], opts) as [tf.Tensor, tf.Tensor?];
  return finalState ? { out, finalState } : { out };
}
