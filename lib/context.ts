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

/** The base of the contexts; not exported from the package. */
export class ForwardContext {
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
      for (const { name, tensor, version } of c.#versions) {
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
    isDisposed: (ctx: unknown) => checkpointsOf(kind, ctx, `${kind.name}.isDisposed`, 'this') === null,
    checkpointBytes: (ctx: unknown) =>
      (checkpointsOf(kind, ctx, `${kind.name}.checkpointBytes`, 'this')?.numel ?? 0) * 4,
    dispose: (ctx: unknown) => release(kind, ctx, `${kind.name}.dispose`),
  };
}
