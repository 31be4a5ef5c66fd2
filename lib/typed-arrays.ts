// Typed arrays by what they really are. An object's prototype says nothing: a Uint8Array whose
// prototype was set to Uint16Array.prototype passes `instanceof Uint16Array`, and an own `length`
// property can shadow the real one. These read the engine's internal slots instead, through the
// built-in getters captured when the package loads.
const TypedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object;
const nameGetter = Object.getOwnPropertyDescriptor(TypedArrayPrototype, Symbol.toStringTag)!.get!;
const lengthGetter = Object.getOwnPropertyDescriptor(TypedArrayPrototype, 'length')!.get!;

export type TypedArrayName =
  | 'Int8Array'
  | 'Uint8Array'
  | 'Uint8ClampedArray'
  | 'Int16Array'
  | 'Uint16Array'
  | 'Int32Array'
  | 'Uint32Array'
  | 'Float32Array'
  | 'Float64Array'
  | 'BigInt64Array'
  | 'BigUint64Array';

/** The real type of a typed array (e.g. 'Uint8Array'), or undefined for anything else. */
export function typedArrayName(value: unknown): TypedArrayName | undefined {
  return nameGetter.call(value) as TypedArrayName | undefined;
}

/** The real element count of a typed array (0 once its buffer is detached). */
export function typedArrayLength(value: ArrayBufferView): number {
  return lengthGetter.call(value) as number;
}
