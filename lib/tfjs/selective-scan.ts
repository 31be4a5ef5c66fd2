// selectiveScan on tf.Tensors: the forward and selectiveScanBackward as tfjs kernels.
import type * as tf from '@tensorflow/tfjs-core';
import { ScanContext, selectiveScan as scan, selectiveScanBackward } from '../ops/selective-scan.js';
import type { Tensor } from '../tensor.js';
import { checkBoolean, checkOptionNames, checkTensor, cuSeqlensAttribute, registerOp } from './kernel.js';

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

const OPTIONAL_INPUTS = ['D', 'z', 'deltaBias', 'initialState'] as const;
type OptionalInput = (typeof OPTIONAL_INPUTS)[number];

interface ScanAttrs {
  [key: string]: string[] | number[] | boolean;
  /** The optional inputs given, in the order they follow u, delta, A, B, C. */
  optionalInputs: OptionalInput[];
  deltaSoftplus: boolean;
  returnLastState: boolean;
  /** cuSeqlens as plain numbers; empty without. */
  cuSeqlens: number[];
}

// Our scan's arguments from the kernel's inputs: u, delta, A, B, C, then the optional ones.
function scanArguments(inputs: Tensor[], attrs: ScanAttrs) {
  const [u, delta, A, B, C] = inputs as [Tensor, Tensor, Tensor, Tensor, Tensor];
  const opts: Partial<Record<OptionalInput, Tensor>> & { deltaSoftplus: boolean; cuSeqlens?: Int32Array } = {
    deltaSoftplus: attrs.deltaSoftplus,
  };
  if (attrs.cuSeqlens.length > 0) opts.cuSeqlens = Int32Array.from(attrs.cuSeqlens);
  attrs.optionalInputs.forEach((name, i) => {
    opts[name] = inputs[5 + i];
  });
  return { u, delta, A, B, C, opts };
}

const runScan = registerOp<ScanAttrs>({
  name: 'SelectiveScan',
  savedCount: 1, // the checkpoints
  forward(inputs, attrs) {
    const { u, delta, A, B, C, opts } = scanArguments(inputs, attrs);
    const result = scan(u, delta, A, B, C, {
      ...opts,
      returnLastState: attrs.returnLastState,
      saveForBackward: true,
    });
    // The checkpoints leave the context: the caller disposes them with the outputs.
    const checkpoints = ScanContext.checkpointsOf(result.ctx!);
    return { outputs: result.lastState ? [result.out, result.lastState] : [result.out], saved: [checkpoints] };
  },
  backward(inputs, [checkpoints], [dout, dLastState], attrs) {
    const { u, delta, A, B, C, opts } = scanArguments(inputs, attrs);
    const ctx = ScanContext.restore(u, delta, A, B, C, opts, checkpoints!);
    const g = selectiveScanBackward(ctx, dout!, dLastState ? { dLastState } : undefined);
    const optional: Record<OptionalInput, Tensor | undefined> = {
      D: g.dD,
      z: g.dz,
      deltaBias: g.ddeltaBias,
      initialState: g.dInitialState,
    };
    return [g.du, g.ddelta, g.dA, g.dB, g.dC, ...attrs.optionalInputs.map((name) => optional[name]!)];
  },
});

const OPTION_NAMES = [...OPTIONAL_INPUTS, 'deltaSoftplus', 'returnLastState', 'cuSeqlens'];

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
  const fn = 'selectiveScan';
  const o = checkOptionNames(fn, opts, OPTION_NAMES);
  const inputs = Object.entries({ u, delta, A, B, C }).map(([name, t]) => checkTensor(fn, name, t));
  const optionalInputs = OPTIONAL_INPUTS.filter((name) => o[name] !== undefined);
  for (const name of optionalInputs) inputs.push(checkTensor(fn, name, o[name]));
  const attrs: ScanAttrs = {
    optionalInputs,
    deltaSoftplus: checkBoolean(fn, 'deltaSoftplus', o.deltaSoftplus),
    returnLastState: checkBoolean(fn, 'returnLastState', o.returnLastState),
    cuSeqlens: cuSeqlensAttribute(fn, o.cuSeqlens),
  };
  const [out, lastState] = runScan(fn, inputs, attrs) as [tf.Tensor, tf.Tensor?];
  return lastState ? { out, lastState } : { out };
}
