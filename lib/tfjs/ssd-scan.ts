// ssdScan (Mamba-2's state space dual scan) on tf.Tensors: the forward and ssdScanBackward as tfjs
// kernels, in the way of the selective scan's adapter (selective-scan.ts).
import type * as tf from '@tensorflow/tfjs-core';
import { describe } from '../errors.js';
import { SsdContext, ssdScan as scan, ssdScanBackward } from '../ops/ssd-scan.js';
import type { Tensor } from '../tensor.js';
import { checkBoolean, checkOptionNames, checkTensor, cuSeqlensAttribute, registerOp } from './kernel.js';

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

const OPTIONAL_INPUTS = ['D', 'z', 'dtBias', 'initialState'] as const;
type OptionalInput = (typeof OPTIONAL_INPUTS)[number];

interface SsdAttrs {
  [key: string]: string[] | boolean | number[];
  /** The optional inputs given, in the order they follow x, dt, A, B, C. */
  optionalInputs: OptionalInput[];
  dtSoftplus: boolean;
  returnLastState: boolean;
  /** [] for the default, else [lo, hi]. */
  dtLimit: number[];
  /** cuSeqlens as plain numbers; empty without. */
  cuSeqlens: number[];
}

// Our op's arguments from the kernel's inputs: x, dt, A, B, C, then the optional ones.
function ssdArguments(inputs: Tensor[], attrs: SsdAttrs) {
  const [x, dt, A, B, C] = inputs as [Tensor, Tensor, Tensor, Tensor, Tensor];
  const opts: Partial<Record<OptionalInput, Tensor>> & {
    dtSoftplus: boolean;
    dtLimit?: [number, number];
    cuSeqlens?: Int32Array;
  } = { dtSoftplus: attrs.dtSoftplus };
  if (attrs.dtLimit.length) opts.dtLimit = [attrs.dtLimit[0]!, attrs.dtLimit[1]!];
  if (attrs.cuSeqlens.length > 0) opts.cuSeqlens = Int32Array.from(attrs.cuSeqlens);
  attrs.optionalInputs.forEach((name, i) => {
    opts[name] = inputs[5 + i];
  });
  return { x, dt, A, B, C, opts };
}

const runSsd = registerOp<SsdAttrs>({
  name: 'SsdScan',
  savedCount: 1, // the checkpoints
  forward(inputs, attrs) {
    const { x, dt, A, B, C, opts } = ssdArguments(inputs, attrs);
    const result = scan(x, dt, A, B, C, { ...opts, returnLastState: attrs.returnLastState, saveForBackward: true });
    // The checkpoints leave the context: the caller disposes them with the outputs.
    const checkpoints = SsdContext.checkpointsOf(result.ctx!);
    return { outputs: result.lastState ? [result.out, result.lastState] : [result.out], saved: [checkpoints] };
  },
  backward(inputs, [checkpoints], [dout, dLastState], attrs) {
    const { x, dt, A, B, C, opts } = ssdArguments(inputs, attrs);
    const ctx = SsdContext.restore(x, dt, A, B, C, opts, checkpoints!);
    const g = ssdScanBackward(ctx, dout!, dLastState ? { dLastState } : undefined);
    const optional: Record<OptionalInput, Tensor | undefined> = {
      D: g.dD,
      z: g.dz,
      dtBias: g.ddtBias,
      initialState: g.dInitialState,
    };
    return [g.dx, g.ddt, g.dA, g.dB, g.dC, ...attrs.optionalInputs.map((name) => optional[name]!)];
  },
});

const OPTION_NAMES = [...OPTIONAL_INPUTS, 'dtSoftplus', 'dtLimit', 'returnLastState', 'cuSeqlens'];

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
  const fn = 'ssdScan';
  const o = checkOptionNames(fn, opts, OPTION_NAMES);
  const inputs = Object.entries({ x, dt, A, B, C }).map(([name, t]) => checkTensor(fn, name, t));
  const optionalInputs = OPTIONAL_INPUTS.filter((name) => o[name] !== undefined);
  for (const name of optionalInputs) inputs.push(checkTensor(fn, name, o[name]));
  const cuSeqlens = cuSeqlensAttribute(fn, o.cuSeqlens);
  const limit = o.dtLimit;
  if (limit !== undefined && !Array.isArray(limit)) {
    throw new TypeError(`${fn}: dtLimit must be an array of two numbers [lo, hi], got ${describe(limit)}`);
  }
  const attrs: SsdAttrs = {
    optionalInputs,
    dtSoftplus: checkBoolean(fn, 'dtSoftplus', o.dtSoftplus),
    returnLastState: checkBoolean(fn, 'returnLastState', o.returnLastState),
    dtLimit: limit === undefined ? [] : [...(limit as number[])],
    cuSeqlens,
  };
  const [out, lastState] = runSsd(fn, inputs, attrs) as [tf.Tensor, tf.Tensor?];
  return lastState ? { out, lastState } : { out };
}
