// Which copy of the package made a Tensor or a ScanContext. Their classes check their own objects
// with private fields (`#field in value`), which a Proxy, an object made with Object.create or an
// object of another copy of the package (installed twice, or its files loaded twice) fails. The
// prototypes also carry a mark, shared by every copy, so that the error can say which case it is.
import { types } from 'node:util';
import { describe } from './errors.js';
import { packageRoot } from './native.js';

const COPY_KEY = Symbol.for('selective-scan.copy');
const thisCopy: { readonly root: string } = Object.freeze({ root: packageRoot });

/** Marks a class's prototype as this copy's. */
export function markPrototype(prototype: object): void {
  Object.defineProperty(prototype, COPY_KEY, { value: thisCopy });
}

/** The TypeError for a value that failed the brand check of class `kind`. */
export function notBranded(fn: string, name: string, kind: string, value: unknown, expected = `a ${kind}`): TypeError {
  const copy = copyOf(value);
  if (copy === thisCopy) {
    return new TypeError(
      `${fn}: ${name} must be a ${kind} itself, got an object that only inherits from one (made with Object.create or setPrototypeOf)`,
    );
  }
  if (copy !== undefined) {
    const which =
      copy.root === thisCopy.root
        ? `another instance of selective-scan: its files at ${copy.root} were loaded twice (a cleared module cache, say)`
        : `another copy of selective-scan, at ${copy.root}; this copy is at ${thisCopy.root}`;
    return new TypeError(
      `${fn}: ${name} is a ${kind} from ${which}. A ${kind} works only with the copy that made it: load one copy ` +
        'of the package once (npm ls selective-scan lists the installed copies), or move values across with ' +
        'dataSync() and Tensor.from()',
    );
  }
  return new TypeError(`${fn}: ${name} must be ${expected}, got ${describe(value)}`);
}

// The copy mark on the prototype chain of value, read without running any of its code.
function copyOf(value: unknown): { root: string } | undefined {
  let proto: unknown = value;
  for (let depth = 0; depth < 64 && typeof proto === 'object' && proto !== null && !types.isProxy(proto); depth++) {
    const mark: unknown = Object.getOwnPropertyDescriptor(proto, COPY_KEY)?.value;
    if (mark === thisCopy) return thisCopy;
    const root: unknown =
      typeof mark === 'object' && mark !== null && !types.isProxy(mark)
        ? Object.getOwnPropertyDescriptor(mark, 'root')?.value
        : undefined;
    if (typeof root === 'string') return { root };
    proto = Object.getPrototypeOf(proto);
  }
  return undefined;
}
