// Tensors: row-major, contiguous arrays of float32, float16 or bfloat16 on the CPU or one GPU.
import { markPrototype, notBranded } from './brand.js';
import { type DType, dtypeBytes, dtypeCode, isDType } from './dtype.js';
import { codedError, describe, fromFunction } from './errors.js';
import { type DeviceIndex, native, type Storage } from './native.js';
import { typedArrayLength, typedArrayName } from './typed-arrays.js';

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

/** Device indices are below this (the addon's limit). */
const MAX_DEVICES = 1 << 16;
/** The most dimensions a shape may have. */
const MAX_RANK = 64;

/** The addon's device index: -1 for the host, i for cuda:i. */
export function deviceIndex(device: Device): DeviceIndex {
  return device === 'cpu' ? -1 : Number(device.slice(5));
}

/** Parses a device string; CUDA devices must be usable (ERR_CUDA_UNAVAILABLE with the reason). */
export function parseDevice(fn: string, spec: unknown): Device {
  if (spec === undefined || spec === 'cpu') return 'cpu';
  const expected = `${fn}: device must be 'cpu', 'cuda' or 'cuda:<index>'`;
  if (typeof spec !== 'string') throw new TypeError(`${expected}, got ${describe(spec)}`);
  const match = /^cuda(?::(0|[1-9][0-9]*))?$/.exec(spec);
  if (!match) throw new RangeError(`${expected}, got ${describe(spec)}`);
  const index = match[1] === undefined ? 0 : Number(match[1]); // exact below 2^53; larger ones fail below
  if (index >= MAX_DEVICES)
    throw new RangeError(`${fn}: device index must be below ${MAX_DEVICES}, got ${describe(spec)}`);
  try {
    native.requireDevice(index);
  } catch (error) {
    throw fromFunction(fn, error);
  }
  return `cuda:${index}`;
}

export function parseDType(fn: string, dtype: unknown, name = 'dtype'): DType {
  if (dtype === undefined) return 'float32';
  if (!isDType(dtype)) {
    throw new TypeError(`${fn}: ${name} must be 'float32', 'float16' or 'bfloat16', got ${describe(dtype)}`);
  }
  return dtype;
}

// A copy of the user's shape, read once (a Proxy or getters see one read of each element).
function parseShape(fn: string, shape: unknown): number[] {
  if (!Array.isArray(shape)) throw new TypeError(`${fn}: shape must be an array of integers, got ${describe(shape)}`);
  const rank: number = shape.length;
  if (rank > MAX_RANK) throw new RangeError(`${fn}: shape has ${rank} dimensions; at most ${MAX_RANK} are allowed`);
  const dims: number[] = [];
  for (let i = 0; i < rank; i++) {
    const size: unknown = shape[i];
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
      throw new RangeError(`${fn}: shape must hold non-negative integers, got ${describe(shape)}`);
    }
    dims.push(size === 0 ? 0 : size); // no -0
  }
  return dims;
}

function product(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

// The element count of a new tensor of this shape and dtype; its bytes must be countable exactly.
function checkedNumel(fn: string, dims: readonly number[], dtype: DType): number {
  const numel = product(dims);
  if (numel * dtypeBytes(dtype) > Number.MAX_SAFE_INTEGER) {
    throw new RangeError(`${fn}: shape ${describe(dims)} holds ${numel} elements, too many to allocate`);
  }
  return numel;
}

/**
 * The options a function was given: the own properties of `opts` (inherited ones, from
 * Object.prototype say, are never read), each read once, in an object without a prototype.
 */
function parseOptions(fn: string, opts: unknown, allowed: readonly string[]): Record<string, unknown> {
  const options: Record<string, unknown> = Object.create(null);
  if (opts === undefined) return options;
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts)) {
    throw new TypeError(`${fn}: options must be an object, got ${describe(opts)}`);
  }
  for (const key of Object.keys(opts)) {
    if (!allowed.includes(key)) {
      throw new TypeError(`${fn}: unknown option ${describe(key)} (expected one of ${allowed.join(', ')})`);
    }
  }
  for (const key of allowed) if (Object.hasOwn(opts, key)) options[key] = (opts as Record<string, unknown>)[key];
  return options;
}

// Tensor.from's values as numbers the addon takes: a Float32Array or Float64Array as given (the
// addon reads it by its real type and length), anything else copied into a Float64Array, each
// element read once.
function numbersOf(fn: string, values: unknown, dims: readonly number[], numel: number): Float32Array | Float64Array {
  const lengthError = (length: unknown) =>
    new RangeError(`${fn}: shape ${describe(dims)} holds ${numel} values, got ${describe(length)}`);
  const typed = typedArrayName(values);
  if (typed === 'BigInt64Array' || typed === 'BigUint64Array') {
    throw new TypeError(`${fn}: values must hold numbers, got ${typed}`);
  }
  if (typed !== undefined) {
    const array = values as Float32Array | Float64Array;
    if (typedArrayLength(array) !== numel) throw lengthError(typedArrayLength(array));
    return typed === 'Float32Array' || typed === 'Float64Array' ? array : new Float64Array(array);
  }
  if (values === null || typeof values !== 'object') {
    throw new TypeError(`${fn}: values must be an array or typed array of numbers, got ${describe(values)}`);
  }
  const length: unknown = (values as ArrayLike<unknown>).length;
  if (typeof length !== 'number') {
    throw new TypeError(`${fn}: values must be an array or typed array of numbers, got ${describe(values)}`);
  }
  if (length !== numel) throw lengthError(length);
  let numbers: Float64Array;
  try {
    numbers = new Float64Array(numel);
  } catch {
    throw codedError('ERR_OUT_OF_MEMORY', `${fn}: out of host memory copying ${numel} values`);
  }
  for (let i = 0; i < numel; i++) {
    const value: unknown = (values as ArrayLike<unknown>)[i];
    if (typeof value !== 'number') throw new TypeError(`${fn}: values[${i}] must be a number, got ${describe(value)}`);
    numbers[i] = value;
  }
  return numbers;
}

const INTERNAL = Symbol('selective-scan internal');
// What a wrapped device pointer belongs to (Tensor.fromDevicePointer's owner): held as long as the
// tensor is.
const owners = new WeakMap<Tensor, unknown>();
// Tensors made and not yet disposed (liveTensorCount).
let liveTensors = 0;
// Set in Tensor's static block: whether a value is a Tensor of this copy of the package, and its
// private storage (null once disposed), for the rest of lib/.
let isTensor: (value: unknown) => value is Tensor;
let storageField: (t: Tensor) => Storage | null;
// Set there too: makes a tensor around a storage (the constructor is private to the class).
let wrapStorage: (storage: Storage, shape: number[], dtype: DType, device: Device) => Tensor;
// And the version counter's two accessors (tensorVersion, markModified).
let versionField: (t: Tensor) => number;
let bumpVersion: (t: Tensor) => void;

export class Tensor {
  // Own, read-only and non-configurable properties (set in the constructor): assigning to them
  // changes nothing, and the checks and the addon always see what the tensor really is.
  declare readonly shape: readonly number[];
  declare readonly dtype: DType;
  declare readonly device: Device;
  declare readonly numel: number;
  #storage: Storage | null;
  // How many in-place writes the tensor has had (markModified): a context that saved it for a
  // backward compares it with the count it saw. Private, so that no user code can reset it.
  #version = 0;

  static {
    isTensor = (value): value is Tensor => typeof value === 'object' && value !== null && #storage in value;
    storageField = (t) => t.#storage;
    wrapStorage = (storage, shape, dtype, device) => new Tensor(INTERNAL, storage, shape, dtype, device);
    versionField = (t) => t.#version;
    bumpVersion = (t) => {
      t.#version++;
    };
    markPrototype(Tensor.prototype);
  }

  /** Tensors are made by Tensor.from, fromBits, zeros, fromDevicePointer and the ops. */
  private constructor(key: symbol, storage: Storage, shape: number[], dtype: DType, device: Device) {
    if (key !== INTERNAL) {
      throw new TypeError('Tensor: use Tensor.from, Tensor.fromBits, Tensor.zeros or Tensor.fromDevicePointer');
    }
    this.#storage = storage;
    Object.defineProperties(this, {
      shape: { value: Object.freeze(shape), enumerable: true },
      dtype: { value: dtype, enumerable: true },
      device: { value: device, enumerable: true },
      numel: { value: product(shape), enumerable: true },
    });
    liveTensors++;
  }

  /** A tensor holding `values` rounded to `dtype` (round to nearest even). */
  static from(values: ArrayLike<number>, shape: number[], opts?: { dtype?: DType; device?: DeviceSpec }): Tensor {
    const fn = 'Tensor.from';
    const o = parseOptions(fn, opts, ['dtype', 'device']);
    const dims = parseShape(fn, shape);
    const dtype = parseDType(fn, o.dtype);
    const numbers = numbersOf(fn, values, dims, checkedNumel(fn, dims, dtype));
    const device = parseDevice(fn, o.device);
    const t = allocate(fn, dims, dtype, device, false);
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
    if (typedArrayName(bits) !== 'Uint16Array') {
      throw new TypeError(`${fn}: bits must be a Uint16Array, got ${describe(bits)}`);
    }
    const o = parseOptions(fn, opts, ['dtype', 'device']);
    if (o.dtype !== 'float16' && o.dtype !== 'bfloat16') {
      throw new TypeError(`${fn}: dtype must be 'float16' or 'bfloat16', got ${describe(o.dtype)}`);
    }
    const dims = parseShape(fn, shape);
    const numel = checkedNumel(fn, dims, o.dtype);
    const length = typedArrayLength(bits);
    if (length !== numel) throw new RangeError(`${fn}: shape ${describe(dims)} holds ${numel} values, got ${length}`);
    const device = parseDevice(fn, o.device);
    const t = allocate(fn, dims, o.dtype, device, false);
    native.writeBits(storageField(t)!, bits);
    return t;
  }

  static zeros(shape: number[], opts?: { dtype?: DType; device?: DeviceSpec }): Tensor {
    const fn = 'Tensor.zeros';
    const o = parseOptions(fn, opts, ['dtype', 'device']);
    const dims = parseShape(fn, shape);
    const dtype = parseDType(fn, o.dtype);
    checkedNumel(fn, dims, dtype);
    return allocate(fn, dims, dtype, parseDevice(fn, o.device), true);
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
    const numel = checkedNumel(fn, dims, dtype);
    if (ptr <= 0n || ptr >= 1n << 64n) {
      throw new RangeError(`${fn}: ptr must be a non-null 64-bit address, got ${describe(ptr)}`);
    }
    if (ptr % 16n !== 0n) throw new RangeError(`${fn}: ptr must be 16-byte aligned, got 0x${ptr.toString(16)}`);
    const device = parseDevice(fn, o.device ?? 'cuda');
    if (device === 'cpu') throw new RangeError(`${fn}: device must be a CUDA device, got 'cpu'`);
    const storage = new native.Storage(deviceIndex(device), numel * dtypeBytes(dtype), ptr);
    const t = new Tensor(INTERNAL, storage, dims, dtype, device);
    if (o.owner !== undefined) owners.set(t, o.owner);
    return t;
  }

  get isDisposed(): boolean {
    return liveOrNull(this, 'Tensor.isDisposed') === null;
  }

  /** The device address of a CUDA tensor's data. */
  get devicePointer(): bigint {
    const fn = 'Tensor.devicePointer';
    const storage = storageOf(this, fn, 'tensor');
    if (this.device === 'cpu') throw new TypeError(`${fn}: only CUDA tensors have one; this tensor is on cpu`);
    return storage.pointer;
  }

  /** The values as float32 (16-bit types decoded); waits for pending device work. */
  dataSync(): Float32Array {
    const storage = storageOf(this, 'Tensor.dataSync', 'tensor');
    return native.readValues(storage, dtypeCode(this.dtype), this.numel);
  }

  /** The values as float32, without blocking the event loop. */
  data(): Promise<Float32Array> {
    try {
      const storage = storageOf(this, 'Tensor.data', 'tensor');
      return native.readValuesAsync(storage, dtypeCode(this.dtype), this.numel);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** The raw bits of a float16 or bfloat16 tensor. */
  bits(): Uint16Array {
    const fn = 'Tensor.bits';
    const storage = storageOf(this, fn, 'tensor');
    if (this.dtype === 'float32') {
      throw new TypeError(`${fn}: only float16 and bfloat16 tensors have 16-bit patterns; this tensor is float32`);
    }
    return native.readBits(storage, this.numel);
  }

  /** A copy on another device and/or in another dtype (values rounded to nearest even). */
  to(target: DeviceSpec | { device?: DeviceSpec; dtype?: DType }): Tensor {
    const fn = 'Tensor.to';
    const source = storageOf(this, fn, 'tensor');
    let device: Device = this.device;
    let dtype: DType = this.dtype;
    if (typeof target === 'string') {
      device = parseDevice(fn, target);
    } else if (typeof target === 'object' && target !== null && !Array.isArray(target)) {
      const o = parseOptions(fn, target, ['device', 'dtype']);
      if (o.device !== undefined) device = parseDevice(fn, o.device);
      if (o.dtype !== undefined) dtype = parseDType(fn, o.dtype);
    } else {
      throw new TypeError(`${fn}: target must be a device or { device, dtype }, got ${describe(target)}`);
    }
    const t = allocate(fn, [...this.shape], dtype, device, false);
    native.copy(storageField(t)!, dtypeCode(dtype), source, dtypeCode(this.dtype), this.numel);
    return t;
  }

  /** Frees the memory now; later use throws ERR_DISPOSED. Disposing twice is harmless. */
  dispose(): void {
    const storage = liveOrNull(this, 'Tensor.dispose');
    if (storage === null) return;
    this.#storage = null;
    liveTensors--;
    storage.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    const disposed = liveOrNull(this, 'Tensor.toString') === null;
    return `Tensor(${describe(this.shape)}, ${this.dtype}, ${this.device}${disposed ? ', disposed' : ''})`;
  }
}

// The storage of `t` (null once disposed), or a TypeError naming fn when t is not a Tensor of this
// copy of the package (a method called on another object, say).
function liveOrNull(t: unknown, fn: string, name = 'this'): Storage | null {
  if (!isTensor(t)) throw notBranded(fn, name, 'Tensor', t);
  return storageField(t);
}

/**
 * @internal A tensor argument of fn: a Tensor of this copy of the package, not disposed. Anything
 * else is a TypeError that says what it is (another copy's Tensor, a Proxy, ...).
 */
export function tensorArgument(fn: string, name: string, value: unknown): Tensor {
  storageOf(value, fn, name);
  return value as Tensor;
}

/**
 * @internal A float32 CPU tensor over the memory of `values` itself, without a copy (the tfjs
 * adapter's data path): writes to one show in the other. The tensor keeps the array's buffer
 * alive; once the buffer is detached, using the tensor throws ERR_DISPOSED.
 */
export function wrapFloat32Array(values: Float32Array, shape: number[]): Tensor {
  const fn = 'wrapFloat32Array';
  if (typedArrayName(values) !== 'Float32Array') {
    throw new TypeError(`${fn}: values must be a Float32Array, got ${describe(values)}`);
  }
  const buffer = values.buffer;
  if (!(buffer instanceof ArrayBuffer) || (buffer as { resizable?: boolean }).resizable) {
    throw new TypeError(`${fn}: values must be over a fixed-length ArrayBuffer, got ${describe(buffer)}`);
  }
  const dims = parseShape(fn, shape);
  const numel = checkedNumel(fn, dims, 'float32');
  const length = typedArrayLength(values); // 0 once detached
  if (length !== numel) throw new RangeError(`${fn}: shape ${describe(dims)} holds ${numel} values, got ${length}`);
  const storage = new native.Storage(-1, numel * 4, values);
  const t = wrapStorage(storage, dims, 'float32', 'cpu');
  owners.set(t, values);
  return t;
}

/** @internal The Float32Array a CPU tensor was made over (wrapFloat32Array, allocateInFloat32Arrays). */
export function float32ArrayOf(t: Tensor): Float32Array | undefined {
  const owner = owners.get(t);
  return t.device === 'cpu' && typedArrayName(owner) === 'Float32Array' ? (owner as Float32Array) : undefined;
}

// Set while allocateInFloat32Arrays runs.
let inFloat32Arrays = false;
const poisonAllocations =
  !!process.env.SELECTIVE_SCAN_POISON_ALLOCATIONS && process.env.SELECTIVE_SCAN_POISON_ALLOCATIONS !== '0';

/**
 * @internal Runs f (synchronous) with every float32 CPU tensor that an op allocates made over a
 * new Float32Array, which float32ArrayOf then hands to JavaScript without a copy.
 */
export function allocateInFloat32Arrays<T>(f: () => T): T {
  const outer = inFloat32Arrays;
  inFloat32Arrays = true;
  try {
    return f();
  } finally {
    inFloat32Arrays = outer;
  }
}

/** @internal How many tensors exist that were not disposed (the tfjs adapter's tests: no leaks). */
export function liveTensorCount(): number {
  return liveTensors;
}

/** @internal A new tensor, zeroed or not (ops write every element of their outputs). */
export function allocate(fn: string, shape: number[], dtype: DType, device: Device, zero: boolean): Tensor {
  if (inFloat32Arrays && device === 'cpu' && dtype === 'float32') {
    // As the addon's allocations: NaN where an op fails to write, when testing.
    const values = new Float32Array(product(shape));
    return wrapFloat32Array(!zero && poisonAllocations ? values.fill(Number.NaN) : values, shape);
  }
  const bytes = product(shape) * dtypeBytes(dtype);
  let storage: Storage;
  try {
    storage = new native.Storage(deviceIndex(device), bytes, zero);
  } catch (error) {
    throw fromFunction(fn, error);
  }
  return wrapStorage(storage, shape, dtype, device);
}

/**
 * @internal The version of a Tensor of this copy of the package (undefined for anything else): the
 * number of in-place writes it has had.
 */
export function tensorVersion(value: unknown): number | undefined {
  return isTensor(value) ? versionField(value) : undefined;
}

/** @internal Records an in-place write to t; every function that writes an argument calls it. */
export function markModified(t: Tensor): void {
  bumpVersion(t);
}

/** @internal The storage of a live tensor, or ERR_DISPOSED naming where it was used. */
export function storageOf(t: unknown, fn: string, name: string): Storage {
  const storage = liveOrNull(t, fn, name);
  if (storage === null) throw codedError('ERR_DISPOSED', `${fn}: ${name} was disposed`);
  return storage;
}

export { parseOptions };
