// selectiveStateUpdate: one step of the recurrence, for decoding token by token. Native side:
// csrc/ops/state_update/.
import { ALL_DTYPES, ArgumentChecker, named, storage } from '../checks.js';
import { dtypeCode } from '../dtype.js';
import { describe } from '../errors.js';
import { native } from '../native.js';
import { freeOutputsOnThrow } from './common.js';
import { type Tensor, allocate, deviceIndex, markModified, storageOf } from '../tensor.js';
import { typedArrayLength, typedArrayName } from '../typed-arrays.js';

export interface StateUpdateOptions {
  /** (dim), (H, P) or (H) float32: y += D * x. */
  D?: Tensor;
  /** Same shape and dtype as x: y is multiplied by silu(z). */
  z?: Tensor;
  /** float32, shaped like dt without its batch dimension: added to dt before softplus. */
  dtBias?: Tensor;
  /** Apply softplus to dt (+ dtBias); default false. */
  dtSoftplus?: boolean;
  /** For each batch row, the row (cache slot) of `state` it reads and writes; negative = padding. */
  stateBatchIndices?: Int32Array;
}

const STEP_OPTIONS = ['D', 'z', 'dtBias', 'dtSoftplus', 'stateBatchIndices'];

/** The state tensor's form: its row dimensions and sizes (docs/API.md). */
interface StateForm {
  state: Tensor;
  heads: boolean;
  slots: number;
  H: number;
  P: number;
  N: number;
  rowNames: Record<string, number>;
  rowDims: number[];
}

/** Everything checkStateUpdate proved: what the descriptor is built from. */
interface CheckedStateUpdate extends StateForm {
  x: Tensor;
  dt: Tensor;
  A: Tensor;
  B: Tensor;
  C: Tensor;
  batch: number;
  groups: number;
  scalarPerHead: boolean;
  D: Tensor | undefined;
  dPerHead: boolean;
  z: Tensor | undefined;
  dtBias: Tensor | undefined;
  dtSoftplus: boolean;
  indices: Int32Array | undefined;
  device: ReturnType<ArgumentChecker['device']>;
}

const fn = 'selectiveStateUpdate';

/** state: float32, (batch, dim, N) or (batch, H, P, N), N <= 256. */
function checkStateForm(check: ArgumentChecker, state: Tensor): StateForm {
  const stateT = check.tensor('state', state);
  check.dtype('state', stateT, 'float32');
  const heads = stateT.shape.length === 4;
  if ((stateT.shape.length !== 3 && !heads) || stateT.shape.includes(0)) {
    throw new RangeError(
      `${fn}: state must have shape [batch, dim, N] or [batch, H, P, N] with positive sizes, got ${describe(stateT.shape)}`,
    );
  }
  const slots = stateT.shape[0]!;
  const H = stateT.shape[1]!;
  const P = heads ? stateT.shape[2]! : 1;
  const N = stateT.shape[stateT.shape.length - 1]!;
  if (N > 256) throw new RangeError(`${fn}: state has N=${N} states; N must be at most 256`);
  const rowNames: Record<string, number> = heads ? { H, P } : { dim: H };
  const rowDims = heads ? [H, P] : [H];
  return { state: stateT, heads, slots, H, P, N, rowNames, rowDims };
}

/**
 * The state's rows: one per batch row, or the cache slots that stateBatchIndices points into.
 * Checked by its real type and length, and copied: what is checked is what the op reads.
 */
function checkStateBatchIndices(given: unknown, batch: number, slots: number): Int32Array | undefined {
  if (given === undefined) {
    if (batch !== slots) {
      throw new RangeError(
        `${fn}: x has batch=${batch} rows but state has ${slots}; they must match unless stateBatchIndices is given`,
      );
    }
    return undefined;
  }
  if (typedArrayName(given) !== 'Int32Array') {
    throw new TypeError(`${fn}: stateBatchIndices must be an Int32Array, got ${describe(given)}`);
  }
  const length = typedArrayLength(given as Int32Array);
  if (length !== batch) {
    throw new RangeError(`${fn}: stateBatchIndices must have length batch=${batch}, got ${length}`);
  }
  const indices = new Int32Array(given as Int32Array);
  const seen = new Set<number>();
  for (const [i, slot] of indices.entries()) {
    if (slot < 0) continue; // padding
    if (slot >= slots) {
      throw new RangeError(`${fn}: stateBatchIndices[${i}]=${slot} must be below the ${slots} rows of state`);
    }
    if (seen.has(slot)) throw new RangeError(`${fn}: stateBatchIndices must be distinct; ${slot} appears twice`);
    seen.add(slot);
  }
  return indices;
}

/** B and C: (batch, N) (channels form only) or (batch, G, N) with G dividing H; the same G. Returns G. */
function checkGroups(check: ArgumentChecker, form: StateForm, x: Tensor, batch: number, B: Tensor, C: Tensor): number {
  const { heads, H, N } = form;
  let groups = 1;
  for (const [name, value] of [
    ['B', B],
    ['C', C],
  ] as const) {
    const t = check.tensor(name, value);
    check.dtype(name, t, x.dtype, ' (the dtype of x)');
    const G = t.shape.length === 3 ? t.shape[1]! : 1;
    const ok =
      t.shape.length === 3
        ? t.shape[0] === batch && t.shape[2] === N && G > 0
        : !heads && t.shape.length === 2 && t.shape[0] === batch && t.shape[1] === N;
    if (!ok) {
      const text = heads ? `[batch=${batch}, G, N=${N}]` : `${named({ batch, N })} or [${batch}, G, ${N}]`;
      throw new RangeError(`${fn}: ${name} must have shape ${text}, got ${describe(t.shape)}`);
    }
    if (H % G !== 0) {
      throw new RangeError(`${fn}: ${name} has G=${G} groups, which must divide ${heads ? 'H' : 'dim'}=${H}`);
    }
    if (name === 'C' && G !== groups) {
      throw new RangeError(`${fn}: B and C must have the same number of groups; B has ${groups}, C has ${G}`);
    }
    groups = G;
  }
  return groups;
}

/** Stage 1: every argument checked, in the order docs/API.md's errors follow; throws on the first bad one. */
function checkStateUpdate(
  state: Tensor,
  x: Tensor,
  dt: Tensor,
  A: Tensor,
  B: Tensor,
  C: Tensor,
  opts: StateUpdateOptions | undefined,
): CheckedStateUpdate {
  const check = new ArgumentChecker(fn);
  const o = check.options(opts, STEP_OPTIONS);
  const form = checkStateForm(check, state);
  const { heads, slots, H, P, N, rowNames, rowDims } = form;

  // No object spreads and no error text built on this path, which a decoding loop runs once per token:
  // V8 (Node 20) made `{ ...form, more }` cost about 60 µs a call and kept its garbage alive through
  // the scavenges (bench/call-overhead.mjs).
  const xT = check.tensor('x', x);
  check.dtype('x', xT, ALL_DTYPES);
  const xs = xT.shape;
  if (xs.length !== rowDims.length + 1 || xs[0] === 0 || xs[1] !== H || (heads && xs[2] !== P)) {
    throw new RangeError(`${fn}: x must have shape ${named({ batch: slots, ...rowNames })}, got ${describe(xs)}`);
  }
  const batch = xs[0]!;
  const xShape = heads ? [batch, H, P] : [batch, H];
  const xText = () => named({ batch, ...rowNames });

  const indices = checkStateBatchIndices(o.stateBatchIndices, batch, slots);

  // A decides between the heads forms: (H, P, N), or one scalar per head (H).
  const At = check.tensor('A', A);
  check.dtype('A', At, 'float32');
  const scalarPerHead = heads && At.shape.length === 1;
  if (scalarPerHead) {
    check.shape('A', At, [H], () => `${named({ H, P, N })} or ${named({ H })} (one scalar per head)`);
  } else {
    const aShape = heads ? [H, P, N] : [H, N];
    const aText = () =>
      heads ? `${named({ H, P, N })} or ${named({ H })} (one scalar per head)` : named({ dim: H, N });
    check.shape('A', At, aShape, aText);
  }

  const dtT = check.tensor('dt', dt);
  check.dtype('dt', dtT, xT.dtype, ' (the dtype of x)');
  if (scalarPerHead) check.shape('dt', dtT, [batch, H], () => `${named({ batch, H })} (A has one scalar per head)`);
  else check.shape('dt', dtT, xShape, xText);

  const groups = checkGroups(check, form, xT, batch, B, C);

  const D = check.optionalTensor('D', o.D);
  let dPerHead = false;
  if (D) {
    check.dtype('D', D, 'float32');
    dPerHead = heads && D.shape.length === 1;
    if (dPerHead) check.shape('D', D, [H], () => `${named({ H, P })} or ${named({ H })}`);
    else check.shape('D', D, rowDims, () => (heads ? `${named({ H, P })} or ${named({ H })}` : named({ dim: H })));
  }
  const z = check.optionalTensor('z', o.z);
  if (z) {
    check.shape('z', z, xShape, xText);
    check.dtype('z', z, xT.dtype, ' (the dtype of x)');
  }
  const dtBias = check.optionalTensor('dtBias', o.dtBias);
  if (dtBias) {
    check.dtype('dtBias', dtBias, 'float32');
    if (scalarPerHead) check.shape('dtBias', dtBias, [H], () => `${named({ H })} (A has one scalar per head)`);
    else check.shape('dtBias', dtBias, rowDims, () => (heads ? named({ H, P }) : named({ dim: H })));
  }
  const dtSoftplus = check.boolean('dtSoftplus', o.dtSoftplus);
  const device = check.device();
  return {
    state: form.state,
    heads,
    slots,
    H,
    P,
    N,
    rowNames,
    rowDims,
    x: xT,
    dt: dtT,
    A: At,
    B,
    C,
    batch,
    groups,
    scalarPerHead,
    D,
    dPerHead,
    z,
    dtBias,
    dtSoftplus,
    indices,
    device,
  };
}

/** Stage 2: the descriptor csrc/ops/state_update/state_update_binding.cc reads. */
function stateUpdateDescriptor(c: CheckedStateUpdate, y: Tensor) {
  return {
    device: deviceIndex(c.device),
    dtype: dtypeCode(c.x.dtype),
    batch: c.batch,
    heads: c.H,
    headDim: c.P,
    dstate: c.N,
    groups: c.groups,
    stateSlots: c.slots,
    scalarPerHead: c.scalarPerHead,
    dtSoftplus: c.dtSoftplus,
    dPerHead: c.dPerHead,
    state: storageOf(c.state, fn, 'state'),
    x: storageOf(c.x, fn, 'x'),
    dt: storageOf(c.dt, fn, 'dt'),
    A: storageOf(c.A, fn, 'A'),
    B: storageOf(c.B, fn, 'B'),
    C: storageOf(c.C, fn, 'C'),
    D: storage(fn, 'D', c.D),
    z: storage(fn, 'z', c.z),
    dtBias: storage(fn, 'dtBias', c.dtBias),
    stateBatchIndices: c.indices,
    y: storageOf(y, fn, 'y'),
  };
}

/**
 * Stage 3: allocates y and runs the op where the tensors live; a failed call frees y and changes
 * nothing else. A call that ran bumps the state's version (a saved forward that holds it then refuses
 * its backward).
 */
function dispatchStateUpdate(c: CheckedStateUpdate): Tensor {
  const y = allocate(fn, c.heads ? [c.batch, c.H, c.P] : [c.batch, c.H], c.x.dtype, c.device, false);
  freeOutputsOnThrow([y], () => native.stateUpdate(stateUpdateDescriptor(c, y)));
  markModified(c.state); // advanced in place
  return y;
}

/**
 * Advances `state` by one step in place and returns y. Forms (docs/API.md):
 *   channels: state (batch, dim, N), x/dt/z (batch, dim), A (dim, N), B/C (batch, N) or (batch, G, N)
 *   heads:    state (batch, H, P, N), x/dt/z (batch, H, P), A (H, P, N), B/C (batch, G, N)
 *   heads, one scalar per head: as heads, but A (H), dt (batch, H), dtBias (H), D (H) or (H, P)
 */
export function selectiveStateUpdate(
  state: Tensor,
  x: Tensor,
  dt: Tensor,
  A: Tensor,
  B: Tensor,
  C: Tensor,
  opts?: StateUpdateOptions,
): Tensor {
  return dispatchStateUpdate(checkStateUpdate(state, x, dt, A, B, C, opts));
}
