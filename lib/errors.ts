// The errors selective-scan throws. Wrong types and dtypes are TypeErrors, wrong shapes and values
// RangeErrors; everything else is an Error with a stable `code`.
import { types } from 'node:util';
import { typedArrayName } from './typed-arrays.js';

export type ErrorCode =
  | 'ERR_DISPOSED'
  | 'ERR_DEVICE_MISMATCH'
  | 'ERR_CUDA_UNAVAILABLE'
  | 'ERR_CUDA_OOM'
  | 'ERR_CUDA'
  /** Host memory could not be allocated (a tensor on the CPU, or an op's scratch). */
  | 'ERR_OUT_OF_MEMORY'
  /** A backward whose saved input was changed in place after its forward (selectiveStateUpdate, say). */
  | 'ERR_MODIFIED';

export interface CodedError extends Error {
  code: ErrorCode;
}

export function codedError(code: ErrorCode, message: string): CodedError {
  const error = new Error(message) as CodedError;
  // Defined, not assigned: a `code` setter on Object.prototype would otherwise take it.
  Object.defineProperty(error, 'code', { value: code, enumerable: true, writable: true, configurable: true });
  return error;
}

/** A coded error of the addon (which knows no function names) as thrown by the public function fn. */
export function fromFunction(fn: string, error: unknown): unknown {
  if (!(error instanceof Error) || typeof (error as Partial<CodedError>).code !== 'string') return error;
  return codedError((error as CodedError).code, `${fn}: ${error.message}`);
}

const MAX_ITEMS = 8;
const MAX_CHARS = 60;

/**
 * Formats a value for an error message: shapes as [2, 3], strings quoted, objects by their type.
 * Never runs code of the value's (no getters, proxy traps or toString) and stays short.
 */
export function describe(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return `'${value.length > MAX_CHARS ? `${value.slice(0, MAX_CHARS)}...` : value}'`;
    case 'bigint':
      return `${shorten(value.toString())}n`;
    case 'symbol':
      return shorten(String(value));
    case 'function':
      return 'a function';
    case 'object':
      return value === null ? 'null' : describeObject(value);
    default:
      return String(value);
  }
}

function shorten(text: string): string {
  return text.length > MAX_CHARS ? `${text.slice(0, MAX_CHARS)}...` : text;
}

function describeObject(value: object): string {
  if (types.isProxy(value)) return 'a Proxy';
  const typed = typedArrayName(value);
  if (typed !== undefined) {
    const claimed = constructorName(value);
    return claimed === typed
      ? typed
      : `${typed.startsWith('Int') ? 'an' : 'a'} ${typed} (with the prototype of ${claimed ?? 'no class'})`;
  }
  if (Array.isArray(value)) {
    const items: string[] = [];
    for (let i = 0; i < Math.min(value.length, MAX_ITEMS); i++) {
      const slot = Object.getOwnPropertyDescriptor(value, i);
      if (slot === undefined) items.push('empty');
      else if (!('value' in slot)) items.push('a getter');
      else items.push(Array.isArray(slot.value) ? '[...]' : describe(slot.value));
    }
    if (value.length > MAX_ITEMS) items.push(`... ${value.length - MAX_ITEMS} more`);
    return `[${items.join(', ')}]`;
  }
  return constructorName(value) ?? 'an object';
}

// The name of the class an object claims to be an instance of, read from data properties only.
function constructorName(value: object): string | undefined {
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto === null) return undefined;
  if (types.isProxy(proto)) return 'a Proxy';
  const ctor: unknown = Object.getOwnPropertyDescriptor(proto, 'constructor')?.value;
  if (typeof ctor !== 'function') return undefined;
  const name: unknown = Object.getOwnPropertyDescriptor(ctor, 'name')?.value;
  return typeof name === 'string' && name !== '' ? shorten(name) : undefined;
}
