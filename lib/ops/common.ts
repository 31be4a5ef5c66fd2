// Helpers the ops share.
import type { DType } from '../dtype.js';
import { type Device, type Tensor, allocate } from '../tensor.js';

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

/**
 * Runs `call` (an op's native call) and returns what it returns; if it throws, first disposes
 * `outputs`, the tensors allocated for it (an array, or an object of them such as the gradients),
 * which then never reach the caller.
 */
export function freeOutputsOnThrow<T>(outputs: object, call: () => T): T {
  try {
    return call();
  } catch (error) {
    for (const t of Object.values(outputs) as (Tensor | undefined)[]) t?.dispose();
    throw error;
  }
}

/**
 * The gradients of a backward, allocated (uninitialised) like the inputs they belong to, on
 * `device`: one field per named input that is given, in the order named; none for an absent
 * (undefined) optional input. If an allocation fails, those already made are disposed
 * (allocateOutputs).
 */
export function allocateGradients<G extends object>(
  fn: string,
  device: Device,
  inputs: Readonly<Record<keyof G, Tensor | undefined>>,
): G {
  const specs: Record<string, OutputSpec | undefined> = Object.create(null);
  for (const key of Object.keys(inputs) as (keyof G & string)[]) {
    const t = inputs[key];
    specs[key] = t ? [[...t.shape], t.dtype] : undefined;
  }
  const made = allocateOutputs(fn, device, specs);
  const grads = {} as G;
  for (const key of Object.keys(made)) addField(grads, key as keyof G, made[key] as G[keyof G] | undefined);
  return grads;
}

/** An output's shape and dtype; `undefined` where the caller did not ask for that output. */
export type OutputSpec = readonly [shape: number[], dtype: DType];

/**
 * An op's outputs (uninitialised) on `device`, one per spec, in the order given; an undefined
 * spec gives an undefined output. If an allocation fails (device memory runs out), those already
 * made are disposed before the error reaches the caller, rather than left to the garbage
 * collector while they hold device memory.
 */
export function allocateOutputs<S extends Record<string, OutputSpec | undefined>>(
  fn: string,
  device: Device,
  specs: S,
): { [K in keyof S]: S[K] extends OutputSpec ? Tensor : Tensor | undefined } {
  const outputs: Record<string, Tensor | undefined> = Object.create(null);
  try {
    for (const key of Object.keys(specs)) {
      const spec = specs[key];
      outputs[key] = spec ? allocate(fn, spec[0], spec[1], device, false) : undefined;
    }
  } catch (error) {
    for (const t of Object.values(outputs)) t?.dispose();
    throw error;
  }
  return outputs as { [K in keyof S]: S[K] extends OutputSpec ? Tensor : Tensor | undefined };
}
