// causalConv1d: the causal depthwise convolution in front of a Mamba block's scan. Native side:
// csrc/ops/causal_conv1d/.
import { ALL_DTYPES, ArgumentChecker, named, storage } from '../checks.js';
import { dtypeCode } from '../dtype.js';
import { describe } from '../errors.js';
import { native } from '../native.js';
import { type Tensor, allocate, deviceIndex, markModified, storageOf } from '../tensor.js';
import { typedArrayLength, typedArrayName } from '../typed-arrays.js';

/** The widest convolution window supported. */
const MAX_WIDTH = 8;

export interface CausalConv1dUpdateOptions {
  /** (dim) float32, added before the activation. */
  bias?: Tensor;
  /** 'silu' applies silu to the output; default none. */
  activation?: 'silu';
  /** For each batch row, the row (cache slot) of convState it reads and shifts; negative = padding. */
  stateBatchIndices?: Int32Array;
}

const UPDATE_OPTIONS = ['bias', 'activation', 'stateBatchIndices'];

/**
 * One decoding step of the causal convolution: x (batch, dim) and convState (batch or slots, dim,
 * W - 1) of x's dtype, weight (dim, W) float32. Returns out (batch, dim); convState drops its
 * oldest column and appends x, in place. A padding row (negative index) outputs zeros and leaves
 * the state as it was.
 */
export function causalConv1dUpdate(
  convState: Tensor,
  x: Tensor,
  weight: Tensor,
  opts?: CausalConv1dUpdateOptions,
): Tensor {
  const fn = 'causalConv1dUpdate';
  const check = new ArgumentChecker(fn);
  const o = check.options(opts, UPDATE_OPTIONS);
  const xT = check.tensor('x', x);
  check.dtype('x', xT, ALL_DTYPES);
  if (xT.shape.length !== 2 || xT.shape.some((s) => s === 0)) {
    throw new RangeError(`${fn}: x must have shape [batch, dim] with positive sizes, got ${describe(xT.shape)}`);
  }
  const batch = xT.shape[0]!;
  const dim = xT.shape[1]!;
  const wT = check.tensor('weight', weight);
  check.dtype('weight', wT, 'float32');
  if (wT.shape.length !== 2 || wT.shape[0] !== dim || wT.shape[1]! < 1 || wT.shape[1]! > MAX_WIDTH) {
    throw new RangeError(
      `${fn}: weight must have shape [dim=${dim}, W] with 1 <= W <= ${MAX_WIDTH}, got ${describe(wT.shape)}`,
    );
  }
  const W = wT.shape[1]!;
  const stateT = check.tensor('convState', convState);
  check.dtype('convState', stateT, xT.dtype, ' (the dtype of x)');
  if (stateT.shape.length !== 3 || stateT.shape[0] === 0 || stateT.shape[1] !== dim || stateT.shape[2] !== W - 1) {
    throw new RangeError(
      `${fn}: convState must have shape [slots, dim=${dim}, W - 1=${W - 1}], got ${describe(stateT.shape)}`,
    );
  }
  const slots = stateT.shape[0]!;

  let indices: Int32Array | undefined;
  const given = o.stateBatchIndices;
  if (given !== undefined) {
    // Checked by its real type and length, and copied: what is checked is what the op reads.
    if (typedArrayName(given) !== 'Int32Array') {
      throw new TypeError(`${fn}: stateBatchIndices must be an Int32Array, got ${describe(given)}`);
    }
    const length = typedArrayLength(given as Int32Array);
    if (length !== batch) {
      throw new RangeError(`${fn}: stateBatchIndices must have length batch=${batch}, got ${length}`);
    }
    indices = new Int32Array(given as Int32Array);
    const seen = new Set<number>();
    for (const [i, slot] of indices.entries()) {
      if (slot < 0) continue; // padding
      if (slot >= slots) {
        throw new RangeError(`${fn}: stateBatchIndices[${i}]=${slot} must be below the ${slots} rows of convState`);
      }
      if (seen.has(slot)) throw new RangeError(`${fn}: stateBatchIndices must be distinct; ${slot} appears twice`);
      seen.add(slot);
    }
  } else if (batch !== slots) {
    throw new RangeError(
      `${fn}: x has batch=${batch} rows but convState has ${slots}; they must match unless stateBatchIndices is given`,
    );
  }

  const bias = check.optionalTensor('bias', o.bias);
  if (bias) {
    check.dtype('bias', bias, 'float32');
    check.shape('bias', bias, [dim], named({ dim }));
  }
  const activation = o.activation;
  if (activation !== undefined && activation !== 'silu') {
    throw new TypeError(`${fn}: activation must be 'silu' or undefined, got ${describe(activation)}`);
  }
  const device = check.device();

  const out = allocate(fn, [batch, dim], xT.dtype, device, false);
  try {
    native.convUpdate({
      device: deviceIndex(device),
      dtype: dtypeCode(xT.dtype),
      batch,
      dim,
      width: W,
      stateSlots: slots,
      silu: activation === 'silu',
      convState: storageOf(stateT, fn, 'convState'),
      x: storageOf(xT, fn, 'x'),
      weight: storageOf(wT, fn, 'weight'),
      bias: storage(fn, 'bias', bias),
      stateBatchIndices: indices,
      out: storageOf(out, fn, 'out'),
    });
  } catch (error) {
    out.dispose();
    throw error;
  }
  markModified(stateT); // convState was shifted in place
  return out;
}
