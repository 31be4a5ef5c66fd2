// Helpers the ops share.

/**
 * Gives `target` the own, enumerable, writable field `key` = `value` when value is defined (and
 * leaves it absent otherwise), as `target[key] = value` would on a plain object, but by
 * definition: an assignment would call a setter of that name that a program put on
 * Object.prototype, and the result would lack the field (the setter would have the tensor).
 */
export function addField<T extends object, K extends keyof T>(target: T, key: K, value: T[K] | undefined): void {
  if (value !== undefined) {
    Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
  }
}
