// What a forward saves for its backward (ScanContext, SsdContext): references to the forward's
// checked inputs (not copies) with the version each input tensor had then, the backend's
// checkpoint interval and the checkpoints tensor. The state, its brand check and the members
// every context has live here once; each op's context class is a thin subclass that names itself
// in error messages.
import { markPrototype, notBranded } from './brand.js';
import { codedError } from './errors.js';
import { type Tensor, tensorVersion } from './tensor.js';

/** What a backward reads from a live context. */
export interface Saved<Inputs> {
  inputs: Inputs;
  chunkLength: number;
  checkpoints: Tensor;
}

/** The kind of a context: its class name, and the call that makes it (for error messages). */
export interface ContextKind {
  name: string;
  madeBy: string;
}

const CONSTRUCTION_KEY = Symbol('ForwardContext');

// Set in ForwardContext's static block: the only access to its private state, for lib/ only.
let checkpointsOf: (kind: ContextKind, ctx: unknown, fn: string, name: string) => Tensor | null;
let savedOf: (kind: ContextKind, ctx: unknown, fn: string) => Saved<unknown>;
let release: (kind: ContextKind, ctx: unknown, fn: string) => void;

/**
 * The base of the contexts; not exported from the package. Its members are defined on each
 * subclass's prototype (contextAccess(kind).defineMembers), so that an error names the class whose
 * member was called, whatever the receiver: one function shared by two classes could not tell,
 * called on a Proxy, whether it was ScanContext.dispose or SsdContext.dispose.
 */
export class ForwardContext {
  /** Whether dispose() ran; a backward on a disposed context throws ERR_DISPOSED. */
  declare readonly isDisposed: boolean;
  /** Bytes held by the checkpoints (the float32 state at the end of every chunk); 0 once disposed. */
  declare readonly checkpointBytes: number;
  /** Frees the checkpoints, not the inputs. Disposing twice is harmless. */
  declare readonly dispose: () => void;
  declare readonly [Symbol.dispose]: () => void;

  readonly #kind: ContextKind;
  readonly #inputs: unknown;
  // The input tensors by name, with their versions at the forward: a backward that reads one
  // written in place since then would compute the gradients of a forward that never ran.
  readonly #versions: { name: string; tensor: Tensor; version: number }[] = [];
  readonly #chunkLength: number;
  #checkpoints: Tensor | null;

  static {
    checkpointsOf = (kind, ctx, fn, name) => {
      if (typeof ctx !== 'object' || ctx === null || !(#checkpoints in ctx) || ctx.#kind !== kind) {
        throw notBranded(fn, name, kind.name, ctx, `the ${kind.name} of ${kind.madeBy}`);
      }
      return ctx.#checkpoints;
    };
    savedOf = (kind, ctx, fn) => {
      const checkpoints = checkpointsOf(kind, ctx, fn, 'ctx');
      if (checkpoints === null) throw codedError('ERR_DISPOSED', `${fn}: ctx was disposed`);
      const c = ctx as ForwardContext;
      // The forward's inputs must still be alive and unchanged: the backward reads them again.
      for (const { name, tensor, version } of c.#versions) {
        if (tensor.isDisposed)
          throw codedError('ERR_DISPOSED', `${fn}: ${name} (an input of the forward) was disposed`);
        const now = tensorVersion(tensor)!;
        if (now !== version) {
          throw codedError(
            'ERR_MODIFIED',
            `${fn}: ${name} (an input of the forward) was modified in place after the forward (version ${version} → ${now}); the backward would read its new values. Give the forward a copy (t.to(t.device)) of a tensor you update in place`,
          );
        }
      }
      return { inputs: c.#inputs, chunkLength: c.#chunkLength, checkpoints };
    };
    release = (kind, ctx, fn) => {
      checkpointsOf(kind, ctx, fn, 'this')?.dispose();
      (ctx as ForwardContext).#checkpoints = null;
    };
    markPrototype(ForwardContext.prototype);
  }

  protected constructor(key: symbol, kind: ContextKind, inputs: unknown, chunkLength: number, checkpoints: Tensor) {
    if (key !== CONSTRUCTION_KEY) throw new TypeError(`${kind.name}: made by ${kind.madeBy}`);
    this.#kind = kind;
    this.#inputs = inputs;
    for (const [name, value] of Object.entries(inputs as object)) {
      const version = tensorVersion(value);
      if (version !== undefined) this.#versions.push({ name, tensor: value as Tensor, version });
    }
    this.#chunkLength = chunkLength;
    this.#checkpoints = checkpoints;
  }
}

/**
 * The shared behaviour of one kind of context, for its subclass and its op: the key its
 * constructor passes on, and brand-checked access that names `kind` in every error.
 */
export function contextAccess<Inputs>(kind: ContextKind) {
  return {
    key: CONSTRUCTION_KEY,
    /** The live context's saved forward, ERR_DISPOSED once disposed, a TypeError for anything else. */
    saved: (ctx: unknown, fn: string) => savedOf(kind, ctx, fn) as Saved<Inputs>,
    /** Defines ForwardContext's members on the prototype of kind's class (its static block). */
    defineMembers: (prototype: object) => defineMembers(prototype, kind),
  };
}

// isDisposed, checkpointBytes, dispose and [Symbol.dispose], as class members are: on the
// prototype, not enumerable.
function defineMembers(prototype: object, kind: ContextKind): void {
  const members = {
    get isDisposed(): boolean {
      return checkpointsOf(kind, this, `${kind.name}.isDisposed`, 'this') === null;
    },
    get checkpointBytes(): number {
      return (checkpointsOf(kind, this, `${kind.name}.checkpointBytes`, 'this')?.numel ?? 0) * 4;
    },
    dispose(): void {
      release(kind, this, `${kind.name}.dispose`);
    },
    [Symbol.dispose](): void {
      release(kind, this, `${kind.name}.dispose`);
    },
  };
  const descriptors: Record<PropertyKey, PropertyDescriptor> = Object.getOwnPropertyDescriptors(members);
  for (const key of Reflect.ownKeys(descriptors)) descriptors[key]!.enumerable = false;
  Object.defineProperties(prototype, descriptors);
}
