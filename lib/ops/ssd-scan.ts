// ssdScan (Mamba-2's state space dual scan), ssdScanBackward, and the context that links them.
// Native side: csrc/ops/ssd_scan/ (the CPU backend; CUDA: a recurrent forward and backward, and a chunked
// tensor-core forward for float16 and bfloat16).
import { ALL_DTYPES, ArgumentChecker, checkCuSeqlens, named, storage } from '../checks.js';
import { markPrototype } from '../brand.js';
import { ForwardContext, contextAccess } from '../context.js';
import { type DType, dtypeCode } from '../dtype.js';
import { describe } from '../errors.js';
import { addField, allocateGradients, allocateOutputs, freeOutputsOnThrow } from './common.js';
import { native, type SsdInputsDescriptor, type SsdShapeDescriptor } from '../native.js';
import { type Device, type Tensor, deviceIndex, storageOf } from '../tensor.js';

export interface SsdOptions {
  /** (H) or (H, P) float32: y += D * x. */
  D?: Tensor;
  /** (batch, L, H, P), dtype of x: out = y * silu(z). */
  z?: Tensor;
  /** (H) float32, added to dt before softplus. */
  dtBias?: Tensor;
  /** Apply softplus to dt (+ dtBias); default false. */
  dtSoftplus?: boolean;
  /** Clamp of dt after bias and softplus; default [0, Infinity]. */
  dtLimit?: [number, number];
  /** (batch, H, P, N) float32 (nseq rows with cuSeqlens); default zeros. */
  initialState?: Tensor;
  returnLastState?: boolean;
  /** Packed sequences along L of a batch-1 call. */
  cuSeqlens?: Int32Array;
  saveForBackward?: boolean;
}

export interface SsdResult {
  out: Tensor;
  lastState?: Tensor;
  ctx?: SsdContext;
}

export interface SsdBackwardOptions {
  /** (batch, H, P, N) float32 (nseq rows with cuSeqlens): the gradient flowing into lastState. */
  dLastState?: Tensor;
  deterministic?: boolean;
}

export interface SsdGradients {
  dx: Tensor;
  ddt: Tensor;
  dA: Tensor;
  dB: Tensor;
  dC: Tensor;
  dD?: Tensor;
  dz?: Tensor;
  ddtBias?: Tensor;
  dInitialState?: Tensor;
}

const SSD_OPTIONS = [
  'D',
  'z',
  'dtBias',
  'dtSoftplus',
  'dtLimit',
  'initialState',
  'returnLastState',
  'cuSeqlens',
  'saveForBackward',
];
const MAX_DSTATE = 256;

interface SsdInputs {
  device: Device;
  dtype: DType;
  batch: number;
  seqlen: number;
  heads: number;
  headDim: number;
  groups: number;
  dstate: number;
  sequences: number;
  x: Tensor;
  dt: Tensor;
  A: Tensor;
  B: Tensor;
  C: Tensor;
  D?: Tensor;
  z?: Tensor;
  dtBias?: Tensor;
  initialState?: Tensor;
  dtSoftplus: boolean;
  dtLimit: [number, number];
  cuSeqlens?: Int32Array;
}

// [lo, hi]: two numbers, neither NaN, lo <= hi; read as own data elements only.
function checkDtLimit(fn: string, value: unknown): [number, number] {
  if (value === undefined) return [0, Number.POSITIVE_INFINITY];
  const element = (i: number): unknown => Object.getOwnPropertyDescriptor(value, i)?.value;
  if (!Array.isArray(value) || value.length !== 2 || typeof element(0) !== 'number' || typeof element(1) !== 'number') {
    throw new TypeError(`${fn}: dtLimit must be an array of two numbers [lo, hi], got ${describe(value)}`);
  }
  const lo = element(0) as number;
  const hi = element(1) as number;
  if (Number.isNaN(lo) || Number.isNaN(hi) || lo > hi) {
    throw new RangeError(`${fn}: dtLimit must be [lo, hi] with lo <= hi and neither NaN, got [${lo}, ${hi}]`);
  }
  return [lo, hi];
}

function checkSsdInputs(
  check: ArgumentChecker,
  x: unknown,
  dt: unknown,
  A: unknown,
  B: unknown,
  C: unknown,
  o: Record<string, unknown>,
): SsdInputs {
  const fn = check.fn;
  const xt = check.tensor('x', x);
  if (xt.shape.length !== 4 || xt.shape.some((s) => s === 0)) {
    throw new RangeError(`${fn}: x must have shape [batch, L, H, P] with positive sizes, got ${describe(xt.shape)}`);
  }
  check.dtype('x', xt, ALL_DTYPES);
  const [batch, seqlen, heads, headDim] = xt.shape as [number, number, number, number];
  const xText = named({ batch, L: seqlen, H: heads, P: headDim });
  const dtT = check.tensor('dt', dt);
  check.shape('dt', dtT, [batch, seqlen, heads], named({ batch, L: seqlen, H: heads }));
  check.dtype('dt', dtT, xt.dtype, ' (the dtype of x)');
  const At = check.tensor('A', A);
  check.shape('A', At, [heads], `${named({ H: heads })} (one scalar per head)`);
  check.dtype('A', At, 'float32');
  const Bt = check.tensor('B', B);
  if (
    Bt.shape.length !== 4 ||
    Bt.shape[0] !== batch ||
    Bt.shape[1] !== seqlen ||
    Bt.shape[2] === 0 ||
    Bt.shape[3] === 0
  ) {
    throw new RangeError(`${fn}: B must have shape [batch=${batch}, L=${seqlen}, G, N], got ${describe(Bt.shape)}`);
  }
  const groups = Bt.shape[2]!;
  const dstate = Bt.shape[3]!;
  if (heads % groups !== 0) {
    throw new RangeError(`${fn}: B has G=${groups} groups, which must divide H=${heads}; got ${describe(Bt.shape)}`);
  }
  if (dstate > MAX_DSTATE) throw new RangeError(`${fn}: B has N=${dstate} states; N must be at most ${MAX_DSTATE}`);
  check.dtype('B', Bt, xt.dtype, ' (the dtype of x)');
  const Ct = check.tensor('C', C);
  check.shape('C', Ct, [batch, seqlen, groups, dstate], `${named({ batch, L: seqlen, G: groups, N: dstate })} (as B)`);
  check.dtype('C', Ct, xt.dtype, ' (the dtype of x)');

  const D = check.optionalTensor('D', o.D);
  if (D) {
    const text = `${named({ H: heads })} or ${named({ H: heads, P: headDim })}`;
    check.shape('D', D, D.shape.length === 1 ? [heads] : [heads, headDim], text);
    check.dtype('D', D, 'float32');
  }
  const z = check.optionalTensor('z', o.z);
  if (z) {
    check.shape('z', z, xt.shape, xText);
    check.dtype('z', z, xt.dtype, ' (the dtype of x)');
  }
  const dtBias = check.optionalTensor('dtBias', o.dtBias);
  if (dtBias) {
    check.shape('dtBias', dtBias, [heads], named({ H: heads }));
    check.dtype('dtBias', dtBias, 'float32');
  }
  const dtSoftplus = check.boolean('dtSoftplus', o.dtSoftplus);
  const dtLimit = checkDtLimit(fn, o.dtLimit);
  const cuSeqlens = o.cuSeqlens === undefined ? undefined : checkCuSeqlens(fn, o.cuSeqlens, batch, seqlen);
  const sequences = cuSeqlens ? cuSeqlens.length - 1 : batch;
  const initialState = check.optionalTensor('initialState', o.initialState);
  if (initialState) {
    const rows: Record<string, number> = cuSeqlens ? { nseq: sequences } : { batch };
    check.shape('initialState', initialState, [sequences, heads, headDim, dstate], () =>
      named({ ...rows, H: heads, P: headDim, N: dstate }),
    );
    check.dtype('initialState', initialState, 'float32');
  }
  const result: SsdInputs = {
    device: check.device(),
    dtype: xt.dtype,
    batch,
    seqlen,
    heads,
    headDim,
    groups,
    dstate,
    sequences,
    x: xt,
    dt: dtT,
    A: At,
    B: Bt,
    C: Ct,
    dtSoftplus,
    dtLimit,
    // Own properties even when absent, so that nothing on Object.prototype stands in for them.
    D,
    z,
    dtBias,
    initialState,
    cuSeqlens,
  };
  return result;
}

function shapeDescriptor(s: SsdInputs): SsdShapeDescriptor {
  const { batch, seqlen, heads, headDim, groups, dstate } = s;
  return { device: deviceIndex(s.device), batch, seqlen, heads, headDim, groups, dstate };
}

function inputDescriptor(fn: string, s: SsdInputs, chunkLength: number): SsdInputsDescriptor {
  // Object.assign, not a spread: V8 (Node 20) took tens of µs for `{ ...shape, more }` and kept
  // its garbage alive through the scavenges (bench/results/2026-12-02-cpu-amd-epyc-2t-call-overhead.md).
  // Onto an object without a prototype, so that assigning the fields (here and at the call sites)
  // defines them even where a program put setters of the same names on Object.prototype.
  return Object.assign(Object.create(null) as object, shapeDescriptor(s), {
    dtype: dtypeCode(s.dtype),
    x: storageOf(s.x, fn, 'x'),
    dt: storageOf(s.dt, fn, 'dt'),
    A: storageOf(s.A, fn, 'A'),
    B: storageOf(s.B, fn, 'B'),
    C: storageOf(s.C, fn, 'C'),
    z: storage(fn, 'z', s.z),
    D: storage(fn, 'D', s.D),
    dPerHead: s.D !== undefined && s.D.shape.length === 1,
    dtBias: storage(fn, 'dtBias', s.dtBias),
    dtSoftplus: s.dtSoftplus,
    dtLow: s.dtLimit[0],
    dtHigh: s.dtLimit[1],
    sequences: s.sequences,
    cuSeqlens: s.cuSeqlens,
    initialState: storage(fn, 'initialState', s.initialState),
    chunkLength,
  });
}

function checkpointShape(s: SsdInputs, chunkLength: number): number[] {
  return [s.batch, s.heads, Math.ceil(s.seqlen / chunkLength), s.dstate, s.headDim];
}

const SSD_CONTEXT = { name: 'SsdContext', madeBy: 'ssdScan(..., { saveForBackward: true })' };
const context = contextAccess<SsdInputs>(SSD_CONTEXT);
// Set in SsdContext's static block (its constructor is private).
let makeContext: (inputs: SsdInputs, chunkLength: number, checkpoints: Tensor) => SsdContext;

/**
 * What ssdScanBackward needs from a forward: references to its inputs (not copies) and the state at
 * the end of every chunk. `dispose()` frees the checkpoints, not the inputs.
 */
export class SsdContext extends ForwardContext {
  static {
    makeContext = (inputs, chunkLength, checkpoints) => new SsdContext(context.key, inputs, chunkLength, checkpoints);
    markPrototype(SsdContext.prototype);
    context.defineMembers(SsdContext.prototype);
  }

  /** Made by ssdScan(..., { saveForBackward: true }). */
  private constructor(key: symbol, inputs: SsdInputs, chunkLength: number, checkpoints: Tensor) {
    super(key, SSD_CONTEXT, inputs, chunkLength, checkpoints);
  }

  /** @internal The checkpoints of a live context (the tfjs adapter hands them to tfjs, which then owns them). */
  static checkpointsOf(ctx: SsdContext): Tensor {
    return context.saved(ctx, 'ssdScan').checkpoints;
  }

  /**
   * @internal The context that ssdScan(x, dt, A, B, C, { ...opts, saveForBackward: true }) made,
   * from those inputs and its checkpoints: the tfjs adapter keeps the checkpoints as a tfjs tensor
   * between the forward and the backward.
   */
  static restore(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    opts: Omit<SsdOptions, 'returnLastState' | 'saveForBackward'>,
    checkpoints: Tensor,
  ): SsdContext {
    const check = new ArgumentChecker('ssdScanBackward');
    const s = checkSsdInputs(check, x, dt, A, B, C, check.options(opts, SSD_OPTIONS));
    const chunkLength = native.ssdChunkLength(shapeDescriptor(s));
    const expected = checkpointShape(s, chunkLength);
    check.shape('checkpoints', checkpoints, expected, describe(expected));
    check.dtype('checkpoints', checkpoints, 'float32');
    return makeContext(s, chunkLength, checkpoints);
  }
}

export function ssdScan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, opts?: SsdOptions): SsdResult {
  const fn = 'ssdScan';
  const check = new ArgumentChecker(fn);
  const o = check.options(opts, SSD_OPTIONS);
  const s = checkSsdInputs(check, x, dt, A, B, C, o);
  const returnLastState = check.boolean('returnLastState', o.returnLastState);
  const saveForBackward = check.boolean('saveForBackward', o.saveForBackward);
  const chunkLength = native.ssdChunkLength(shapeDescriptor(s));
  const stateShape = [s.sequences, s.heads, s.headDim, s.dstate];
  const { out, lastState, checkpoints } = allocateOutputs(fn, s.device, {
    out: [[s.batch, s.seqlen, s.heads, s.headDim], s.dtype],
    lastState: returnLastState ? [stateShape, 'float32'] : undefined,
    checkpoints: saveForBackward ? [checkpointShape(s, chunkLength), 'float32'] : undefined,
  });
  freeOutputsOnThrow([out, lastState, checkpoints], () =>
    native.ssdForward(
      Object.assign(inputDescriptor(fn, s, chunkLength), {
        out: storageOf(out, fn, 'out'),
        lastState: storage(fn, 'lastState', lastState),
        checkpoints: storage(fn, 'checkpoints', checkpoints),
      }),
    ),
  );
  const result: SsdResult = { out };
  if (lastState) addField(result, 'lastState', lastState);
  if (checkpoints) addField(result, 'ctx', makeContext(s, chunkLength, checkpoints));
  return result;
}

export function ssdScanBackward(ctx: SsdContext, dout: Tensor, opts?: SsdBackwardOptions): SsdGradients {
  const fn = 'ssdScanBackward';
  const { inputs: s, chunkLength, checkpoints } = context.saved(ctx, fn);
  const check = new ArgumentChecker(fn);
  const o = check.options(opts, ['dLastState', 'deterministic']);
  const { batch, seqlen, heads, headDim, dstate } = s;
  const doutT = check.tensor('dout', dout);
  check.shape('dout', doutT, [batch, seqlen, heads, headDim], named({ batch, L: seqlen, H: heads, P: headDim }));
  check.dtype('dout', doutT, s.dtype, ' (the dtype of x)');
  const dLastState = check.optionalTensor('dLastState', o.dLastState);
  if (dLastState) {
    const rows: Record<string, number> = s.cuSeqlens ? { nseq: s.sequences } : { batch };
    check.shape('dLastState', dLastState, [s.sequences, heads, headDim, dstate], () =>
      named({ ...rows, H: heads, P: headDim, N: dstate }),
    );
    check.dtype('dLastState', dLastState, 'float32');
  }
  const deterministic = check.boolean('deterministic', o.deterministic);
  check.forwardDevice(s.device);

  const grads = allocateGradients<SsdGradients>(fn, s.device, {
    dx: s.x,
    ddt: s.dt,
    dA: s.A,
    dB: s.B,
    dC: s.C,
    dD: s.D,
    dz: s.z,
    ddtBias: s.dtBias,
    dInitialState: s.initialState,
  });
  const gradStorage = (name: keyof SsdGradients) => storage(fn, name, grads[name]);
  freeOutputsOnThrow(grads, () =>
    native.ssdBackward(
      Object.assign(inputDescriptor(fn, s, chunkLength), {
        checkpoints: storageOf(checkpoints, fn, 'ctx'),
        dout: storageOf(doutT, fn, 'dout'),
        dLastState: storage(fn, 'dLastState', dLastState),
        deterministic,
        dx: storageOf(grads.dx, fn, 'dx'),
        ddt: storageOf(grads.ddt, fn, 'ddt'),
        dA: storageOf(grads.dA, fn, 'dA'),
        dB: storageOf(grads.dB, fn, 'dB'),
        dC: storageOf(grads.dC, fn, 'dC'),
        dz: gradStorage('dz'),
        dD: gradStorage('dD'),
        ddtBias: gradStorage('ddtBias'),
        dInitialState: gradStorage('dInitialState'),
      }),
    ),
  );
  return grads;
}
