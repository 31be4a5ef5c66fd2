// selectiveStateUpdate: one step of the recurrence, for decoding token by token. Native side:
// csrc/ops/state_update/.
import { ALL_DTYPES, ArgumentChecker, named, storage } from '../checks.js';
import { dtypeCode } from '../dtype.js';
import { describe } from '../errors.js';
import { native } from '../native.js';
import { type Tensor, allocate, deviceIndex, storageOf } from '../tensor.js';
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
  const fn = 'selectiveStateUpdate';
  const check = new ArgumentChecker(fn);
  const o = check.options(opts, STEP_OPTIONS);
  const stateT = check.tensor('state', state);
  check.dtype('state', stateT, 'float32');
  const heads = stateT.shape.length === 4;
  if ((stateT.shape.length !== 3 && !heads) || stateT.shape.some((s) => s === 0)) {
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

  const xT = check.tensor('x', x);
  check.dtype('x', xT, ALL_DTYPES);
  if (xT.shape.length !== rowDims.length + 1 || xT.shape[0] === 0 || rowDims.some((s, i) => xT.shape[i + 1] !== s)) {
    throw new RangeError(`${fn}: x must have shape ${named({ batch: slots, ...rowNames })}, got ${describe(xT.shape)}`);
  }
  const batch = xT.shape[0]!;
  const xShape = [batch, ...rowDims];
  const xText = named({ batch, ...rowNames });

  // The state's rows: one per batch row, or the cache slots that stateBatchIndices points into.
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
        throw new RangeError(`${fn}: stateBatchIndices[${i}]=${slot} must be below the ${slots} rows of state`);
      }
      if (seen.has(slot)) throw new RangeError(`${fn}: stateBatchIndices must be distinct; ${slot} appears twice`);
      seen.add(slot);
    }
  } else if (batch !== slots) {
    throw new RangeError(
      `${fn}: x has batch=${batch} rows but state has ${slots}; they must match unless stateBatchIndices is given`,
    );
  }

  // A decides between the heads forms: (H, P, N), or one scalar per head (H).
  const At = check.tensor('A', A);
  check.dtype('A', At, 'float32');
  const scalarPerHead = heads && At.shape.length === 1;
  if (scalarPerHead) {
    check.shape('A', At, [H], `${named({ H, P, N })} or ${named({ H })} (one scalar per head)`);
  } else {
    const aShape = heads ? [H, P, N] : [H, N];
    const aText = heads ? `${named({ H, P, N })} or ${named({ H })} (one scalar per head)` : named({ dim: H, N });
    check.shape('A', At, aShape, aText);
  }

  const dtT = check.tensor('dt', dt);
  check.dtype('dt', dtT, xT.dtype, ' (the dtype of x)');
  if (scalarPerHead) check.shape('dt', dtT, [batch, H], `${named({ batch, H })} (A has one scalar per head)`);
  else check.shape('dt', dtT, xShape, xText);

  let groups = 1;
  for (const [name, value] of [
    ['B', B],
    ['C', C],
  ] as const) {
    const t = check.tensor(name, value);
    check.dtype(name, t, xT.dtype, ' (the dtype of x)');
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

  const D = check.optionalTensor('D', o.D);
  let dPerHead = false;
  if (D) {
    check.dtype('D', D, 'float32');
    dPerHead = heads && D.shape.length === 1;
    if (dPerHead) check.shape('D', D, [H], `${named({ H, P })} or ${named({ H })}`);
    else check.shape('D', D, rowDims, heads ? `${named({ H, P })} or ${named({ H })}` : named({ dim: H }));
  }
  const z = check.optionalTensor('z', o.z);
  if (z) {
    check.shape('z', z, xShape, xText);
    check.dtype('z', z, xT.dtype, ' (the dtype of x)');
  }
  const dtBias = check.optionalTensor('dtBias', o.dtBias);
  if (dtBias) {
    check.dtype('dtBias', dtBias, 'float32');
    if (scalarPerHead) check.shape('dtBias', dtBias, [H], `${named({ H })} (A has one scalar per head)`);
    else check.shape('dtBias', dtBias, rowDims, heads ? named({ H, P }) : named({ dim: H }));
  }
  const dtSoftplus = check.boolean('dtSoftplus', o.dtSoftplus);
  const device = check.device();

  const y = allocate(fn, xShape, xT.dtype, device, false);
  try {
    native.stateUpdate({
      device: deviceIndex(device),
      dtype: dtypeCode(xT.dtype),
      batch,
      heads: H,
      headDim: P,
      dstate: N,
      groups,
      stateSlots: slots,
      scalarPerHead,
      dtSoftplus,
      dPerHead,
      state: storageOf(stateT, fn, 'state'),
      x: storageOf(xT, fn, 'x'),
      dt: storageOf(dtT, fn, 'dt'),
      A: storageOf(At, fn, 'A'),
      B: storageOf(B, fn, 'B'),
      C: storageOf(C, fn, 'C'),
      D: storage(fn, 'D', D),
      z: storage(fn, 'z', z),
      dtBias: storage(fn, 'dtBias', dtBias),
      stateBatchIndices: indices,
      y: storageOf(y, fn, 'y'),
    });
  } catch (error) {
    y.dispose();
    throw error;
  }
  return y;
}
