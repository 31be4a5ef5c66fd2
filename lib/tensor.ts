// Tensors: row-major, contiguous arrays of float32, float16 or bfloat16 on the CPU or one GPU.
import { type DType, dtypeBytes, dtypeCode, isDType } from './dtype.js';
import { codedError, describe } from './errors.js';
import { type DeviceIndex, native, type Storage } from './native.js';

// Tensor and ScanContext implement [Symbol.dispose] (for `using`). Node has the symbol from 20.5 on,
// but TypeScript declares it only in lib "esnext.disposable" or in @types/node, so the shipped
// .d.ts files declare it themselves, as @types/node does: they then compile for a user who has
// neither, and the declarations merge where the user has either.
declare global {
  interface SymbolConstructor {
    readonly dispose: unique symbol;
  }
}

export type { DType };
export type DeviceSpec = 'cpu' | 'cuda' | `cuda:${number}`;
export type Device = 'cpu' | `cuda:${number}`;

/** The addon's device index: -1 for the host, i for cuda:i. */
export function deviceIndex(device: Device): DeviceIndex {
  return device === 'cpu' ? -1 : Number(device.slice(5));
}

/** Parses a device string; CUDA devices must be usable (ERR_CUDA_UNAVAILABLE with the reason). */
export function parseDevice(fn: string, spec: unknown): Device {
  if (spec === undefined || spec === 'cpu') return 'cpu';
  if (typeof spec !== 'string') {
    throw new TypeError(`${fn}: device must be 'cpu', 'cuda' or 'cuda:<index>', got ${describe(spec)}`);
  }
  const match = /^cuda(?::(0|[1-9][0-9]*))?$/.exec(spec);
  if (!match) throw new RangeError(`${fn}: device must be 'cpu', 'cuda' or 'cuda:<index>', got ${describe(spec)}`);
  const index = match[1] === undefined ? 0 : Number(match[1]);
  native.requireDevice(index);
  return `cuda:${index}`;
}

export function parseDType(fn: string, dtype: unknown, name = 'dtype'): DType {
  if (dtype === undefined) return 'float32';
  if (!isDType(dtype)) {
    throw new TypeError(`${fn}: ${name} must be 'float32', 'float16' or 'bfloat16', got ${describe(dtype)}`);
  }
  return dtype;
}

function parseShape(fn: string, shape: unknown): number[] {
  if (!Array.isArray(shape)) throw new TypeError(`${fn}: shape must be an array of integers, got ${describe(shape)}`);
  for (const size of shape) {
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
      throw new RangeError(`${fn}: shape must hold non-negative integers, got ${describe(shape)}`);
    }
  }
  return [...shape];
}

function parseOptions(fn: string, opts: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (opts === undefined) return {};
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts)) {
    throw new TypeError(`${fn}: options must be an object, got ${describe(opts)}`);
  }
  for (const key of Object.keys(opts)) {
    if (!allowed.includes(key)) {
      throw new TypeError(`${fn}: unknown option '${key}' (expected one of ${allowed.join(', ')})`);
    }
  }
  return opts as Record<string, unknown>;
}

const INTERNAL = Symbol('selective-scan internal');
// What a wrapped device pointer belongs to (Tensor.fromDevicePointer's owner): held as long as the
// tensor is.
const owners = new WeakMap<Tensor, unknown>();
// Set in Tensor's static block: reads a tensor's private storage for the rest of lib/.
let storageField: (t: Tensor) => Storage | null;
// Set there too: makes a tensor around a storage (the constructor is private to the class).
let wrapStorage: (storage: Storage, shape: number[], dtype: DType, device: Device) => Tensor;

export class Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly device: Device;
  readonly numel: number;
  #storage: Storage | null;

  static {
    storageField = (t) => t.#storage;
    wrapStorage = (storage, shape, dtype, device) => new Tensor(INTERNAL, storage, shape, dtype, device);
  }

  /** Tensors are made by Tensor.from, fromBits, zeros, fromDevicePointer and the ops. */
  private constructor(key: symbol, storage: Storage, shape: number[], dtype: DType, device: Device) {
    if (key !== INTERNAL) {
      throw new TypeError('Tensor: use Tensor.from, Tensor.fromBits, Tensor.zeros or Tensor.fromDevicePointer');
    }
    this.#storage = storage;
    this.shape = Object.freeze(shape);
    this.dtype = dtype;
    this.device = device;
    this.numel = shape.reduce((a, b) => a * b, 1);
  }

  /** A tensor holding `values` rounded to `dtype` (round to nearest even). */
  static from(values: ArrayLike<number>, shape: number[], opts?: { dtype?: DType; device?: DeviceSpec }): Tensor {
    const fn = 'Tensor.from';
    const o = parseOptions(fn, opts, ['dtype', 'device']);
    if (values === null || typeof values !== 'object' || typeof (values as ArrayLike<number>).length !== 'number') {
      throw new TypeError(`${fn}: values must be an array or typed array of numbers, got ${describe(values)}`);
    }
    const dims = parseShape(fn, shape);
    const dtype = parseDType(fn, o.dtype);
    const numel = dims.reduce((a, b) => a * b, 1);
    if (values.length !== numel) {
      throw new RangeError(`${fn}: shape ${describe(dims)} holds ${numel} values, got ${values.length}`);
    }
    if (!ArrayBuffer.isView(values)) {
      for (let i = 0; i < numel; i++) {
        if (typeof values[i] !== 'number') {
          throw new TypeError(`${fn}: values[${i}] must be a number, got ${describe(values[i])}`);
        }
      }
    } else if (values instanceof BigInt64Array || values instanceof BigUint64Array) {
      throw new TypeError(`${fn}: values must hold numbers, got ${describe(values)}`);
    }
    // Float32Array and Float64Array go to the addon as they are; anything else as doubles.
    const numbers =
      values instanceof Float32Array || values instanceof Float64Array ? values : Float64Array.from(values);
    const device = parseDevice(fn, o.device);
    const t = allocate(dims, dtype, device, false);
    native.writeValues(storageField(t)!, dtypeCode(dtype), numbers);
    return t;
  }

  /** A float16 or bfloat16 tensor from raw 16-bit patterns. */
  static fromBits(
    bits: Uint16Array,
    shape: number[],
    opts: { dtype: 'float16' | 'bfloat16'; device?: DeviceSpec },
  ): Tensor {
    const fn = 'Tensor.fromBits';
    if (!(bits instanceof Uint16Array)) throw new TypeError(`${fn}: bits must be a Uint16Array, got ${describe(bits)}`);
    const o = parseOptions(fn, opts, ['dtype', 'device']);
    if (o.dtype !== 'float16' && o.dtype !== 'bfloat16') {
      throw new TypeError(`${fn}: dtype must be 'float16' or 'bfloat16', got ${describe(o.dtype)}`);
    }
    const dims = parseShape(fn, shape);
    const numel = dims.reduce((a, b) => a * b, 1);
    if (bits.length !== numel)
      throw new RangeError(`${fn}: shape ${describe(dims)} holds ${numel} values, got ${bits.length}`);
    const device = parseDevice(fn, o.device);
    const t = allocate(dims, o.dtype, device, false);
    native.writeBits(storageField(t)!, bits);
    return t;
  }

  static zeros(shape: number[], opts?: { dtype?: DType; device?: DeviceSpec }): Tensor {
    const fn = 'Tensor.zeros';
    const o = parseOptions(fn, opts, ['dtype', 'device']);
    const dims = parseShape(fn, shape);
    const dtype = parseDType(fn, o.dtype);
    return allocate(dims, dtype, parseDevice(fn, o.device), true);
  }

  /**
   * Wraps device memory owned elsewhere, without a copy; it is never freed here. The producer's
   * work must be complete (or queued on our stream) before an op reads it; `owner` is kept alive as
   * long as this tensor.
   */
  static fromDevicePointer(
    ptr: bigint,
    shape: number[],
    opts: { dtype: DType; device?: DeviceSpec; owner?: unknown },
  ): Tensor {
    const fn = 'Tensor.fromDevicePointer';
    if (typeof ptr !== 'bigint') throw new TypeError(`${fn}: ptr must be a bigint, got ${describe(ptr)}`);
    const o = parseOptions(fn, opts, ['dtype', 'device', 'owner']);
    if (o.dtype === undefined) throw new TypeError(`${fn}: dtype is required`);
    const dtype = parseDType(fn, o.dtype);
    const dims = parseShape(fn, shape);
    if (ptr <= 0n || ptr >= 1n << 64n) throw new RangeError(`${fn}: ptr must be a non-null 64-bit address, got ${ptr}`);
    if (ptr % 16n !== 0n) throw new RangeError(`${fn}: ptr must be 16-byte aligned, got 0x${ptr.toString(16)}`);
    const device = parseDevice(fn, o.device ?? 'cuda');
    if (device === 'cpu') throw new RangeError(`${fn}: device must be a CUDA device, got 'cpu'`);
    const numel = dims.reduce((a, b) => a * b, 1);
    const storage = new native.Storage(deviceIndex(device), numel * dtypeBytes(dtype), ptr);
    const t = new Tensor(INTERNAL, storage, dims, dtype, device);
    if (o.owner !== undefined) owners.set(t, o.owner);
    return t;
  }

  get isDisposed(): boolean {
    return this.#storage === null;
  }

  /** The device address of a CUDA tensor's data. */
  get devicePointer(): bigint {
    if (this.device === 'cpu')
      throw new TypeError('Tensor.devicePointer: only CUDA tensors have one; this tensor is on cpu');
    return storageOf(this, 'Tensor.devicePointer', 'tensor').pointer;
  }

  /** The values as float32 (16-bit types decoded); waits for pending device work. */
  dataSync(): Float32Array {
    return native.readValues(storageOf(this, 'Tensor.dataSync', 'tensor'), dtypeCode(this.dtype), this.numel);
  }

  /** The values as float32, without blocking the event loop. */
  data(): Promise<Float32Array> {
    try {
      return native.readValuesAsync(storageOf(this, 'Tensor.data', 'tensor'), dtypeCode(this.dtype), this.numel);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** The raw bits of a float16 or bfloat16 tensor. */
  bits(): Uint16Array {
    if (this.dtype === 'float32')
      throw new TypeError(
        `Tensor.bits: only float16 and bfloat16 tensors have 16-bit patterns; this tensor is float32`,
      );
    return native.readBits(storageOf(this, 'Tensor.bits', 'tensor'), this.numel);
  }

  /** A copy on another device and/or in another dtype (values rounded to nearest even). */
  to(target: DeviceSpec | { device?: DeviceSpec; dtype?: DType }): Tensor {
    const fn = 'Tensor.to';
    const source = storageOf(this, fn, 'tensor');
    let device: Device = this.device;
    let dtype: DType = this.dtype;
    if (typeof target === 'string') {
      device = parseDevice(fn, target);
    } else {
      const o = parseOptions(fn, target, ['device', 'dtype']);
      if (typeof target !== 'object' || target === null)
        throw new TypeError(`${fn}: target must be a device or { device, dtype }, got ${describe(target)}`);
      if (o.device !== undefined) device = parseDevice(fn, o.device);
      if (o.dtype !== undefined) dtype = parseDType(fn, o.dtype);
    }
    const t = allocate([...this.shape], dtype, device, false);
    native.copy(storageField(t)!, dtypeCode(dtype), source, dtypeCode(this.dtype), this.numel);
    return t;
  }

  /** Frees the memory now; later use throws ERR_DISPOSED. Disposing twice is harmless. */
  dispose(): void {
    const storage = this.#storage;
    this.#storage = null;
    storage?.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    return `Tensor(${describe(this.shape)}, ${this.dtype}, ${this.device}${this.isDisposed ? ', disposed' : ''})`;
  }
}

/** @internal A new tensor, zeroed or not (ops write every element of their outputs). */
export function allocate(shape: number[], dtype: DType, device: Device, zero: boolean): Tensor {
  const numel = shape.reduce((a, b) => a * b, 1);
  const storage = new native.Storage(deviceIndex(device), numel * dtypeBytes(dtype), zero);
  return wrapStorage(storage, shape, dtype, device);
}

/** @internal The storage of a live tensor, or ERR_DISPOSED naming where it was used. */
export function storageOf(t: Tensor, fn: string, name: string): Storage {
  const storage = storageField(t);
  if (storage === null) throw codedError('ERR_DISPOSED', `${fn}: ${name} was disposed`);
  return storage;
}

export { parseOptions };
