// causalConv1d on tf.Tensors: the forward and causalConv1dBackward as tfjs kernels. The backward
// recomputes what it needs from the inputs, so the forward saves nothing.
import type * as tf from '@tensorflow/tfjs-core';
import { describe } from '../errors.js';
import { ConvContext, causalConv1d as conv, causalConv1dBackward } from '../ops/causal-conv1d.js';
import type { Tensor } from '../tensor.js';
import { checkBoolean, checkOptionNames, checkTensor, cuSeqlensAttribute, registerOp } from './kernel.js';

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

const OPTIONAL_INPUTS = ['bias', 'initialState'] as const;
type OptionalInput = (typeof OPTIONAL_INPUTS)[number];

interface ConvAttrs {
  [key: string]: string[] | number[] | boolean;
  /** The optional inputs given, in the order they follow x and weight. */
  optionalInputs: OptionalInput[];
  silu: boolean;
  returnFinalState: boolean;
  /** cuSeqlens as plain numbers (tfjs keeps attributes on its tape); empty without. */
  cuSeqlens: number[];
}

// Our op's arguments from the kernel's inputs: x, weight, then the optional ones.
function convArguments(inputs: Tensor[], attrs: ConvAttrs) {
  const [x, weight] = inputs as [Tensor, Tensor];
  const opts: Partial<Record<OptionalInput, Tensor>> & { activation?: 'silu'; cuSeqlens?: Int32Array } = {};
  if (attrs.silu) opts.activation = 'silu';
  if (attrs.cuSeqlens.length > 0) opts.cuSeqlens = Int32Array.from(attrs.cuSeqlens);
  attrs.optionalInputs.forEach((name, i) => {
    opts[name] = inputs[2 + i];
  });
  return { x, weight, opts };
}

const runConv = registerOp<ConvAttrs>({
  name: 'CausalConv1d',
  savedCount: 0,
  forward(inputs, attrs) {
    const { x, weight, opts } = convArguments(inputs, attrs);
    const r = conv(x, weight, { ...opts, returnFinalState: attrs.returnFinalState });
    return { outputs: r.finalState ? [r.out, r.finalState] : [r.out], saved: [] };
  },
  backward(inputs, _saved, [dout, dFinalState], attrs) {
    const { x, weight, opts } = convArguments(inputs, attrs);
    const ctx = ConvContext.restore(x, weight, opts);
    try {
      const g = causalConv1dBackward(ctx, dout!, dFinalState ? { dFinalState } : undefined);
      const optional: Record<OptionalInput, Tensor | undefined> = { bias: g.dbias, initialState: g.dInitialState };
      return [g.dx, g.dweight, ...attrs.optionalInputs.map((name) => optional[name]!)];
    } finally {
      ctx.dispose();
    }
  },
});

const OPTION_NAMES = [...OPTIONAL_INPUTS, 'activation', 'returnFinalState', 'cuSeqlens'];

/**
 * The causal depthwise convolution on float32 tf.Tensors, differentiable (x, weight, bias,
 * initialState and through finalState): the arguments, shapes and meaning of the package's
 * causalConv1d, less saveForBackward. Runs on the tfjs 'cpu' and 'wasm' backends.
 */
export function causalConv1d(x: tf.Tensor, weight: tf.Tensor, opts?: CausalConv1dOptions): CausalConv1dResult {
  const fn = 'causalConv1d';
  const o = checkOptionNames(fn, opts, OPTION_NAMES);
  const inputs = Object.entries({ x, weight }).map(([name, t]) => checkTensor(fn, name, t));
  const optionalInputs = OPTIONAL_INPUTS.filter((name) => o[name] !== undefined);
  for (const name of optionalInputs) inputs.push(checkTensor(fn, name, o[name]));
  if (o.activation !== undefined && o.activation !== 'silu') {
    throw new TypeError(`${fn}: activation must be 'silu' or undefined, got ${describe(o.activation)}`);
  }
  const attrs: ConvAttrs = {
    optionalInputs,
    silu: o.activation === 'silu',
    returnFinalState: checkBoolean(fn, 'returnFinalState', o.returnFinalState),
    cuSeqlens: cuSeqlensAttribute(fn, o.cuSeqlens),
  };
  const [out, finalState] = runConv(fn, inputs, attrs) as [tf.Tensor, tf.Tensor?];
  return finalState ? { out, finalState } : { out };
}
