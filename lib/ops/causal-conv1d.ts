// causalConv1d (the causal depthwise convolution in front of a Mamba block's scan), its backward,
// the context that links them, and causalConv1dUpdate (its decoding step). Native side:
// csrc/ops/causal_conv1d/ (CPU only so far: on a GPU they throw ERR_CUDA_UNAVAILABLE).
import { markPrototype } from '../brand.js';
import { ALL_DTYPES, ArgumentChecker, checkCuSeqlens, named, storage } from '../checks.js';
import { ForwardContext, contextAccess } from '../context.js';
import { type DType, dtypeCode } from '../dtype.js';
import { describe } from '../errors.js';
import { addField, allocateGradients, allocateOutputs, freeOutputsOnThrow } from './common.js';
import { type ConvInputsDescriptor, native } from '../native.js';
import { type Device, type Tensor, allocate, deviceIndex, markModified, storageOf } from '../tensor.js';
import { typedArrayLength, typedArrayName } from '../typed-arrays.js';

/** The widest convolution window supported. */
const MAX_WIDTH = 8;

// ---- Checks shared by the whole-sequence op and the decoding step --------------------------------

/** weight (dim, W) float32 with 1 <= W <= MAX_WIDTH; returns W. */
function checkWeight(check: ArgumentChecker, weight: unknown, dim: number): { wT: Tensor; W: number } {
  const wT = check.tensor('weight', weight);
  check.dtype('weight', wT, 'float32');
  if (wT.shape.length !== 2 || wT.shape[0] !== dim || wT.shape[1]! < 1 || wT.shape[1]! > MAX_WIDTH) {
    throw new RangeError(
      `${check.fn}: weight must have shape [dim=${dim}, W] with 1 <= W <= ${MAX_WIDTH}, got ${describe(wT.shape)}`,
    );
  }
  return { wT, W: wT.shape[1]! };
}

function checkBias(check: ArgumentChecker, value: unknown, dim: number): Tensor | undefined {
  const bias = check.optionalTensor('bias', value);
  if (bias) {
    check.dtype('bias', bias, 'float32');
    check.shape('bias', bias, [dim], () => named({ dim }));
  }
  return bias;
}

/** true for 'silu', false when absent. */
function checkActivation(fn: string, activation: unknown): boolean {
  if (activation !== undefined && activation !== 'silu') {
    throw new TypeError(`${fn}: activation must be 'silu' or undefined, got ${describe(activation)}`);
  }
  return activation === 'silu';
}

// ---- causalConv1d and causalConv1dBackward ------------------------------------------------------

export interface CausalConv1dOptions {
  /** (dim) float32, added before the activation. */
  bias?: Tensor;
  /** 'silu' applies silu to the output; default none. */
  activation?: 'silu';
  /** (batch, dim, W - 1) (nseq rows with cuSeqlens), dtype of x: the W - 1 inputs before t = 0; default zeros. */
  initialState?: Tensor;
  /** Return finalState, the last W - 1 inputs (batch or nseq, dim, W - 1); default false. */
  returnFinalState?: boolean;
  /** Packed sequences along L of a batch-1 call. */
  cuSeqlens?: Int32Array;
  saveForBackward?: boolean;
}

export interface CausalConv1dResult {
  out: Tensor;
  finalState?: Tensor;
  ctx?: ConvContext;
}

export interface CausalConv1dBackwardOptions {
  /** Shape and dtype of finalState: the gradient flowing into it. */
  dFinalState?: Tensor;
  /** Accepted; the CPU backend is always deterministic. */
  deterministic?: boolean;
}

export interface CausalConv1dGradients {
  dx: Tensor;
  dweight: Tensor;
  dbias?: Tensor;
  dInitialState?: Tensor;
}

const CONV_OPTIONS = ['bias', 'activation', 'initialState', 'returnFinalState', 'cuSeqlens', 'saveForBackward'];

interface ConvInputs {
  device: Device;
  dtype: DType;
  batch: number;
  dim: number;
  seqlen: number;
  width: number;
  sequences: number;
  x: Tensor;
  weight: Tensor;
  bias?: Tensor;
  initialState?: Tensor;
  silu: boolean;
  cuSeqlens?: Int32Array;
}

/** The shape text of a state: [batch=.., dim=.., W - 1=..] or [nseq=.., ...]. */
function stateText(s: { cuSeqlens?: Int32Array; sequences: number; dim: number; width: number }): string {
  const rows: Record<string, number> = s.cuSeqlens ? { nseq: s.sequences } : { batch: s.sequences };
  return named({ ...rows, dim: s.dim, 'W - 1': s.width - 1 });
}

function checkConvInputs(check: ArgumentChecker, x: unknown, weight: unknown, o: Record<string, unknown>): ConvInputs {
  const fn = check.fn;
  const xT = check.tensor('x', x);
  check.dtype('x', xT, ALL_DTYPES);
  if (xT.shape.length !== 3 || xT.shape.some((s) => s === 0)) {
    throw new RangeError(`${fn}: x must have shape [batch, dim, L] with positive sizes, got ${describe(xT.shape)}`);
  }
  const [batch, dim, seqlen] = xT.shape as [number, number, number];
  const { wT, W } = checkWeight(check, weight, dim);
  const bias = checkBias(check, o.bias, dim);
  const silu = checkActivation(fn, o.activation);
  const cuSeqlens = o.cuSeqlens === undefined ? undefined : checkCuSeqlens(fn, o.cuSeqlens, batch, seqlen);
  const sequences = cuSeqlens ? cuSeqlens.length - 1 : batch;
  const initialState = check.optionalTensor('initialState', o.initialState);
  if (initialState) {
    check.shape('initialState', initialState, [sequences, dim, W - 1], () =>
      stateText({ cuSeqlens, sequences, dim, width: W }),
    );
    check.dtype('initialState', initialState, xT.dtype, ' (the dtype of x)');
  }
  const result: ConvInputs = {
    device: check.device(),
    dtype: xT.dtype,
    batch,
    dim,
    seqlen,
    width: W,
    sequences,
    x: xT,
    weight: wT,
    silu,
    // Own properties even when absent, so that nothing on Object.prototype stands in for them.
    bias,
    initialState,
    cuSeqlens,
  };
  return result;
}

function inputDescriptor(fn: string, s: ConvInputs): ConvInputsDescriptor {
  // Without a prototype: the call sites add their fields with Object.assign (not a spread, which
  // V8 in Node 20 made slow), which then defines them whatever setters Object.prototype has.
  return Object.assign(Object.create(null) as object, {
    device: deviceIndex(s.device),
    dtype: dtypeCode(s.dtype),
    batch: s.batch,
    dim: s.dim,
    seqlen: s.seqlen,
    width: s.width,
    silu: s.silu,
    x: storageOf(s.x, fn, 'x'),
    weight: storageOf(s.weight, fn, 'weight'),
    bias: storage(fn, 'bias', s.bias),
    sequences: s.sequences,
    cuSeqlens: s.cuSeqlens,
    initialState: storage(fn, 'initialState', s.initialState),
  });
}

const CONV_CONTEXT = { name: 'ConvContext', madeBy: 'causalConv1d(..., { saveForBackward: true })' };
const context = contextAccess<ConvInputs>(CONV_CONTEXT);
// Set in ConvContext's static block (its constructor is private).
let makeContext: (inputs: ConvInputs) => ConvContext;

/**
 * What causalConv1dBackward needs from a forward: references to its inputs (not copies); the
 * backward recomputes the rest from x, so the context holds no memory of its own. `dispose()` ends
 * it (not the inputs): a later backward throws ERR_DISPOSED.
 */
export class ConvContext extends ForwardContext {
  static {
    // The shared context keeps "live" as a tensor it disposes: the convolution's is empty, on the host.
    makeContext = (inputs) =>
      new ConvContext(context.key, inputs, allocate('causalConv1d', [0], 'float32', 'cpu', false));
    markPrototype(ConvContext.prototype);
    context.defineMembers(ConvContext.prototype);
  }

  /** Made by causalConv1d(..., { saveForBackward: true }). */
  private constructor(key: symbol, inputs: ConvInputs, marker: Tensor) {
    super(key, CONV_CONTEXT, inputs, 0, marker);
  }

  /**
   * @internal The context that causalConv1d(x, weight, { ...opts, saveForBackward: true }) made,
   * from those inputs: the tfjs adapter's backward, which keeps no context between the passes.
   */
  static restore(
    x: Tensor,
    weight: Tensor,
    opts: Omit<CausalConv1dOptions, 'returnFinalState' | 'saveForBackward'>,
  ): ConvContext {
    const check = new ArgumentChecker('causalConv1dBackward');
    return makeContext(checkConvInputs(check, x, weight, check.options(opts, CONV_OPTIONS)));
  }
}

/**
 * The causal depthwise convolution: x (batch, dim, L), weight (dim, W) float32, 1 <= W <= 8. With
 * xs = initialState ‖ x along time, out_t = act(bias + sum_k weight[:, k] xs[t + k]); finalState
 * is the last W - 1 inputs. With cuSeqlens (batch 1) each packed sequence starts its own window.
 */
export function causalConv1d(x: Tensor, weight: Tensor, opts?: CausalConv1dOptions): CausalConv1dResult {
  const fn = 'causalConv1d';
  const check = new ArgumentChecker(fn);
  const o = check.options(opts, CONV_OPTIONS);
  const s = checkConvInputs(check, x, weight, o);
  const returnFinalState = check.boolean('returnFinalState', o.returnFinalState);
  const saveForBackward = check.boolean('saveForBackward', o.saveForBackward);
  const { out, finalState } = allocateOutputs(fn, s.device, {
    out: [[s.batch, s.dim, s.seqlen], s.dtype],
    finalState: returnFinalState ? [[s.sequences, s.dim, s.width - 1], s.dtype] : undefined,
  });
  freeOutputsOnThrow([out, finalState], () =>
    native.convForward(
      Object.assign(inputDescriptor(fn, s), {
        out: storageOf(out, fn, 'out'),
        finalState: storage(fn, 'finalState', finalState),
      }),
    ),
  );
  const result: CausalConv1dResult = { out };
  if (finalState) addField(result, 'finalState', finalState);
  if (saveForBackward) addField(result, 'ctx', makeContext(s));
  return result;
}

/**
 * Gradients of causalConv1d: dx and dInitialState in x's dtype, dweight and dbias float32 (summed
 * over batch and time in float32). dFinalState flows into finalState.
 */
export function causalConv1dBackward(
  ctx: ConvContext,
  dout: Tensor,
  opts?: CausalConv1dBackwardOptions,
): CausalConv1dGradients {
  const fn = 'causalConv1dBackward';
  const { inputs: s } = context.saved(ctx, fn);
  const check = new ArgumentChecker(fn);
  const o = check.options(opts, ['dFinalState', 'deterministic']);
  const doutT = check.tensor('dout', dout);
  check.shape('dout', doutT, [s.batch, s.dim, s.seqlen], named({ batch: s.batch, dim: s.dim, L: s.seqlen }));
  check.dtype('dout', doutT, s.dtype, ' (the dtype of x)');
  const dFinalState = check.optionalTensor('dFinalState', o.dFinalState);
  if (dFinalState) {
    check.shape('dFinalState', dFinalState, [s.sequences, s.dim, s.width - 1], () => stateText(s));
    check.dtype('dFinalState', dFinalState, s.dtype, ' (the dtype of x)');
  }
  const deterministic = check.boolean('deterministic', o.deterministic);
  check.forwardDevice(s.device);

  const grads = allocateGradients<CausalConv1dGradients>(fn, s.device, {
    dx: s.x,
    dweight: s.weight,
    dbias: s.bias,
    dInitialState: s.initialState,
  });
  freeOutputsOnThrow(grads, () =>
    native.convBackward(
      Object.assign(inputDescriptor(fn, s), {
        dout: storageOf(doutT, fn, 'dout'),
        dFinalState: storage(fn, 'dFinalState', dFinalState),
        deterministic,
        dx: storageOf(grads.dx, fn, 'dx'),
        dweight: storageOf(grads.dweight, fn, 'dweight'),
        dbias: storage(fn, 'dbias', grads.dbias),
        dInitialState: storage(fn, 'dInitialState', grads.dInitialState),
      }),
    ),
  );
  return grads;
}

// ---- causalConv1dUpdate -------------------------------------------------------------------------

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
  if (xT.shape.length !== 2 || xT.shape.includes(0)) {
    throw new RangeError(`${fn}: x must have shape [batch, dim] with positive sizes, got ${describe(xT.shape)}`);
  }
  const batch = xT.shape[0]!;
  const dim = xT.shape[1]!;
  const { wT, W } = checkWeight(check, weight, dim);
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

  const bias = checkBias(check, o.bias, dim);
  const silu = checkActivation(fn, o.activation);
  const device = check.device();

  const out = allocate(fn, [batch, dim], xT.dtype, device, false);
  freeOutputsOnThrow([out], () =>
    native.convUpdate({
      device: deviceIndex(device),
      dtype: dtypeCode(xT.dtype),
      batch,
      dim,
      width: W,
      stateSlots: slots,
      silu,
      convState: storageOf(stateT, fn, 'convState'),
      x: storageOf(xT, fn, 'x'),
      weight: storageOf(wT, fn, 'weight'),
      bias: storage(fn, 'bias', bias),
      stateBatchIndices: indices,
      out: storageOf(out, fn, 'out'),
    }),
  );
  markModified(stateT); // convState was shifted in place
  return out;
}
