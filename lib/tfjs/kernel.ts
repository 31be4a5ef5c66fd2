// The generic part of the TensorFlow.js adapter: an op of this package registered as a tfjs kernel
// (forward and backward, on each supported backend) with a gradient, so that tf.grad, tf.grads,
// tf.variableGrads, the optimizers and tf.tidy treat it like any tfjs op. Adding an op is one file
// that describes it (a TensorOp: its arguments, options and how to run its forward and backward)
// and calls registerTensorOp.
import * as tf from '@tensorflow/tfjs-core';
import { codedError, describe } from '../errors.js';
import { type Tensor, allocateInFloat32Arrays, float32ArrayOf, wrapFloat32Array } from '../tensor.js';
import { typedArrayLength, typedArrayName } from '../typed-arrays.js';

/** The tfjs backends whose tensors live in host memory that our CPU backend can read. */
export const SUPPORTED_BACKENDS: readonly string[] = ['cpu', 'wasm'];

/** Plain, serialisable per-call settings (tfjs keeps them on its tape for the backward). */
export type OpAttrs = tf.NamedAttrMap;

/** An op of this package as tfjs sees it: every tensor argument and result is float32 on the CPU. */
export interface OpKernel<Attrs extends OpAttrs> {
  /** The tfjs kernel name of the forward; the backward is registered as `${name}Backward`. */
  name: string;
  /** The number of `saved` tensors every forward returns. */
  savedCount: number;
  /**
   * Runs the op: its outputs, and what its backward needs besides the inputs (checkpoints), which
   * tfjs keeps while a gradient may still be taken. The caller disposes every tensor returned.
   */
  forward(inputs: Tensor[], attrs: Attrs): { outputs: Tensor[]; saved: Tensor[] };
  /** One gradient per input, given the inputs, the saved tensors and one gradient per output. */
  backward(inputs: Tensor[], saved: Tensor[], outputGradients: Tensor[], attrs: Attrs): Tensor[];
}

/** Runs a registered op on tfjs tensors: its outputs (the saved tensors are tfjs's business). */
export type TfjsOp<Attrs extends OpAttrs> = (fn: string, inputs: tf.Tensor[], attrs: Attrs) => tf.Tensor[];

// tfjs tensor data -> our tensors, and back, through Float32Arrays: the cpu backend keeps its
// tensors' values in them (no copy either way); the wasm backend copies them out of its heap and
// into it (one copy each way).
function toOurs(backend: tf.KernelBackend, info: tf.TensorInfo): Tensor {
  const values = backend.readSync(info.dataId);
  if (!(values instanceof Float32Array)) throw new TypeError(`internal: tfjs data of dtype ${info.dtype}`);
  return wrapFloat32Array(values, info.shape);
}

function toTfjs(backend: tf.KernelBackend, t: Tensor): tf.TensorInfo {
  const shape = [...t.shape];
  const values = float32ArrayOf(t) ?? t.dataSync();
  return { dataId: backend.write(values, shape, 'float32'), shape, dtype: 'float32' };
}

// Runs `body` on our views of the kernel's inputs, its outputs made in Float32Arrays, and hands
// those to the backend; every tensor of ours is disposed (the arrays live on in tfjs), whether it
// returns or throws.
function runOnBackend(
  backend: tf.KernelBackend,
  inputs: tf.TensorInfo[],
  body: (ours: Tensor[]) => Tensor[],
): tf.TensorInfo[] {
  const ours: Tensor[] = [];
  let results: Tensor[] = [];
  try {
    for (const info of inputs) ours.push(toOurs(backend, info));
    results = allocateInFloat32Arrays(() => body(ours));
    return results.map((t) => toTfjs(backend, t));
  } finally {
    for (const t of [...ours, ...results]) t.dispose();
  }
}

/**
 * The fields of `parts`, in order, on a new object without a prototype: what the adapter builds per
 * call (attributes, our op's options) instead of `{ ...a, ...b }`. V8 (Node 20) took tens of µs for
 * an object spread and kept its garbage alive through the scavenges (bench/call-overhead.mjs,
 * docs/ARCHITECTURE.md); and assigning the fields (here and later, as `opts[name] = ...`) defines
 * them even where a program put setters of the same names on Object.prototype.
 */
export function perCallObject<A extends object, B extends object = object>(a: A, b?: B): A & B {
  return Object.assign(Object.create(null) as object, a, b);
}

// runKernel takes its inputs as a name -> tensor map; an array is one (keys '0', '1', ...), which
// lets an op have optional inputs and still have tfjs save all of them for the backward.
const asInputMap = <T>(inputs: T[]) => inputs as unknown as Record<string, T>;

/**
 * Registers `op` as a tfjs kernel on every supported backend, its backward as a second kernel and
 * the gradient that connects them; returns the function that runs it. Registering twice (two
 * copies of this package) keeps the first registration.
 */
function registerOp<Attrs extends OpAttrs>(op: OpKernel<Attrs>): TfjsOp<Attrs> {
  const backwardName = `${op.name}Backward`;
  for (const backendName of SUPPORTED_BACKENDS) {
    if (tf.getKernel(op.name, backendName) !== undefined) continue;
    // The forward's results: the saved tensors first (a fixed count, so that outputsToSave can
    // name them), then the outputs.
    tf.registerKernel({
      kernelName: op.name,
      backendName,
      kernelFunc: ({ inputs, backend, attrs }) =>
        runOnBackend(backend as tf.KernelBackend, Object.values(inputs) as tf.TensorInfo[], (ours) => {
          const { outputs, saved } = op.forward(ours, attrs as Attrs);
          return [...saved, ...outputs];
        }),
    });
    // The backward's inputs: the forward's inputs, its saved tensors, one gradient per output.
    tf.registerKernel({
      kernelName: backwardName,
      backendName,
      kernelFunc: ({ inputs, backend, attrs }) =>
        runOnBackend(backend as tf.KernelBackend, Object.values(inputs) as tf.TensorInfo[], (ours) => {
          const inputCount = (attrs as { inputCount: number }).inputCount;
          const forwardInputs = ours.slice(0, inputCount);
          const saved = ours.slice(inputCount, inputCount + op.savedCount);
          return op.backward(forwardInputs, saved, ours.slice(inputCount + op.savedCount), attrs as Attrs);
        }),
    });
  }
  if (tf.getGradient(op.name) === undefined) {
    tf.registerGradient({
      kernelName: op.name,
      saveAllInputs: true,
      outputsToSave: new Array<boolean>(op.savedCount).fill(true),
      // tfjs passes the inputs then the saved outputs, and a gradient for every output (zeros for
      // those that do not reach the loss; the saved tensors' are never used).
      gradFunc: (dy, saved, attrs) => {
        const outputGradients = (Array.isArray(dy) ? dy : [dy]).slice(op.savedCount);
        const inputCount = saved.length - op.savedCount;
        // The forward's attributes and inputCount: Object.assign onto an object without a
        // prototype, not a spread (see perCallObject).
        const backwardAttrs = perCallObject(attrs, { inputCount });
        const grads = tf
          .engine()
          .runKernel(backwardName, asInputMap([...saved, ...outputGradients]), backwardAttrs) as tf.Tensor[];
        return Object.fromEntries(grads.map((g, i) => [String(i), () => g]));
      },
    });
  }
  return (fn, inputs, attrs) => {
    const backendName = tf.getBackend();
    if (!SUPPORTED_BACKENDS.includes(backendName)) {
      throw new Error(
        `${fn}: the tfjs backend ${describe(backendName)} is not supported; selective-scan/tfjs runs on ` +
          `${SUPPORTED_BACKENDS.map((b) => describe(b)).join(' and ')} (tf.setBackend('cpu'))`,
      );
    }
    const results = tf.engine().runKernel(op.name, asInputMap(inputs), attrs) as tf.Tensor[];
    // The saved tensors: tfjs has kept its own references if a gradient is being recorded.
    for (const t of results.slice(0, op.savedCount)) t.dispose();
    return results.slice(op.savedCount);
  };
}

/**
 * A tfjs op of this package as its file describes it. The tensor arguments are the required ones,
 * then the optional ones (options) that were given; the other options become attributes (cuSeqlens
 * with cuSeqlensAttribute), and our op gets them back as its options.
 */
export interface TensorOp<Settings extends OpAttrs, Options extends object> {
  /** The tfjs kernel name of the forward. */
  name: string;
  /** The required tensor arguments, in order. */
  required: readonly string[];
  /** The optional tensor arguments: options, given to the kernel in this order after the required ones. */
  optional: readonly string[];
  /** The other options, besides cuSeqlens. */
  settingNames: readonly string[];
  /** Checks those options into plain attributes. */
  settings(fn: string, o: Record<string, unknown>): Settings;
  /** Our op's options (besides its tensors and cuSeqlens) for these attributes. */
  options(settings: Settings): Options;
  /** The number of tensors every forward saves for the backward. */
  savedCount: number;
  /** Runs our op: its outputs, and what its backward needs besides the inputs. */
  forward(args: Tensor[], opts: Options, settings: Settings): { outputs: Tensor[]; saved: Tensor[] };
  /** Runs our backward: the gradients, by the name of their input (those not given are not read). */
  backward(
    args: Tensor[],
    opts: Options,
    saved: Tensor[],
    outputGradients: Tensor[],
    settings: Settings,
  ): Record<string, Tensor | undefined>;
}

/** The attributes of a TensorOp's kernel: its settings, which optional inputs were given, cuSeqlens. */
type TensorOpAttrs<Settings> = Settings & { optionalInputs: string[]; cuSeqlens: number[] };

/**
 * Registers `op` (registerOp) and returns the function that runs it on tfjs tensors: it checks the
 * option names and the tensor arguments, and returns the outputs.
 */
export function registerTensorOp<Settings extends OpAttrs, Options extends object>(
  op: TensorOp<Settings, Options>,
): (fn: string, args: unknown[], opts: unknown) => tf.Tensor[] {
  const required = op.required.length;
  // Our op's arguments and options from the kernel's inputs and attributes.
  const ours = (inputs: Tensor[], attrs: TensorOpAttrs<Settings>) => {
    const opts = perCallObject(op.options(attrs)) as Record<string, unknown>;
    if (attrs.cuSeqlens.length > 0) opts.cuSeqlens = Int32Array.from(attrs.cuSeqlens);
    attrs.optionalInputs.forEach((name, i) => {
      opts[name] = inputs[required + i];
    });
    return { args: inputs.slice(0, required), opts: opts as Options };
  };
  const run = registerOp<TensorOpAttrs<Settings>>({
    name: op.name,
    savedCount: op.savedCount,
    forward(inputs, attrs) {
      const { args, opts } = ours(inputs, attrs);
      return op.forward(args, opts, attrs);
    },
    backward(inputs, saved, outputGradients, attrs) {
      const { args, opts } = ours(inputs, attrs);
      const grads = op.backward(args, opts, saved, outputGradients, attrs);
      return [...op.required, ...attrs.optionalInputs].map((name) => grads[name]!);
    },
  });
  const optionNames = [...op.optional, ...op.settingNames, 'cuSeqlens'];
  return (fn, args, opts) => {
    const o = checkOptionNames(fn, opts, optionNames);
    const inputs = op.required.map((name, i) => checkTensor(fn, name, args[i]));
    const optionalInputs = op.optional.filter((name) => o[name] !== undefined);
    for (const name of optionalInputs) inputs.push(checkTensor(fn, name, o[name]));
    const settings = op.settings(fn, o);
    const attrs = perCallObject(settings, { optionalInputs, cuSeqlens: cuSeqlensAttribute(fn, o.cuSeqlens) });
    return run(fn, inputs, attrs);
  };
}

/** Checks a tensor argument: a live float32 tf.Tensor. */
export function checkTensor(fn: string, name: string, value: unknown): tf.Tensor {
  if (!(value instanceof tf.Tensor)) throw new TypeError(`${fn}: ${name} must be a tf.Tensor, got ${describe(value)}`);
  if (value.isDisposed) throw codedError('ERR_DISPOSED', `${fn}: ${name} was disposed`);
  if (value.dtype !== 'float32') throw new TypeError(`${fn}: ${name} must be float32, got ${value.dtype}`);
  return value;
}

/** Checks a boolean option: false when absent. */
export function checkBoolean(fn: string, name: string, value: unknown): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw new TypeError(`${fn}: ${name} must be a boolean, got ${describe(value)}`);
  return value;
}

/** Checks an options argument: absent, or an object with only the allowed keys. */
export function checkOptionNames(fn: string, opts: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (opts !== undefined && (typeof opts !== 'object' || opts === null || Array.isArray(opts))) {
    throw new TypeError(`${fn}: options must be an object, got ${describe(opts)}`);
  }
  const o = (opts ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!allowed.includes(key)) {
      throw new TypeError(`${fn}: unknown option '${key}' (expected one of ${allowed.join(', ')})`);
    }
  }
  return o;
}

/**
 * cuSeqlens as a kernel attribute: plain numbers (tfjs keeps attributes on its tape, and a copy
 * means a later change to the caller's array changes nothing); [] without. The op itself checks
 * the offsets against the shapes and names what is wrong with them.
 */
export function cuSeqlensAttribute(fn: string, value: unknown): number[] {
  if (value === undefined) return [];
  if (typedArrayName(value) !== 'Int32Array') {
    throw new TypeError(`${fn}: cuSeqlens must be an Int32Array, got ${describe(value)}`);
  }
  // [] means "none" in the attributes, so an empty array (or a detached one, whose real length
  // reads 0 and which cannot be copied) is refused here.
  if (typedArrayLength(value as Int32Array) === 0) {
    throw new RangeError(`${fn}: cuSeqlens must have at least 2 entries, got 0`);
  }
  return Array.from(new Int32Array(value as Int32Array));
}
