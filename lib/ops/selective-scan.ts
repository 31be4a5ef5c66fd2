// selectiveScan (forward), selectiveScanBackward, and the context that links them. Native side:
// csrc/ops/selective_scan/.
import { ALL_DTYPES, ArgumentChecker, checkCuSeqlens, named, storage } from '../checks.js';
import { type DType, dtypeCode } from '../dtype.js';
import { describe } from '../errors.js';
import { addField, allocateGradients, allocateOutputs, freeOutputsOnThrow } from './common.js';
import { native, type ProjectionDescriptor, type ScanInputsDescriptor, type ScanShapeDescriptor } from '../native.js';
import { markPrototype } from '../brand.js';
import { ForwardContext, contextAccess } from '../context.js';
import { type Device, type Tensor, deviceIndex, storageOf } from '../tensor.js';

export interface ScanOptions {
  /** (dim) float32: skip connection, y += D * u. */
  D?: Tensor;
  /** (batch, dim, L), dtype of u: the output is multiplied by silu(z). */
  z?: Tensor;
  /** (dim) float32, added to delta before softplus. */
  deltaBias?: Tensor;
  /** Apply softplus to delta (+ deltaBias); default false. */
  deltaSoftplus?: boolean;
  /** (batch, dim, N) float32 (nseq rows with cuSeqlens); default zeros. */
  initialState?: Tensor;
  /** Also return the state after the last step (of each sequence with cuSeqlens); default false. */
  returnLastState?: boolean;
  /**
   * Packed sequences along L of a batch-1 call: nseq + 1 offsets, 0 first, never decreasing, L last.
   * Sequence i is steps cuSeqlens[i] to cuSeqlens[i + 1] - 1 and runs from initialState[i].
   */
  cuSeqlens?: Int32Array;
  /** Keep what the backward needs (inputs and per-chunk checkpoints) in `ctx`; default false. */
  saveForBackward?: boolean;
}

export interface ScanResult {
  out: Tensor;
  lastState?: Tensor;
  ctx?: ScanContext;
}

export interface ScanBackwardOptions {
  /** (batch, dim, N) float32 (nseq rows with cuSeqlens): the gradient flowing into lastState. */
  dLastState?: Tensor;
  /** Bit-identical gradients on every run. */
  deterministic?: boolean;
}

export interface ScanGradients {
  du: Tensor;
  ddelta: Tensor;
  dA: Tensor;
  dB: Tensor;
  dC: Tensor;
  dD?: Tensor;
  dz?: Tensor;
  ddeltaBias?: Tensor;
  dInitialState?: Tensor;
}

const SCAN_OPTIONS = [
  'D',
  'z',
  'deltaBias',
  'deltaSoftplus',
  'initialState',
  'returnLastState',
  'cuSeqlens',
  'saveForBackward',
];
const MAX_DSTATE = 256;

/** The checked inputs of one scan. */
interface ScanInputs {
  device: Device;
  dtype: DType;
  batch: number;
  dim: number;
  seqlen: number;
  dstate: number;
  u: Tensor;
  delta: Tensor;
  A: Tensor;
  B: Tensor;
  layoutB: Projection;
  C: Tensor;
  layoutC: Projection;
  D?: Tensor;
  z?: Tensor;
  deltaBias?: Tensor;
  initialState?: Tensor;
  deltaSoftplus: boolean;
  /** The rows of the states: nseq with cuSeqlens, else batch. */
  sequences: number;
  cuSeqlens?: Int32Array;
}

/** How B or C is given: fixed (dim, N) float32, or input-dependent (batch, G, N, L) in u's dtype. */
type Projection = { kind: 'fixed' } | { kind: 'varying'; groups: number };

// B or C: fixed (dim, N) float32, or input-dependent (batch, N, L) / (batch, G, N, L) in u's dtype.
function checkProjection(
  check: ArgumentChecker,
  name: string,
  t: Tensor,
  s: { batch: number; dim: number; seqlen: number; dstate: number; dtype: DType },
): Projection {
  const { batch, dim, seqlen: L, dstate: N } = s;
  const expected = `${named({ dim, N })} (fixed), ${named({ batch, N, L })} or [${batch}, G, ${N}, ${L}] (input-dependent)`;
  const fits = (e: number[]) => t.shape.length === e.length && t.shape.every((v, i) => e[i] === -1 || v === e[i]);
  if (fits([dim, N])) {
    check.dtype(name, t, 'float32', ` (a fixed ${name} of shape [dim, N])`);
    return { kind: 'fixed' };
  }
  if (fits([batch, N, L])) {
    check.dtype(name, t, s.dtype, ` (the dtype of u, as ${name} is input-dependent)`);
    return { kind: 'varying', groups: 1 };
  }
  if (fits([batch, -1, N, L]) && t.shape[1]! > 0) {
    const G = t.shape[1]!;
    if (dim % G !== 0) {
      throw new RangeError(
        `${check.fn}: ${name} has G=${G} groups, which must divide dim=${dim}; got shape ${describe(t.shape)}`,
      );
    }
    check.dtype(name, t, s.dtype, ` (the dtype of u, as ${name} is input-dependent)`);
    return { kind: 'varying', groups: G };
  }
  throw new RangeError(`${check.fn}: ${name} must have shape ${expected}, got ${describe(t.shape)}`);
}

function checkScanInputs(
  check: ArgumentChecker,
  u: unknown,
  delta: unknown,
  A: unknown,
  B: unknown,
  C: unknown,
  o: Record<string, unknown>,
): ScanInputs {
  const ut = check.tensor('u', u);
  if (ut.shape.length !== 3 || ut.shape.some((s) => s === 0)) {
    throw new RangeError(
      `${check.fn}: u must have shape [batch, dim, L] with positive sizes, got ${describe(ut.shape)}`,
    );
  }
  check.dtype('u', ut, ALL_DTYPES);
  const [batch, dim, seqlen] = ut.shape as [number, number, number];
  const rowShape = named({ batch, dim, L: seqlen });
  const deltaT = check.tensor('delta', delta);
  check.shape('delta', deltaT, ut.shape, rowShape);
  check.dtype('delta', deltaT, ut.dtype, ' (the dtype of u)');
  const At = check.tensor('A', A);
  if (At.shape.length !== 2 || At.shape[0] !== dim || At.shape[1] === 0) {
    throw new RangeError(`${check.fn}: A must have shape [dim=${dim}, N], got ${describe(At.shape)}`);
  }
  const dstate = At.shape[1]!;
  if (dstate > MAX_DSTATE)
    throw new RangeError(`${check.fn}: A has N=${dstate} states; N must be at most ${MAX_DSTATE}`);
  check.dtype('A', At, 'float32');
  const sizes = { batch, dim, seqlen, dstate, dtype: ut.dtype };
  const Bt = check.tensor('B', B);
  const layoutB = checkProjection(check, 'B', Bt, sizes);
  const Ct = check.tensor('C', C);
  const layoutC = checkProjection(check, 'C', Ct, sizes);

  const D = check.optionalTensor('D', o.D);
  if (D) {
    check.shape('D', D, [dim], named({ dim }));
    check.dtype('D', D, 'float32');
  }
  const z = check.optionalTensor('z', o.z);
  if (z) {
    check.shape('z', z, ut.shape, rowShape);
    check.dtype('z', z, ut.dtype, ' (the dtype of u)');
  }
  const deltaBias = check.optionalTensor('deltaBias', o.deltaBias);
  if (deltaBias) {
    check.shape('deltaBias', deltaBias, [dim], named({ dim }));
    check.dtype('deltaBias', deltaBias, 'float32');
  }
  const cuSeqlens = o.cuSeqlens === undefined ? undefined : checkCuSeqlens(check.fn, o.cuSeqlens, batch, seqlen);
  const sequences = cuSeqlens ? cuSeqlens.length - 1 : batch;
  const initialState = check.optionalTensor('initialState', o.initialState);
  if (initialState) {
    check.shape('initialState', initialState, [sequences, dim, dstate], () =>
      named({ ...stateRows(cuSeqlens, sequences), dim, N: dstate }),
    );
    check.dtype('initialState', initialState, 'float32');
  }
  const deltaSoftplus = check.boolean('deltaSoftplus', o.deltaSoftplus);
  return {
    device: check.device(),
    dtype: ut.dtype,
    batch,
    dim,
    seqlen,
    dstate,
    u: ut,
    delta: deltaT,
    A: At,
    B: Bt,
    layoutB,
    C: Ct,
    layoutC,
    D,
    z,
    deltaBias,
    initialState,
    deltaSoftplus,
    sequences,
    cuSeqlens,
  };
}

// The rows of the states (nseq with cuSeqlens, else batch), named for error messages.
function stateRows(cuSeqlens: Int32Array | undefined, sequences: number): Record<string, number> {
  return cuSeqlens ? { nseq: sequences } : { batch: sequences };
}

function projectionDescriptor(fn: string, name: string, t: Tensor, layout: Projection): ProjectionDescriptor {
  const data = storageOf(t, fn, name);
  return layout.kind === 'fixed' ? { kind: 'fixed', data } : { kind: 'varying', groups: layout.groups, data };
}

function shapeDescriptor(s: ScanInputs): ScanShapeDescriptor {
  return { device: deviceIndex(s.device), batch: s.batch, dim: s.dim, seqlen: s.seqlen, dstate: s.dstate };
}

// The part of a native descriptor that describes the forward's inputs.
function inputDescriptor(fn: string, s: ScanInputs, chunkLength: number): ScanInputsDescriptor {
  // Object.assign, not a spread: V8 (Node 20) took tens of µs for `{ ...shape, more }` and kept
  // its garbage alive through the scavenges (bench/results/2026-12-02-cpu-amd-epyc-2t-call-overhead.md).
  // Onto an object without a prototype, so that assigning the fields (here and at the call sites)
  // defines them even where a program put setters of the same names on Object.prototype.
  return Object.assign(Object.create(null) as object, shapeDescriptor(s), {
    dtype: dtypeCode(s.dtype),
    u: storageOf(s.u, fn, 'u'),
    delta: storageOf(s.delta, fn, 'delta'),
    A: storageOf(s.A, fn, 'A'),
    B: projectionDescriptor(fn, 'B', s.B, s.layoutB),
    C: projectionDescriptor(fn, 'C', s.C, s.layoutC),
    D: storage(fn, 'D', s.D),
    z: storage(fn, 'z', s.z),
    deltaBias: storage(fn, 'deltaBias', s.deltaBias),
    sequences: s.sequences,
    cuSeqlens: s.cuSeqlens,
    initialState: storage(fn, 'initialState', s.initialState),
    deltaSoftplus: s.deltaSoftplus,
    chunkLength,
  });
}

const SCAN_CONTEXT = { name: 'ScanContext', madeBy: 'selectiveScan(..., { saveForBackward: true })' };
const context = contextAccess<ScanInputs>(SCAN_CONTEXT);
// Set in ScanContext's static block (its constructor is private).
let makeContext: (inputs: ScanInputs, chunkLength: number, checkpoints: Tensor) => ScanContext;
const contextState = context.saved;

/**
 * What the backward needs from a forward: references to its inputs (not copies) and the state at
 * the end of every chunk. `dispose()` frees the checkpoints, not the inputs.
 */
export class ScanContext extends ForwardContext {
  static {
    makeContext = (inputs, chunkLength, checkpoints) => new ScanContext(context.key, inputs, chunkLength, checkpoints);
    markPrototype(ScanContext.prototype);
    context.defineMembers(ScanContext.prototype);
  }

  /** Made by selectiveScan(..., { saveForBackward: true }). */
  private constructor(key: symbol, inputs: ScanInputs, chunkLength: number, checkpoints: Tensor) {
    super(key, SCAN_CONTEXT, inputs, chunkLength, checkpoints);
  }

  /** @internal The checkpoints of a live context (the tfjs adapter hands them to tfjs, which then owns them). */
  static checkpointsOf(ctx: ScanContext): Tensor {
    return contextState(ctx, 'selectiveScan').checkpoints;
  }

  /**
   * @internal The context that selectiveScan(u, delta, A, B, C, { ...opts, saveForBackward: true })
   * made, from those inputs and its checkpoints: the tfjs adapter keeps the checkpoints as a tfjs
   * tensor between the forward and the backward.
   */
  static restore(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    opts: Omit<ScanOptions, 'returnLastState' | 'saveForBackward'>,
    checkpoints: Tensor,
  ): ScanContext {
    const check = new ArgumentChecker('selectiveScanBackward');
    const s = checkScanInputs(check, u, delta, A, B, C, check.options(opts, SCAN_OPTIONS));
    const chunkLength = native.scanChunkLength(shapeDescriptor(s));
    const expected = [s.batch, s.dim, Math.ceil(s.seqlen / chunkLength), s.dstate];
    check.shape('checkpoints', checkpoints, expected, describe(expected));
    check.dtype('checkpoints', checkpoints, 'float32');
    return makeContext(s, chunkLength, checkpoints);
  }
}

export function selectiveScan(
  u: Tensor,
  delta: Tensor,
  A: Tensor,
  B: Tensor,
  C: Tensor,
  opts?: ScanOptions,
): ScanResult {
  const fn = 'selectiveScan';
  const check = new ArgumentChecker(fn);
  const o = check.options(opts, SCAN_OPTIONS);
  const s = checkScanInputs(check, u, delta, A, B, C, o);
  const returnLastState = check.boolean('returnLastState', o.returnLastState);
  const saveForBackward = check.boolean('saveForBackward', o.saveForBackward);

  const { batch, dim, seqlen, dstate } = s;
  const chunkLength = native.scanChunkLength(shapeDescriptor(s));
  const chunks = Math.ceil(seqlen / chunkLength);
  const { out, lastState, checkpoints } = allocateOutputs(fn, s.device, {
    out: [[batch, dim, seqlen], s.dtype],
    lastState: returnLastState ? [[s.sequences, dim, dstate], 'float32'] : undefined,
    checkpoints: saveForBackward ? [[batch, dim, chunks, dstate], 'float32'] : undefined,
  });
  freeOutputsOnThrow([out, lastState, checkpoints], () =>
    native.scanForward(
      Object.assign(inputDescriptor(fn, s, chunkLength), {
        out: storageOf(out, fn, 'out'),
        lastState: storage(fn, 'lastState', lastState),
        checkpoints: storage(fn, 'checkpoints', checkpoints),
      }),
    ),
  );
  const result: ScanResult = { out };
  if (lastState) addField(result, 'lastState', lastState);
  if (checkpoints) addField(result, 'ctx', makeContext(s, chunkLength, checkpoints));
  return result;
}

export function selectiveScanBackward(ctx: ScanContext, dout: Tensor, opts?: ScanBackwardOptions): ScanGradients {
  const fn = 'selectiveScanBackward';
  const { inputs: s, chunkLength, checkpoints } = contextState(ctx, fn);
  const check = new ArgumentChecker(fn);
  const o = check.options(opts, ['dLastState', 'deterministic']);
  const { batch, dim, seqlen, dstate } = s;
  const doutT = check.tensor('dout', dout);
  check.shape('dout', doutT, [batch, dim, seqlen], named({ batch, dim, L: seqlen }));
  check.dtype('dout', doutT, s.dtype, ' (the dtype of u)');
  const dLastState = check.optionalTensor('dLastState', o.dLastState);
  if (dLastState) {
    const rows = stateRows(s.cuSeqlens, s.sequences);
    check.shape('dLastState', dLastState, [s.sequences, dim, dstate], () => named({ ...rows, dim, N: dstate }));
    check.dtype('dLastState', dLastState, 'float32');
  }
  const deterministic = check.boolean('deterministic', o.deterministic);
  check.forwardDevice(s.device);

  const grads = allocateGradients<ScanGradients>(fn, s.device, {
    du: s.u,
    ddelta: s.delta,
    dA: s.A,
    dB: s.B,
    dC: s.C,
    dD: s.D,
    dz: s.z,
    ddeltaBias: s.deltaBias,
    dInitialState: s.initialState,
  });
  const gradStorage = (name: keyof ScanGradients) => storage(fn, name, grads[name]);
  freeOutputsOnThrow(grads, () =>
    native.scanBackward(
      Object.assign(inputDescriptor(fn, s, chunkLength), {
        checkpoints: storageOf(checkpoints, fn, 'ctx'),
        dout: storageOf(doutT, fn, 'dout'),
        dLastState: storage(fn, 'dLastState', dLastState),
        deterministic,
        du: storageOf(grads.du, fn, 'du'),
        ddelta: storageOf(grads.ddelta, fn, 'ddelta'),
        dz: gradStorage('dz'),
        dA: storageOf(grads.dA, fn, 'dA'),
        dB: storageOf(grads.dB, fn, 'dB'),
        dC: storageOf(grads.dC, fn, 'dC'),
        dD: gradStorage('dD'),
        ddeltaBias: gradStorage('ddeltaBias'),
        dInitialState: gradStorage('dInitialState'),
      }),
    ),
  );
  return grads;
}
