// Argument checking for the ops, in one place. Every check runs before any work is queued or any
// output allocated, so a call that throws leaves every input as it was. Messages name the function
// and the argument, what was expected and what was given.
import type { DType } from './dtype.js';
import { codedError, describe } from './errors.js';
import type { Storage } from './native.js';
import { type Device, type Tensor, parseOptions, storageOf, tensorArgument } from './tensor.js';
import { typedArrayLength, typedArrayName } from './typed-arrays.js';

export { ALL_DTYPES } from './dtype.js';

/** Positional shape text with names on first mention, e.g. [batch=2, N=16, L=100]. */
export function named(dims: Record<string, number>): string {
  return `[${Object.entries(dims)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ')}]`;
}

function sameShape(shape: readonly number[], expected: readonly number[]): boolean {
  if (shape.length !== expected.length) return false;
  for (let i = 0; i < shape.length; i++) if (shape[i] !== expected[i]) return false;
  return true;
}

export class ArgumentChecker {
  readonly #tensors: { name: string; tensor: Tensor }[] = [];

  constructor(readonly fn: string) {}

  /** A required tensor argument: a live Tensor of this copy of the package. */
  tensor(name: string, value: unknown): Tensor {
    const t = tensorArgument(this.fn, name, value);
    this.#tensors.push({ name, tensor: t });
    return t;
  }

  optionalTensor(name: string, value: unknown): Tensor | undefined {
    return value === undefined ? undefined : this.tensor(name, value);
  }

  dtype(name: string, t: Tensor, allowed: DType | readonly DType[], why = ''): void {
    const list = typeof allowed === 'string' ? [allowed] : allowed;
    if (!list.includes(t.dtype)) {
      const expected = list.length === 1 ? list[0] : `${list.slice(0, -1).join(', ')} or ${list[list.length - 1]}`;
      throw new TypeError(`${this.fn}: ${name} must be ${expected}${why}, got ${t.dtype}`);
    }
  }

  /** expectedText: the expected shape for the error, or a function that makes it (only on failure). */
  shape(name: string, t: Tensor, expected: readonly number[], expectedText: string | (() => string)): void {
    if (!sameShape(t.shape, expected)) {
      const text = typeof expectedText === 'function' ? expectedText() : expectedText;
      throw new RangeError(`${this.fn}: ${name} must have shape ${text}, got ${describe(t.shape)}`);
    }
  }

  options(opts: unknown, allowed: readonly string[]): Record<string, unknown> {
    return parseOptions(this.fn, opts, allowed);
  }

  boolean(name: string, value: unknown): boolean {
    if (value === undefined) return false;
    if (typeof value !== 'boolean')
      throw new TypeError(`${this.fn}: ${name} must be a boolean, got ${describe(value)}`);
    return value;
  }

  /** The one device of all tensor arguments seen so far (ERR_DEVICE_MISMATCH otherwise). */
  device(): Device {
    const first = this.#tensors[0]!;
    for (const { name, tensor } of this.#tensors) {
      if (tensor.device !== first.tensor.device) {
        throw codedError(
          'ERR_DEVICE_MISMATCH',
          `${this.fn}: all tensors must be on one device; ${first.name} is on ${first.tensor.device}, ${name} is on ${tensor.device}`,
        );
      }
    }
    return first.tensor.device;
  }

  /**
   * For a backward: the tensor arguments (the gradients given) are on one device, the one the
   * forward ran on (ERR_DEVICE_MISMATCH naming the first of them otherwise).
   */
  forwardDevice(forward: Device): Device {
    const device = this.device();
    if (device !== forward) {
      throw codedError(
        'ERR_DEVICE_MISMATCH',
        `${this.fn}: ${this.#tensors[0]!.name} is on ${device} but the forward ran on ${forward}`,
      );
    }
    return device;
  }
}

/** The storage of a tensor argument, or undefined; for building native descriptors. */
export function storage(fn: string, name: string, t: Tensor | undefined): Storage | undefined {
  return t === undefined ? undefined : storageOf(t, fn, name);
}

/**
 * Packed sequences (docs/API.md): a checked copy of cuSeqlens, an Int32Array of nseq + 1 >= 2
 * offsets that starts at 0, never decreases and ends at L, for a call with batch 1.
 */
export function checkCuSeqlens(fn: string, value: unknown, batch: number, L: number): Int32Array {
  if (typedArrayName(value) !== 'Int32Array') {
    throw new TypeError(`${fn}: cuSeqlens must be an Int32Array, got ${describe(value)}`);
  }
  // The real length, read before copying: a detached buffer reads as 0 entries (copying it throws).
  const length = typedArrayLength(value as Int32Array);
  if (batch !== 1) throw new RangeError(`${fn}: cuSeqlens needs batch=1, got batch=${batch}`);
  if (length < 2) throw new RangeError(`${fn}: cuSeqlens must have at least 2 entries, got ${length}`);
  const offsets = new Int32Array(value as Int32Array);
  if (offsets[0] !== 0) throw new RangeError(`${fn}: cuSeqlens must start at 0, got ${offsets[0]}`);
  if (offsets[offsets.length - 1] !== L) {
    throw new RangeError(`${fn}: cuSeqlens must end at L=${L}, got ${offsets[offsets.length - 1]}`);
  }
  for (let i = 1; i < offsets.length; i++) {
    if (offsets[i]! < offsets[i - 1]!) {
      throw new RangeError(`${fn}: cuSeqlens must never decrease; cuSeqlens[${i}]=${offsets[i]} < ${offsets[i - 1]}`);
    }
  }
  return offsets;
}
